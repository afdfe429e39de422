import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GatewayState, TunAction, TunnelAction, expiresAtToMonotonic } from '../../src/gateway/index.ts';
import type { ClientInfo, ResourceDescription } from '../../src/gateway/index.ts';
import { assignedIps, checksumsValid, icmpEcho, icmpError, ip, rawIp, recordingLogger, tcp, udp } from './support.ts';
import { makeGoodbyePacket } from '../../src/ip/index.ts';

const SECOND = 1000;
const GATEWAY = { ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') };
const A: ClientInfo = { id: 'aaaaaaaa-0000-0000-0000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
const B: ClientInfo = { id: 'bbbbbbbb-0000-0000-0000-000000000002', ipv4: ip('100.64.0.11'), ipv6: ip('fd00:2021:1111::11') };
const R1: ResourceDescription = { type: 'cidr', id: '11111111-0000-0000-0000-000000000001', address: '10.1.0.0/16', filters: [] };
const R2: ResourceDescription = { type: 'cidr', id: '22222222-0000-0000-0000-000000000002', address: '10.2.0.0/16', filters: [] };
const DNS: ResourceDescription = { type: 'dns', id: '33333333-0000-0000-0000-000000000003', address: '*.corp', filters: [] };

function gateway(): GatewayState {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init(GATEWAY, undefined, 0);
  return state;
}

function send(state: GatewayState, client: ClientInfo, packet: Uint8Array, now = 0): TunnelAction {
  return state.handleTunnelPacket(client.id, packet, now).action;
}

function statusOf(packet: Uint8Array): string {
  return (JSON.parse(Buffer.from(packet.subarray(48)).toString()) as { status: string }).status;
}

function drainEvents(state: GatewayState): unknown[] {
  const events: unknown[] = [];
  for (let e = state.pollEvent(); e !== undefined; e = state.pollEvent()) events.push(e);
  return events;
}

function checksumOk(packet: Uint8Array): boolean {
  return checksumsValid(packet);
}

describe('authorizations', () => {
  test('authorize before init fails and records nothing', () => {
    const state = new GatewayState({ logger: recordingLogger() });
    assert.equal(state.authorizeFlow(A, R1, undefined, 0).ok, false);
    assert.equal(state.hasClient(A.id), false);
  });

  test('re-authorizing takes the new expiry, later or earlier', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, 10 * SECOND, 0);
    state.authorizeFlow(A, R1, 30 * SECOND, 5 * SECOND);
    state.handleTimeout(1 * SECOND);
    state.handleTimeout(20 * SECOND);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.1.0.1', 2), 20 * SECOND), TunnelAction.ToTun);
    state.authorizeFlow(A, R1, 25 * SECOND, 21 * SECOND);
    state.handleTimeout(25 * SECOND);
    assert.equal(state.hasClient(A.id), false);
  });

  test('reject_access removes the resource, and the client with its last resource', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(A, R2, undefined, 0);
    state.rejectAccess(A.id, R1.id, 0);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.1.0.1', 2)), TunnelAction.ReplyToClient);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.2.0.1', 2)), TunnelAction.ToTun);
    state.rejectAccess(A.id, R2.id, 0);
    assert.equal(state.hasClient(A.id), false);
    assert.deepEqual(drainEvents(state), [{ type: 'clientRemoved', clientId: A.id, reason: 'noResources' }]);
    assert.equal(state.handleTunPacket(udp('10.2.0.1', 2, '100.64.0.10', 1), 0).action, TunAction.Drop);
    state.rejectAccess('cccccccc-0000-0000-0000-000000000000', R1.id, 0);
  });

  test('a resource cannot change type; the first type stays', () => {
    const logger = recordingLogger();
    const state = new GatewayState({ logger });
    state.init(GATEWAY, undefined, 0);
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(A, { type: 'dns', id: R1.id, address: 'x.corp', filters: [] }, undefined, 0);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.1.0.1', 2)), TunnelAction.ToTun);
    assert.deepEqual(logger.errors, ['Resources cannot change type']);
  });

  test('a GOODBYE from the client drops all its state at once, without an answer', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    assert.equal(send(state, A, makeGoodbyePacket()), TunnelAction.Consumed);
    assert.deepEqual(state.pollEvent(), { type: 'clientRemoved', clientId: A.id, reason: 'goodbye' });
    assert.equal(state.pollClientPacket(), undefined);
    assert.equal(state.hasClient(A.id), false);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.1.0.1', 2)), TunnelAction.Drop);
  });
});

describe('a client kept with its connection', () => {
  const sendKept = (state: GatewayState, packet: Uint8Array, kept: unknown) => state.handleTunnelPacket(A.id, packet, 0, false, kept);

  test('is used while current; once removed it authorises nothing and the one found by id replaces it', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    const toR1 = udp('100.64.0.10', 1, '10.1.0.1', 2);
    const toR2 = udp('100.64.0.10', 1, '10.2.0.1', 2);
    const first = sendKept(state, toR1, undefined);
    const kept = first.client;
    assert.equal(first.action, TunnelAction.ToTun);
    assert.notEqual(kept, undefined);
    assert.equal(sendKept(state, toR1, kept).client, kept);
    assert.equal(sendKept(state, toR1, 'something else').client, kept);
    assert.equal(state.handleTunnelPacket(B.id, toR1, 0, false, kept).action, TunnelAction.ToTun, 'a kept client is not looked up again');

    state.rejectAccess(A.id, R1.id, 0);
    const afterRemoval = sendKept(state, toR1, kept);
    assert.equal(afterRemoval.action, TunnelAction.Drop);
    assert.equal(afterRemoval.client, undefined);

    state.authorizeFlow(A, R2, undefined, 0);
    const renewed = sendKept(state, toR2, kept);
    assert.equal(renewed.action, TunnelAction.ToTun);
    assert.notEqual(renewed.client, kept);
    const current = renewed.client;
    assert.equal(sendKept(state, toR1, current).action, TunnelAction.ReplyToClient);
    assert.equal(sendKept(state, toR2, current).client, current);
  });

  test('a GOODBYE or a shutdown leaves the kept client stale too', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(B, R1, undefined, 0);
    const a = sendKept(state, udp('100.64.0.10', 1, '10.1.0.1', 2), undefined).client;
    const b = state.handleTunnelPacket(B.id, udp('100.64.0.11', 1, '10.1.0.1', 2), 0).client;
    assert.equal(sendKept(state, makeGoodbyePacket(), a).action, TunnelAction.Consumed);
    assert.equal(sendKept(state, udp('100.64.0.10', 1, '10.1.0.1', 2), a).action, TunnelAction.Drop);
    state.shutDown();
    const afterShutdown = state.handleTunnelPacket(B.id, udp('100.64.0.11', 1, '10.1.0.1', 2), 0, false, b);
    assert.equal(afterShutdown.action, TunnelAction.Drop);
    assert.equal(afterShutdown.client, undefined);
  });
});

describe('init and revocation', () => {
  test('clients keep the gateway tunnel IPs they were created with; new clients get the new ones', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.init({ ipv4: ip('100.64.0.3'), ipv6: ip('fd00:2021:1111::3') }, undefined, 10);
    state.authorizeFlow(B, R1, undefined, 10);
    assert.equal(send(state, A, icmpEcho('100.64.0.10', '100.64.0.2', 1, 1)), TunnelAction.ToTun);
    assert.equal(send(state, B, icmpEcho('100.64.0.11', '100.64.0.3', 1, 1)), TunnelAction.ToTun);
    assert.equal(send(state, B, icmpEcho('100.64.0.11', '100.64.0.2', 1, 1)), TunnelAction.ReplyToClient);
  });

  test('with authorizations, unlisted ones are revoked for every client, listed or not', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(A, R2, undefined, 0);
    state.authorizeFlow(B, R1, undefined, 0);
    state.init(GATEWAY, [{ clientId: A.id, resourceId: R1.id }], 100);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.1.0.1', 2)), TunnelAction.ToTun);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.2.0.1', 2)), TunnelAction.ReplyToClient);
    assert.equal(state.hasClient(B.id), false, 'an emptied client goes at once');
    assert.equal(send(state, B, udp('100.64.0.11', 1, '10.1.0.1', 2)), TunnelAction.Drop);
    assert.deepEqual(drainEvents(state), [{ type: 'clientRemoved', clientId: B.id, reason: 'noResources' }]);
    assert.equal(state.hasClient(A.id), true);
  });

  test('without the authorizations key nothing is revoked', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.init(GATEWAY, undefined, 100);
    state.handleTimeout(2 * SECOND);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.1.0.1', 2)), TunnelAction.ToTun);
  });

  test('an empty authorizations list revokes everything', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.init(GATEWAY, [], 100);
    state.handleTimeout(2 * SECOND);
    assert.equal(state.hasClient(A.id), false);
  });
});

describe('time', () => {
  test('expires_at in Unix seconds converts to the monotonic clock', () => {
    assert.equal(expiresAtToMonotonic(null, 5000, 1_700_000_000_000), undefined);
    assert.equal(expiresAtToMonotonic(1_700_000_060, 5000, 1_700_000_000_000), 65_000);
  });

  test('nothing to wake for without expiries, NAT sessions or resolutions; an expiry wakes at its exact deadline', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    assert.equal(state.pollTimeout(), undefined);
    state.authorizeFlow(A, R2, 2500, 0);
    assert.equal(state.pollTimeout(), 2500);
    state.handleTimeout(2499);
    assert.deepEqual(state.clientResourceIds(A.id).sort(), [R1.id, R2.id].sort());
    state.handleTimeout(2500);
    assert.deepEqual(state.clientResourceIds(A.id), [R1.id]);
    assert.equal(state.pollTimeout(), undefined);
  });

  test('the last resource expiring removes the client: its connection is closed with GOODBYE', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, 1234, 0);
    state.handleTimeout(1234);
    assert.equal(state.hasClient(A.id), false);
    assert.deepEqual(drainEvents(state), [{ type: 'clientRemoved', clientId: A.id, reason: 'noResources' }]);
  });

  test('a new expiry for a held resource moves its deadline; a past one applies at the next timeout', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, 10 * SECOND, 0);
    assert.equal(state.updateResourceExpiry(A.id, R1.id, 20 * SECOND), true);
    assert.equal(state.resourceExpiry(A.id, R1.id), 20 * SECOND);
    assert.equal(state.updateResourceExpiry(A.id, R2.id, 5 * SECOND), false, 'not held');
    assert.equal(state.updateResourceExpiry(A.id, R1.id, 0), true);
    state.handleTimeout(1);
    assert.equal(state.hasClient(A.id), false);
  });

  test('a thousand clients with expiries: a timeout visits only the due ones', () => {
    const state = gateway();
    for (let i = 0; i < 1000; i++) {
      const id = `aaaaaaaa-0000-0000-0000-${i.toString().padStart(12, '0')}`;
      state.authorizeFlow({ id, ipv4: ip(`100.64.${10 + (i >> 8)}.${i & 0xff}`), ipv6: ip(`fd00:2021:1111::1:${i.toString(16)}`) }, R1, (i + 1) * SECOND, 0);
    }
    const before = state.deadlineWork;
    state.handleTimeout(3 * SECOND);
    assert.equal(state.clientCount, 997);
    assert.ok(state.deadlineWork - before <= 3 * 12, `heap work O(due * log n): ${state.deadlineWork - before}`);
  });

  test('expiry is expires_at > now: a resource expiring exactly now is gone', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, 3 * SECOND, 0);
    state.authorizeFlow(A, R2, undefined, 0);
    state.handleTimeout(2999);
    assert.deepEqual(state.clientResourceIds(A.id).sort(), [R1.id, R2.id].sort());
    state.handleTimeout(4 * SECOND);
    assert.deepEqual(state.clientResourceIds(A.id), [R2.id]);
  });
});

describe('client -> resource', () => {
  test('a spoofed source is answered with ICMP prohibited to the spoofed address', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    const verdict = state.handleTunnelPacket(A.id, udp('100.64.9.9', 1, '10.1.0.1', 2), 0);
    assert.equal(verdict.action, TunnelAction.ReplyToClient);
    assert.deepEqual([...verdict.packet.subarray(20, 22)], [3, 13]);
    assert.deepEqual([...verdict.packet.subarray(16, 20)], [100, 64, 9, 9]);
    assert.deepEqual([...verdict.packet.subarray(12, 16)], [10, 1, 0, 1]);
    const v6 = state.handleTunnelPacket(A.id, udp('fd00:2021:1111::99', 1, '2001:db8::1', 2), 0);
    assert.deepEqual([v6.action, v6.packet[40], v6.packet[41]], [TunnelAction.ReplyToClient, 1, 1]);
  });

  test('the gateway tunnel IP is reachable without any matching resource', () => {
    const state = gateway();
    state.authorizeFlow(A, { type: 'cidr', id: R1.id, address: '10.1.0.0/16', filters: [{ protocol: 'tcp', portRangeStart: 22, portRangeEnd: 22 }] }, undefined, 0);
    assert.equal(send(state, A, icmpEcho('100.64.0.10', '100.64.0.2', 1, 1)), TunnelAction.ToTun);
    assert.equal(send(state, A, udp('fd00:2021:1111::10', 5000, 'fd00:2021:1111::2', 53535)), TunnelAction.ToTun);
    assert.equal(send(state, A, icmpEcho('100.64.0.10', '100.64.0.3', 1, 1)), TunnelAction.ReplyToClient, 'another tunnel IP is not');
  });

  test('a filter with start > end is ignored: no crash, and it grants nothing', () => {
    const logger = recordingLogger();
    const state = new GatewayState({ logger });
    state.init(GATEWAY, undefined, 0);
    const bad: ResourceDescription = { type: 'cidr', id: R1.id, address: '10.1.0.0/16', filters: [{ protocol: 'tcp', portRangeStart: 90, portRangeEnd: 10 }] };
    assert.deepEqual(state.authorizeFlow(A, bad, undefined, 0), { ok: true });
    assert.equal(send(state, A, tcp('100.64.0.10', 1, '10.1.0.1', 50)), TunnelAction.ReplyToClient);
    state.resourceUpdated({ ...bad, filters: [{ protocol: 'udp', portRangeStart: 9, portRangeEnd: 1 }, { protocol: 'tcp', portRangeStart: 50, portRangeEnd: 50 }] });
    assert.equal(send(state, A, tcp('100.64.0.10', 1, '10.1.0.1', 50)), TunnelAction.ToTun);
    assert.deepEqual(logger.warnings, ['Ignoring filter with start > end', 'Ignoring filter with start > end']);
  });

  test('ECN: CE from the outer datagram is set on ECT packets only, with a valid checksum', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    const ect = state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '10.1.0.1', 2, undefined, 0b10), 0, true).packet;
    assert.equal(ect[1]! & 3, 3);
    assert.ok(checksumOk(ect));
    const notEct = state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '10.1.0.1', 2, undefined, 0), 0, true).packet;
    assert.equal(notEct[1]! & 3, 0);
    state.authorizeFlow(A, { type: 'cidr', id: R2.id, address: '2001:db8::/32', filters: [] }, undefined, 0);
    const v6 = state.handleTunnelPacket(A.id, udp('fd00:2021:1111::10', 1, '2001:db8::1', 2, undefined, 0b01), 0, true);
    assert.deepEqual([v6.action, (v6.packet[1]! >>> 4) & 3], [TunnelAction.ToTun, 3]);
    assert.ok(checksumOk(v6.packet));
    const ce = state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '10.1.0.1', 2, undefined, 0b01), 0, false).packet;
    assert.equal(ce[1]! & 3, 1, 'never changed without outer CE');
  });

  test('other IP protocols are denied under filters and allowed under permit-all', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(A, { type: 'cidr', id: R2.id, address: '10.2.0.0/16', filters: [{ protocol: 'icmp' }] }, undefined, 0);
    assert.equal(send(state, A, rawIp('100.64.0.10', '10.1.0.1', 47, new Uint8Array(8))), TunnelAction.ToTun);
    assert.equal(send(state, A, rawIp('100.64.0.10', '10.2.0.1', 47, new Uint8Array(8))), TunnelAction.ReplyToClient);
  });

  test('malformed packets are dropped, never thrown', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), fc.boolean(), (bytes, v6) => {
        if (bytes.length > 0) bytes[0] = (bytes[0]! & 0x0f) | (v6 ? 0x60 : 0x40);
        state.handleTunnelPacket(A.id, bytes, 0);
        state.handleTunPacket(bytes, 0);
      }),
      { numRuns: 500 },
    );
    assert.equal(send(state, A, new Uint8Array(1300)), TunnelAction.Drop);
  });

  test('mutated real packets never throw, on either path', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(A, DNS, undefined, 0);
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'app.corp', ['100.96.0.1', 'fd00:2021:1111:8000::1']), 0);
    state.handleDnsResolution('app.corp', [ip('10.1.0.1'), ip('2001:db8::1')], 0);
    const seeds = [
      udp('100.64.0.10', 1, '100.96.0.1', 53),
      tcp('fd00:2021:1111::10', 1, 'fd00:2021:1111:8000::1', 443),
      icmpEcho('100.64.0.10', '100.96.0.1', 7, 1),
      icmpError('192.0.2.1', '100.64.0.10', 3, 3, udp('100.64.0.10', 1, '10.1.0.1', 53)),
      icmpError('2001:db8::fe', 'fd00:2021:1111::10', 2, 0, udp('fd00:2021:1111::10', 1, '2001:db8::1', 53)),
      assignedIps(DNS.id, 'app.corp', ['100.96.0.1']),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat(8), (seed, flips, cut) => {
        const bytes = seed.slice(0, Math.max(0, seed.length - cut));
        for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
        state.handleTunnelPacket(A.id, bytes.slice(), 1);
        state.handleTunPacket(bytes.slice(), 1);
        while (state.pollEvent() !== undefined);
      }),
      { numRuns: 1000 },
    );
  });

  test('unknown p2p control events are ignored', () => {
    const state = gateway();
    state.authorizeFlow(A, DNS, undefined, 0);
    const unknown = assignedIps(DNS.id, 'app.corp', []);
    unknown[40] = 3;
    assert.equal(send(state, A, unknown), TunnelAction.Consumed);
    assert.equal(state.pollClientPacket(), undefined);
    assert.equal(state.hasClient(A.id), true);
  });

  test('a p2p control header too short to be one is an ordinary packet and refused', () => {
    const state = gateway();
    state.authorizeFlow(A, DNS, undefined, 0);
    const short = assignedIps(DNS.id, 'a.corp', []).slice(0, 46);
    short[5] = 6;
    assert.equal(send(state, A, short), TunnelAction.ReplyToClient);
  });
});

describe('resource -> client', () => {
  test('replies find their client by destination; unknown or non-tunnel destinations are dropped', () => {
    const state = gateway();
    state.authorizeFlow(A, R1, undefined, 0);
    state.authorizeFlow(B, R1, undefined, 0);
    const toB = state.handleTunPacket(udp('10.1.0.1', 2, '100.64.0.11', 1), 0);
    assert.deepEqual([toB.action, toB.clientId], [TunAction.ToClient, B.id]);
    const toA6 = state.handleTunPacket(udp('2001:db8::1', 2, 'fd00:2021:1111::10', 1), 0);
    assert.equal(toA6.action, TunAction.Drop, 'no v6 resource covers the source');
    assert.equal(state.handleTunPacket(udp('10.1.0.1', 2, '100.64.55.55', 1), 0).action, TunAction.Drop);
    assert.equal(state.handleTunPacket(udp('10.1.0.1', 2, '192.168.0.1', 1), 0).action, TunAction.Drop);
  });

  test('filters apply to the source port; denied replies are dropped silently', () => {
    const state = gateway();
    state.authorizeFlow(A, { type: 'cidr', id: R1.id, address: '10.1.0.0/16', filters: [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }] }, undefined, 0);
    assert.equal(state.handleTunPacket(udp('10.1.0.1', 53, '100.64.0.10', 4000), 0).action, TunAction.ToClient);
    assert.equal(state.handleTunPacket(udp('10.1.0.1', 54, '100.64.0.10', 4000), 0).action, TunAction.Drop);
    assert.equal(state.pollClientPacket(), undefined);
  });

  test('ICMP errors about CIDR traffic pass unchanged, bypassing filters; other ICMP types are dropped', () => {
    const state = gateway();
    state.authorizeFlow(A, { type: 'cidr', id: R1.id, address: '10.1.0.0/16', filters: [{ protocol: 'tcp', portRangeStart: 80, portRangeEnd: 80 }] }, undefined, 0);
    const error = icmpError('192.0.2.254', '100.64.0.10', 3, 3, udp('100.64.0.10', 1, '10.1.0.1', 9));
    const verdict = state.handleTunPacket(error.slice(), 0);
    assert.deepEqual([verdict.action, Buffer.from(verdict.packet).equals(Buffer.from(error))], [TunAction.ToClient, true]);
    const redirect = icmpError('10.1.0.1', '100.64.0.10', 5, 0, udp('100.64.0.10', 1, '10.1.0.1', 9));
    assert.equal(state.handleTunPacket(redirect, 0).action, TunAction.Drop);
  });

  test('p2p control packets are never forwarded from the TUN device', () => {
    const state = gateway();
    state.authorizeFlow(A, DNS, undefined, 0);
    assert.equal(state.handleTunPacket(assignedIps(DNS.id, 'a.corp', []), 0).action, TunAction.Drop);
  });
});

describe('DNS resources', () => {
  function withNat(now = 0): GatewayState {
    const state = gateway();
    state.authorizeFlow(A, DNS, undefined, 0);
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'app.corp', ['100.96.0.1', '100.96.0.2', 'fd00:2021:1111:8000::', '10.9.9.9']), now);
    drainEvents(state);
    state.handleDnsResolution('app.corp', [ip('10.0.0.2'), ip('10.0.0.1')], now);
    assert.equal(statusOf(state.pollClientPacket()!.packet), 'Active');
    return state;
  }

  test('proxies map round-robin onto sorted resolved IPs of their family; every proxy gets an entry', () => {
    const state = withNat();
    assert.deepEqual((state.translationOf(A.id, ip('100.96.0.1')) as { value: number }).value, 0x0a000001);
    assert.deepEqual((state.translationOf(A.id, ip('100.96.0.2')) as { value: number }).value, 0x0a000002);
    assert.equal(state.translationOf(A.id, ip('fd00:2021:1111:8000::')), undefined, 'no AAAA record: no address');
    assert.deepEqual(state.translationCounts(A.id), { proxies: 3, domains: 1 });
    const toV6 = state.handleTunnelPacket(A.id, udp('fd00:2021:1111::10', 1, 'fd00:2021:1111:8000::', 53), 0);
    assert.deepEqual([toV6.action, toV6.packet[40], toV6.packet[41]], [TunnelAction.ReplyToClient, 1, 3], 'ICMPv6 address unreachable');
  });

  test('proxy IPs outside the proxy ranges are ignored, with a warning', () => {
    const logger = recordingLogger();
    const state = new GatewayState({ logger });
    state.init(GATEWAY, undefined, 0);
    state.authorizeFlow(A, DNS, undefined, 0);
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'app.corp', ['100.96.0.1', '10.9.9.9', '2001:db8::5']), 0);
    state.handleDnsResolution('app.corp', [ip('10.0.0.1')], 0);
    assert.equal(statusOf(state.pollClientPacket()!.packet), 'Active');
    assert.deepEqual(logger.warnings, ['Ignoring proxy IPs outside the proxy ranges']);
    assert.equal(state.translationOf(A.id, ip('2001:db8::5')), undefined);
    assert.equal((state.translationOf(A.id, ip('100.96.0.1')) as { value: number }).value, 0x0a000001);
    assert.equal(state.translationOf(A.id, ip('10.9.9.9')), undefined);
    assert.equal(send(state, A, udp('100.64.0.10', 1, '10.9.9.9', 80)), TunnelAction.ReplyToClient);
  });

  test('replies alone keep a confirmed NAT session alive', () => {
    const state = withNat();
    assert.equal(send(state, A, udp('100.64.0.10', 7000, '100.96.0.1', 53), 0), TunnelAction.ToTun);
    for (let t = 30; t <= 330; t += 60) {
      state.handleTimeout(t * SECOND);
      assert.equal(state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.10', 7000), t * SECOND).action, TunAction.ToClient, `at ${t}s`);
    }
    state.handleTimeout(451 * SECOND);
    assert.equal(state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.10', 7000), 451 * SECOND).action, TunAction.Drop, 'expired after 120 s of silence');
  });

  test('a translated packet keeps valid checksums and takes CE from the outer datagram', () => {
    const state = withNat();
    const verdict = state.handleTunnelPacket(A.id, udp('100.64.0.10', 7000, '100.96.0.1', 53, undefined, 0b10), 0, true);
    assert.deepEqual([verdict.action, verdict.packet[1]! & 3, ...verdict.packet.subarray(16, 20)], [TunnelAction.ToTun, 3, 10, 0, 0, 1]);
    assert.ok(checksumOk(verdict.packet));
    const reply = state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.10', 7000), 0);
    assert.ok(checksumOk(reply.packet));
  });

  test('a TCP RST from the client ends the session; the next reply is dropped', () => {
    const state = withNat();
    assert.equal(send(state, A, tcp('100.64.0.10', 7000, '100.96.0.1', 443, 0x02)), TunnelAction.ToTun);
    assert.equal(state.handleTunPacket(tcp('10.0.0.1', 443, '100.64.0.10', 7000, 0x12), 0).action, TunAction.ToClient);
    assert.equal(send(state, A, tcp('100.64.0.10', 7000, '100.96.0.1', 443, 0x04)), TunnelAction.ToTun);
    assert.equal(state.handleTunPacket(tcp('10.0.0.1', 443, '100.64.0.10', 7000, 0x10), 0).action, TunAction.Drop);
    assert.equal(state.natSessionCount(A.id), 0);
  });

  test('a TCP RST from the resource is delivered and ends the session', () => {
    const state = withNat();
    send(state, A, tcp('100.64.0.10', 7000, '100.96.0.1', 443, 0x02));
    assert.equal(state.handleTunPacket(tcp('10.0.0.1', 443, '100.64.0.10', 7000, 0x04), 0).action, TunAction.ToClient);
    assert.equal(state.handleTunPacket(tcp('10.0.0.1', 443, '100.64.0.10', 7000, 0x10), 0).action, TunAction.Drop);
  });

  test('non-echo ICMP towards a proxy is dropped without a reply', () => {
    const state = withNat();
    assert.equal(send(state, A, icmpError('100.64.0.10', '100.96.0.1', 3, 3, udp('100.64.0.10', 1, '100.96.0.1', 2))), TunnelAction.Drop);
  });

  test('a reply for an expired session is dropped even when a CIDR resource covers its source', () => {
    const state = withNat();
    state.authorizeFlow(A, { type: 'cidr', id: R1.id, address: '10.0.0.0/24', filters: [] }, undefined, 0);
    assert.equal(send(state, A, udp('100.64.0.10', 7000, '100.96.0.1', 53), 0), TunnelAction.ToTun);
    state.handleTimeout(120 * SECOND);
    assert.equal(state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.10', 7000), 120 * SECOND).action, TunAction.Drop);
    assert.equal(state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.10', 7001), 120 * SECOND).action, TunAction.ToClient, 'other CIDR traffic passes');
  });

  test('ICMP errors for an expired session are dropped', () => {
    const state = withNat();
    const out = state.handleTunnelPacket(A.id, udp('100.64.0.10', 7000, '100.96.0.1', 53), 0).packet.slice();
    state.handleTimeout(200 * SECOND);
    assert.equal(state.handleTunPacket(icmpError('192.0.2.1', '100.64.0.10', 3, 3, out), 200 * SECOND).action, TunAction.Drop);
  });

  test('a domain that does not match the pattern, or a failed resolution, gives Inactive', () => {
    const state = gateway();
    state.authorizeFlow(A, DNS, undefined, 0);
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'app.other', ['100.96.0.1']), 0);
    drainEvents(state);
    state.handleDnsResolution('app.other', [ip('10.0.0.1')], 0);
    assert.equal(statusOf(state.pollClientPacket()!.packet), 'Inactive');
    state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'b.corp', ['100.96.0.1']), 0);
    state.handleDnsResolution('b.corp', undefined, 0);
    assert.equal(statusOf(state.pollClientPacket()!.packet), 'Inactive');
  });

  test('resolutions are coalesced, cached 30 s on success only, and time out after 10 s', () => {
    const state = gateway();
    state.authorizeFlow(A, DNS, undefined, 0);
    state.authorizeFlow(B, DNS, undefined, 0);
    const ask = (client: ClientInfo, domain: string, now: number): void => {
      state.handleTunnelPacket(client.id, assignedIps(DNS.id, domain, ['100.96.0.1']), now);
    };
    ask(A, 'x.corp', 0);
    ask(B, 'X.corp', 1);
    assert.deepEqual(drainEvents(state), [{ type: 'resolve', domain: 'x.corp' }]);
    state.handleDnsResolution('x.corp', [ip('10.0.0.5')], 100);
    assert.deepEqual([state.pollClientPacket()?.clientId, state.pollClientPacket()?.clientId], [A.id, B.id]);
    ask(A, 'x.corp', 29 * SECOND);
    assert.deepEqual(drainEvents(state), []);
    assert.equal(statusOf(state.pollClientPacket()!.packet), 'Active');
    ask(A, 'x.corp', 31 * SECOND);
    assert.deepEqual(drainEvents(state), [{ type: 'resolve', domain: 'x.corp' }]);
    state.handleTimeout(40 * SECOND);
    assert.equal(state.pollTimeout(), 41 * SECOND, 'the resolution deadline comes before the next tick');
    state.handleTimeout(41 * SECOND);
    assert.equal(statusOf(state.pollClientPacket()!.packet), 'Inactive');
    ask(A, 'y.corp', 42 * SECOND);
    state.handleDnsResolution('y.corp', undefined, 42 * SECOND);
    state.pollClientPacket();
    ask(A, 'y.corp', 43 * SECOND);
    assert.deepEqual(drainEvents(state).length, 2, 'failures are not cached');
  });

  test('legacy access: resolution event, then allowAccess with the NAT entry', () => {
    const state = gateway();
    state.resolveForLegacyAccess('download.httpbin', 'ref-1', 0);
    assert.deepEqual(drainEvents(state), [{ type: 'resolve', domain: 'download.httpbin' }]);
    state.handleDnsResolution('download.httpbin', [ip('192.0.2.80')], 0);
    assert.deepEqual(drainEvents(state), [{ type: 'legacyResolution', requestId: 'ref-1', domain: 'download.httpbin', ips: [ip('192.0.2.80')] }]);
    const resource: ResourceDescription = { type: 'dns', id: '619fbe83-bc95-4635-9a08-68da9a944c88', address: '**.httpbin', filters: [{ protocol: 'tcp', portRangeStart: 80, portRangeEnd: 80 }] };
    const result = state.allowAccess(A, resource, undefined, { domain: 'download.httpbin', proxyIps: [ip('100.96.0.1'), ip('fd00:2021:1111:8000::')], resolvedIps: [ip('192.0.2.80')] }, 0);
    assert.deepEqual(result, { ok: true });
    const verdict = state.handleTunnelPacket(A.id, tcp('100.64.0.10', 5555, '100.96.0.1', 80), 0);
    assert.deepEqual([verdict.action, ...verdict.packet.subarray(16, 20)], [TunnelAction.ToTun, 192, 0, 2, 80]);
    assert.equal(send(state, A, tcp('100.64.0.10', 5555, '100.96.0.1', 81)), TunnelAction.ReplyToClient);
  });
});
