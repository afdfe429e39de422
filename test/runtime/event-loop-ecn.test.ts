// ECN through the gateway's event loop (spec connectivity §1.3, gateway-core step 7): the datagram
// carrying a client's packet to the gateway or a resource's packet to the client has the inner
// packet's ECN codepoint; Congestion Experienced on a client's datagram is merged into an
// ECN-capable inner packet and nothing else changes it. The e2e suite checks the same on the wire.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { internetChecksum, IpPacket, makeTcpPacket, makeUdpPacket, type Ecn } from '../../src/ip/index.ts';
import { CLIENT_ID, resource, runUntil, setUp, src } from './loop-harness.ts';

const NOT_ECT = 0b00;
const ECT1 = 0b01;
const ECT0 = 0b10;
const CE = 0b11;

function withEcn(bytes: Uint8Array, ecn: Ecn): Uint8Array {
  const packet = new IpPacket();
  assert.equal(packet.parse(bytes), undefined);
  packet.setEcn(ecn);
  return bytes;
}

function connected() {
  const env = setUp();
  assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
  const warm = makeTcpPacket(src, resource, 40000, 80, { flags: 0x10 }, new Uint8Array(10));
  assert.ok(runUntil(env, () => {
    env.client.send(warm, env.net.now);
    return env.gateway.tunWrites.length > 0;
  }));
  const path = env.gateway.node.connectionPath(CLIENT_ID);
  if (path?.kind !== 'direct') throw new Error(`expected a direct path, got ${path?.kind}`);
  /** What the gateway writes to its TUN for `packet` sent by the client in a datagram marked `outer`. */
  const throughGateway = (packet: Uint8Array, outer: number): Uint8Array => {
    const transmit = env.clientNode.encapsulate('gateway', packet, env.net.now)!;
    const before = env.gateway.tunWrites.length;
    env.gateway.socket.deliver([{ payload: transmit.payload.slice(), source: path.destination, destinationIp: path.source.address, ecn: outer }]);
    assert.equal(env.gateway.tunWrites.length, before + 1);
    return env.gateway.tunWrites.at(-1)!;
  };
  /** The ECN codepoint of the datagram the gateway sends for a packet read from its TUN. */
  const towardsClient = (packet: Uint8Array): number => {
    const before = env.gateway.socket.sent.length;
    env.gateway.tunPacket(packet);
    assert.equal(env.gateway.socket.sent.length, before + 1);
    return env.gateway.socket.sent.at(-1)!.ecn;
  };
  return { env, path, throughGateway, towardsClient };
}

function ecnOf(bytes: Uint8Array): number {
  const packet = new IpPacket();
  assert.equal(packet.parse(bytes), undefined);
  return packet.ecn;
}

describe('ECN through the gateway', () => {
  test('Congestion Experienced on the datagram marks an ECN-capable inner packet, with a valid header checksum', () => {
    const { throughGateway } = connected();
    for (const inner of [ECT0, ECT1] as const) {
      const written = throughGateway(withEcn(makeTcpPacket(src, resource, 40000, 80, { flags: 0x18 }, new Uint8Array(100)), inner), CE);
      assert.equal(ecnOf(written), CE);
      assert.equal(internetChecksum(written, 0, 20), 0, 'the IPv4 header checksum still verifies');
    }
  });

  test('an inner packet that is not ECN-capable, or an outer mark other than CE, leaves the inner ECN as it was', () => {
    const { throughGateway } = connected();
    assert.equal(ecnOf(throughGateway(makeTcpPacket(src, resource, 40000, 80, { flags: 0x18 }, new Uint8Array(100)), CE)), NOT_ECT);
    assert.equal(ecnOf(throughGateway(withEcn(makeTcpPacket(src, resource, 40000, 80, { flags: 0x18 }, new Uint8Array(100)), ECT0), ECT1)), ECT0);
    assert.equal(ecnOf(throughGateway(withEcn(makeTcpPacket(src, resource, 40000, 80, { flags: 0x18 }, new Uint8Array(100)), CE), NOT_ECT)), CE, 'never cleared');
  });

  test('a datagram to the client carries the ECN codepoint of the packet inside it', () => {
    const { towardsClient } = connected();
    for (const inner of [NOT_ECT, ECT1, ECT0, CE] as const) {
      assert.equal(towardsClient(withEcn(makeTcpPacket(resource, src, 80, 40000, { flags: 0x18 }, new Uint8Array(100)), inner)), inner);
    }
  });

  test('the gateway\'s own reply (ICMP prohibited) goes out Not-ECT', () => {
    const { env, path } = connected();
    const before = env.gateway.socket.sent.length;
    const denied = withEcn(makeUdpPacket(src, resource, 40000, 53, new Uint8Array(8)), ECT0);
    const transmit = env.clientNode.encapsulate('gateway', denied, env.net.now)!;
    env.gateway.socket.deliver([{ payload: transmit.payload.slice(), source: path.destination, destinationIp: path.source.address, ecn: ECT0 }]);
    const replies = env.gateway.socket.sent.slice(before);
    assert.equal(replies.length, 1);
    assert.equal(replies[0]!.ecn, NOT_ECT);
  });
});
