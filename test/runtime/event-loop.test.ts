import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState } from '../../src/gateway/index.ts';
import { IpPacket, makeTcpPacket, makeUdpPacket, parseIp } from '../../src/ip/index.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { decodeIngress, type IngressMessage } from '../../src/portal/index.ts';
import { GatewayEventLoop } from '../../src/runtime/event-loop.ts';
import type { TunReadBatch } from '../../src/runtime/tun-device.ts';
import { MemoryUdpSocket } from '../../src/runtime/udp-socket.ts';
import { Node } from '../../src/snownet/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import { SimNetwork, type SimAgent } from '../support/sim-network.ts';
import { TestTurnServer } from '../support/turn-server.ts';
import { NodeAgent, RELAY_ADDR, RELAY_PASSWORD, keyPair } from '../snownet/harness.ts';

configureLogging({ filter: LogFilter.parse('off') });

const CLIENT_ID = '3abd725a-733b-4801-ac16-72f26cd98a24';
const RESOURCE_ID = 'c7793628-8579-465b-83e3-1a5d4af4db3b';
const GATEWAY_TUN = { ipv4: '100.115.164.78', ipv6: 'fd00:2021:1111::2c:f6ab' };
const CLIENT_TUN = { ipv4: '100.93.74.51', ipv6: 'fd00:2021:1111::f:853b' };

function message(event: string, payload: unknown): IngressMessage {
  const decoded = decodeIngress(event, payload);
  if (!decoded.ok) throw new Error(JSON.stringify(decoded.error));
  return decoded.message;
}

/** The gateway event loop on the simulated network: in-memory socket, fake TUN, fake timer. */
class GatewayHost implements SimAgent {
  readonly socket: MemoryUdpSocket;
  readonly tunWrites: Uint8Array[] = [];
  readonly portalSent: { event: string; payload: Readonly<Record<string, unknown>> }[] = [];
  reconnects = 0;
  readonly loop: GatewayEventLoop;
  readonly node: Node;
  private timerAt: number | undefined;
  private sentIndex = 0;

  constructor(readonly net: SimNetwork, state: GatewayState = new GatewayState()) {
    const rng = seededRandom(7);
    this.node = new Node({ role: 'server', privateKey: keyPair(rng), rng, now: 0 });
    this.socket = new MemoryUdpSocket({ family: 4, onDatagrams: (batch) => this.loop.handleDatagrams(batch) });
    this.loop = new GatewayEventLoop({
      node: this.node,
      state,
      sockets: { v4: this.socket, v6: undefined },
      tun: { write: (p) => (this.tunWrites.push(p.slice()), true) },
      portal: { send: (event, payload) => this.portalSent.push({ event, payload }), reconnect: () => void this.reconnects++ },
      resolver: { resolve: async () => ['10.0.0.9'] },
      configureInterface: async () => undefined,
      clock: () => net.now,
      wallClock: () => 1_700_000_000_000 + net.now,
      rng,
      onFatal: (error) => {
        throw error;
      },
      setTimer: (_callback, delay) => (this.timerAt = net.now + delay),
      clearTimer: () => (this.timerAt = undefined),
    });
  }

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array): void {
    this.socket.deliver([{ payload, source: from, destinationIp: to.address }]);
  }
  handleTimeout(): void {
    this.timerAt = undefined;
    this.loop.handleTimeout();
  }
  pollTransmit(): Transmit | undefined {
    const sent = this.socket.sent[this.sentIndex];
    if (sent === undefined) return undefined;
    this.sentIndex++;
    return { source: sent.source, destination: sent.destination, payload: sent.payload };
  }
  pollTimeout(): number | undefined {
    return this.timerAt;
  }

  tunPacket(packet: Uint8Array): void {
    const batch: TunReadBatch = { queue: 0, count: 1, buffer: packet, offset: () => 0, length: () => packet.length, packet: () => packet };
    this.loop.handleTunPackets(batch);
  }
}

function setUp(filters: unknown[] = [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }, { protocol: 'icmp' }]) {
  const rng = seededRandom(3);
  const net = new SimNetwork(rng, { wakeAllOnRun: true });
  const relay = new TestTurnServer({ listen: [RELAY_ADDR], relayIpv4: '192.0.2.100', password: () => RELAY_PASSWORD });
  net.addHost('relay', ['192.0.2.100'], relay, { port: 3478 });
  const gateway = new GatewayHost(net);
  net.addHost('gateway', ['203.0.113.2'], gateway);
  const clientNode = new Node({ role: 'client', privateKey: keyPair(rng), rng, now: 0 });
  const client = new NodeAgent(CLIENT_ID, clientNode, 'gateway');
  net.addHost('client', ['198.51.100.2'], client);
  const relays = [{ type: 'turn', id: '0a133356-7a9e-4b9a-b413-0d95a5720fd8', addr: '192.0.2.100:3478', username: '1999999999:salt', password: RELAY_PASSWORD, expires_at: 1999999999 }];
  clientNode.updateRelays([], [{ id: 'r', v4: RELAY_ADDR, v6: undefined, username: '1999999999:salt', password: RELAY_PASSWORD }], 0);
  gateway.loop.handlePortalMessage(message('init', { interface: GATEWAY_TUN, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true }, relays }));
  net.runUntil(500);

  const psk = Buffer.from(keyPair(rng)).toString('base64');
  const gatewayCreds = { username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' };
  const clientCreds = { username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' };
  clientNode.upsertConnection('gateway', {
    localCredentials: { ufrag: clientCreds.username, password: clientCreds.password },
    remoteCredentials: { ufrag: gatewayCreds.username, password: gatewayCreds.password },
    remotePublicKey: gateway.node.publicKey,
    presharedKey: Buffer.from(psk, 'base64'),
  }, net.now);
  gateway.loop.handlePortalMessage(message('authorize_flow', {
    ref: 'flow-ref-1',
    resource: { id: RESOURCE_ID, name: 'corp', type: 'cidr', address: '10.0.0.0/24', filters },
    client: { id: CLIENT_ID, public_key: Buffer.from(clientNode.publicKey).toString('base64'), preshared_key: psk, ...CLIENT_TUN },
    client_ice_credentials: clientCreds,
    gateway_ice_credentials: gatewayCreds,
    expires_at: null,
  }));
  // The portal's part: candidates both ways.
  const relayCandidates = (): void => {
    for (const sent of gateway.portalSent.splice(0)) {
      if (sent.event === 'broadcast_ice_candidates') {
        for (const c of sent.payload['candidates'] as string[]) clientNode.addRemoteCandidate('gateway', c, net.now);
      } else {
        portalLog.push(sent);
      }
    }
    for (const e of client.events.splice(0)) {
      if (e.kind === 'newIceCandidates') gateway.loop.handlePortalMessage(message('ice_candidates', { client_id: CLIENT_ID, candidates: e.candidates }));
    }
  };
  const portalLog: { event: string; payload: Readonly<Record<string, unknown>> }[] = [];
  client.signalling = false;
  relayCandidates();
  return { net, gateway, client, clientNode, portalLog, relayCandidates, relay };
}

const src = parseIp(CLIENT_TUN.ipv4)!;
const resource = parseIp('10.0.0.5')!;

function runUntil(env: ReturnType<typeof setUp>, condition: () => boolean, ms = 5_000): boolean {
  return env.net.runUntilCondition(() => {
    env.relayCandidates();
    return condition();
  }, ms, 20);
}

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
    const gateway = new GatewayHost(net, new Throwing());
    const packet = makeUdpPacket(resource, src, 53, 40000, new Uint8Array(4));
    assert.doesNotThrow(() => gateway.tunPacket(packet));
    assert.doesNotThrow(() => gateway.tunPacket(packet));
    assert.equal(gateway.loop.stats.internalErrors, 2);
  });
});
