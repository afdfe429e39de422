// The policy core's flow attribution: with a flow observer it names the resource (and a DNS resource's domain)
// of every packet it lets through, and loads the tuple the tracker keys flows by: client -> resource after NAT,
// resource -> client before NAT is undone, so both directions of a DNS-resource flow meet in one flow.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import { FlowTracker, recordPayload } from '../../src/flow-logs/index.ts';
import { assignedIps, ip, recordingLogger, tcp, udp } from '../gateway/support.ts';
import { CLIENT_OUTER, GATEWAY_OUTER, drainRecords, responderToken, silentLogger } from './support.ts';

const CLIENT = { id: 'aaaaaaaa-0000-4000-8000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
const CIDR_WEB = { type: 'cidr' as const, id: '11111111-0000-4000-8000-000000000001', address: '10.0.0.0/24', filters: [{ protocol: 'tcp' as const, portRangeStart: 80, portRangeEnd: 80 }] };
const CIDR_DNS = { type: 'cidr' as const, id: '22222222-0000-4000-8000-000000000002', address: '10.0.0.0/24', filters: [{ protocol: 'udp' as const, portRangeStart: 53, portRangeEnd: 53 }] };
const DNS = { type: 'dns' as const, id: 'dddddddd-0000-4000-8000-000000000000', address: '**.corp', filters: [] };
const INTERNET = { type: 'internet' as const, id: 'eeeeeeee-0000-4000-8000-000000000000' };

function gateway(): { state: GatewayState; tracker: FlowTracker } {
  const state = new GatewayState({ logger: recordingLogger() });
  state.init({ ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') }, undefined, 0);
  const tracker = new FlowTracker({ now: 0, unixMs: Date.UTC(2026, 0, 1), logger: silentLogger() });
  tracker.setEnabled(true);
  state.observeFlows(tracker.packet);
  return { state, tracker };
}

describe('flow attribution in the policy core', () => {
  test('two resources on one network: each packet is attributed to the resource whose filter lets it through', () => {
    const { state } = gateway();
    state.authorizeFlow(CLIENT, CIDR_WEB, undefined, 0);
    state.authorizeFlow(CLIENT, CIDR_DNS, undefined, 0);
    const web = state.handleTunnelPacket(CLIENT.id, tcp('100.64.0.10', 40000, '10.0.0.5', 80), 0);
    assert.equal(web.action, TunnelAction.ToTun);
    assert.equal(web.resourceId, CIDR_WEB.id);
    const dns = state.handleTunnelPacket(CLIENT.id, udp('100.64.0.10', 5000, '10.0.0.5', 53), 0);
    assert.equal(dns.resourceId, CIDR_DNS.id);
    assert.equal(dns.domain, undefined);
    const back = state.handleTunPacket(udp('10.0.0.5', 53, '100.64.0.10', 5000), 0);
    assert.equal(back.action, TunAction.ToClient);
    assert.equal(back.resourceId, CIDR_DNS.id);
  });

  test('the Internet resource names itself; the DNS forwarder on our tunnel address belongs to no resource', () => {
    const { state } = gateway();
    state.authorizeFlow(CLIENT, INTERNET, undefined, 0);
    assert.equal(state.handleTunnelPacket(CLIENT.id, udp('100.64.0.10', 5000, '198.51.100.7', 443), 0).resourceId, INTERNET.id);
    assert.equal(state.handleTunPacket(udp('198.51.100.7', 443, '100.64.0.10', 5000), 0).resourceId, INTERNET.id);
    const forwarder = state.handleTunnelPacket(CLIENT.id, udp('100.64.0.10', 5000, '100.64.0.2', 53535), 0);
    assert.equal(forwarder.action, TunnelAction.ToTun);
    assert.equal(forwarder.resourceId, '');
  });

  test('a DNS resource: the domain rides the verdict, and both directions of the NATed flow land in one flow keyed by the real address', () => {
    const { state, tracker } = gateway();
    state.authorizeFlow(CLIENT, DNS, undefined, 0);
    tracker.authorize(CLIENT.id, DNS.id, responderToken());
    state.handleTunnelPacket(CLIENT.id, assignedIps(DNS.id, 'app.corp', ['100.96.0.1']), 0);
    state.handleDnsResolution('app.corp', [ip('10.9.0.7')], 0);

    const out = state.handleTunnelPacket(CLIENT.id, udp('100.64.0.10', 5000, '100.96.0.1', 8080, new Uint8Array(10)), 10);
    assert.equal(out.action, TunnelAction.ToTun);
    assert.equal(out.resourceId, DNS.id);
    assert.equal(out.domain, 'app.corp');
    tracker.clientToResource(CLIENT.id, out.resourceId, out.domain, CLIENT_OUTER, GATEWAY_OUTER, 10);

    const back = state.handleTunPacket(udp('10.9.0.7', 8080, '100.64.0.10', 5000, new Uint8Array(20)), 20);
    assert.equal(back.action, TunAction.ToClient);
    assert.equal(back.resourceId, DNS.id);
    tracker.resourceToClient(back.clientId, back.resourceId, 20);

    tracker.closeAll(30);
    const [started, completed] = drainRecords(tracker).map(recordPayload);
    assert.equal(started!['domain'], 'app.corp');
    assert.equal(completed!['inner_dst_ip'], '10.9.0.7', 'the real address, as the reference reports it after NAT');
    assert.equal(completed!['inner_dst_port'], 8080);
    assert.equal(completed!['tx_bytes'], 10);
    assert.equal(completed!['rx_bytes'], 20, 'the reply found the flow');
  });

  test('without an observer no packet is attributed (flow logs off cost nothing)', () => {
    const { state } = gateway();
    state.observeFlows(undefined);
    state.authorizeFlow(CLIENT, CIDR_WEB, undefined, 0);
    const web = state.handleTunnelPacket(CLIENT.id, tcp('100.64.0.10', 40000, '10.0.0.5', 80), 0);
    assert.equal(web.action, TunnelAction.ToTun);
    assert.equal(web.resourceId, '');
    assert.equal(state.handleTunPacket(tcp('10.0.0.5', 80, '100.64.0.10', 40000, 0x12), 0).resourceId, '');
  });
});
