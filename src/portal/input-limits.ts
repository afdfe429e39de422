/**
 * Caps on what the portal may make the gateway do (issue 17), applied to the raw frame before any
 * schema work:
 * - a text frame longer than MAX_PORTAL_MESSAGE_BYTES is dropped before it is parsed;
 * - `init` and `relays_presence` keep the first MAX_RELAYS_PER_FAMILY relay entries of each address
 *   family (the portal sends at most 2 relays, nearest first, one entry per family each);
 * - `ice_candidates` and `invalidate_ice_candidates` keep at most MAX_CANDIDATES_PER_MESSAGE
 *   candidates, and each client may add MAX_CANDIDATES_PER_CLIENT at once, then one a second
 *   (a token bucket per client; the reference's clients send well under ten per connection).
 * Every kind of cut is logged as one WARN a minute at most (WarningLimiter), with what it cut.
 * The reference applies none of these (it takes whatever the portal sends, up to tungstenite's
 * 64 MiB messages); the portal it talks to never comes near them.
 */
import { createLogger } from '../log/index.ts';
import { WarningLimiter } from '../util/warning-limiter.ts';

/** Longest text frame parsed (an `init` with ~35,000 authorizations). */
export const MAX_PORTAL_MESSAGE_BYTES = 4 * 1024 * 1024;
/** The WebSocket refuses (and closes on) frames beyond this, so an endless frame is never buffered. */
export const MAX_PORTAL_FRAME_BYTES = 2 * MAX_PORTAL_MESSAGE_BYTES;
export const MAX_RELAYS_PER_FAMILY = 4;
export const MAX_CANDIDATES_PER_MESSAGE = 16;
export const MAX_CANDIDATES_PER_CLIENT = 32;
export const CANDIDATE_REFILL_PER_SECOND = 1;
/** Clients whose candidate budget is tracked; the least recently seen is forgotten beyond this. */
export const MAX_TRACKED_CLIENTS = 4096;

export type PortalInputCut = 'messageSize' | 'relays' | 'candidatesPerMessage' | 'candidatesPerClient';

const log = createLogger('phoenix_channel');

const MESSAGES: Readonly<Record<PortalInputCut, string>> = {
  messageSize: 'Dropping an oversized message from the portal',
  relays: 'Ignoring relays beyond the per-family limit in a portal message',
  candidatesPerMessage: 'Ignoring ICE candidates beyond the per-message limit',
  candidatesPerClient: 'Ignoring ICE candidates beyond the per-client limit',
};

export interface PortalInputLimitsOptions {
  /** Monotonic ms. */
  readonly clock?: () => number;
  readonly warn?: (message: string, fields: Record<string, unknown>) => void;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class PortalInputLimits {
  readonly #clock: () => number;
  readonly #warn: (message: string, fields: Record<string, unknown>) => void;
  readonly #warnings = new WarningLimiter<PortalInputCut>();
  readonly #buckets = new Map<string, Bucket>();
  /** What each kind has cut so far (for tests and diagnostics). */
  readonly cuts: Record<PortalInputCut, number> = { messageSize: 0, relays: 0, candidatesPerMessage: 0, candidatesPerClient: 0 };

  constructor(options: PortalInputLimitsOptions = {}) {
    this.#clock = options.clock ?? (() => performance.now());
    this.#warn = options.warn ?? ((message, fields) => log.warn(message, fields));
  }

  /** Whether a text frame of this many UTF-16 units may be parsed (a frame of n units has at least n bytes). */
  acceptsFrame(text: string): boolean {
    if (text.length <= MAX_PORTAL_MESSAGE_BYTES) return true;
    this.#cut('messageSize', 1, { bytes: Buffer.byteLength(text), limit: MAX_PORTAL_MESSAGE_BYTES });
    return false;
  }

  /** The payload with its lists cut to the limits; unknown events and shapes pass unchanged (the schemas judge them). */
  limitPayload(event: string, payload: unknown): unknown {
    if (!isRecord(payload)) return payload;
    switch (event) {
      case 'init':
        return this.#limitRelays(event, payload, 'relays');
      case 'relays_presence':
        return this.#limitRelays(event, payload, 'connected');
      case 'ice_candidates':
        return this.#limitCandidates(payload, true);
      case 'invalidate_ice_candidates':
        return this.#limitCandidates(payload, false);
      default:
        return payload;
    }
  }

  /** Wraps a payload decoder so it only ever sees limited payloads. */
  decoder<T>(decode: (event: string, payload: unknown) => T): (event: string, payload: unknown) => T {
    return (event, payload) => decode(event, this.limitPayload(event, payload));
  }

  #limitRelays(event: string, payload: Record<string, unknown>, key: string): Record<string, unknown> {
    const relays = payload[key];
    if (!Array.isArray(relays) || relays.length <= MAX_RELAYS_PER_FAMILY) return payload;
    const perFamily = new Map<string, number>();
    const kept: unknown[] = [];
    for (const relay of relays) {
      const family = relayFamily(relay);
      const count = perFamily.get(family) ?? 0;
      if (count >= MAX_RELAYS_PER_FAMILY) continue;
      perFamily.set(family, count + 1);
      kept.push(relay);
    }
    if (kept.length === relays.length) return payload;
    this.#cut('relays', relays.length - kept.length, { event, received: relays.length, kept: kept.length, limit_per_family: MAX_RELAYS_PER_FAMILY });
    return { ...payload, [key]: kept };
  }

  #limitCandidates(payload: Record<string, unknown>, adding: boolean): Record<string, unknown> {
    const candidates = payload['candidates'];
    if (!Array.isArray(candidates)) return payload;
    let kept = candidates;
    if (kept.length > MAX_CANDIDATES_PER_MESSAGE) {
      this.#cut('candidatesPerMessage', kept.length - MAX_CANDIDATES_PER_MESSAGE, { received: kept.length, limit: MAX_CANDIDATES_PER_MESSAGE });
      kept = kept.slice(0, MAX_CANDIDATES_PER_MESSAGE);
    }
    // Withdrawing candidates costs nothing lasting; only additions spend the client's budget.
    const clientId = payload['client_id'];
    if (adding && typeof clientId === 'string') {
      const allowed = this.#spend(clientId, kept.length);
      if (allowed < kept.length) {
        this.#cut('candidatesPerClient', kept.length - allowed, { client_id: clientId, received: kept.length, kept: allowed });
        kept = kept.slice(0, allowed);
      }
    }
    return kept === candidates ? payload : { ...payload, candidates: kept };
  }

  /** Takes up to `wanted` tokens from the client's bucket; returns how many it got. */
  #spend(clientId: string, wanted: number): number {
    const now = this.#clock();
    let bucket = this.#buckets.get(clientId);
    if (bucket === undefined) {
      bucket = { tokens: MAX_CANDIDATES_PER_CLIENT, at: now };
      if (this.#buckets.size >= MAX_TRACKED_CLIENTS) this.#buckets.delete(this.#buckets.keys().next().value!);
    } else {
      bucket.tokens = Math.min(MAX_CANDIDATES_PER_CLIENT, bucket.tokens + ((now - bucket.at) / 1000) * CANDIDATE_REFILL_PER_SECOND);
      bucket.at = now;
      this.#buckets.delete(clientId);
    }
    // Re-inserted last: the map's order is least recently seen first.
    this.#buckets.set(clientId, bucket);
    const granted = Math.min(wanted, Math.floor(bucket.tokens));
    bucket.tokens -= granted;
    return granted;
  }

  #cut(kind: PortalInputCut, count: number, fields: Record<string, unknown>): void {
    this.cuts[kind] += count;
    const suppressed = this.#warnings.allow(kind, this.#clock());
    if (suppressed !== undefined) this.#warn(MESSAGES[kind], { ...fields, suppressed });
  }
}

/** `4`, `6`, or `other` for an entry whose address cannot be read (the schema rejects it later). */
function relayFamily(relay: unknown): string {
  if (!isRecord(relay) || typeof relay['addr'] !== 'string') return 'other';
  const addr = relay['addr'];
  if (addr.startsWith('[')) return '6';
  return addr.indexOf(':') === addr.lastIndexOf(':') ? '4' : 'other';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
