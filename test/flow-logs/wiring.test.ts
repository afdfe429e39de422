// The flow tracker in the running event loop: packets both ways through the real policy core and snownet
// (simulated network) become reports attributed to the authorization's ingest token, with the outer path the
// datagrams took; `init` turns tracking on and off and hands the upload settings on; tokens reach the spool.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTcpPacket, makeUdpPacket } from '../../src/ip/index.ts';
import { FLOW_IDLE_TIMEOUT_MS, recordPayload } from '../../src/flow-logs/index.ts';
import type { FlowRecord, IngestToken } from '../../src/flow-logs/index.ts';
import { FlowLogs } from '../../src/runtime/flow-logs.ts';
import type { FlowLogsInit } from '../../src/runtime/flow-logs.ts';
import { CLIENT_ID, GATEWAY_TUN, message, resource, RESOURCE_ID, runUntil, setUp, src } from '../runtime/loop-harness.ts';
import { responderToken, sendTx, silentLogger, udp } from './support.ts';

const UNIX_AT_ZERO = Date.UTC(2026, 6, 6, 12, 0, 0);
const UPLOADS: FlowLogsInit = { apiUrl: 'https://flow-api.example/', uploadIntervalSecs: 60, uploadBatchSize: 500 };

function harness(forced = false) {
  const records: FlowRecord[] = [];
  const tokens: IngestToken[] = [];
  const settings: (FlowLogsInit | undefined)[] = [];
  const flowLogs = new FlowLogs({
    forced,
    now: 0,
    unixMs: UNIX_AT_ZERO,
    writer: { writeRecord: (r) => void records.push(r), writeToken: (t) => void tokens.push(t) },
    uploads: { configure: (s) => void settings.push(s) },
    logger: silentLogger(),
    trackerLogger: silentLogger(),
  });
  const env = setUp([], { flowLogs });
  return { env, flowLogs, records, tokens, settings };
}

function initWith(env: ReturnType<typeof setUp>, flowLogs: FlowLogsInit | undefined): void {
  const init = message('init', { interface: GATEWAY_TUN, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true } });
  env.gateway.loop.handlePortalMessage({ ...init, flowLogs } as unknown as typeof init);
}

/** Sends `packet` from the client until the gateway wrote one more packet to its TUN device. */
function clientSends(env: ReturnType<typeof setUp>, packet: Uint8Array): void {
  const before = env.gateway.tunWrites.length;
  env.client.send(packet, env.net.now);
  assert.ok(runUntil(env, () => env.gateway.tunWrites.length > before), 'the packet reached the TUN device');
}

function resourceReplies(env: ReturnType<typeof setUp>, packet: Uint8Array): void {
  const before = env.client.received.length;
  env.gateway.tunPacket(packet);
  assert.ok(runUntil(env, () => env.client.received.length > before), 'the reply reached the client');
}

function connect(env: ReturnType<typeof setUp>): void {
  assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
}

describe('flow logs in the event loop', () => {
  test('a TCP exchange both ways is one flow: started, then completed with its counters, outer path and attribution', () => {
    const { env, flowLogs, records, settings } = harness();
    initWith(env, UPLOADS);
    assert.deepEqual(settings.at(-1), UPLOADS);
    assert.equal(flowLogs.enabled, true);
    flowLogs.authorize(CLIENT_ID, RESOURCE_ID, responderToken());
    connect(env);

    clientSends(env, makeTcpPacket(src, resource, 40000, 80, { flags: 0x02 }, new Uint8Array(0)));
    resourceReplies(env, makeTcpPacket(resource, src, 80, 40000, { flags: 0x12 }, new Uint8Array(0)));
    clientSends(env, makeTcpPacket(src, resource, 40000, 80, { flags: 0x18 }, new Uint8Array(100)));
    resourceReplies(env, makeTcpPacket(resource, src, 80, 40000, { flags: 0x18 }, new Uint8Array(1000)));
    clientSends(env, makeTcpPacket(src, resource, 40000, 80, { flags: 0x11 }, new Uint8Array(0)));
    resourceReplies(env, makeTcpPacket(resource, src, 80, 40000, { flags: 0x11 }, new Uint8Array(0)));
    assert.equal(records.length, 1, 'started');
    env.net.runUntil(env.net.now + 5_000);

    assert.equal(records.length, 2, 'completed after both FINs');
    const [started, completed] = records.map(recordPayload);
    assert.equal(started!['protocol'], 'tcp');
    assert.equal(completed!['inner_src_ip'], '100.93.74.51');
    assert.equal(completed!['inner_src_port'], 40000);
    assert.equal(completed!['inner_dst_ip'], '10.0.0.5');
    assert.equal(completed!['inner_dst_port'], 80);
    assert.equal(completed!['tx_packets'], 3);
    assert.equal(completed!['rx_packets'], 3);
    assert.equal(completed!['tx_bytes'], 100);
    assert.equal(completed!['rx_bytes'], 1000);
    const outers = completed!['outers'] as Record<string, unknown>[];
    assert.equal(outers.length, 1);
    // The outer path is the datagrams' own: from the client (directly or through the relay) to the gateway.
    assert.equal(outers[0]!['dst_ip'], '203.0.113.2');
    assert.ok(['198.51.100.2', '192.0.2.100'].includes(outers[0]!['src_ip'] as string), String(outers[0]!['src_ip']));
    assert.equal(records[1]!.token.claims.role, 'responder');
    assert.equal(flowLogs.stats.reports, 2);
  });

  test('UDP both ways closes after the idle timeout through the loop timer', () => {
    const { env, flowLogs, records } = harness();
    initWith(env, UPLOADS);
    flowLogs.authorize(CLIENT_ID, RESOURCE_ID, responderToken());
    connect(env);
    clientSends(env, makeUdpPacket(src, resource, 5000, 53, new Uint8Array(30)));
    resourceReplies(env, makeUdpPacket(resource, src, 53, 5000, new Uint8Array(70)));
    assert.equal(records.length, 1);
    env.net.runUntil(env.net.now + FLOW_IDLE_TIMEOUT_MS + 2_000);
    const completed = records.map(recordPayload).find((p) => p['flow_end'] !== undefined);
    assert.ok(completed, 'the flow completed on the idle timeout');
    assert.equal(completed['tx_bytes'], 30);
    assert.equal(completed['rx_bytes'], 70);
  });

  test('without uploads in init and without --flow-logs nothing is tracked, and the policy core has no observer', () => {
    const { env, flowLogs, records, settings } = harness();
    initWith(env, { ...UPLOADS, uploadIntervalSecs: 0 });
    assert.deepEqual(settings.at(-1), undefined);
    assert.equal(flowLogs.enabled, false);
    flowLogs.authorize(CLIENT_ID, RESOURCE_ID, responderToken());
    connect(env);
    clientSends(env, makeUdpPacket(src, resource, 5000, 53, new Uint8Array(30)));
    flowLogs.closeAll(env.net.now);
    assert.equal(records.length, 0);
  });

  test('--flow-logs tracks without the portal asking; an older portal (no flow_logs in init) leaves uploads off', () => {
    const { env, flowLogs, records, settings } = harness(true);
    initWith(env, undefined);
    assert.deepEqual(settings.at(-1), undefined);
    assert.equal(flowLogs.enabled, true);
    flowLogs.authorize(CLIENT_ID, RESOURCE_ID, responderToken({ uploads_enabled: false }));
    connect(env);
    clientSends(env, makeUdpPacket(src, resource, 5000, 53, new Uint8Array(30)));
    assert.equal(records.length, 1);
  });

  test('a packet of an authorization without a token is not tracked', () => {
    const { env, records } = harness(true);
    connect(env);
    clientSends(env, makeUdpPacket(src, resource, 5000, 53, new Uint8Array(30)));
    assert.equal(records.length, 0);
  });

  test("create_authorization's ingest token reaches the tracker and the spool; reject_access revokes it", () => {
    const { env, flowLogs, records, tokens } = harness(true);
    const token = responderToken();
    const authorize = message('authorize_flow', {
      ref: 'flow-ref-2',
      resource: { id: RESOURCE_ID, name: 'corp', type: 'cidr', address: '10.0.0.0/24', filters: [] },
      client: { id: CLIENT_ID, public_key: Buffer.alloc(32, 1).toString('base64'), preshared_key: Buffer.alloc(32).toString('base64'), ipv4: '100.93.74.51', ipv6: 'fd00:2021:1111::f:853b' },
      client_ice_credentials: { username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' },
      gateway_ice_credentials: { username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' },
      expires_at: null,
    });
    // The portal module hands the parsed token over as `ingestToken` (1.6.0 `create_authorization`).
    env.gateway.loop.handlePortalMessage({ ...authorize, ingestToken: token } as unknown as typeof authorize);
    assert.deepEqual(tokens, [token]);
    sendTx(flowLogs.tracker, udp('100.93.74.51', 5000, '10.0.0.5', 53), env.net.now, { client: CLIENT_ID, resource: RESOURCE_ID });
    assert.equal(flowLogs.tracker.flowCountOf(CLIENT_ID), 1, 'the token made the authorization trackable');
    env.gateway.loop.handlePortalMessage(message('reject_access', { client_id: CLIENT_ID, resource_id: RESOURCE_ID, flow_id: RESOURCE_ID }));
    sendTx(flowLogs.tracker, udp('100.93.74.51', 5001, '10.0.0.5', 53), env.net.now, { client: CLIENT_ID, resource: RESOURCE_ID });
    assert.equal(flowLogs.tracker.flowCountOf(CLIENT_ID), 1, 'no new flow after reject_access');
    flowLogs.flush();
    assert.equal(records.length, 1);
  });

  test('shutdown reports every open flow completed', () => {
    const { env, flowLogs, records } = harness();
    initWith(env, UPLOADS);
    flowLogs.authorize(CLIENT_ID, RESOURCE_ID, responderToken());
    connect(env);
    clientSends(env, makeUdpPacket(src, resource, 5000, 53, new Uint8Array(30)));
    env.gateway.loop.shutdown();
    assert.equal(records.length, 2);
    assert.equal(recordPayload(records[1]!)['tx_packets'], 1);
  });
});
