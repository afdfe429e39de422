/**
 * Flow logs end to end (issue 21): the built gateway, the development portal (uploads every second, its
 * ingestion endpoint answering 503 to the first two uploads), coturn, the test client and the resources in
 * namespaces. HTTP and UDP through the tunnel become reports whose 5-tuples, byte counts and attribution match
 * what the client did; the gateway is restarted in the middle (its open UDP flow is reported completed on the
 * way down and uploaded by the next run from the spool); the portal stores every report exactly once.
 * Needs root, the lab tools and `npm run build`; run with FZ_LAB_TAG set.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { labUp, type Lab } from '../../tools/lab/lab.ts';
import { privilegedSkipReason } from '../support/env.ts';
import { http, udpEcho } from './probes.ts';
import { REPO_ROOT, startGatewayStack, waitFor, type GatewayStack } from './stack.ts';

const skip =
  privilegedSkipReason('ip', 'nft', 'turnserver', 'dnsmasq', 'curl', 'dig') ??
  (existsSync(`${REPO_ROOT}dist/bin/firezone-gateway.js`) ? undefined : 'needs the built gateway (npm run build)') ??
  (existsSync(`${REPO_ROOT}build/Release/firezone_native.node`) ? undefined : 'needs the native addon (npm ci)');

const RESOURCE_NET = '10.78.0.0/24';

type Row = Record<string, unknown>;

describe('flow logs end to end', { skip }, () => {
  let lab: Lab | undefined;
  let stack: GatewayStack | undefined;
  let spool = '';
  before(async () => {
    lab = labUp({ prefix: 'ff' });
    spool = `/tmp/${lab.prefix}-flow_logs`;
    rmSync(spool, { recursive: true, force: true });
    stack = await startGatewayStack(lab, {
      resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }],
      portalArgs: ['--flow-logs-interval', '1'],
      gatewayEnv: { FZ_FLOW_LOGS_DIR: spool, FIREZONE_FLOW_LOGS: 'true' },
    });
  });
  after(async () => {
    await stack?.stop().catch(() => undefined);
    lab?.down();
    rmSync(spool, { recursive: true, force: true });
  });

  test('HTTP and UDP flows are reported with their 5-tuples, bytes and attribution, uploaded once through 503s and a restart', async () => {
    const s = stack!;
    const l = lab!;
    const rows = async (): Promise<Row[]> => (await s.admin('GET', '/admin/flow_logs'))['flow_logs'] as Row[];
    await s.admin('POST', '/admin/flow_logs/fail', { status: 503, count: 2 });
    await s.connectClient('corp', { routes: [RESOURCE_NET] });
    const resource = l.addresses.resources[0]!;

    const page = http(l, `http://${resource}/`);
    assert.equal(page.ok, true, JSON.stringify(page));
    const text = 'flow-logs-e2e-udp-payload';
    const echo = udpEcho(l, resource, text);
    assert.equal(echo.reply, text, JSON.stringify(echo));

    // The TCP flow completes after both FINs; its reports come up within the upload interval.
    const tcpDone = async (): Promise<Row | undefined> => (await rows()).find((r) => r['protocol'] === 'tcp' && r['inner_dst_port'] === 80 && r['flow_end'] !== undefined);
    await waitFor(async () => (await tcpDone()) !== undefined, 30_000, 'the completed HTTP flow at the portal');
    const tcp = (await tcpDone())!;
    assert.equal(tcp['inner_dst_ip'], resource);
    assert.match(String(tcp['inner_src_ip']), /^100\./, 'the client tunnel address');
    assert.equal(tcp['resource_id'], s.resourceIds['corp']);
    assert.equal(tcp['role'], 'responder');
    const body = page.body ?? '';
    const rx = Number(tcp['rx_bytes']);
    const tx = Number(tcp['tx_bytes']);
    // Payload bytes: the response is the body plus its HTTP headers; the request a GET line and a few headers.
    assert.ok(rx >= Buffer.byteLength(body) && rx <= Buffer.byteLength(body) + 1_000, `rx_bytes ${rx} for a ${Buffer.byteLength(body)}-byte body`);
    assert.ok(tx >= 16 && tx <= 1_000, `tx_bytes ${tx} for one GET`);
    assert.ok(Number(tcp['tx_packets']) >= 3 && Number(tcp['rx_packets']) >= 2, 'handshake, request, FINs');
    const outers = tcp['outers'] as Row[];
    assert.equal(outers[0]!['dst_port'], 52625, 'the outer path ends on the gateway socket');

    // The UDP flow is still open (it would close after two idle minutes): a restart reports it completed.
    assert.equal(await s.stopGateway('SIGTERM'), 0);
    s.startGateway();
    await waitFor(() => s.gatewayLog().includes('Joined gateway room on portal'), 30_000, 'the restarted gateway to join');
    const udpDone = async (): Promise<Row | undefined> => (await rows()).find((r) => r['protocol'] === 'udp' && r['inner_dst_port'] === 7 && r['flow_end'] !== undefined);
    await waitFor(async () => (await udpDone()) !== undefined, 30_000, 'the completed UDP flow at the portal (uploaded by the restarted gateway)');
    const udp = (await udpDone())!;
    assert.equal(udp['inner_dst_ip'], resource);
    assert.equal(Number(udp['tx_bytes']), Number(udp['tx_packets']) * text.length, 'UDP payload bytes sent');
    assert.equal(Number(udp['rx_bytes']), Number(udp['rx_packets']) * text.length, 'UDP payload bytes echoed');
    assert.ok(Number(udp['rx_packets']) >= 1);

    const state = await s.admin('GET', '/admin/flow_logs');
    const stats = state['stats'] as { requests: Record<string, number>; replays: number };
    assert.equal(stats.requests['503'], 2, 'the portal answered 503 twice');
    assert.ok((stats.requests['200'] ?? 0) >= 1);
    for (const row of state['flow_logs'] as Row[]) assert.equal(row['replays'], 0, `stored once: ${JSON.stringify(row)}`);
    await waitFor(() => !existsSync(spool) || !JSON.stringify(l.exec(l.ns.gateway, ['find', spool, '-name', '*.json', '!', '-name', 'upload.json'])).includes('.json'), 15_000, 'the spool to empty');
  });
});
