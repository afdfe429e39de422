import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState } from '../../src/gateway/index.ts';
import { IpPacket, makeTcpPacket, makeUdpPacket } from '../../src/ip/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { SimNetwork } from '../support/sim-network.ts';
import { CLIENT_ID, CLIENT_TUN, GATEWAY_TUN, GatewayHost, message, resource, RESOURCE_ID, runUntil, setUp, src } from './loop-harness.ts';

describe('gateway event loop', () => {
  test('init + authorize_flow: flow_authorized with the same ref, candidates broadcast, the tunnel comes up', () => {
    const env = setUp();
    assert.deepEqual(env.portalLog[0], { event: 'flow_authorized', payload: { ref: 'flow-ref-1' } });
    assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
  });

  test('allowed packets reach the TUN device; replies reach the client', () => {
    const env = setUp();
    assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
    const syn = makeTcpPacket(src, resource, 40000, 80, { flags: 0x02 }, new Uint8Array(0));
    assert.ok(runUntil(env, () => {
      env.client.send(syn, env.net.now);
      return env.gateway.tunWrites.length > 0;
    }));
    const written = new IpPacket();
    assert.equal(written.parse(env.gateway.tunWrites[0]!), undefined);
    assert.equal(written.destinationPort, 80);

    const before = env.client.received.length;
    env.gateway.tunPacket(makeTcpPacket(resource, src, 80, 40000, { flags: 0x12 }, new Uint8Array(0)));
    assert.ok(runUntil(env, () => env.client.received.length > before));
    const reply = new IpPacket();
    assert.equal(reply.parse(env.client.received.at(-1)!.packet), undefined);
    assert.equal(reply.sourcePort, 80);
  });

  test('a filtered port is answered with ICMP administratively prohibited and never reaches the TUN', () => {
    const env = setUp();
    assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
    const denied = makeUdpPacket(src, resource, 40000, 53, new Uint8Array(8));
    const before = env.client.received.length;
    assert.ok(runUntil(env, () => {
      env.client.send(denied, env.net.now);
      return env.client.received.length > before;
    }));
    assert.equal(env.gateway.tunWrites.length, 0);
    const icmp = new IpPacket();
    assert.equal(icmp.parse(env.client.received.at(-1)!.packet), undefined);
    assert.equal(icmp.transport, 'icmpv4');
    assert.equal(icmp.icmpType, 3);
    assert.equal(icmp.icmpCode, 13);
  });

  test('reject_access revokes: packets stop reaching the TUN device', () => {
    const env = setUp();
    assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
    env.gateway.loop.handlePortalMessage(message('reject_access', { client_id: CLIENT_ID, resource_id: RESOURCE_ID, flow_id: RESOURCE_ID }));
    const syn = makeTcpPacket(src, resource, 40000, 80, { flags: 0x02 }, new Uint8Array(0));
    runUntil(env, () => {
      env.client.send(syn, env.net.now);
      return false;
    }, 1_000);
    assert.equal(env.gateway.tunWrites.length, 0);
  });

  test('without relays, authorize_flow is not answered and the portal connection is renewed', () => {
    const rng = seededRandom(1);
    const net = new SimNetwork(rng);
    const gateway = new GatewayHost(net);
    gateway.loop.handlePortalMessage(message('init', { interface: GATEWAY_TUN, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true } }));
    gateway.loop.handlePortalMessage(message('authorize_flow', {
      ref: 'r', resource: { id: RESOURCE_ID, name: 'x', type: 'cidr', address: '10.0.0.0/24', filters: [] },
      client: { id: CLIENT_ID, public_key: Buffer.alloc(32, 1).toString('base64'), preshared_key: Buffer.alloc(32).toString('base64'), ...CLIENT_TUN },
      client_ice_credentials: { username: 'a', password: 'b'.repeat(22) }, gateway_ice_credentials: { username: 'c', password: 'd'.repeat(22) }, expires_at: null,
    }));
    assert.equal(gateway.reconnects, 1);
    assert.equal(gateway.portalSent.filter((m) => m.event === 'flow_authorized').length, 0);
  });

  test('a packet that makes the policy state throw is dropped and counted; the loop keeps serving', () => {
    class Throwing extends GatewayState {
      override handleTunPacket(): never {
        throw new Error('bug in the policy core');
      }
    }
    const net = new SimNetwork(seededRandom(2));
    const gateway = new GatewayHost(net, { state: new Throwing() });
    const packet = makeUdpPacket(resource, src, 53, 40000, new Uint8Array(4));
    assert.doesNotThrow(() => gateway.tunPacket(packet));
    assert.doesNotThrow(() => gateway.tunPacket(packet));
    assert.equal(gateway.loop.stats.internalErrors, 2);
  });
});
