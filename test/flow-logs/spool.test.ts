import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { canonicalJson, classifyReportFile, parseReport, recordPayload, reportFileName, serializeReport } from '../../src/flow-logs/index.ts';
import type { FlowRecord, IngestToken } from '../../src/flow-logs/index.ts';
import { FlowLogWriter } from '../../src/runtime/flow-log-writer.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import { responderToken, silentLogger } from './support.ts';
import { mountTmpfs, remount } from './tmpfs.ts';

const AUTHZ = responderToken().claims.policy_authorization_id;
const FIXTURE_PAYLOAD = {
  protocol: 'tcp',
  inner_src_ip: '10.0.0.1',
  inner_src_port: 1,
  inner_dst_ip: '10.0.0.2',
  inner_dst_port: 2,
  flow_start: '2026-07-06T12:00:00Z',
  outers: [{ src_port: 3, src_ip: '192.0.2.1', dst_ip: '198.51.100.1', dst_port: 4, path_activated_at: '2026-07-06T12:00:00Z' }],
};

describe('report format', () => {
  test('a report is the CRC32 of the payload as compact JSON with sorted keys, then the payload', () => {
    const text = serializeReport(FIXTURE_PAYLOAD);
    const sorted =
      '{"flow_start":"2026-07-06T12:00:00Z","inner_dst_ip":"10.0.0.2","inner_dst_port":2,"inner_src_ip":"10.0.0.1","inner_src_port":1,' +
      '"outers":[{"dst_ip":"198.51.100.1","dst_port":4,"path_activated_at":"2026-07-06T12:00:00Z","src_ip":"192.0.2.1","src_port":3}],"protocol":"tcp"}';
    // The checksum as Python's zlib.crc32 (the same CRC-32 as the reference's crc32fast) gives it.
    assert.equal(text, `{"checksum":1598224354,"payload":${sorted}}`);
  });

  test('the fixture body is a list of payloads this format round-trips', () => {
    const fixture = JSON.parse(readFileSync(new URL('../../../shared/fixtures/portal-1.6/flow_logs_ingest_request.json', import.meta.url), 'utf8')) as {
      body: { flow_logs: Record<string, unknown>[] };
    };
    for (const payload of fixture.body.flow_logs) assert.deepEqual(parseReport(serializeReport(payload)), { ok: true, payload });
  });

  test('any JSON object round-trips, and its canonical form does not depend on key order', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (payload) => {
        const parsed = parseReport(serializeReport(payload));
        assert.equal(parsed.ok, true);
        const reordered = Object.fromEntries(Object.entries(payload).reverse());
        assert.equal(canonicalJson(reordered), canonicalJson(payload));
        assert.equal(canonicalJson(JSON.parse(canonicalJson(payload))), canonicalJson(payload));
      }),
    );
  });

  test('a changed byte inside the payload fails the checksum or the parse, never passes', () => {
    const text = serializeReport(FIXTURE_PAYLOAD);
    const start = text.indexOf('"payload":') + '"payload":'.length;
    fc.assert(
      fc.property(fc.integer({ min: start, max: text.length - 2 }), fc.integer({ min: 0x20, max: 0x7e }), (at, code) => {
        fc.pre(text.charCodeAt(at) !== code);
        const mutated = text.slice(0, at) + String.fromCharCode(code) + text.slice(at + 1);
        const parsed = parseReport(mutated);
        if (parsed.ok) {
          // Only a change JSON cannot see (white space between tokens) may pass, with the payload unchanged.
          assert.equal(canonicalJson(parsed.payload), canonicalJson(FIXTURE_PAYLOAD));
        }
      }),
    );
    assert.deepEqual(parseReport(text.replace('"inner_dst_port":2', '"inner_dst_port":3')), { ok: false, error: 'checksumMismatch' });
    assert.deepEqual(parseReport(text.slice(0, -5)), { ok: false, error: 'malformed' });
    assert.deepEqual(parseReport('not json'), { ok: false, error: 'malformed' });
  });

  test('a flow\'s two reports share a stem that starts with its 10-digit start second', () => {
    const start = reportFileName(FIXTURE_PAYLOAD, 'start')!;
    const end = reportFileName({ ...FIXTURE_PAYLOAD, flow_end: '2026-07-06T12:01:00Z', tx_bytes: 5 }, 'end')!;
    assert.match(start, /^1783339200-[0-9a-f]{16}\.start\.json$/);
    assert.equal(classifyReportFile(start)!.stem, classifyReportFile(end)!.stem);
    assert.equal(classifyReportFile(end)!.kind, 'end');
    assert.notEqual(reportFileName({ ...FIXTURE_PAYLOAD, flow_start: '2026-07-06T12:00:00.001Z' }, 'start'), start);
    assert.notEqual(reportFileName({ ...FIXTURE_PAYLOAD, inner_src_port: 9 }, 'start'), start);
    assert.equal(classifyReportFile('token'), undefined);
    assert.equal(classifyReportFile('.1783339200-0123456789abcdef.start.json.77.1.tmp'), undefined);
  });
});

describe('spool writer', () => {
  test('writes the token and both reports of a flow with owner-only modes', async () => {
    const root = tempRoot();
    const writer = newWriter(root);
    const token = responderToken();
    writer.writeToken(token);
    writer.writeRecord(record(token, false));
    writer.writeRecord(record(token, true));
    assert.equal(await writer.drain(), true);

    const dir = join(root, 'responder', AUTHZ);
    assert.equal(readFileSync(join(dir, 'token'), 'utf8'), token.raw);
    const reports = readdirSync(dir).filter((n) => n !== 'token').sort();
    assert.equal(reports.length, 2);
    assert.deepEqual(reports.map((n) => classifyReportFile(n)!.kind).sort(), ['end', 'start']);
    const end = parseReport(readFileSync(join(dir, reports.find((n) => n.endsWith('.end.json'))!), 'utf8'));
    assert.deepEqual(end, { ok: true, payload: JSON.parse(JSON.stringify(recordPayload(record(token, true)))) });
    for (const path of [root, join(root, 'responder'), dir]) assert.equal(statSync(path).mode & 0o777, 0o700, path);
    for (const name of readdirSync(dir)) assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600, name);
    assert.deepEqual(writer.stats, { reportsWritten: 2, tokensWritten: 1, dropped: 0, withoutToken: 0, failed: 0, retries: 0 });
  });

  test('writes nothing for a token without uploads', async () => {
    const root = tempRoot();
    const writer = newWriter(root);
    const token = responderToken({ uploads_enabled: false });
    writer.writeToken(token);
    writer.writeRecord(record(token, false));
    await writer.drain();
    assert.equal(existsSync(join(root, 'responder')), false);
  });

  test('writes no report for an authorization without a token file', async () => {
    const root = tempRoot();
    const writer = newWriter(root);
    writer.writeRecord(record(responderToken(), false));
    await writer.drain();
    assert.equal(existsSync(join(root, 'responder', AUTHZ)), false);
    assert.equal(writer.stats.withoutToken, 1);
  });

  test('a token whose claims would escape the spool is refused', async () => {
    const root = tempRoot();
    const logger = silentLogger();
    const writer = newWriter(root, { logger });
    writer.writeToken(responderToken({ policy_authorization_id: '../../etc' }));
    writer.writeToken(responderToken({ role: 'admin' }));
    await writer.drain();
    assert.equal(existsSync(root), false);
    assert.equal(logger.warnings.length, 2);
  });

  test('reports beyond the queue bound are dropped, counted and logged once', async () => {
    const root = tempRoot();
    const logger = silentLogger();
    const writer = newWriter(root, { capacity: 3, logger });
    const token = responderToken();
    writer.writeToken(token);
    for (let i = 0; i < 10; i++) writer.writeRecord(record(token, false, i));
    await writer.drain();
    assert.equal(writer.stats.reportsWritten, 3);
    assert.equal(writer.stats.dropped, 7);
    assert.deepEqual(logger.warnings, ['Flow-log writer cannot keep up; dropping reports']);
  });

  test('a crash between write and rename leaves no report; the leftover is removed at the next start', async () => {
    const root = tempRoot();
    const dir = join(root, 'responder', AUTHZ);
    mkdirSync(dir, { recursive: true });
    const token = responderToken();
    writeFileSync(join(dir, 'token'), token.raw);
    const name = reportFileName(recordPayload(record(token, false)), 'start')!;
    const leftover = `.${name}.4242.0.tmp`;
    writeFileSync(join(dir, leftover), serializeReport(recordPayload(record(token, false))).slice(0, 40));
    assert.equal(classifyReportFile(leftover), undefined, 'never read as a report');

    const writer = newWriter(root);
    writer.writeRecord(record(token, true));
    await writer.drain();
    assert.deepEqual(readdirSync(dir).filter((n) => n !== 'token').map((n) => classifyReportFile(n)?.kind), ['end']);
  });

  test('a full disk holds reports back until space returns; none is lost', async (t) => {
    const mount = mountTmpfs(t, 64);
    if (mount === undefined) return;
    const token = responderToken();
    const writer = newWriter(mount.path);
    writer.writeToken(token);
    await writer.drain();
    const filler = join(mount.path, 'filler');
    fill(filler);
    for (let i = 0; i < 5; i++) writer.writeRecord(record(token, false, i));
    await waitFor(() => writer.stats.retries >= 2);
    assert.equal(writer.stats.reportsWritten, 0);
    rmSync(filler);
    assert.equal(await writer.drain(5000), true);
    assert.equal(writer.stats.reportsWritten, 5);
    assert.equal(readdirSync(join(mount.path, 'responder', AUTHZ)).filter((n) => classifyReportFile(n) !== undefined).length, 5);
  });

  test('a read-only spool holds reports back until it is writable again', async (t) => {
    const mount = mountTmpfs(t, 256);
    if (mount === undefined) return;
    const token = responderToken();
    const writer = newWriter(mount.path);
    writer.writeToken(token);
    await writer.drain();
    remount(mount.path, 'ro');
    writer.writeRecord(record(token, true));
    await waitFor(() => writer.stats.retries >= 2);
    remount(mount.path, 'rw');
    assert.equal(await writer.drain(5000), true);
    assert.equal(writer.stats.reportsWritten, 1);
    assert.equal(writer.stats.failed, 0);
  });
});

function tempRoot(): string {
  const base = mkdtempSync(join(tmpdir(), 'fz-spool-'));
  process.on('exit', () => rmSync(base, { recursive: true, force: true }));
  return join(base, 'flow_logs');
}

function newWriter(root: string, options: { capacity?: number; logger?: ReturnType<typeof silentLogger> } = {}): FlowLogWriter {
  return new FlowLogWriter({ root, logger: options.logger ?? silentLogger(), capacity: options.capacity, retryInitialMs: 5, retryMaxMs: 20 });
}

function record(token: IngestToken, completed: boolean, port = 40000): FlowRecord {
  const start = Date.UTC(2026, 6, 6, 12, 0, 0) * 1000 + 123_456;
  return {
    token,
    protocol: 'tcp',
    innerSrcIp: '100.64.0.10',
    innerSrcPort: port,
    innerDstIp: '10.1.0.5',
    innerDstPort: 443,
    domain: undefined,
    outers: [{ from: socketAddr('192.0.2.10', 40000), to: socketAddr('198.51.100.1', 52625), activatedAt: start }],
    flowStart: start,
    close: completed ? { flowEnd: start + 5_000_000, lastPacket: start + 4_000_000, rxPackets: 3, txPackets: 4, rxBytes: 1000, txBytes: 200 } : undefined,
  };
}

function fill(path: string): void {
  const chunk = Buffer.alloc(1024);
  for (;;) {
    try {
      writeFileSync(path, chunk, { flag: 'a' });
    } catch {
      return;
    }
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
