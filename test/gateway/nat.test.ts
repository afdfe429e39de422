import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { L4, NatTable, RealIpIds, natKey } from '../../src/gateway/nat.ts';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import { assignedIps, icmpEcho, ip, recordingLogger, tcp, udp } from './support.ts';

const PROXY = ip('100.96.0.1');
const REAL = ip('10.0.0.1');
const REAL_ID = 0x0a000001;
const SYN = 0x02;
const SYN_ACK = 0x12;
const ACK = 0x10;
const FIN_ACK = 0x11;
const RST = 0x04;

describe('NAT table', () => {
  test('holds no maps before its first session and none once its sessions ended, but remembers their tuples', () => {
    const nat = new NatTable();
    const other = new NatTable();
    assert.equal(nat.holdsSessionMaps, false);
    assert.equal(nat.incoming(natKey(4, L4.Udp, 53, REAL_ID), 0, 0), undefined);
    assert.equal(nat.nextSweep, Infinity);
    const session = nat.outgoing(L4.Udp, 5353, PROXY, 0x64600001, REAL, REAL_ID, 0, 0);
    assert.ok(typeof session !== 'string');
    assert.equal(nat.holdsSessionMaps, true);
    assert.equal(other.holdsSessionMaps, false);
    assert.equal(other.incoming(session.outsideKey, 0, 0), undefined);
    assert.equal(nat.incoming(session.outsideKey, 0, 1), session);
    nat.sweep(nat.nextSweep, 10);
    assert.notEqual(nat.nextSweep, Infinity, 'the session lives on: its sweep was only a look');
    const end = nat.nextSweep;
    assert.equal(nat.sweep(end + 200_000, 10), 1);
    assert.equal(nat.size, 0);
    assert.equal(nat.holdsSessionMaps, false);
    assert.equal(nat.nextSweep, Infinity);
    assert.ok(nat.isExpired(session.outsideKey));
    assert.equal(other.isExpired(session.outsideKey), false);
    const again = nat.outgoing(L4.Udp, 5353, PROXY, 0x64600001, REAL, REAL_ID, 0, end + 200_000);
    assert.ok(typeof again !== 'string');
    assert.equal(nat.size, 1);
    assert.equal(nat.isExpired(again.outsideKey), false);
    nat.clear();
    assert.equal(nat.holdsSessionMaps, false);
    assert.equal(nat.size, 0);
  });

  test('keeps the port when free, else takes the next one up, wrapping to 1', () => {
    const nat = new NatTable();
    const proxies = [1, 2, 3].map((n) => ip(`100.96.0.${n}`));
    const v = (proxyIndex: number, port: number): number => {
      const session = nat.outgoing(L4.Udp, port, proxies[proxyIndex]!, (proxies[proxyIndex] as { value: number }).value, REAL, REAL_ID, 0, 0);
      assert.ok(typeof session !== 'string');
      return session.outsideValue;
    };
    assert.equal(v(0, 65535), 65535);
    assert.equal(v(1, 65535), 1, 'wraps to 1, never 0');
    assert.equal(v(2, 65535), 2);
    assert.equal(v(0, 65535), 65535, 'an existing mapping is reused');
  });

  test('a client holds at most 4096 sessions; beyond, new ones are refused (an error value, not an exception)', () => {
    const nat = new NatTable();
    for (let port = 1; port <= 4096; port++) assert.notEqual(typeof nat.outgoing(L4.Icmp, port, PROXY, 0x64600001, REAL, REAL_ID, 0, 0), 'string');
    assert.equal(nat.outgoing(L4.Icmp, 5000, PROXY, 0x64600001, REAL, REAL_ID, 0, 0), 'full');
    assert.notEqual(typeof nat.outgoing(L4.Icmp, 7, PROXY, 0x64600001, REAL, REAL_ID, 0, 0), 'string', 'existing sessions still work');
    assert.equal(nat.size, 4096);
  });

  test('a confirmed session and its reply after a random delay: translated iff the delay is below the TTL', () => {
    const protocols = [
      { l4: L4.Tcp, ttl: 7_440_000 },
      { l4: L4.Udp, ttl: 120_000 },
      { l4: L4.Icmp, ttl: 120_000 },
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...protocols),
        fc.integer({ min: 0, max: 65535 }),
        fc.oneof(fc.integer({ min: 0, max: 8_000_000 }), fc.constantFrom(119_999, 120_000, 7_439_999, 7_440_000)),
        fc.boolean(),
        ({ l4, ttl }, port, delay, swept) => {
          const nat = new NatTable();
          const session = nat.outgoing(l4, port, PROXY, 0x64600001, REAL, REAL_ID, 0, 0);
          assert.ok(typeof session !== 'string');
          const key = natKey(4, l4, session.outsideValue, REAL_ID);
          assert.equal(nat.incoming(key, 0, 1000), session, 'the reply confirms the session');
          const now = 1000 + delay;
          if (swept) nat.sweep(now, Infinity);
          assert.equal(nat.incoming(key, 0, now) !== undefined, delay < ttl);
          assert.equal(nat.isExpired(key), delay >= ttl);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('IPv6 real IPs get stable small ids', () => {
    const ids = new RealIpIds();
    const a = ids.idOf(ip('2001:db8::1'));
    const b = ids.idOf(ip('2001:db8::2'));
    assert.notEqual(a, b);
    assert.equal(ids.idOf(ip('2001:db8::1')), a);
    assert.equal(ids.lookupV6((ip('2001:db8::2') as { bytes: Uint8Array }).bytes, 0), b);
    assert.equal(ids.lookupV6((ip('2001:db8::3') as { bytes: Uint8Array }).bytes, 0), -1);
  });
});

describe('NAT session lifetimes in virtual time (1.6.0)', () => {
  const client = { id: 'aaaaaaaa-0000-0000-0000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
  const dns = { type: 'dns' as const, id: 'dddddddd-0000-0000-0000-000000000000', address: '**.corp', filters: [] };

  /** A gateway whose client has a.corp -> 10.0.0.1 behind proxy 100.96.0.1, at time 0. */
  function natGateway(): GatewayState {
    const state = new GatewayState({ logger: recordingLogger() });
    state.init({ ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') }, undefined, 0);
    state.authorizeFlow(client, dns, undefined, 0);
    state.handleTunnelPacket(client.id, assignedIps(dns.id, 'a.corp', ['100.96.0.1']), 0);
    while (state.pollEvent() !== undefined);
    state.handleDnsResolution('a.corp', [REAL], 0);
    state.pollClientPacket();
    return state;
  }

  /** Runs every deadline up to `to` as an event loop would. */
  function runUntil(state: GatewayState, to: number): void {
    for (let at = state.pollTimeout(); at !== undefined && at <= to; at = state.pollTimeout()) state.handleTimeout(at);
  }

  const out = (state: GatewayState, packet: Uint8Array, now: number): TunnelAction => {
    runUntil(state, now);
    return state.handleTunnelPacket(client.id, packet, now).action;
  };
  const back = (state: GatewayState, packet: Uint8Array, now: number): TunAction => {
    runUntil(state, now);
    return state.handleTunPacket(packet, now).action;
  };
  const tcpOut = (flags: number): Uint8Array => tcp('100.64.0.10', 40000, '100.96.0.1', 443, flags);
  const tcpBack = (flags: number): Uint8Array => tcp('10.0.0.1', 443, '100.64.0.10', 40000, flags);

  test('TCP lives 2 h 4 min after the last packet', () => {
    const state = natGateway();
    assert.equal(out(state, tcpOut(SYN), 0), TunnelAction.ToTun);
    assert.equal(back(state, tcpBack(SYN_ACK), 10), TunAction.ToClient);
    assert.equal(back(state, tcpBack(ACK), 10 + 7_440_000 - 1), TunAction.ToClient, 'a reply refreshes the session');
    assert.equal(back(state, tcpBack(ACK), 2 * 7_440_000 + 9), TunAction.Drop, 'expired NAT session');
    assert.equal(state.natSessionCount(client.id), 0);
  });

  test('UDP and ICMP live 2 min after the last packet', () => {
    const state = natGateway();
    assert.equal(out(state, udp('100.64.0.10', 40000, '100.96.0.1', 53), 0), TunnelAction.ToTun);
    assert.equal(out(state, icmpEcho('100.64.0.10', '100.96.0.1', 7, 1), 0), TunnelAction.ToTun);
    assert.equal(back(state, udp('10.0.0.1', 53, '100.64.0.10', 40000), 1000), TunAction.ToClient);
    assert.equal(back(state, icmpEcho('10.0.0.1', '100.64.0.10', 7, 1, true), 1000), TunAction.ToClient);
    assert.equal(back(state, udp('10.0.0.1', 53, '100.64.0.10', 40000), 120_999), TunAction.ToClient);
    assert.equal(back(state, icmpEcho('10.0.0.1', '100.64.0.10', 7, 1, true), 121_000), TunAction.Drop, 'ICMP: 120 s after the last packet');
    assert.equal(back(state, udp('10.0.0.1', 53, '100.64.0.10', 40000), 240_999), TunAction.Drop, 'UDP: 120 s after the last packet');
    assert.equal(state.natSessionCount(client.id), 0);
  });

  test('an unconfirmed session (nothing came back) goes 60 s after the last outgoing packet', () => {
    const state = natGateway();
    assert.equal(out(state, tcpOut(SYN), 0), TunnelAction.ToTun);
    assert.equal(out(state, tcpOut(SYN), 30_000), TunnelAction.ToTun);
    runUntil(state, 89_999);
    assert.equal(state.natSessionCount(client.id), 1);
    runUntil(state, 90_000);
    assert.equal(state.natSessionCount(client.id), 0);
    assert.equal(back(state, tcpBack(SYN_ACK), 90_000), TunAction.Drop, 'a late answer is dropped');
  });

  test('after FIN both ways the session lingers 5 s after the last packet', () => {
    const state = natGateway();
    out(state, tcpOut(SYN), 0);
    back(state, tcpBack(SYN_ACK), 10);
    assert.equal(out(state, tcpOut(FIN_ACK), 1000), TunnelAction.ToTun);
    assert.equal(back(state, tcpBack(FIN_ACK), 2000), TunAction.ToClient);
    assert.equal(out(state, tcpOut(ACK), 3000), TunnelAction.ToTun, 'the last ACK goes through');
    assert.equal(back(state, tcpBack(ACK), 7999), TunAction.ToClient);
    runUntil(state, 12_998);
    assert.equal(state.natSessionCount(client.id), 1);
    assert.equal(back(state, tcpBack(ACK), 12_999), TunAction.Drop, '5 s after the last packet');
  });

  test('one FIN alone keeps the session (half-closed connections live on)', () => {
    const state = natGateway();
    out(state, tcpOut(SYN), 0);
    back(state, tcpBack(SYN_ACK), 10);
    out(state, tcpOut(FIN_ACK), 1000);
    assert.equal(back(state, tcpBack(ACK), 600_000), TunAction.ToClient);
  });

  test('a RST either way ends the session at once; the RST itself is translated', () => {
    for (const rstFrom of ['client', 'resource'] as const) {
      const state = natGateway();
      out(state, tcpOut(SYN), 0);
      back(state, tcpBack(SYN_ACK), 10);
      if (rstFrom === 'client') assert.equal(out(state, tcpOut(RST), 1000), TunnelAction.ToTun);
      else assert.equal(back(state, tcpBack(RST), 1000), TunAction.ToClient);
      assert.equal(back(state, tcpBack(ACK), 1000), TunAction.Drop, `after a RST from the ${rstFrom}`);
      assert.equal(state.natSessionCount(client.id), 0);
    }
  });

  test('the state visits only due sessions: 1000 idle sessions cost no work until they end', () => {
    const state = natGateway();
    for (let port = 1; port <= 1000; port++) out(state, udp('100.64.0.10', port, '100.96.0.1', 53), 0);
    const work = state.deadlineWork + state.natWork(client.id);
    runUntil(state, 59_000);
    assert.equal(state.deadlineWork + state.natWork(client.id), work, 'no deadline came up');
    runUntil(state, 60_000);
    assert.equal(state.natSessionCount(client.id), 0);
    assert.ok(state.natWork(client.id) + state.deadlineWork - work <= 1010, `one pop per session (${state.natWork(client.id) + state.deadlineWork - work})`);
  });

  test('a renumbering drops a full NAT table at once, touching no other client', () => {
    const state = natGateway();
    const other = { id: 'bbbbbbbb-0000-0000-0000-000000000002', ipv4: ip('100.64.0.11'), ipv6: ip('fd00:2021:1111::11') };
    state.authorizeFlow(other, dns, undefined, 0);
    state.handleTunnelPacket(other.id, assignedIps(dns.id, 'a.corp', ['100.96.0.1']), 0);
    state.handleDnsResolution('a.corp', [REAL], 0);
    for (let port = 1; port <= 4096; port++) out(state, udp('100.64.0.10', port, '100.96.0.1', 53), 0);
    state.handleTunnelPacket(other.id, udp('100.64.0.11', 9, '100.96.0.1', 53), 0);
    const otherWork = state.natWork(other.id);
    const queueWork = state.deadlineWork;
    state.handleTunnelPacket(client.id, assignedIps(dns.id, 'b.corp', ['100.96.0.1']), 1);
    state.handleDnsResolution('b.corp', [REAL], 1);
    assert.equal(state.natSessionCount(client.id), 0);
    assert.equal(state.natSessionCount(other.id), 1);
    assert.equal(state.natWork(other.id), otherWork);
    assert.ok(state.deadlineWork - queueWork <= 2, `the client's place in the queue moves once (${state.deadlineWork - queueWork})`);
  });
});

describe('NAT through the gateway', () => {
  const client = { id: 'aaaaaaaa-0000-0000-0000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
  const other = { id: 'bbbbbbbb-0000-0000-0000-000000000002', ipv4: ip('100.64.0.11'), ipv6: ip('fd00:2021:1111::11') };
  const dns = { type: 'dns' as const, id: 'dddddddd-0000-0000-0000-000000000000', address: '**.corp', filters: [] };

  function assign(state: GatewayState, who: { id: string }, proxies: string[], resolved: string[]): void {
    state.handleTunnelPacket(who.id, assignedIps(dns.id, 'a.corp', proxies), 0);
    while (state.pollEvent() !== undefined);
    state.handleDnsResolution('a.corp', resolved.map(ip), 0);
    state.pollClientPacket();
  }

  test('sessions are per client: the same port from two clients maps back to each', () => {
    const state = new GatewayState({ logger: recordingLogger() });
    state.init({ ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') }, undefined, 0);
    state.authorizeFlow(client, dns, undefined, 0);
    state.authorizeFlow(other, dns, undefined, 0);
    assign(state, client, ['100.96.0.1'], ['10.0.0.1']);
    assign(state, other, ['100.96.0.1'], ['10.0.0.1']);
    assert.equal(state.handleTunnelPacket(client.id, udp('100.64.0.10', 5000, '100.96.0.1', 53), 0).action, TunnelAction.ToTun);
    assert.equal(state.handleTunnelPacket(other.id, udp('100.64.0.11', 5000, '100.96.0.1', 53), 0).action, TunnelAction.ToTun);
    const toOther = state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.11', 5000), 0);
    assert.deepEqual([toOther.action, toOther.clientId, ...toOther.packet.subarray(12, 16)], [TunAction.ToClient, other.id, 100, 96, 0, 1]);
  });

  test('many concurrent sessions all translate back to their own proxy and port', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 65535 })), { minLength: 1, maxLength: 30, selector: ([p, s]) => `${p}:${s}` }), (flows) => {
        const state = new GatewayState({ logger: recordingLogger() });
        state.init({ ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') }, undefined, 0);
        state.authorizeFlow(client, dns, undefined, 0);
        assign(state, client, ['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4'], ['10.0.0.1', '10.0.0.2']);
        const outside = flows.map(([proxy, sport]) => {
          const verdict = state.handleTunnelPacket(client.id, udp('100.64.0.10', sport, `100.96.0.${proxy}`, 53), 0);
          assert.equal(verdict.action, TunnelAction.ToTun);
          return { real: [...verdict.packet.subarray(16, 20)].join('.'), port: (verdict.packet[20]! << 8) | verdict.packet[21]! };
        });
        flows.forEach(([proxy, sport], i) => {
          const back = state.handleTunPacket(udp(outside[i]!.real, 53, '100.64.0.10', outside[i]!.port), 0);
          assert.equal(back.action, TunAction.ToClient);
          assert.deepEqual([...back.packet.subarray(12, 16)], [100, 96, 0, proxy]);
          assert.equal((back.packet[22]! << 8) | back.packet[23]!, sport);
        });
      }),
      { numRuns: 100 },
    );
  });
});
