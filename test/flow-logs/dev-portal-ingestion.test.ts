// The development portal's /ingestion/flow_logs (tools/dev-portal/flow-log-ingestion.ts): token checks,
// the FlowLogIngest schema, upserts by flow identity, the admin view; and the gateway's uploader against it,
// through a portal that answers 503 then 200 (every report stored exactly once).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reportFileName, serializeReport } from '../../src/flow-logs/index.ts';
import { FlowLogUploader } from '../../src/runtime/flow-log-uploader.ts';
import { flowLogIngestion, flowLogRecordSchema } from '../../tools/dev-portal/flow-log-ingestion.ts';
import type { FlowLogRow } from '../../tools/dev-portal/flow-log-ingestion.ts';
import { mintIngestToken } from '../../tools/dev-portal/ingest-token.ts';
import { startDevPortal } from '../../tools/dev-portal/server.ts';
import type { DevPortal } from '../../tools/dev-portal/server.ts';
import { fixturePath } from '../support/env.ts';
import { silentLogger } from './support.ts';

const KEY = new Uint8Array(32).fill(7);
const AUTHZ = '5e0a6c1e-0000-4000-8000-0000000000aa';
const route = flowLogIngestion();
let portal: DevPortal;
const roots: string[] = [];

before(async () => {
  portal = await startDevPortal({ tokens: ['t'], ingestSigningKey: KEY, routes: [route] });
});
after(async () => {
  await portal.close();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function token(overrides: { uploads_enabled?: boolean; policy_authorization_id?: string; expiresAt?: number } = {}): string {
  const nowS = Math.floor(Date.now() / 1000);
  return mintIngestToken(
    KEY,
    'acc00000-0000-4000-8000-000000000000',
    {
      role: 'responder',
      initiator_device_id: 'client-device',
      responder_device_id: 'gateway-device',
      policy_authorization_id: overrides.policy_authorization_id ?? AUTHZ,
      policy_id: 'policy-1',
      uploads_enabled: overrides.uploads_enabled ?? true,
      resource_id: 'resource-1',
      resource_name: 'corp',
      initiator_actor_id: 'actor-1',
      initiator_actor_name: 'Ada',
      authorized_at: '2026-07-06T12:00:00.000000Z',
      authorization_expires_at: '2026-07-13T12:00:00.000000Z',
    },
    nowS,
    overrides.expiresAt ?? nowS + 3600,
  );
}

function open(port: number): Record<string, unknown> {
  return { protocol: 'udp', inner_src_ip: '100.64.0.10', inner_src_port: port, inner_dst_ip: '10.0.0.5', inner_dst_port: 53, flow_start: '2026-07-06T12:00:01Z' };
}

function close(port: number): Record<string, unknown> {
  return {
    ...open(port),
    outers: [{ src_ip: '192.0.2.10', src_port: 40000, dst_ip: '198.51.100.1', dst_port: 52625, path_activated_at: '2026-07-06T12:00:01Z' }],
    flow_end: '2026-07-06T12:02:01Z',
    last_packet: '2026-07-06T12:00:02Z',
    rx_packets: 1,
    tx_packets: 2,
    rx_bytes: 30,
    tx_bytes: 40,
  };
}

async function post(body: unknown, bearer: string | null = token()): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${portal.url}/ingestion/flow_logs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer === null ? {} : { authorization: `Bearer ${bearer}` }) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function stored(): Promise<FlowLogRow[]> {
  return ((await (await fetch(`${portal.url}/admin/flow_logs`)).json()) as { flow_logs: FlowLogRow[] }).flow_logs;
}

describe('dev portal: /ingestion/flow_logs', () => {
  test('the fixture body is accepted; rows carry the token attribution; the admin API lists them', async () => {
    await fetch(`${portal.url}/admin/flow_logs`, { method: 'DELETE' });
    const fixture = JSON.parse(readFileSync(fixturePath('portal-1.6', 'flow_logs_ingest_request.json'), 'utf8')) as { body: unknown };
    assert.equal((await post(fixture.body)).status, 200);
    const rows = await stored();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.inner_src_ip, '10.0.0.1');
    assert.equal(rows[0]!.policy_authorization_id, AUTHZ);
    assert.equal(rows[0]!.role, 'responder');
    assert.equal(rows[0]!.resource_name, 'corp');
  });

  test('token: missing, forged or expired -> 401; uploads_enabled false -> 401', async () => {
    const body = { flow_logs: [open(1)] };
    assert.equal((await post(body, null)).status, 401);
    assert.equal((await post(body, `${token().slice(0, -2)}xx`)).status, 401);
    assert.equal((await post(body, token({ expiresAt: 1 }))).status, 401);
    assert.equal((await post(body, token({ uploads_enabled: false }))).status, 401);
  });

  test('shape: not JSON or no flow_logs array -> 400; a record of another authorization -> 422, nothing stored', async () => {
    await fetch(`${portal.url}/admin/flow_logs`, { method: 'DELETE' });
    assert.equal((await post('nope')).status, 400);
    assert.equal((await post({ logs: [] })).status, 400);
    assert.equal((await post({ flow_logs: [open(1), { ...open(2), policy_authorization_id: '5e0a6c1e-0000-4000-8000-0000000000bb' }] })).status, 422);
    assert.equal((await stored()).length, 0);
  });

  test('schema: invalid records are listed by index (422) while the valid ones are stored', async () => {
    await fetch(`${portal.url}/admin/flow_logs`, { method: 'DELETE' });
    const partialClose = { ...open(3), flow_end: '2026-07-06T12:02:01Z' };
    const answer = await post({ flow_logs: [open(1), { ...open(2), protocol: 'icmp' }, partialClose, { ...open(4), inner_src_port: 70000 }, { ...open(5), extra: 1 }] });
    assert.equal(answer.status, 422);
    assert.deepEqual(Object.keys((answer.body['error'] as { validation_errors: object }).validation_errors), ['1', '2', '3', '4']);
    assert.deepEqual((await stored()).map((r) => r.inner_src_port), [1]);
    assert.equal(flowLogRecordSchema.safeParse(close(1)).success, true);
    assert.equal(flowLogRecordSchema.safeParse({ ...close(1), outers: [] }).success, false, 'a close needs its outers');
    assert.equal(flowLogRecordSchema.safeParse({ ...close(1), outers: [{ dst_ip: 'x', dst_port: 1, path_activated_at: '2026-07-06T12:00:01Z', src_ip: 'y' }] }).success, false);
  });

  test('upsert by flow identity: a close completes its open once; replays change nothing', async () => {
    await fetch(`${portal.url}/admin/flow_logs`, { method: 'DELETE' });
    assert.equal((await post({ flow_logs: [open(1)] })).status, 200);
    assert.equal((await post({ flow_logs: [close(1)] })).status, 200);
    assert.equal((await post({ flow_logs: [open(1), close(1)] })).status, 200);
    const rows = await stored();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.tx_bytes, 40);
    assert.equal(rows[0]!.replays, 2);
    assert.equal(route.store.stats.completed, 1);
  });
});

describe('the uploader against the dev portal', () => {
  test('a portal answering 503 then 200 gets every report exactly once, and the spool ends empty', async () => {
    await fetch(`${portal.url}/admin/flow_logs`, { method: 'DELETE' });
    const root = join(mkdtempSync(join(tmpdir(), 'fz-devportal-upload-')), 'flow_logs');
    roots.push(root);
    const dir = join(root, 'responder', AUTHZ);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'token'), token());
    for (const payload of [open(1), close(1), open(2), close(3)]) {
      writeFileSync(join(dir, reportFileName(payload, payload['flow_end'] === undefined ? 'start' : 'end')!), serializeReport(payload));
    }
    await fetch(`${portal.url}/admin/flow_logs/fail`, { method: 'POST', body: JSON.stringify({ status: 503, count: 2 }) });
    const uploader = new FlowLogUploader({ root, logger: silentLogger(), backoffInitialMs: 20, backoffMaxMs: 50, maxRetryMs: 2_000, catchupMs: 10 });
    uploader.configure({ apiUrl: portal.url, uploadIntervalSecs: 60, uploadBatchSize: 2 });
    for (let pass = 0; pass < 5 && readdirSync(dir).some((n) => n.endsWith('.json')); pass++) await uploader.pass();
    assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.json')), []);
    const rows = await stored();
    assert.deepEqual(rows.map((r) => r.inner_src_port).sort(), [1, 2, 3]);
    assert.ok(rows.every((r) => r.replays === 0), 'each report stored once');
    assert.equal(route.store.stats.requests['503'], 2);
    assert.equal(uploader.stats.retries, 2);
  });
});
