import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import type { ResourceDescription } from '../../src/gateway/index.ts';
import type { Ipv6Addr } from '../../src/ip/index.ts';
import { assignedIps, hex, ip, recomputeChecksums, recordingLogger, vector } from './support.ts';

const CLIENT = { id: '9d4b79f6-1db7-4cb3-a077-712102204d73', ipv4: ip('100.64.0.1'), ipv6: ip('fd00:2021:1111::1') };
const GATEWAY = { ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') };
const FOO: ResourceDescription = { type: 'dns', id: '9d4b79f6-1db7-4cb3-a077-712102204d73', address: 'foo.com', filters: [] };
const OTHER_CIDR: ResourceDescription = { type: 'cidr', id: 'ed29c148-2acf-4ceb-8db5-d796c2671631', address: '192.168.0.0/16', filters: [] };

function gatewayWith(resource: ResourceDescription): GatewayState {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init(GATEWAY, undefined, 0);
  assert.deepEqual(state.authorizeFlow(CLIENT, resource, undefined, 0), { ok: true });
  return state;
}

/** Sends AssignedIps for foo.com and answers the resolution with `resolved`. */
function assignFoo(state: GatewayState, proxies: string[], resolved: string[]): Uint8Array {
  const verdict = state.handleTunnelPacket(CLIENT.id, assignedIps(FOO.id, 'foo.com', proxies), 0);
  assert.equal(verdict.action, TunnelAction.Consumed);
  assert.deepEqual(state.pollEvent(), { type: 'resolve', domain: 'foo.com' });
  state.handleDnsResolution('foo.com', resolved.map(ip), 0);
  const reply = state.pollClientPacket();
  assert.ok(reply);
  assert.equal(reply.clientId, CLIENT.id);
  return reply.packet;
}

function sendFromClient(state: GatewayState, packet: Uint8Array): { action: TunnelAction; hex: string } {
  const verdict = state.handleTunnelPacket(CLIENT.id, packet, 0);
  return { action: verdict.action, hex: hex(verdict.packet) };
}

function readFromTun(state: GatewayState, packet: Uint8Array): { action: TunAction; clientId: string; hex: string } {
  const verdict = state.handleTunPacket(packet, 0);
  return { action: verdict.action, clientId: verdict.clientId, hex: hex(verdict.packet) };
}

describe('gateway-generated ICMP errors match the reference bytes', () => {
  test('a filtered IPv4 packet gets ICMP 3/13 with the original header + 8 bytes', () => {
    const state = gatewayWith(OTHER_CIDR);
    assert.deepEqual(sendFromClient(state, vector('udp_v4_client_to_cidr')), { action: TunnelAction.ReplyToClient, hex: hex(vector('filtered_v4_prohibited')) });
    assert.deepEqual(sendFromClient(state, vector('udp_v4_100B_payload')), {
      action: TunnelAction.ReplyToClient,
      hex: hex(vector('filtered_v4_prohibited_truncated')),
    });
  });

  test('a filtered IPv6 packet gets ICMPv6 1/1 carrying the whole packet', () => {
    const state = gatewayWith(OTHER_CIDR);
    assert.deepEqual(sendFromClient(state, vector('udp_v6_client_to_cidr')), { action: TunnelAction.ReplyToClient, hex: hex(vector('filtered_v6_prohibited')) });
  });

  test('a proxy IP translated to the other family gets network / address unreachable', () => {
    const state = gatewayWith(FOO);
    assignFoo(state, ['100.96.0.1', 'fd00:2021:1111:8000::1'], ['2001:db8::1']);
    assert.deepEqual(sendFromClient(state, vector('udp_v4_client_to_proxy')), {
      action: TunnelAction.ReplyToClient,
      hex: hex(vector('unreachable_v4_network_for_proxy')),
    });
    const other = gatewayWith(FOO);
    assignFoo(other, ['100.96.0.1', 'fd00:2021:1111:8000::1'], ['10.0.0.1']);
    assert.deepEqual(sendFromClient(other, vector('udp_v6_client_to_proxy')), {
      action: TunnelAction.ReplyToClient,
      hex: hex(vector('unreachable_v6_address_for_proxy')),
    });
  });
});

describe('DNS-resource NAT matches the reference bytes', () => {
  function natGateway(): GatewayState {
    const state = gatewayWith(FOO);
    assignFoo(state, ['100.96.0.1', '100.96.0.2', 'fd00:2021:1111:8000::1'], ['10.0.0.1', '2001:db8::1']);
    return state;
  }

  test('UDP out and back, keeping the source port of the first session', () => {
    const state = natGateway();
    assert.deepEqual(sendFromClient(state, vector('udp_v4_client_to_proxy')), { action: TunnelAction.ToTun, hex: hex(vector('nat_out_v4_udp')) });
    assert.deepEqual(readFromTun(state, vector('nat_in_v4_udp_before')), { action: TunAction.ToClient, clientId: CLIENT.id, hex: hex(vector('nat_in_v4_udp_after')) });
  });

  test('a second proxy on the same real IP bumps the source port and translates back', () => {
    const state = natGateway();
    sendFromClient(state, vector('udp_v4_client_to_proxy'));
    assert.deepEqual(sendFromClient(state, vector('udp_v4_client_to_proxy2')), { action: TunnelAction.ToTun, hex: hex(vector('nat_out_v4_udp_port_bumped')) });
    assert.deepEqual(readFromTun(state, vector('nat_in_v4_udp_port_bumped_before')), {
      action: TunAction.ToClient,
      clientId: CLIENT.id,
      hex: hex(vector('nat_in_v4_udp_port_bumped_after')),
    });
  });

  test('ICMP echo keeps its identifier', () => {
    const state = natGateway();
    assert.deepEqual(sendFromClient(state, vector('icmpv4_echo_to_proxy')), { action: TunnelAction.ToTun, hex: hex(vector('nat_out_icmpv4_echo')) });
    assert.deepEqual(readFromTun(state, vector('nat_in_icmpv4_echo_reply_before')), {
      action: TunAction.ToClient,
      clientId: CLIENT.id,
      hex: hex(vector('nat_in_icmpv4_echo_reply_after')),
    });
  });

  test('ICMPv6 echo to a v6 proxy', () => {
    const state = natGateway();
    const toProxy = vector('nat_out_icmpv6_echo');
    toProxy.set((ip('fd00:2021:1111:8000::1') as Ipv6Addr).bytes, 24);
    recomputeChecksums(toProxy);
    assert.deepEqual(sendFromClient(state, toProxy), { action: TunnelAction.ToTun, hex: hex(vector('nat_out_icmpv6_echo')) });
  });

  test('ICMP errors from the network are translated back to the proxy', () => {
    const state = natGateway();
    sendFromClient(state, vector('udp_v4_client_to_proxy'));
    sendFromClient(state, vector('udp_v4_client_to_proxy2'));
    sendFromClient(state, vector('udp_v6_client_to_proxy'));
    assert.deepEqual(readFromTun(state, vector('icmpv4_port_unreachable_from_network')), {
      action: TunAction.ToClient,
      clientId: CLIENT.id,
      hex: hex(vector('icmpv4_port_unreachable_translated')),
    });
    assert.deepEqual(readFromTun(state, vector('icmpv4_time_exceeded_from_network')), {
      action: TunAction.ToClient,
      clientId: CLIENT.id,
      hex: hex(vector('icmpv4_time_exceeded_translated')),
    });
    assert.deepEqual(readFromTun(state, vector('icmpv6_packet_too_big_from_network')), {
      action: TunAction.ToClient,
      clientId: CLIENT.id,
      hex: hex(vector('icmpv6_packet_too_big_translated')),
    });
  });
});

describe('p2p control', () => {
  test('AssignedIps from the reference bytes is resolved and answered with DomainStatus Active', () => {
    const state = gatewayWith(FOO);
    const verdict = state.handleTunnelPacket(CLIENT.id, vector('p2p_assigned_ips'), 0);
    assert.equal(verdict.action, TunnelAction.Consumed);
    assert.deepEqual(state.pollEvent(), { type: 'resolve', domain: 'foo.com' });
    state.handleDnsResolution('foo.com', [ip('10.0.0.1')], 0);
    const reply = state.pollClientPacket();
    assert.equal(hex(reply!.packet), hex(vector('p2p_domain_status_active')));
    assert.equal(state.translationOf(CLIENT.id, ip('100.96.0.4'))?.family, 4);
  });

  test('AssignedIps for a resource the client does not hold is answered Inactive at once', () => {
    const state = gatewayWith(OTHER_CIDR);
    state.handleTunnelPacket(CLIENT.id, vector('p2p_assigned_ips'), 0);
    assert.equal(state.pollEvent(), undefined);
    assert.equal(hex(state.pollClientPacket()!.packet), hex(vector('p2p_domain_status_inactive')));
  });
});
