// The reference's peer unit tests (fixture peer-unit-test-scenarios.json) and message shapes
// (filters-and-resources-json.json), replayed through GatewayState.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import type { Filter, ResourceDescription } from '../../src/gateway/index.ts';
import { assignedIps, icmpEcho, icmpError, ip, rawIp, readFixtureJson, recordingLogger, tcp, udp } from './support.ts';

interface RawFilter {
  protocol: 'tcp' | 'udp' | 'icmp';
  port_range_start?: number;
  port_range_end?: number;
}
interface RawResource {
  type: 'cidr' | 'dns' | 'internet';
  id: string;
  address?: string;
  filters?: RawFilter[];
}

const fixture = readFixtureJson<{
  common: {
    client_tun: { v4: string; v6: string };
    gateway_tun: { v4: string; v6: string };
    client_id: string;
    foo_dns_resource: RawResource;
    bar_cidr_resource: RawResource;
    internet_resource: RawResource;
    foo_real_ip1: string;
    foo_real_ip2: string;
    foo_proxy_ip1: string;
    foo_proxy_ip2: string;
  };
  scenarios: { name: string }[];
}>('packets', 'peer-unit-test-scenarios.json');
const common = fixture.common;

function toFilter(raw: RawFilter): Filter {
  if (raw.protocol === 'icmp') return { protocol: 'icmp' };
  return { protocol: raw.protocol, portRangeStart: raw.port_range_start ?? 0, portRangeEnd: raw.port_range_end ?? 65535 };
}

function toResource(raw: RawResource): ResourceDescription {
  if (raw.type === 'internet') return { type: 'internet', id: raw.id };
  return { type: raw.type, id: raw.id, address: raw.address!, filters: (raw.filters ?? []).map(toFilter) };
}

const CLIENT = { id: common.client_id, ipv4: ip(common.client_tun.v4), ipv6: ip(common.client_tun.v6) };
const C4 = common.client_tun.v4;
const SECOND = 1000;

function newGateway(): GatewayState {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init({ ipv4: ip(common.gateway_tun.v4), ipv6: ip(common.gateway_tun.v6) }, undefined, 0);
  return state;
}

function allow(state: GatewayState, resource: ResourceDescription, expiresAt?: number): void {
  assert.deepEqual(state.authorizeFlow(CLIENT, resource, expiresAt, 0), { ok: true });
}

function setupNat(state: GatewayState, resourceId: string, domain: string, resolved: string[], proxies: string[], now = 0): string {
  state.handleTunnelPacket(CLIENT.id, assignedIps(resourceId, domain, proxies), now);
  while (state.pollEvent() !== undefined);
  state.handleDnsResolution(domain, resolved.map(ip), now);
  const reply = state.pollClientPacket();
  return reply === undefined ? 'none' : (JSON.parse(Buffer.from(reply.packet.subarray(48)).toString()) as { status: string }).status;
}

function out(state: GatewayState, packet: Uint8Array, now = 0): TunnelAction {
  return state.handleTunnelPacket(CLIENT.id, packet, now).action;
}

function back(state: GatewayState, packet: Uint8Array, now = 0): TunAction {
  return state.handleTunPacket(packet, now).action;
}

test('the fixture lists the scenarios replayed here', () => {
  const names = fixture.scenarios.map((s) => s.name);
  for (const name of [
    'gateway_filters_expire_individually',
    'allows_packets_for_and_from_gateway_tun_ip',
    'dns_and_cidr_filters_dot_mix',
    'internet_resource_doesnt_allow_all_traffic_for_dns_resources',
    'dns_resource_packet_is_dropped_after_nat_session_expires',
    'setting_up_dns_resource_nat_does_not_clear_existing_nat_session',
  ]) {
    assert.ok(names.includes(name), name);
  }
});

describe('reference peer scenarios', () => {
  test('gateway_filters_expire_individually', () => {
    const state = newGateway();
    const t = 5 * SECOND;
    allow(state, { type: 'cidr', id: 'a0000000-0000-0000-0000-000000000001', address: '10.0.0.0/24', filters: [{ protocol: 'tcp', portRangeStart: 20, portRangeEnd: 100 }] }, t + 10 * SECOND);
    allow(state, { type: 'cidr', id: 'a0000000-0000-0000-0000-000000000002', address: '10.0.0.0/24', filters: [{ protocol: 'udp', portRangeStart: 20, portRangeEnd: 100 }] }, t + 20 * SECOND);
    const tcpPacket = (): Uint8Array => tcp(C4, 5401, '10.0.0.1', 80);
    const udpPacket = (): Uint8Array => udp(C4, 5401, '10.0.0.1', 80);
    state.handleTimeout(t);
    assert.equal(out(state, tcpPacket(), t), TunnelAction.ToTun);
    assert.equal(out(state, udpPacket(), t), TunnelAction.ToTun);
    state.handleTimeout(t + 10 * SECOND);
    assert.equal(out(state, tcpPacket(), t + 10 * SECOND), TunnelAction.ReplyToClient);
    assert.equal(out(state, udpPacket(), t + 10 * SECOND), TunnelAction.ToTun);
    state.handleTimeout(t + 20 * SECOND);
    assert.equal(state.hasClient(CLIENT.id), false, 'a client without resources is removed');
    assert.equal(out(state, udpPacket(), t + 20 * SECOND), TunnelAction.Drop);
  });

  test('allows_packets_for_and_from_gateway_tun_ip (only what the gateway serves there: DNS on 53535, echo)', () => {
    const state = newGateway();
    allow(state, toResource(common.bar_cidr_resource));
    assert.equal(out(state, tcp(C4, 5401, common.gateway_tun.v4, 53535)), TunnelAction.ToTun);
    assert.equal(out(state, udp(common.client_tun.v6, 1, common.gateway_tun.v6, 53535)), TunnelAction.ToTun);
    assert.equal(out(state, icmpEcho(C4, common.gateway_tun.v4, 1, 1)), TunnelAction.ToTun);
    assert.equal(back(state, tcp(common.gateway_tun.v4, 53535, C4, 5401)), TunAction.ToClient);
    assert.equal(back(state, tcp(common.gateway_tun.v4, 80, C4, 5401)), TunAction.ToClient, 'whatever the gateway host sends passes');
    // The reference lets everything through to its tunnel address; this gateway answers ICMP prohibited (issue 17).
    assert.equal(out(state, tcp(C4, 5401, common.gateway_tun.v4, 80)), TunnelAction.ReplyToClient);
    assert.equal(out(state, udp(common.client_tun.v6, 1, common.gateway_tun.v6, 53)), TunnelAction.ReplyToClient);
  });

  test('dns_and_cidr_filters_dot_mix', () => {
    const state = newGateway();
    allow(state, toResource(common.foo_dns_resource));
    allow(state, toResource(common.bar_cidr_resource));
    assert.equal(setupNat(state, common.foo_dns_resource.id, 'foo.com', [common.foo_real_ip1], [common.foo_proxy_ip1]), 'Active');
    assert.equal(out(state, udp(C4, 1, common.foo_real_ip1, 443)), TunnelAction.ToTun);
    assert.equal(out(state, udp(C4, 1, common.foo_real_ip1, 80)), TunnelAction.ReplyToClient);
    assert.equal(out(state, udp(C4, 1, common.foo_proxy_ip1, 443)), TunnelAction.ReplyToClient);
    const verdict = state.handleTunnelPacket(CLIENT.id, udp(C4, 1, common.foo_proxy_ip1, 80), 0);
    assert.equal(verdict.action, TunnelAction.ToTun);
    assert.deepEqual([...verdict.packet.subarray(16, 20)], [10, 0, 0, 1]);
  });

  test('internet_resource_doesnt_allow_all_traffic_for_dns_resources', () => {
    const state = newGateway();
    allow(state, toResource(common.foo_dns_resource));
    allow(state, toResource(common.internet_resource));
    setupNat(state, common.foo_dns_resource.id, 'foo.com', [common.foo_real_ip1], [common.foo_proxy_ip1]);
    assert.equal(out(state, udp(C4, 1, common.foo_proxy_ip1, 80)), TunnelAction.ToTun);
    assert.equal(out(state, udp(C4, 1, common.foo_proxy_ip1, 600)), TunnelAction.ReplyToClient);
    assert.equal(out(state, udp(C4, 1, '1.1.1.1', 600)), TunnelAction.ToTun);
  });

  test('dns_resource_packet_is_dropped_after_nat_session_expires', () => {
    const state = newGateway();
    allow(state, toResource(common.foo_dns_resource));
    setupNat(state, common.foo_dns_resource.id, 'foo.com', [common.foo_real_ip1], [common.foo_proxy_ip1]);
    assert.equal(out(state, udp(C4, 1, common.foo_proxy_ip1, 80), 0), TunnelAction.ToTun);
    state.handleTimeout(30 * SECOND);
    const reply = state.handleTunPacket(udp(common.foo_real_ip1, 80, C4, 1), 30 * SECOND);
    assert.equal(reply.action, TunAction.ToClient);
    assert.deepEqual([...reply.packet.subarray(12, 16)], [100, 96, 0, 1]);
    state.handleTimeout(150 * SECOND);
    assert.equal(back(state, udp(common.foo_real_ip1, 80, C4, 1), 150 * SECOND), TunAction.Drop);
  });

  test('setting_up_dns_resource_nat_does_not_clear_existing_nat_session', () => {
    const state = newGateway();
    allow(state, toResource(common.foo_dns_resource));
    setupNat(state, common.foo_dns_resource.id, 'foo.com', [common.foo_real_ip1], [common.foo_proxy_ip1, common.foo_proxy_ip2]);
    assert.equal(out(state, udp(C4, 1, common.foo_proxy_ip1, 80)), TunnelAction.ToTun);
    setupNat(state, common.foo_dns_resource.id, 'foo.com', [common.foo_real_ip2], [common.foo_proxy_ip1, common.foo_proxy_ip2], 31 * SECOND);
    assert.equal((state.translationOf(CLIENT.id, ip(common.foo_proxy_ip1)) as { value: number }).value, 0x0a000002, 'the mapping follows the new answer (1.6.0)');
    assert.equal((state.translationOf(CLIENT.id, ip(common.foo_proxy_ip2)) as { value: number }).value, 0x0a000002);
    const verdict = state.handleTunnelPacket(CLIENT.id, udp(C4, 1, common.foo_proxy_ip1, 80), 31 * SECOND);
    assert.equal(verdict.action, TunnelAction.ToTun);
    assert.deepEqual([...verdict.packet.subarray(16, 20)], [10, 0, 0, 1], 'the open session keeps its real IP');
    assert.equal(back(state, udp(common.foo_real_ip1, 80, C4, 1), 31 * SECOND), TunAction.ToClient);
    const fresh = state.handleTunnelPacket(CLIENT.id, udp(C4, 2, common.foo_proxy_ip1, 80), 31 * SECOND);
    assert.deepEqual([fresh.action, ...fresh.packet.subarray(16, 20)], [TunnelAction.ToTun, 10, 0, 0, 2], 'a new session takes the new IP');
    assert.equal(back(state, udp(common.foo_real_ip2, 80, C4, 2), 31 * SECOND), TunAction.ToClient);
  });

  test('filter_engine_icmp_rules: an icmp filter admits every ICMP type, none without it', () => {
    const state = newGateway();
    allow(state, { type: 'cidr', id: 'a0000000-0000-0000-0000-000000000003', address: '10.0.0.0/24', filters: [{ protocol: 'icmp' }] });
    allow(state, { type: 'cidr', id: 'a0000000-0000-0000-0000-000000000004', address: '10.1.0.0/24', filters: [{ protocol: 'udp', portRangeStart: 1, portRangeEnd: 2 }] });
    const unreachableHost = icmpError(C4, '10.0.0.1', 3, 1, udp(C4, 1, '10.0.0.9', 2));
    assert.equal(out(state, icmpError(C4, '10.0.0.1', 3, 1, new Uint8Array(28))), TunnelAction.Drop, 'ICMP errors from a client are dropped (1.6.0)');
    assert.equal(out(state, unreachableHost), TunnelAction.Drop);
    assert.equal(out(state, icmpEcho(C4, '10.0.0.1', 1, 1)), TunnelAction.ToTun);
    const parameterProblem = rawIp(C4, '10.0.0.1', 1, new Uint8Array([12, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(out(state, parameterProblem), TunnelAction.ToTun, 'other ICMP types pass under an icmp filter');
    const timestamp = rawIp(C4, '10.1.0.1', 1, new Uint8Array([13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(out(state, timestamp), TunnelAction.ReplyToClient);
    assert.equal(out(state, icmpEcho(C4, '10.1.0.1', 1, 1)), TunnelAction.ReplyToClient);
  });
});

describe('filter properties (reference proptests)', () => {
  const portRange = fc.tuple(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 })).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const);
  const filterArb: fc.Arbitrary<Filter> = fc.oneof(
    fc.constant<Filter>({ protocol: 'icmp' }),
    fc.tuple(fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'), portRange).map(([protocol, [start, end]]): Filter => ({ protocol, portRangeStart: start, portRangeEnd: end })),
  );
  const probeArb = fc.tuple(fc.constantFrom<'tcp' | 'udp' | 'icmp'>('tcp', 'udp', 'icmp'), fc.integer({ min: 0, max: 65535 }));

  function permits(filters: readonly Filter[], [protocol, port]: readonly ['tcp' | 'udp' | 'icmp', number]): boolean {
    if (filters.length === 0) return true;
    return filters.some((f) => f.protocol === protocol && (f.protocol === 'icmp' || (port >= f.portRangeStart && port <= f.portRangeEnd)));
  }

  function probePacket([protocol, port]: readonly ['tcp' | 'udp' | 'icmp', number], dst: string): Uint8Array {
    if (protocol === 'icmp') return icmpEcho(C4, dst, port, 1);
    return protocol === 'tcp' ? tcp(C4, 40000, dst, port) : udp(C4, 40000, dst, port);
  }

  test('same network from several resources: the union of filters applies (any empty list permits all)', () => {
    fc.assert(
      fc.property(fc.array(fc.array(filterArb, { maxLength: 4 }), { minLength: 1, maxLength: 10 }), fc.array(probeArb, { minLength: 1, maxLength: 8 }), (lists, probes) => {
        const state = newGateway();
        lists.forEach((filters, i) => allow(state, { type: 'cidr', id: `b0000000-0000-0000-0000-${String(i).padStart(12, '0')}`, address: '10.0.0.0/24', filters }));
        for (const probe of probes) {
          const expected = lists.some((filters) => permits(filters, probe));
          assert.equal(out(state, probePacket(probe, '10.0.0.7')) === TunnelAction.ToTun, expected);
        }
      }),
      { numRuns: 60 },
    );
  });

  test('a subnet inherits its supernet rules, and a removed subnet leaves only the supernet rules', () => {
    fc.assert(
      fc.property(fc.array(filterArb, { minLength: 1, maxLength: 4 }), fc.array(filterArb, { minLength: 1, maxLength: 4 }), fc.array(probeArb, { minLength: 1, maxLength: 8 }), (fa, fb, probes) => {
        const state = newGateway();
        allow(state, { type: 'cidr', id: 'c0000000-0000-0000-0000-00000000000a', address: '10.0.0.0/16', filters: fa });
        allow(state, { type: 'cidr', id: 'c0000000-0000-0000-0000-00000000000b', address: '10.0.1.0/24', filters: fb });
        for (const probe of probes) {
          assert.equal(out(state, probePacket(probe, '10.0.1.5')) === TunnelAction.ToTun, permits(fa, probe) || permits(fb, probe));
          assert.equal(out(state, probePacket(probe, '10.0.2.5')) === TunnelAction.ToTun, permits(fa, probe), 'supernet does not inherit');
        }
        state.rejectAccess(CLIENT.id, 'c0000000-0000-0000-0000-00000000000b', 0);
        for (const probe of probes) assert.equal(out(state, probePacket(probe, '10.0.1.5')) === TunnelAction.ToTun, permits(fa, probe));
      }),
      { numRuns: 60 },
    );
  });
});

describe('portal message shapes', () => {
  test('the filter vectors decode to the expected port ranges', () => {
    const vectors = readFixtureJson<{ vectors: { test: string; json: string }[] }>('packets', 'filters-and-resources-json.json').vectors;
    const decode = (name: string): Filter => toFilter(JSON.parse(vectors.find((v) => v.test === name)!.json) as RawFilter);
    assert.deepEqual(decode('can_deserialize_udp_filter'), { protocol: 'udp', portRangeStart: 10, portRangeEnd: 20 });
    assert.deepEqual(decode('can_deserialize_empty_udp_filter'), { protocol: 'udp', portRangeStart: 0, portRangeEnd: 65535 });
    assert.deepEqual(decode('can_deserialize_empty_tcp_filter'), { protocol: 'tcp', portRangeStart: 0, portRangeEnd: 65535 });
    assert.deepEqual(decode('can_deserialize_icmp_filter'), { protocol: 'icmp' });
  });

  test('the resource list (cidr, dns, internet) is accepted and enforced', () => {
    const vectors = readFixtureJson<{ vectors: { test: string; json: string }[] }>('packets', 'filters-and-resources-json.json').vectors;
    const resources = (JSON.parse(vectors.find((v) => v.test === 'can_deserialize_internet_resource')!.json) as RawResource[]).map(toResource);
    const state = newGateway();
    for (const resource of resources) allow(state, resource);
    assert.deepEqual(state.clientResourceIds(CLIENT.id).sort(), resources.map((r) => r.id).sort());
    assert.equal(out(state, udp(C4, 1, '172.172.3.4', 9)), TunnelAction.ToTun);
    assert.equal(out(state, udp(C4, 1, '8.8.8.8', 53)), TunnelAction.ToTun, 'internet resource');
    assert.equal(setupNat(state, resources[1]!.id, 'gitlab.mycorp.com', ['192.0.2.7'], ['100.96.0.1']), 'Active');
    assert.equal(setupNat(state, resources[1]!.id, 'other.mycorp.com', ['192.0.2.7'], ['100.96.0.2']), 'Inactive');
  });

  test('resource_updated replaces the filters (fixture resource_updated message)', () => {
    const vectors = readFixtureJson<{ vectors: { test: string; json: string }[] }>('packets', 'filters-and-resources-json.json').vectors;
    const payload = (JSON.parse(vectors.find((v) => v.test === 'can_deserialize_resource_updated_message')!.json) as { payload: RawResource }).payload;
    const state = newGateway();
    allow(state, { type: 'dns', id: payload.id, address: '?.httpbin', filters: [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }] });
    setupNat(state, payload.id, 'a.httpbin', ['192.0.2.9'], ['100.96.0.1']);
    assert.equal(out(state, tcp(C4, 1000, '100.96.0.1', 443)), TunnelAction.ReplyToClient);
    state.resourceUpdated(toResource(payload));
    assert.equal(out(state, tcp(C4, 1000, '100.96.0.1', 443)), TunnelAction.ToTun);
    assert.equal(out(state, udp(C4, 1000, '100.96.0.1', 53)), TunnelAction.ReplyToClient);
  });
});
