// What one client can make the policy core hold or do is bounded (issue 17): p2p control packets per second,
// proxy IPs per domain, domains with translations, waiting name resolutions, NAT sessions, filter work per
// resource change, deadlines per timeout. Work is counted through hooks, never timed.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState, TunnelAction } from '../../src/gateway/index.ts';
import type { ClientInfo, Filter, GatewayEvent, ResourceDescription } from '../../src/gateway/index.ts';
import { assignedIps, ip, recordingLogger, udp } from './support.ts';

const GATEWAY = { ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') };
const A: ClientInfo = { id: 'aaaaaaaa-0000-0000-0000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
const DNS: ResourceDescription = { type: 'dns', id: '33333333-0000-0000-0000-000000000003', address: '**.corp', filters: [] };

function gateway(...resources: ResourceDescription[]): GatewayState {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init(GATEWAY, undefined, 0);
  for (const resource of resources) state.authorizeFlow(A, resource, undefined, 0);
  return state;
}

function drain(state: GatewayState): { resolves: number; statuses: string[] } {
  let resolves = 0;
  const statuses: string[] = [];
  for (let event: GatewayEvent | undefined = state.pollEvent(); event !== undefined; event = state.pollEvent()) if (event.type === 'resolve') resolves++;
  for (let packet = state.pollClientPacket(); packet !== undefined; packet = state.pollClientPacket()) {
    statuses.push((JSON.parse(Buffer.from(packet.packet.subarray(48)).toString()) as { status: string }).status);
  }
  return { resolves, statuses };
}

/** `count` proxies of each family for domain number `n` (the client numbers them sequentially). */
function proxiesFor(n: number, count = 4): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(`100.96.${(n * count + i) >> 8}.${(n * count + i) & 0xff}`);
  for (let i = 0; i < count; i++) out.push(`fd00:2021:1111:8000::${(n * count + i).toString(16)}`);
  return out;
}

function announce(state: GatewayState, domain: string, proxies: string[], now: number, resolved: string[] | null = ['10.0.0.1', '2001:db8::1']): void {
  state.handleTunnelPacket(A.id, assignedIps(DNS.id, domain, proxies), now);
  if (resolved !== null) state.handleDnsResolution(domain, resolved.map(ip), now);
}

describe('p2p control', () => {
  test('a flood of AssignedIps costs its sender a bucket of 256, then 32 per second', () => {
    const state = gateway(DNS);
    for (let i = 0; i < 2000; i++) state.handleTunnelPacket(A.id, assignedIps(DNS.id, `n${i}.corp`, proxiesFor(0)), 0);
    const burst = drain(state);
    assert.equal(burst.resolves + burst.statuses.length, 256);
    assert.equal(state.stats.p2pRateLimited, 2000 - 256);
    for (let i = 0; i < 100; i++) state.handleTunnelPacket(A.id, assignedIps(DNS.id, `m${i}.corp`, proxiesFor(0)), 1000);
    const second = drain(state);
    assert.equal(second.resolves + second.statuses.length, 32);
  });

  test('another client keeps its own budget', () => {
    const state = gateway(DNS);
    const B: ClientInfo = { id: 'bbbbbbbb-0000-0000-0000-000000000002', ipv4: ip('100.64.0.11'), ipv6: ip('fd00:2021:1111::11') };
    state.authorizeFlow(B, DNS, undefined, 0);
    for (let i = 0; i < 1000; i++) state.handleTunnelPacket(A.id, assignedIps(DNS.id, 'x.corp', proxiesFor(0)), 0);
    drain(state);
    state.handleTunnelPacket(B.id, assignedIps(DNS.id, 'y.corp', proxiesFor(1)), 0);
    assert.equal(drain(state).resolves, 1);
  });
});

describe('name resolutions', () => {
  test('a client waits on at most 32 resolutions; the excess is answered Inactive at once', () => {
    const state = gateway(DNS);
    for (let i = 0; i < 100; i++) announce(state, `n${i}.corp`, proxiesFor(i), 0, null);
    const { resolves, statuses } = drain(state);
    assert.equal(resolves, 32);
    assert.deepEqual(statuses, Array<string>(68).fill('Inactive'));
    state.handleDnsResolution('n0.corp', [ip('10.0.0.1')], 5);
    assert.deepEqual(drain(state).statuses, ['Active']);
    announce(state, 'late.corp', proxiesFor(200), 6, null);
    assert.equal(drain(state).resolves, 1, 'a slot came free');
  });

  test('at most 1000 names in flight over all clients; beyond, Inactive at once', () => {
    const state = gateway();
    for (let c = 0; c < 40; c++) {
      const client = { id: `c0000000-0000-0000-0000-${c.toString().padStart(12, '0')}`, ipv4: ip(`100.64.1.${c}`), ipv6: ip(`fd00:2021:1111::1:${c.toString(16)}`) };
      state.authorizeFlow(client, DNS, undefined, 0);
      for (let i = 0; i < 30; i++) state.handleTunnelPacket(client.id, assignedIps(DNS.id, `c${c}n${i}.corp`, proxiesFor(i)), 0);
    }
    const { resolves, statuses } = drain(state);
    assert.equal(resolves, 1000);
    assert.equal(statuses.length, 200);
    assert.ok(statuses.every((s) => s === 'Inactive'));
  });
});

describe('translations', () => {
  test('at most 4 IPv4 and 4 IPv6 proxy IPs are taken per domain (the lowest)', () => {
    const state = gateway(DNS);
    const many = proxiesFor(0, 20);
    announce(state, 'a.corp', many, 0);
    assert.deepEqual(state.translationCounts(A.id), { proxies: 8, domains: 1 });
    assert.notEqual(state.translationOf(A.id, ip('100.96.0.3')), undefined);
    assert.equal(state.translationOf(A.id, ip('100.96.0.4')), undefined);
  });

  test("a domain's proxies are replaced by the next announcement, not accumulated", () => {
    const state = gateway(DNS);
    for (let round = 0; round < 50; round++) announce(state, 'a.corp', proxiesFor(round), round * 10);
    assert.deepEqual(state.translationCounts(A.id), { proxies: 8, domains: 1 });
    assert.equal(state.translationOf(A.id, ip('100.96.0.0')), undefined);
    assert.notEqual(state.translationOf(A.id, ip(proxiesFor(49)[0]!)), undefined);
  });

  test('at most 512 domains; a new one replaces the least recently used', () => {
    const state = gateway(DNS);
    for (let i = 0; i < 512; i++) announce(state, `d${i}.corp`, proxiesFor(i), i * 100);
    assert.deepEqual(state.translationCounts(A.id), { proxies: 4096, domains: 512 });
    // d0 is used by traffic, so d1 is now the least recently used.
    assert.equal(state.handleTunnelPacket(A.id, udp('100.64.0.10', 5000, proxiesFor(0)[0]!, 53), 60_000).action, TunnelAction.ToTun);
    announce(state, 'new.corp', proxiesFor(600), 60_001);
    assert.deepEqual(state.translationCounts(A.id), { proxies: 4096, domains: 512 });
    assert.notEqual(state.translationOf(A.id, ip(proxiesFor(0)[0]!)), undefined);
    assert.equal(state.translationOf(A.id, ip(proxiesFor(1)[0]!)), undefined);
    assert.notEqual(state.translationOf(A.id, ip(proxiesFor(600)[0]!)), undefined);
  });
});

describe('NAT sessions and deadlines', () => {
  test('a client holds at most 4096 NAT sessions; others keep working', () => {
    const state = gateway(DNS);
    announce(state, 'a.corp', proxiesFor(0), 0);
    for (let port = 1; port <= 5000; port++) state.handleTunnelPacket(A.id, udp('100.64.0.10', port, '100.96.0.0', 53), 0);
    assert.equal(state.natSessionCount(A.id), 4096);
    assert.equal(state.stats.natSessionsRefused, 5000 - 4096);
    assert.equal(state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '100.96.0.0', 53), 0).action, TunnelAction.ToTun);
  });

  test('a timeout handles at most 1024 due deadlines, and asks to be called again at once for the rest', () => {
    const state = gateway(DNS);
    announce(state, 'a.corp', proxiesFor(0), 0);
    for (let port = 1; port <= 3000; port++) state.handleTunnelPacket(A.id, udp('100.64.0.10', port, '100.96.0.0', 53), 0);
    const end = 60_000;
    assert.equal(state.pollTimeout(), end);
    state.handleTimeout(end);
    assert.ok(state.natSessionCount(A.id) >= 3000 - 1025);
    assert.equal(state.pollTimeout(), end, 'the rest are due now');
    for (let calls = 0; state.natSessionCount(A.id) > 0 && calls < 3; calls++) state.handleTimeout(end);
    assert.equal(state.natSessionCount(A.id), 0);
  });
});

describe('filter updates are incremental', () => {
  function cidr(i: number, filters: readonly Filter[] = []): ResourceDescription {
    return { type: 'cidr', id: `e0000000-0000-0000-0000-${i.toString().padStart(12, '0')}`, address: `10.${i >> 8}.${i & 0xff}.0/24`, filters };
  }

  test('authorizing 1,000 resources for one client builds each network once', () => {
    const state = gateway();
    for (let i = 0; i < 1000; i++) state.authorizeFlow(A, cidr(i), undefined, 0);
    assert.equal(state.filterWork(A.id), 1000);
    assert.equal(state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '10.3.231.9', 53), 0).action, TunnelAction.ToTun);
  });

  test('adding, replacing or removing one resource touches only its own network', () => {
    const state = gateway();
    for (let i = 0; i < 1000; i++) state.authorizeFlow(A, cidr(i), undefined, 0);
    const before = state.filterWork(A.id);
    state.authorizeFlow(A, cidr(1000), undefined, 0);
    state.resourceUpdated(cidr(500, [{ protocol: 'tcp', portRangeStart: 22, portRangeEnd: 22 }]));
    state.rejectAccess(A.id, cidr(7).id, 0);
    assert.equal(state.filterWork(A.id) - before, 2, 'one rebuild each for the new and the replaced network; a removal rebuilds nothing');
    assert.equal(state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '10.1.244.9', 53), 0).action, TunnelAction.ReplyToClient);
    assert.equal(state.handleTunnelPacket(A.id, udp('100.64.0.10', 1, '10.0.7.9', 53), 0).action, TunnelAction.ReplyToClient);
  });

  test("a DNS resource's update touches only its own proxies", () => {
    const other: ResourceDescription = { type: 'dns', id: '44444444-0000-0000-0000-000000000004', address: '**.other', filters: [] };
    const state = gateway(DNS, other);
    for (let i = 0; i < 100; i++) announce(state, `d${i}.corp`, proxiesFor(i), i);
    state.handleTunnelPacket(A.id, assignedIps(other.id, 'x.other', proxiesFor(200)), 0);
    state.handleDnsResolution('x.other', [ip('10.9.9.9')], 0);
    const before = state.filterWork(A.id);
    state.resourceUpdated({ ...other, filters: [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }] });
    assert.equal(state.filterWork(A.id) - before, 8);
  });
});
