// The on-disk spool format (reference: rust/libs/flow-log-writer and flow-log-spool at gateway-1.6.0):
//
//   <root>/upload.json                                      {"api_url","interval","batch_size"}
//   <root>/<role>/<policy_authorization_id>/token           the raw ingest token (Bearer credential)
//   <root>/<role>/<policy_authorization_id>/<start>-<identity>.start.json   open report
//   <root>/<role>/<policy_authorization_id>/<start>-<identity>.end.json     completed report
//
// `<start>` is the flow's start as 10-digit unix seconds, so names sort oldest first; `<identity>` is 16 hex
// digits derived from the protocol, inner 4-tuple and start, so a flow's two reports share a stem. Each
// report file is `{"checksum": <CRC32>, "payload": <report>}` where the CRC32 covers the payload serialized as
// compact JSON with keys sorted at every level (serde_json's `Value` order), so any reader can re-derive it.

import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { END_SUFFIX, START_SUFFIX } from './constants.ts';
import { unixSecondsOf } from './utc-time.ts';

export type ReportKind = 'start' | 'end';

/** A report file's text. */
export function serializeReport(payload: Readonly<Record<string, unknown>>): string {
  const body = canonicalJson(payload);
  return `{"checksum":${crc32(Buffer.from(body, 'utf8'))},"payload":${body}}`;
}

export type ParsedReport =
  | { readonly ok: true; readonly payload: Record<string, unknown> }
  | { readonly ok: false; readonly error: 'malformed' | 'checksumMismatch' };

/** Reads a report file's text back; a torn or altered file fails its checksum. */
export function parseReport(text: string): ParsedReport {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: 'malformed' };
  }
  if (!isObject(value) || !isObject(value['payload'])) return { ok: false, error: 'malformed' };
  const checksum = value['checksum'];
  if (typeof checksum !== 'number' || !Number.isInteger(checksum) || checksum < 0 || checksum > 0xffffffff) {
    return { ok: false, error: 'malformed' };
  }
  const payload = value['payload'];
  if (crc32(Buffer.from(canonicalJson(payload), 'utf8')) !== checksum) return { ok: false, error: 'checksumMismatch' };
  return { ok: true, payload };
}

/**
 * Compact JSON with object keys sorted at every level, byte-wise in UTF-8 as serde_json's map does. Written out
 * by hand: a JS object would put integer-like keys first whatever the insertion order.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) text += ',';
      const item: unknown = value[i];
      text += item === undefined || typeof item === 'function' ? 'null' : canonicalJson(item);
    }
    return `${text}]`;
  }
  if (!isObject(value)) return JSON.stringify(value) ?? 'null';
  const keys = Object.keys(value).filter((key) => value[key] !== undefined && typeof value[key] !== 'function');
  keys.sort(compareUtf8);
  let text = '{';
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) text += ',';
    text += `${JSON.stringify(keys[i])}:${canonicalJson(value[keys[i]!])}`;
  }
  return `${text}}`;
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** `<start>-<identity>.start.json` / `.end.json` for a payload, or undefined without a readable `flow_start`. */
export function reportFileName(payload: Readonly<Record<string, unknown>>, kind: ReportKind): string | undefined {
  const flowStart = payload['flow_start'];
  if (typeof flowStart !== 'string') return undefined;
  const seconds = unixSecondsOf(flowStart);
  if (seconds === undefined || seconds < 0) return undefined;
  const identity = createHash('sha256');
  for (const field of ['protocol', 'inner_src_ip', 'inner_src_port', 'inner_dst_ip', 'inner_dst_port', 'flow_start']) {
    identity.update(`${JSON.stringify(payload[field] ?? null)}\n`);
  }
  return `${String(seconds).padStart(10, '0')}-${identity.digest('hex').slice(0, 16)}${kind === 'start' ? START_SUFFIX : END_SUFFIX}`;
}

/** Which report a file name is, and the stem its sibling shares; undefined for any other file. */
export function classifyReportFile(name: string): { readonly kind: ReportKind; readonly stem: string } | undefined {
  if (name.startsWith('.')) return undefined;
  if (name.endsWith(START_SUFFIX)) return { kind: 'start', stem: name.slice(0, -START_SUFFIX.length) };
  if (name.endsWith(END_SUFFIX)) return { kind: 'end', stem: name.slice(0, -END_SUFFIX.length) };
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
