// The portal message fixtures (../shared/fixtures/portal), converted the way the event loop will, driving the state.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState, TunnelAction, expiresAtToMonotonic } from '../../src/gateway/index.ts';
import type { Filter, ResourceDescription } from '../../src/gateway/index.ts';
import { assignedIps, ip, readFixtureJson, recordingLogger, tcp, udp } from './support.ts';

interface RawFilter {
  protocol: 'tcp' | 'udp' | 'icmp';
  port_range_start?: number;
  port_range_end?: number;
}
interface RawResource {
  id: string;
  type: 'cidr' | 'dns' | 'internet';
  address?: string;
  filters?: RawFilter[];
}
interface Message<P> {
  event: string;
  payload: P;
}

function filter(raw: RawFilter): Filter {
  if (raw.protocol === 'icmp') return { protocol: 'icmp' };
  return { protocol: raw.protocol, portRangeStart: raw.port_range_start ?? 0, portRangeEnd: raw.port_range_end ?? 65535 };
}

function resource(raw: RawResource): ResourceDescription {
  if (raw.type === 'internet') return { type: 'internet', id: raw.id };
  return { type: raw.type, id: raw.id, address: raw.address!, filters: (raw.filters ?? []).map(filter) };
}

const init = readFixtureJson<Message<{ interface: { ipv4: string; ipv6: string } }>>('portal', 'init.json');
const authorize = readFixtureJson<
  Message<{ client: { id: string; ipv4: string; ipv6: string }; resource: RawResource; expires_at: number | null }>
>('portal', 'authorize_flow.json');
const updated = readFixtureJson<Message<RawResource>>('portal', 'resource_updated.json');
const descriptions = readFixtureJson<RawResource[]>('portal', 'resource_descriptions.cidr_dns_internet.json');

const WALL_CLOCK_AT_ZERO = (authorize.payload.expires_at! - 3600) * 1000;

function gateway(): GatewayState {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init({ ipv4: ip(init.payload.interface.ipv4), ipv6: ip(init.payload.interface.ipv6) }, undefined, 0);
  return state;
}

test('filter fixtures decode with the default port range', () => {
  assert.deepEqual(filter(readFixtureJson<RawFilter>('portal', 'filter.tcp.json')), { protocol: 'tcp', portRangeStart: 10, portRangeEnd: 20 });
  assert.deepEqual(filter(readFixtureJson<RawFilter>('portal', 'filter.udp_empty.json')), { protocol: 'udp', portRangeStart: 0, portRangeEnd: 65535 });
  assert.deepEqual(filter(readFixtureJson<RawFilter>('portal', 'filter.icmp.json')), { protocol: 'icmp' });
});

test('authorize_flow grants the client its resource until expires_at', () => {
  const state = gateway();
  const { client, expires_at: expiresAt } = authorize.payload;
  const expiry = expiresAtToMonotonic(expiresAt, 0, WALL_CLOCK_AT_ZERO);
  assert.equal(expiry, 3600_000);
  const info = { id: client.id, ipv4: ip(client.ipv4), ipv6: ip(client.ipv6) };
  assert.deepEqual(state.authorizeFlow(info, resource(authorize.payload.resource), expiry, 0), { ok: true });
  assert.equal(state.handleTunnelPacket(client.id, udp(client.ipv4, 5000, '172.20.1.2', 443), 1000).action, TunnelAction.ToTun);
  assert.equal(state.handleTunnelPacket(client.id, udp(client.ipv6, 5000, '2001:db8::1', 443), 1000).action, TunnelAction.ReplyToClient);
  state.handleTimeout(3599_000);
  assert.equal(state.hasClient(client.id), true);
  state.handleTimeout(3600_000);
  assert.equal(state.hasClient(client.id), false);
});

test('the resource list fixture (cidr, dns, internet with unknown fields) is accepted', () => {
  const state = gateway();
  const client = { id: authorize.payload.client.id, ipv4: ip('100.64.0.20'), ipv6: ip('fd00:2021:1111::20') };
  for (const raw of descriptions) assert.deepEqual(state.authorizeFlow(client, resource(raw), undefined, 0), { ok: true });
  assert.equal(state.handleTunnelPacket(client.id, tcp('100.64.0.20', 1, '198.51.100.1', 22), 0).action, TunnelAction.ToTun);
});

test('resource_updated replaces the filters of a held resource', () => {
  const state = gateway();
  const client = { id: authorize.payload.client.id, ipv4: ip('100.64.0.20'), ipv6: ip('fd00:2021:1111::20') };
  const raw = updated.payload;
  state.authorizeFlow(client, { type: 'dns', id: raw.id, address: raw.address!, filters: [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }] }, undefined, 0);
  state.handleTunnelPacket(client.id, assignedIps(raw.id, 'a.httpbin', ['100.96.0.1']), 0);
  state.handleDnsResolution('a.httpbin', [ip('192.0.2.10')], 0);
  assert.ok(state.pollClientPacket());
  assert.equal(state.handleTunnelPacket(client.id, tcp('100.64.0.20', 1, '100.96.0.1', 443), 0).action, TunnelAction.ReplyToClient);
  state.resourceUpdated(resource(raw));
  assert.equal(state.handleTunnelPacket(client.id, tcp('100.64.0.20', 1, '100.96.0.1', 443), 0).action, TunnelAction.ToTun);
  assert.equal(state.handleTunnelPacket(client.id, udp('100.64.0.20', 1, '100.96.0.1', 53), 0).action, TunnelAction.ReplyToClient);
  state.resourceUpdated({ type: 'cidr', id: raw.id, address: '10.0.0.0/8', filters: [] });
  assert.equal(state.handleTunnelPacket(client.id, tcp('100.64.0.20', 1, '100.96.0.1', 443), 0).action, TunnelAction.ToTun, 'a type change is ignored');
});
