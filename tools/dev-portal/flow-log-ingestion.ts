// The development portal's flow-log ingestion endpoint (issue 21), as the portal's
// `PortalAPI.FlowLogController` and its `FlowLogIngest` schema behave (elixir/lib/portal_api at gateway-1.6.0
// and the schema of #14521):
//
//   POST /ingestion/flow_logs   Authorization: Bearer <ingest token>, {"flow_logs": [record, …]}
//     401  missing/invalid/expired token, or its `uploads_enabled` is not true
//     400  body not {"flow_logs": [...]}, or more than 10 000 records
//     422  a record names another policy_authorization_id (nothing stored), or some records fail the
//          schema (the valid ones are stored, the errors listed by index)
//     200  {} when every record was stored
//   Records are upserted by flow identity (account, initiator device, role, flow start, protocol, inner
//   4-tuple, resource): a close report completes its open row once, a replayed open or close changes
//   nothing, so a gateway that sends a batch twice (a restart before it deleted its files) stores each flow once.
//
//   GET  /admin/flow_logs                the stored rows (attribution from the token + the network fields),
//                                        and counters (requests by status, records stored, updates, replays)
//   POST /admin/flow_logs/fail           {"status": 503, "count": 2}: answer the next `count` ingestion
//                                        requests with `status` (tests of the uploader's retries)
//   DELETE /admin/flow_logs              forget everything

import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { DevPortalRoute, DevPortalRouteContext } from './server.ts';

export const INGEST_PATH = '/ingestion/flow_logs';
const MAX_BATCH = 10_000;
const MAX_BODY_BYTES = 64 * 1024 * 1024;

const port = z.number().int().min(0).max(65_535);
const counter = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const dateTime = z.string().refine((text) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(text) && !Number.isNaN(Date.parse(text)), 'must be an RFC 3339 date-time');

const outerSchema = z
  .strictObject({ src_ip: z.string().optional(), src_port: port.optional(), dst_ip: z.string(), dst_port: port, path_activated_at: dateTime })
  .refine((o) => (o.src_ip === undefined) === (o.src_port === undefined), 'src_ip and src_port come together or not at all');

const CLOSE_ONLY = ['flow_end', 'last_packet', 'rx_packets', 'tx_packets', 'rx_bytes', 'tx_bytes'] as const;

/** One record (`FlowLogIngestRecord`): an open report without the close fields, or a close report with all of them. */
export const flowLogRecordSchema = z
  .strictObject({
    protocol: z.enum(['tcp', 'udp']),
    inner_src_ip: z.string(),
    inner_src_port: port,
    inner_dst_ip: z.string(),
    inner_dst_port: port,
    domain: z.string().optional(),
    outers: z.array(outerSchema).min(1).optional(),
    flow_start: dateTime,
    flow_end: dateTime.optional(),
    last_packet: dateTime.optional(),
    rx_packets: counter.optional(),
    tx_packets: counter.optional(),
    rx_bytes: counter.optional(),
    tx_bytes: counter.optional(),
  })
  .refine((r) => {
    const present = CLOSE_ONLY.filter((field) => r[field] !== undefined).length;
    return present === 0 || (present === CLOSE_ONLY.length && r.outers !== undefined);
  }, 'an open report omits flow_end, last_packet and the counters; a close report has them all and its outers');

export type FlowLogRecord = z.infer<typeof flowLogRecordSchema>;

/** A stored row: the token's attribution and the record's network fields. */
export interface FlowLogRow extends FlowLogRecord {
  readonly account_id: string;
  readonly role: string;
  readonly initiator_device_id: string;
  readonly responder_device_id: string;
  readonly policy_authorization_id: string;
  readonly policy_id: string;
  readonly resource_id: string;
  readonly resource_name: string;
  readonly initiator_actor_id: string;
  readonly initiator_actor_name: string;
  readonly inserted_at: string;
  /** Times a report of this flow arrived after the row was complete or already open (replays). */
  replays: number;
}

const ATTRIBUTION = [
  'account_id',
  'role',
  'initiator_device_id',
  'responder_device_id',
  'policy_authorization_id',
  'policy_id',
  'resource_id',
  'resource_name',
  'resource_address',
  'initiator_actor_id',
  'initiator_actor_email',
  'initiator_actor_name',
  'initiator_auth_provider_id',
  'authorized_at',
  'authorization_expires_at',
  'initiator_client_version',
  'initiator_device_os_name',
  'initiator_device_os_version',
  'initiator_device_serial',
  'initiator_device_uuid',
  'initiator_device_identifier_for_vendor',
  'initiator_device_firebase_installation_id',
] as const;

export interface FlowLogStats {
  requests: Record<string, number>;
  /** Rows created. */
  inserted: number;
  /** Open rows completed by their close report. */
  completed: number;
  /** Reports that changed nothing (a replayed open or close, a late open). */
  replays: number;
}

export class FlowLogStore {
  readonly rows = new Map<string, FlowLogRow>();
  readonly stats: FlowLogStats = { requests: {}, inserted: 0, completed: 0, replays: 0 };
  /** Answers forced on the next ingestion requests. */
  readonly failures: number[] = [];

  /** Upserts one valid record of the token's authorization. */
  upsert(claims: Record<string, unknown>, record: FlowLogRecord, now: number): void {
    const key = JSON.stringify([
      claims['account_id'],
      claims['initiator_device_id'],
      claims['role'],
      Date.parse(record.flow_start),
      record.protocol,
      record.inner_src_ip,
      record.inner_src_port,
      record.inner_dst_ip,
      record.inner_dst_port,
      claims['resource_id'],
    ]);
    const existing = this.rows.get(key);
    if (existing === undefined) {
      const row = { ...record, replays: 0, inserted_at: new Date(now).toISOString() } as Record<string, unknown>;
      for (const field of ATTRIBUTION) if (claims[field] !== undefined && claims[field] !== null) row[field] = claims[field];
      this.rows.set(key, row as unknown as FlowLogRow);
      this.stats.inserted++;
      return;
    }
    if (existing.flow_end === undefined && record.flow_end !== undefined) {
      Object.assign(existing, {
        outers: record.outers,
        flow_end: record.flow_end,
        last_packet: record.last_packet,
        rx_packets: record.rx_packets,
        tx_packets: record.tx_packets,
        rx_bytes: record.rx_bytes,
        tx_bytes: record.tx_bytes,
      });
      this.stats.completed++;
      return;
    }
    existing.replays++;
    this.stats.replays++;
  }

  clear(): void {
    this.rows.clear();
    this.stats.requests = {};
    this.stats.inserted = this.stats.completed = this.stats.replays = 0;
    this.failures.length = 0;
  }
}

/** The ingestion endpoint and its admin API as a dev-portal route (main.ts adds it to the portal's routes). */
export function flowLogIngestion(store: FlowLogStore = new FlowLogStore()): DevPortalRoute & { readonly store: FlowLogStore } {
  const route = async (req: IncomingMessage, res: ServerResponse, url: URL, context: DevPortalRouteContext): Promise<boolean> => {
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (path === INGEST_PATH && method === 'POST') {
      const answer = await ingest(store, req, context);
      store.stats.requests[answer.status] = (store.stats.requests[answer.status] ?? 0) + 1;
      send(res, answer.status, answer.body);
      return true;
    }
    if (path === '/admin/flow_logs' && method === 'GET') {
      send(res, 200, { flow_logs: [...store.rows.values()], stats: store.stats });
      return true;
    }
    if (path === '/admin/flow_logs' && method === 'DELETE') {
      store.clear();
      send(res, 200, {});
      return true;
    }
    if (path === '/admin/flow_logs/fail' && method === 'POST') {
      const body = (await readBody(req).then(JSON.parse).catch(() => ({}))) as { status?: unknown; count?: unknown };
      const status = typeof body.status === 'number' ? body.status : 503;
      const count = typeof body.count === 'number' ? body.count : 1;
      for (let i = 0; i < count; i++) store.failures.push(status);
      send(res, 200, { pending: store.failures.length });
      return true;
    }
    return false;
  };
  return Object.assign(route, { store });
}

async function ingest(store: FlowLogStore, req: IncomingMessage, context: DevPortalRouteContext): Promise<{ status: number; body: unknown }> {
  let text: string;
  try {
    text = await readBody(req);
  } catch {
    return problem(400, 'Request body too large');
  }
  const forced = store.failures.shift();
  if (forced !== undefined) return problem(forced, 'Forced failure (admin)');
  const authorization = req.headers['authorization'];
  const token = typeof authorization === 'string' && authorization.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : undefined;
  const check = token === undefined ? undefined : context.verifyIngestToken(token);
  if (check === undefined || !check.ok) return problem(401, 'Authentication credentials were missing or invalid.');
  const claims = check.claims as Record<string, unknown>;
  if (claims['uploads_enabled'] !== true) return problem(401, 'Flow log uploads are not enabled for this authorization');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return problem(400, 'Expected a "flow_logs" array');
  }
  const records = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['flow_logs'] : undefined;
  if (!Array.isArray(records)) return problem(400, 'Expected a "flow_logs" array');
  if (records.length > MAX_BATCH) return problem(400, `Batch size exceeds maximum of ${MAX_BATCH}`);
  const mixed = records.some((r) => typeof r === 'object' && r !== null && 'policy_authorization_id' in r && (r as Record<string, unknown>)['policy_authorization_id'] !== claims['policy_authorization_id']);
  if (mixed) return problem(422, 'All flow logs in a request must belong to a single policy authorization');
  const errors: Record<number, unknown> = {};
  const valid: FlowLogRecord[] = [];
  records.forEach((record, index) => {
    const parsed = flowLogRecordSchema.safeParse(record);
    if (parsed.success) valid.push(parsed.data);
    else errors[index] = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'record'}: ${issue.message}`);
  });
  // Within a batch an open and its close collapse to the close (as the portal's insert does).
  valid.sort((a, b) => Number(a.flow_end !== undefined) - Number(b.flow_end !== undefined));
  const now = context.now();
  for (const record of valid) store.upsert(claims, record, now);
  if (Object.keys(errors).length > 0) {
    context.log(`flow-log ingestion: ${Object.keys(errors).length} invalid record(s): ${JSON.stringify(errors).slice(0, 500)}`);
    return { status: 422, body: { error: { reason: 'Some flow log records failed validation', validation_errors: errors } } };
  }
  return { status: 200, body: {} };
}

function problem(status: number, reason: string): { status: number; body: unknown } {
  return { status, body: { error: { reason } } };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
