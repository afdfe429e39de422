/**
 * Phoenix V1 JSON framing (spec portal-protocol §1.7): one object per text frame,
 * `{"topic", "event", "payload", "ref"}`. Outbound key order is exactly that and `ref` is always a
 * number; inbound `ref` is a number or null/absent, extra keys (`join_ref`) are ignored.
 */

export interface InboundFrame {
  readonly topic: string;
  readonly event: string;
  /** undefined when the key is absent. */
  readonly payload: unknown;
  readonly ref: number | undefined;
}

export type FrameDecodeError =
  /** Input ended early (empty or truncated text): the reference treats it as a broken connection. */
  | { readonly code: 'eof'; readonly detail: string }
  | { readonly code: 'invalidJson'; readonly detail: string }
  | { readonly code: 'invalidFrame'; readonly detail: string };

export type FrameDecodeResult =
  | { readonly ok: true; readonly frame: InboundFrame }
  | { readonly ok: false; readonly error: FrameDecodeError };

/** The reason the portal gives in an error reply, decoded as the reference does. */
export type ErrorReason = 'unmatched topic' | 'invalid_version' | 'disabled' | 'other';

export type Reply =
  | { readonly status: 'ok' }
  | { readonly status: 'error'; readonly reason: ErrorReason };

export function encodeFrame(topic: string, event: string, payload: unknown, ref: number): string {
  return `{"topic":${JSON.stringify(topic)},"event":${JSON.stringify(event)},"payload":${JSON.stringify(payload ?? null)},"ref":${ref}}`;
}

/** Never throws. */
export function decodeFrame(text: string): FrameDecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return { ok: false, error: { code: endsEarly(text, detail) ? 'eof' : 'invalidJson', detail } };
  }
  if (!isPlainObject(value)) return invalidFrame('not a JSON object');
  const { topic, event, payload, ref } = value;
  if (typeof topic !== 'string') return invalidFrame('missing or non-string `topic`');
  if (typeof event !== 'string') return invalidFrame('missing or non-string `event`');
  if (ref !== undefined && ref !== null && !(typeof ref === 'number' && Number.isSafeInteger(ref) && ref >= 0)) {
    return invalidFrame('`ref` is neither a non-negative integer nor null');
  }
  return { ok: true, frame: { topic, event, payload, ref: ref ?? undefined } };
}

/** The payload of a `phx_reply`; undefined when it cannot be typed (e.g. a non-empty ok response). */
export function decodeReply(payload: unknown): Reply | undefined {
  if (!isPlainObject(payload)) return undefined;
  const { status, response } = payload;
  if (status === 'ok') return response === null || isEmptyObject(response) ? { status: 'ok' } : undefined;
  if (status !== 'error' || !isPlainObject(response) || typeof response.reason !== 'string') return undefined;
  return { status: 'error', reason: errorReason(response.reason) };
}

/** How the reference prints an error reason (`Failed to login with portal: invalid version`). */
export function displayErrorReason(reason: ErrorReason): string {
  switch (reason) {
    case 'unmatched topic':
      return 'unmatched topic';
    case 'invalid_version':
      return 'invalid version';
    case 'disabled':
      return 'disabled';
    case 'other':
      return 'other';
  }
}

export function isEmptyObject(value: unknown): boolean {
  return isPlainObject(value) && Object.keys(value).length === 0;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorReason(reason: string): ErrorReason {
  switch (reason) {
    case 'unmatched topic':
    case 'invalid_version':
    case 'disabled':
      return reason;
    default:
      return 'other';
  }
}

/**
 * serde_json's EOF class: the text stops before the value is complete. V8 reports it as
 * "Unexpected end of JSON input" or as an error positioned at the end of the text.
 */
function endsEarly(text: string, detail: string): boolean {
  if (text.trim() === '' || /end of JSON input/i.test(detail)) return true;
  const position = /at position (\d+)/.exec(detail);
  return position !== null && Number(position[1]) >= text.trimEnd().length;
}

function invalidFrame(detail: string): FrameDecodeResult {
  return { ok: false, error: { code: 'invalidFrame', detail } };
}
