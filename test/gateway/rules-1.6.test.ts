// The 1.6.0 packet rules (spec gateway-1.6 §3.1-§3.5, checked against the reference at gateway-1.6.0), one
// packet at a time through GatewayState: GOODBYE, hair-pinning between clients, what an Internet-resource
// client may not reach, fragments, client-made ICMP errors, multicast, the gateway's own tunnel addresses and
// DNS-resource NAT (reassignment reset, every proxy mapped, network unreachable without an address).

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import type { ClientInfo, GatewayEvent, ResourceDescription } from '../../src/gateway/index.ts';
import { IpPacket, makeGoodbyePacket } from '../../src/ip/index.ts';
import { assignedIps, hex, icmpEcho, icmpError, ip, rawIp, recordingLogger, tcp, udp } from './support.ts';

const GATEWAY = { ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') };
const A: ClientInfo = { id: 'aaaaaaaa-0000-0000-0000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
const B: ClientInfo = { id: 'bbbbbbbb-0000-0000-0000-000000000002', ipv4: ip('100.64.0.11'), ipv6: ip('fd00:2021:1111::11') };
const A4 = '100.64.0.10';
const A6 = 'fd00:2021:1111::10';
const INTERNET: ResourceDescription = { type: 'internet', id: '99999999-0000-0000-0000-000000000009' };
const EVERYTHING_V4: ResourceDescription = { type: 'cidr', id: '11111111-0000-0000-0000-000000000001', address: '0.0.0.0/0', filters: [] };
const EVERYTHING_V6: ResourceDescription = { type: 'cidr', id: '11111111-0000-0000-0000-000000000002', address: '::/0', filters: [] };
const DNS: ResourceDescription = { type: 'dns', id: '33333333-0000-0000-0000-000000000003', address: '*.corp', filters: [] };

function gateway(...resources: ResourceDescription[]): GatewayState {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init(GATEWAY, undefined, 0);
  for (const resource of resources) {
    assert.deepEqual(state.authorizeFlow(A, resource, undefined, 0), { ok: true });
    assert.deepEqual(state.authorizeFlow(B, resource, undefined, 0), { ok: true });
  }
  return state;
}

function send(state: GatewayState, packet: Uint8Array, client = A): { action: TunnelAction; packet: Uint8Array } {
  const verdict = state.handleTunnelPacket(client.id, packet, 0);
  return { action: verdict.action, packet: verdict.packet.slice() };
}

function events(state: GatewayState): GatewayEvent[] {
  const out: GatewayEvent[] = [];
  for (let event = state.pollEvent(); event !== undefined; event = state.pollEvent()) out.push(event);
  return out;
}

/**
 * The exact reply the reference builds (`icmp_dest_unreachable_*`): from the original destination to the
 * original source, TTL 20, type/code, the IPv4 header + 8 bytes or up to 1232 bytes of IPv6, valid checksums.
 */
function assertUnreachable(reply: { action: TunnelAction; packet: Uint8Array }, original: Uint8Array, reason: 'prohibited' | 'network'): void {
  assert.equal(reply.action, TunnelAction.ReplyToClient, `expected ICMP ${reason}`);
  const view = new IpPacket();
  assert.equal(view.parse(reply.packet), undefined);
  const v4 = view.version === 4;
  const expected = reason === 'prohibited' ? (v4 ? [3, 13] : [1, 1]) : v4 ? [3, 0] : [1, 3];
  assert.deepEqual([view.icmpType, view.icmpCode], expected);
  assert.equal(view.ttl, 20);
  const [src, dst, length] = v4 ? [12, 16, 4] : [8, 24, 16];
  assert.equal(hex(reply.packet.subarray(src, src + length)), hex(original.subarray(dst, dst + length)), 'from the original destination');
  assert.equal(hex(reply.packet.subarray(dst, dst + length)), hex(original.subarray(src, src + length)), 'to the original source');
  const quoted = v4 ? Math.min(original.length, (original[0]! & 0xf) * 4 + 8) : Math.min(original.length, 1232);
  assert.equal(hex(reply.packet.subarray(view.l4Offset + 8)), hex(original.subarray(0, quoted)));
  assert.ok(view.checksumsValid());
}

describe('GOODBYE (§3.1)', () => {
  test('a GOODBYE drops the client: its state and (through the event) its connection, without an answer', () => {
    const state = gateway(EVERYTHING_V4);
    assert.equal(send(state, makeGoodbyePacket()).action, TunnelAction.Consumed);
    assert.deepEqual(events(state), [{ type: 'clientRemoved', clientId: A.id, reason: 'goodbye' }]);
    assert.equal(state.pollClientPacket(), undefined);
    assert.equal(state.hasClient(A.id), false);
    assert.equal(state.hasClient(B.id), true, 'other clients are untouched');
    assert.equal(state.handleTunPacket(udp('10.0.0.1', 53, A4, 4000), 0).action, TunAction.Drop);
  });

  test('the last resource revoked or expired asks for the connection to be closed with GOODBYE', () => {
    const state = gateway();
    state.authorizeFlow(A, EVERYTHING_V4, 5000, 0);
    state.authorizeFlow(B, EVERYTHING_V4, undefined, 0);
    state.rejectAccess(B.id, EVERYTHING_V4.id, 1);
    assert.deepEqual(events(state), [{ type: 'clientRemoved', clientId: B.id, reason: 'noResources' }]);
    state.handleTimeout(5000);
    assert.deepEqual(events(state), [{ type: 'clientRemoved', clientId: A.id, reason: 'noResources' }]);
  });

  test('a resource left while others stay closes nothing', () => {
    const state = gateway(EVERYTHING_V4, EVERYTHING_V6);
    state.rejectAccess(A.id, EVERYTHING_V4.id, 1);
    assert.deepEqual(events(state), []);
  });

  test('shutdown drops every client without events (the caller closes every connection)', () => {
    const state = gateway(EVERYTHING_V4);
    state.shutDown();
    assert.equal(state.clientCount, 0);
    assert.deepEqual(events(state), []);
    assert.equal(state.pollTimeout(), undefined);
  });
});

describe('no hair-pinning between clients (§3.5)', () => {
  for (const resource of [EVERYTHING_V4, INTERNET]) {
    test(`client -> another client's tunnel IP is prohibited, even under ${resource.type === 'internet' ? 'the Internet resource' : '0.0.0.0/0'}`, () => {
      const state = gateway(resource, EVERYTHING_V6);
      for (const packet of [udp(A4, 1000, '100.64.0.11', 53), icmpEcho(A4, '100.64.0.11', 1, 1), tcp(A6, 1000, 'fd00:2021:1111::11', 22), udp(A4, 1, '100.95.255.255', 2)]) {
        assertUnreachable(send(state, packet), packet, 'prohibited');
      }
    });
  }

  test('resource side -> client from a tunnel address (another client) is dropped, ICMP errors included', () => {
    const state = gateway(INTERNET, EVERYTHING_V4, EVERYTHING_V6);
    assert.equal(state.handleTunPacket(udp('100.64.0.11', 53, A4, 4000), 0).action, TunAction.Drop);
    assert.equal(state.handleTunPacket(udp('fd00:2021:1111::11', 53, A6, 4000), 0).action, TunAction.Drop);
    const forged = icmpError('100.64.0.11', A4, 3, 3, udp(A4, 4000, '8.8.8.8', 53));
    assert.equal(state.handleTunPacket(forged, 0).action, TunAction.Drop);
    assert.equal(state.handleTunPacket(udp('8.8.8.8', 53, A4, 4000), 0).action, TunAction.ToClient);
  });

  test('the gateway itself still talks both ways', () => {
    const state = gateway(EVERYTHING_V4);
    assert.equal(send(state, icmpEcho(A4, '100.64.0.2', 1, 1)).action, TunnelAction.ToTun);
    assert.equal(state.handleTunPacket(icmpEcho('100.64.0.2', A4, 1, 1, true), 0).action, TunAction.ToClient);
  });
});

describe('Internet-resource clients reach no private, link-local, CGNAT or multicast destination (§3.5)', () => {
  const rejectedV4 = ['10.0.0.1', '10.255.255.254', '172.16.0.1', '172.31.255.1', '192.168.1.1', '127.0.0.1', '169.254.169.254', '240.0.0.1', '255.255.255.255'];
  const rejectedV6 = ['::1', '::ffff:10.0.0.1', '::ffff:8.8.8.8', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'febf::1'];
  const allowedV4 = ['8.8.8.8', '1.1.1.1', '172.15.255.255', '172.32.0.1', '192.167.0.1', '169.253.0.1', '100.63.255.255', '100.128.0.0', '223.255.255.255', '0.0.0.1'];
  const allowedV6 = ['2001:4860::8888', '2001:db8::1', 'fec0::1', '::2', '64:ff9b::808:808'];

  for (const dst of rejectedV4) {
    test(`IPv4 ${dst}: ICMP network unreachable`, () => {
      const state = gateway(INTERNET);
      const packet = udp(A4, 5000, dst, 443);
      assertUnreachable(send(state, packet), packet, 'network');
    });
  }

  test('CGNAT 100.64.0.0/10 is tunnel or proxy space: prohibited (no client there, no translation)', () => {
    const state = gateway(INTERNET);
    for (const dst of ['100.64.0.0', '100.95.255.255', '100.100.0.1', '100.127.255.255']) {
      const packet = udp(A4, 5000, dst, 443);
      assertUnreachable(send(state, packet), packet, 'prohibited');
    }
  });

  test('IPv4 multicast 224.0.0.0/4 is dropped before any rule (multicast destination)', () => {
    const state = gateway(INTERNET);
    for (const dst of ['224.0.0.1', '239.255.255.250']) assert.equal(send(state, udp(A4, 5000, dst, 1900)).action, TunnelAction.Drop);
  });

  for (const dst of rejectedV6) {
    test(`IPv6 ${dst}: ICMPv6 address unreachable`, () => {
      const state = gateway(INTERNET);
      const packet = udp(A6, 5000, dst, 443);
      assertUnreachable(send(state, packet), packet, 'network');
    });
  }

  test('IPv6 multicast ff00::/8 is dropped before any rule', () => {
    const state = gateway(INTERNET);
    for (const dst of ['ff02::1', 'ff05::1:3']) assert.equal(send(state, udp(A6, 5000, dst, 547)).action, TunnelAction.Drop);
  });

  test('public destinations (and the edges of the blocked ranges) pass unchanged', () => {
    const state = gateway(INTERNET);
    for (const dst of allowedV4) {
      const packet = udp(A4, 5000, dst, 443);
      const verdict = send(state, packet);
      assert.equal(verdict.action, TunnelAction.ToTun, dst);
      assert.equal(hex(verdict.packet), hex(packet));
    }
    for (const dst of allowedV6) assert.equal(send(state, udp(A6, 5000, dst, 443)).action, TunnelAction.ToTun, dst);
  });

  test('a CIDR resource does not reopen a private range on an Internet-resource client', () => {
    const state = gateway(INTERNET, { type: 'cidr', id: '44444444-0000-0000-0000-000000000004', address: '10.0.0.0/8', filters: [] });
    const packet = tcp(A4, 5000, '10.1.2.3', 22);
    assertUnreachable(send(state, packet), packet, 'network');
  });

  test('without the Internet resource, private CIDR resources work as before', () => {
    const state = gateway({ type: 'cidr', id: '44444444-0000-0000-0000-000000000004', address: '10.0.0.0/8', filters: [] });
    assert.equal(send(state, tcp(A4, 5000, '10.1.2.3', 22)).action, TunnelAction.ToTun);
  });

  test('DNS proxy IPs still go through their DNS resource (not blocked as CGNAT / unique-local)', () => {
    const state = gateway(INTERNET, DNS);
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'app.corp', ['100.96.0.1', 'fd00:2021:1111:8000::1']), 0);
    state.handleDnsResolution('app.corp', [ip('203.0.113.7'), ip('2001:db8::7')], 0);
    assert.equal(send(state, udp(A4, 5000, '100.96.0.1', 53)).action, TunnelAction.ToTun);
    assert.equal(send(state, udp(A6, 5000, 'fd00:2021:1111:8000::1', 53)).action, TunnelAction.ToTun);
    const unknownProxy = udp(A4, 5000, '100.96.0.9', 53);
    assertUnreachable(send(state, unknownProxy), unknownProxy, 'prohibited');
  });

  test('packets from private sources to an Internet-resource client are dropped; ICMP errors pass', () => {
    const state = gateway(INTERNET);
    assert.equal(state.handleTunPacket(udp('192.168.1.1', 53, A4, 4000), 0).action, TunAction.Drop);
    assert.equal(state.handleTunPacket(udp('fe80::1', 53, A6, 4000), 0).action, TunAction.Drop);
    const error = icmpError('10.0.0.1', A4, 11, 0, udp(A4, 4000, '8.8.8.8', 53));
    assert.equal(state.handleTunPacket(error, 0).action, TunAction.ToClient);
  });
});

describe('fragments are dropped (§3.5)', () => {
  function fragmentV4(packet: Uint8Array, flagsAndOffset: number): Uint8Array {
    const out = packet.slice();
    out[6] = flagsAndOffset >>> 8;
    out[7] = flagsAndOffset & 0xff;
    return out;
  }

  function fragmentV6(packet: Uint8Array, offsetAndMore: number): Uint8Array {
    const out = new Uint8Array(packet.length + 8);
    out.set(packet.subarray(0, 40));
    out.set([packet[6]!, 0, offsetAndMore >>> 8, offsetAndMore & 0xff, 0, 0, 0, 9], 40);
    out.set(packet.subarray(40), 48);
    out[5] = packet[5]! + 8;
    out[6] = 44;
    return out;
  }

  test('IPv4 with MF or an offset, either way; DF alone is fine', () => {
    const state = gateway(EVERYTHING_V4);
    const packet = udp(A4, 5000, '10.0.0.1', 53);
    assert.equal(send(state, fragmentV4(packet, 0x2000)).action, TunnelAction.Drop, 'first fragment');
    assert.equal(send(state, fragmentV4(packet, 0x0010)).action, TunnelAction.Drop, 'last fragment');
    assert.equal(send(state, fragmentV4(packet, 0x4000)).action, TunnelAction.ToTun, 'DF');
    assert.equal(state.handleTunPacket(fragmentV4(udp('10.0.0.1', 53, A4, 5000), 0x2000), 0).action, TunAction.Drop);
  });

  test('IPv6 with a Fragment header other than an atomic one, either way', () => {
    const state = gateway(EVERYTHING_V6);
    const packet = udp(A6, 5000, '2001:db8::1', 53);
    assert.equal(send(state, fragmentV6(packet, 0x0001)).action, TunnelAction.Drop);
    assert.equal(send(state, fragmentV6(packet, 0x0100)).action, TunnelAction.Drop);
    assert.equal(state.handleTunPacket(fragmentV6(udp('2001:db8::1', 53, A6, 5000), 0x0001), 0).action, TunAction.Drop);
    assert.equal(send(state, fragmentV6(packet, 0x0000)).action, TunnelAction.ToTun, 'an atomic fragment is a whole packet');
  });
});

describe('ICMP errors a client makes are dropped (§3.5)', () => {
  test('destination unreachable, time exceeded and packet too big, to a resource that allows ICMP', () => {
    const state = gateway(EVERYTHING_V4, EVERYTHING_V6);
    const quoted4 = udp('10.0.0.1', 53, A4, 5000);
    const quoted6 = udp('2001:db8::1', 53, A6, 5000);
    assert.equal(send(state, icmpError(A4, '10.0.0.1', 3, 3, quoted4)).action, TunnelAction.Drop);
    assert.equal(send(state, icmpError(A4, '10.0.0.1', 11, 0, quoted4)).action, TunnelAction.Drop);
    assert.equal(send(state, icmpError(A6, '2001:db8::1', 1, 4, quoted6)).action, TunnelAction.Drop);
    assert.equal(send(state, icmpError(A6, '2001:db8::1', 2, 0, quoted6)).action, TunnelAction.Drop);
    assert.equal(send(state, icmpError(A6, '2001:db8::1', 3, 0, quoted6)).action, TunnelAction.Drop);
  });

  test('forged errors aimed at another client (the red-team case) go nowhere, not even a reply', () => {
    const state = gateway(INTERNET);
    const forged = icmpError(A4, '100.64.0.11', 3, 1, udp('100.64.0.11', 443, '8.8.8.8', 5000));
    assert.equal(send(state, forged).action, TunnelAction.Drop);
  });

  test('echo requests still pass', () => {
    const state = gateway(EVERYTHING_V4);
    assert.equal(send(state, icmpEcho(A4, '10.0.0.1', 1, 1)).action, TunnelAction.ToTun);
  });
});

describe("the gateway's own tunnel addresses serve only DNS on 53535 and ICMP echo (issue 17)", () => {
  test('DNS over UDP and TCP on 53535 and echo requests reach the gateway, with no resource needed', () => {
    const state = gateway({ type: 'cidr', id: '55555555-0000-0000-0000-000000000005', address: '10.9.0.0/16', filters: [{ protocol: 'tcp', portRangeStart: 22, portRangeEnd: 22 }] });
    for (const packet of [udp(A4, 5000, '100.64.0.2', 53535), tcp(A4, 5000, '100.64.0.2', 53535), udp(A6, 5000, 'fd00:2021:1111::2', 53535), tcp(A6, 5000, 'fd00:2021:1111::2', 53535), icmpEcho(A4, '100.64.0.2', 1, 1), icmpEcho(A6, 'fd00:2021:1111::2', 1, 1)]) {
      assert.equal(send(state, packet).action, TunnelAction.ToTun);
    }
  });

  test('every other port or protocol on the tunnel address is answered ICMP prohibited', () => {
    const state = gateway(INTERNET, EVERYTHING_V4, EVERYTHING_V6);
    for (const packet of [tcp(A4, 5000, '100.64.0.2', 22), udp(A4, 5000, '100.64.0.2', 53), tcp(A6, 5000, 'fd00:2021:1111::2', 8080), icmpEcho(A4, '100.64.0.2', 1, 1, true), rawIp(A4, '100.64.0.2', 47, new Uint8Array(8))]) {
      assertUnreachable(send(state, packet), packet, 'prohibited');
    }
  });
});

describe('DNS-resource NAT (§3.3)', () => {
  function withDomain(state: GatewayState, domain: string, proxies: string[], resolved: string[]): string {
    assert.equal(state.handleTunnelPacket(A.id, assignedIps(DNS.id, domain, proxies), 0).action, TunnelAction.Consumed);
    events(state);
    state.handleDnsResolution(domain, resolved.map(ip), 0);
    const reply = state.pollClientPacket();
    assert.ok(reply);
    return (JSON.parse(Buffer.from(reply.packet.subarray(48)).toString()) as { status: string }).status;
  }

  test('every proxy IP is mapped; a family without addresses answers network unreachable', () => {
    const state = gateway(DNS);
    assert.equal(withDomain(state, 'a.corp', ['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4', 'fd00:2021:1111:8000::1', 'fd00:2021:1111:8000::2'], ['10.0.0.1', '10.0.0.2']), 'Active');
    assert.deepEqual(state.translationCounts(A.id), { proxies: 6, domains: 1 });
    assert.deepEqual(['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4'].map((p) => (state.translationOf(A.id, ip(p)) as { value: number }).value), [0x0a000001, 0x0a000002, 0x0a000001, 0x0a000002]);
    const v6 = udp(A6, 5000, 'fd00:2021:1111:8000::2', 53);
    assertUnreachable(send(state, v6), v6, 'network');
    const unmapped = udp(A4, 5000, '100.96.0.77', 53);
    assertUnreachable(send(state, unmapped), unmapped, 'prohibited');
  });

  test('no records at all: still Active, and the proxies answer network unreachable', () => {
    const state = gateway(DNS);
    assert.equal(withDomain(state, 'a.corp', ['100.96.0.1'], []), 'Active');
    const packet = tcp(A4, 5000, '100.96.0.1', 443);
    assertUnreachable(send(state, packet), packet, 'network');
  });

  test('a proxy IP reassigned to another domain resets all NAT state and translations first', () => {
    const state = gateway(DNS);
    withDomain(state, 'a.corp', ['100.96.0.1', '100.96.0.2'], ['10.0.0.1']);
    withDomain(state, 'b.corp', ['100.96.0.3'], ['10.0.0.3']);
    assert.equal(send(state, udp(A4, 5000, '100.96.0.1', 53)).action, TunnelAction.ToTun);
    assert.equal(send(state, udp(A4, 5000, '100.96.0.3', 53)).action, TunnelAction.ToTun);
    assert.equal(state.natSessionCount(A.id), 2);
    withDomain(state, 'c.corp', ['100.96.0.2', '100.96.0.9'], ['10.0.0.9']);
    assert.equal(state.natSessionCount(A.id), 0);
    assert.deepEqual(state.translationCounts(A.id), { proxies: 2, domains: 1 });
    assert.equal(state.translationOf(A.id, ip('100.96.0.3')), undefined, "b.corp's proxies went too");
    assert.equal((state.translationOf(A.id, ip('100.96.0.2')) as { value: number }).value, 0x0a000009);
    assert.equal(state.handleTunPacket(udp('10.0.0.1', 53, A4, 5000), 0).action, TunAction.Drop, 'the old session is gone');
  });

  test('the same domain announced again keeps its NAT sessions', () => {
    const state = gateway(DNS);
    withDomain(state, 'a.corp', ['100.96.0.1'], ['10.0.0.1']);
    assert.equal(send(state, udp(A4, 5000, '100.96.0.1', 53)).action, TunnelAction.ToTun);
    withDomain(state, 'a.corp', ['100.96.0.1'], ['10.0.0.1']);
    assert.equal(state.natSessionCount(A.id), 1);
  });

  test('a zero UDP checksum stays zero through the NAT (1.6.0 translates incrementally)', () => {
    const state = gateway(DNS);
    withDomain(state, 'a.corp', ['100.96.0.1'], ['10.0.0.1']);
    const packet = udp(A4, 5000, '100.96.0.1', 53);
    packet[26] = 0;
    packet[27] = 0;
    const verdict = send(state, packet);
    assert.deepEqual([verdict.action, verdict.packet[26], verdict.packet[27]], [TunnelAction.ToTun, 0, 0]);
  });

  test('AssignedIps for a resource the client does not hold is answered Inactive at once', () => {
    const state = gateway(EVERYTHING_V4);
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'a.corp', ['100.96.0.1']), 0);
    assert.deepEqual(events(state), []);
    const reply = state.pollClientPacket();
    assert.equal((JSON.parse(Buffer.from(reply!.packet.subarray(48)).toString()) as { status: string }).status, 'Inactive');
  });
});

describe('peer state outlives the connection (§3.2)', () => {
  test('nothing in the state depends on the connection: authorizations stay until revoked', () => {
    const state = gateway(EVERYTHING_V4);
    // The event loop no longer removes a client whose connection failed; a new authorization adds to the old state.
    state.authorizeFlow(A, EVERYTHING_V6, undefined, 100);
    assert.deepEqual(state.clientResourceIds(A.id).sort(), [EVERYTHING_V4.id, EVERYTHING_V6.id].sort());
  });
});
