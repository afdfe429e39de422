// The flow-log uploader against an in-process ingest server (HTTPS, HTTP/2 or HTTP/1.1): batches, ordering,
// deletion only after 2xx, 413 splits, 429 Retry-After, 408/5xx backoff, redirects, upload.json, prune, a
// restart mid-batch and a read-only spool.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reportFileName, serializeReport } from '../../src/flow-logs/index.ts';
import { FlowLogUploader } from '../../src/runtime/flow-log-uploader.ts';
import type { FlowLogUploaderOptions } from '../../src/runtime/flow-log-uploader.ts';
import { classifyStatus, UploadAction } from '../../src/runtime/flow-log-uploader.ts';
import { ingestEndpoint, redirectUrl } from '../../src/runtime/ingest-client.ts';
import { IngestServer, testCertificate } from './ingest-server.ts';
import type { Script } from './ingest-server.ts';
import { responderToken, silentLogger } from './support.ts';
import { mountTmpfs, remount } from './tmpfs.ts';

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function spoolRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'fz-upload-'));
  roots.push(root);
  return join(root, 'flow_logs');
}

const FAR_FUTURE = 4_000_000_000;
const AUTHZ_A = '0b5d4b1c-1111-4a4a-8a8a-000000000001';
const AUTHZ_B = '0b5d4b1c-2222-4a4a-8a8a-000000000002';

function authorizationDir(root: string, authorizationId: string, exp = FAR_FUTURE): { dir: string; token: string } {
  const token = responderToken({ policy_authorization_id: authorizationId, exp }).raw;
  const dir = join(root, 'responder', authorizationId);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  return { dir, token };
}

function payload(port: number, startSecond: number, end = false): Record<string, unknown> {
  const start = new Date(Date.UTC(2026, 6, 6, 12, 0, startSecond)).toISOString().replace('.000Z', 'Z');
  const p: Record<string, unknown> = {
    protocol: 'udp',
    inner_src_ip: '100.64.0.10',
    inner_src_port: port,
    inner_dst_ip: '10.0.0.5',
    inner_dst_port: 53,
    outers: [{ src_ip: '192.0.2.10', src_port: 40000, dst_ip: '198.51.100.1', dst_port: 52625, path_activated_at: start }],
    flow_start: start,
  };
  if (end) Object.assign(p, { flow_end: start, last_packet: start, rx_packets: 1, tx_packets: 1, rx_bytes: 10, tx_bytes: 20 });
  return p;
}

function writeReport(dir: string, report: Record<string, unknown>): string {
  const name = reportFileName(report, report['flow_end'] === undefined ? 'start' : 'end')!;
  writeFileSync(join(dir, name), serializeReport(report), { mode: 0o600 });
  return name;
}

function reports(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
}

async function withServer(script: Script, mode: 'h2' | 'h1' | 'cleartext', body: (server: IngestServer) => Promise<void>): Promise<void> {
  const server = await new IngestServer(script, mode).listen();
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

function uploader(root: string, server: IngestServer, options: Partial<FlowLogUploaderOptions> = {}): FlowLogUploader {
  const u = new FlowLogUploader({
    root,
    logger: silentLogger(),
    client: { ca: testCertificate().cert, redirectPorts: [443, server.port], requestTimeoutMs: 2_000 },
    catchupMs: 10,
    disabledPollMs: 50,
    backoffInitialMs: 20,
    backoffMaxMs: 50,
    maxRetryMs: 200,
    ...options,
  });
  return u;
}

function configure(u: FlowLogUploader, server: IngestServer, batchSize = 1000): void {
  u.configure({ apiUrl: `${server.origin}/`, uploadIntervalSecs: 60, uploadBatchSize: batchSize });
}

const OK: Script = () => ({ status: 200 });

describe('uploader: requests', () => {
  test('HTTP/2: one POST per authorization to <api_url>/ingestion/flow_logs with its Bearer token and JSON; 2xx deletes the files', async () => {
    await withServer(OK, 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      const b = authorizationDir(root, AUTHZ_B);
      writeReport(a.dir, payload(1, 1));
      writeReport(a.dir, payload(2, 2, true));
      writeReport(b.dir, payload(3, 3));
      const u = uploader(root, server);
      configure(u, server);
      assert.equal(await u.pass(), 60_000, 'no backlog: the next pass after the interval');
      assert.equal(server.requests.length, 2);
      for (const request of server.requests) {
        assert.equal(request.method, 'POST');
        assert.equal(request.path, '/ingestion/flow_logs');
        assert.equal(request.httpVersion, '2.0');
        assert.equal(request.contentType, 'application/json');
      }
      const byToken = new Map(server.requests.map((r) => [r.authorization, r.flows]));
      assert.deepEqual(byToken.get(`Bearer ${a.token}`), [payload(1, 1), payload(2, 2, true)]);
      assert.deepEqual(byToken.get(`Bearer ${b.token}`), [payload(3, 3)]);
      assert.deepEqual(reports(a.dir), []);
      assert.deepEqual(reports(b.dir), []);
      assert.ok(existsSync(join(a.dir, 'token')), 'the token stays');
    });
  });

  test('HTTP/1.1 fallback when the server does not offer h2', async () => {
    await withServer(OK, 'h1', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.equal(server.requests.length, 1);
      assert.equal(server.requests[0]!.httpVersion, '1.1');
      assert.deepEqual(reports(a.dir), []);
    });
  });

  test('oldest first, batch_size per pass; a backlog brings the next pass after 1 s (catch-up)', async () => {
    await withServer(OK, 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      for (const second of [5, 3, 4, 1, 2]) writeReport(a.dir, payload(second, second));
      const u = uploader(root, server);
      configure(u, server, 2);
      assert.equal(await u.pass(), 10, 'catch-up');
      assert.deepEqual(server.requests[0]!.flows.map((f) => f['inner_src_port']), [1, 2]);
      assert.equal(await u.pass(), 10);
      assert.deepEqual(server.requests[1]!.flows.map((f) => f['inner_src_port']), [3, 4]);
      assert.equal(await u.pass(), 60_000);
      assert.deepEqual(server.requests[2]!.flows.map((f) => f['inner_src_port']), [5]);
      assert.deepEqual(reports(a.dir), []);
    });
  });

  test('a start whose end is on disk is not sent; the end takes both files; a corrupt report is deleted unsent', async () => {
    await withServer(OK, 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      writeReport(a.dir, payload(1, 1, true));
      writeFileSync(join(a.dir, '0000000009-ffffffffffffffff.end.json'), '{"checksum":1,"payload":{}}');
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.equal(server.requests.length, 1);
      assert.deepEqual(server.requests[0]!.flows, [payload(1, 1, true)]);
      assert.deepEqual(reports(a.dir), []);
      assert.equal(u.stats.corruptDeleted, 1);
    });
  });

  test('cleartext http: API URLs (the development portal) use HTTP/1.1', async () => {
    await withServer(OK, 'cleartext', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.equal(server.requests[0]!.httpVersion, '1.1');
      assert.deepEqual(reports(a.dir), []);
    });
  });
});

describe('uploader: answers', () => {
  test('413 splits the batch in halves until each part fits; every flow is stored exactly once', async () => {
    await withServer((r) => ({ status: r.flows.length > 2 ? 413 : 200 }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      for (let i = 1; i <= 7; i++) writeReport(a.dir, payload(i, i));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.deepEqual(server.stored.map((f) => f['inner_src_port']), [1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(reports(a.dir), []);
      assert.ok(u.stats.splits >= 3);
    });
  });

  test('429 waits Retry-After, then the same batch is sent again', async () => {
    await withServer((_, i) => (i === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      const started = performance.now();
      await u.pass();
      assert.ok(performance.now() - started >= 950, 'waited the second Retry-After asked for');
      assert.equal(server.requests.length, 2);
      assert.deepEqual(server.requests[1]!.flows, server.requests[0]!.flows);
      assert.equal(server.stored.length, 1);
      assert.deepEqual(reports(a.dir), []);
    });
  });

  test('503 then 200: backed off and sent again within the pass, stored once; 408/5xx until the budget is spent keep the batch', async () => {
    await withServer((_, i) => ({ status: i < 2 ? 503 : 200 }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.equal(server.requests.length, 3);
      assert.equal(server.stored.length, 1);
      assert.equal(u.stats.retries, 2);
      assert.deepEqual(reports(a.dir), []);
    });
    await withServer((_, i) => ({ status: i % 2 === 0 ? 408 : 500 }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      const name = writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.ok(server.requests.length >= 3, `retried (${server.requests.length} requests)`);
      assert.equal(u.stats.deferred, 1);
      assert.deepEqual(reports(a.dir), [name], 'kept for the next pass');
    });
  });

  test('other 4xx (and 303) keep the batch for the next pass without retrying it now', async () => {
    for (const status of [400, 401, 403, 404, 422, 303]) {
      await withServer(() => ({ status, headers: { location: '/elsewhere' } }), 'h2', async (server) => {
        const root = spoolRoot();
        const a = authorizationDir(root, AUTHZ_A);
        const name = writeReport(a.dir, payload(1, 1));
        const u = uploader(root, server);
        configure(u, server);
        assert.equal(await u.pass(), 60_000);
        assert.equal(server.requests.length, 1, `${status}: one request`);
        assert.deepEqual(reports(a.dir), [name]);
      });
    }
  });

  test('307/308 are followed to another HTTPS endpoint; a redirect to http is refused and the batch kept', async () => {
    await withServer((r) => (r.path === '/ingestion/flow_logs' ? { status: 307, headers: { location: '/v2/flow_logs#x' } } : { status: 200 }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.deepEqual(server.requests.map((r) => r.path), ['/ingestion/flow_logs', '/v2/flow_logs']);
      assert.deepEqual(reports(a.dir), []);
    });
    await withServer(() => ({ status: 308, headers: { location: 'http://127.0.0.1/ingestion/flow_logs' } }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      const name = writeReport(a.dir, payload(1, 1));
      const u = uploader(root, server);
      configure(u, server);
      await u.pass();
      assert.equal(server.requests.length, 1);
      assert.deepEqual(reports(a.dir), [name]);
    });
  });

  test('status classes and redirect rules as the reference decides them', () => {
    assert.equal(classifyStatus(200), UploadAction.Delete);
    assert.equal(classifyStatus(204), UploadAction.Delete);
    assert.equal(classifyStatus(413), UploadAction.Partition);
    assert.equal(classifyStatus(429), UploadAction.RateLimited);
    assert.equal(classifyStatus(408), UploadAction.Retry);
    assert.equal(classifyStatus(502), UploadAction.Retry);
    for (const s of [301, 302, 307, 308]) assert.equal(classifyStatus(s), UploadAction.Redirect);
    for (const s of [303, 304, 400, 401, 404, 422]) assert.equal(classifyStatus(s), UploadAction.Defer);
    assert.equal(ingestEndpoint('https://flow-api.firezone.dev/').href, 'https://flow-api.firezone.dev/ingestion/flow_logs');
    assert.equal(ingestEndpoint('https://flow-api.firezone.dev/base/').href, 'https://flow-api.firezone.dev/ingestion/flow_logs');
    assert.throws(() => ingestEndpoint('not a url'));
    const current = new URL('https://flow-api.firezone.dev/ingestion/flow_logs');
    assert.equal(redirectUrl(current, 'https://rest-api.firezone.dev/ingestion/flow_logs').href, 'https://rest-api.firezone.dev/ingestion/flow_logs');
    assert.equal(redirectUrl(current, '/v2/flow_logs').href, 'https://flow-api.firezone.dev/v2/flow_logs');
    assert.throws(() => redirectUrl(current, undefined));
    assert.throws(() => redirectUrl(current, 'http://rest-api.firezone.dev/ingestion/flow_logs'));
    assert.throws(() => redirectUrl(current, 'https://rest-api.firezone.dev:8443/ingestion/flow_logs'));
    assert.throws(() => redirectUrl(current, 'https://user:secret@rest-api.firezone.dev/ingestion/flow_logs'));
  });
});

describe('uploader: configuration, pruning, restarts and a read-only spool', () => {
  test('upload.json is written 0600 from init (batch size 0 -> 1000, capped at 10 000) and removed by interval 0; a new uploader reads it', async () => {
    await withServer(OK, 'h2', async (server) => {
      const root = spoolRoot();
      const u = uploader(root, server);
      u.configure({ apiUrl: `${server.origin}/`, uploadIntervalSecs: 90, uploadBatchSize: 0 });
      await u.pass();
      const file = join(root, 'upload.json');
      assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { api_url: `${server.origin}/`, interval: 90, batch_size: 1000 });
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(root).mode & 0o777, 0o700);
      u.configure({ apiUrl: `${server.origin}/`, uploadIntervalSecs: 90, uploadBatchSize: 1_000_000 });
      await u.pass();
      assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { batch_size: number }).batch_size, 10_000);

      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      const restarted = uploader(root, server);
      assert.equal(await restarted.pass(), 90_000, 'the persisted interval');
      assert.equal(server.stored.length, 1);

      u.configure({ apiUrl: `${server.origin}/`, uploadIntervalSecs: 0, uploadBatchSize: 0 });
      assert.equal(await u.pass(), 50, 'uploads off: the disabled poll');
      assert.equal(existsSync(file), false);
    });
  });

  test('prune removes expired and long token-less authorizations, keeps valid and fresh ones', async () => {
    const root = spoolRoot();
    const now = Date.now();
    const expired = authorizationDir(root, AUTHZ_A, Math.floor(now / 1000) - 60).dir;
    const valid = authorizationDir(root, AUTHZ_B).dir;
    const orphan = join(root, 'responder', '0b5d4b1c-3333-4a4a-8a8a-000000000003');
    mkdirSync(orphan, { recursive: true });
    writeReport(orphan, payload(1, 1));
    utimesSync(orphan, new Date(now - 3_600_000), new Date(now - 3_600_000));
    const fresh = join(root, 'responder', '0b5d4b1c-4444-4a4a-8a8a-000000000004');
    mkdirSync(fresh, { recursive: true });
    const u = new FlowLogUploader({ root, logger: silentLogger() });
    await u.prune();
    assert.equal(existsSync(expired), false);
    assert.equal(existsSync(valid), true);
    assert.equal(existsSync(orphan), false);
    assert.equal(existsSync(fresh), true);
  });

  test('a restart mid-batch (the answer never came) loses nothing: the next uploader sends the same flows and the files go once stored', async () => {
    let hang = true;
    await withServer(() => (hang ? { status: 200, hang: true } : { status: 200 }), 'h2', async (server) => {
      const root = spoolRoot();
      const a = authorizationDir(root, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      writeReport(a.dir, payload(2, 2, true));
      const first = uploader(root, server, { maxRetryMs: 0 });
      configure(first, server);
      first.start();
      while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      // The process "dies" with the request in flight: stop without an answer.
      void first.stop();
      assert.equal(reports(a.dir).length, 2, 'nothing deleted without a 2xx');
      hang = false;
      const second = uploader(root, server);
      await second.pass();
      assert.deepEqual(server.stored, [payload(1, 1), payload(2, 2, true)]);
      assert.deepEqual(reports(a.dir), []);
    });
  });

  test('a read-only spool: upload.json stays in memory, uploaded files that cannot be deleted are sent again once writable', async (t) => {
    const spool = mountTmpfs(t, 512);
    if (spool === undefined) return;
    await withServer(OK, 'h2', async (server) => {
      const a = authorizationDir(spool.path, AUTHZ_A);
      writeReport(a.dir, payload(1, 1));
      remount(spool.path, 'ro');
      try {
        const u = uploader(spool.path, server);
        configure(u, server);
        assert.equal(await u.pass(), 60_000, 'the settings from memory');
        assert.equal(u.stats.configWriteFailures, 1);
        assert.equal(server.stored.length, 1);
        assert.equal(reports(a.dir).length, 1, 'could not delete');
        remount(spool.path, 'rw');
        await u.pass();
        assert.equal(existsSync(join(spool.path, 'upload.json')), true, 'persisted once writable');
        assert.deepEqual(reports(a.dir), []);
        assert.equal(server.stored.length, 2, 'sent again: the portal upserts by flow identity');
      } finally {
        remount(spool.path, 'rw');
      }
    });
  });

  test('the portal unreachable: the pass ends quietly and the reports stay', async () => {
    const root = spoolRoot();
    const a = authorizationDir(root, AUTHZ_A);
    const name = writeReport(a.dir, payload(1, 1));
    const u = new FlowLogUploader({ root, logger: silentLogger(), client: { requestTimeoutMs: 500 } });
    u.configure({ apiUrl: 'https://127.0.0.1:1/', uploadIntervalSecs: 60, uploadBatchSize: 10 });
    assert.equal(await u.pass(), 60_000);
    assert.deepEqual(reports(a.dir), [name]);
  });
});
