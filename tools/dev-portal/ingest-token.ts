// Flow-log ingest tokens as the portal mints them (spec gateway-1.6 §2.2.4, §4.3): an HS256 JWT signed with the
// account's ingest signing key, carrying the attribution of one authorization; `exp` is the authorization's expiry
// plus a 30-day reporting grace. One is minted per side of a flow (role `initiator` for the client, `responder`
// for the gateway). `verifyIngestToken` is what the ingestion endpoint checks: HS256 only, this key, not expired.
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The portal adds this to the authorization's expiry for late uploads (30 days). */
export const REPORTING_GRACE_SECONDS = 2_592_000;

export interface IngestAttribution {
  readonly role: 'initiator' | 'responder';
  readonly initiator_device_id: string;
  readonly responder_device_id: string;
  readonly policy_authorization_id: string;
  readonly policy_id: string;
  readonly uploads_enabled: boolean;
  readonly resource_id: string;
  readonly resource_name: string;
  readonly resource_address?: string | undefined;
  readonly initiator_actor_id: string;
  readonly initiator_actor_name: string;
  readonly initiator_actor_email?: string | undefined;
  readonly initiator_auth_provider_id?: string | undefined;
  /** ISO 8601 with microseconds, as the portal renders DateTime. */
  readonly authorized_at: string;
  readonly authorization_expires_at: string;
  readonly initiator_client_version?: string | undefined;
}

export type IngestClaims = IngestAttribution & { readonly account_id: string; readonly iat: number; readonly exp: number };

export type IngestTokenCheck =
  | { readonly ok: true; readonly claims: Record<string, unknown> }
  | { readonly ok: false; readonly error: 'malformed' | 'invalid' | 'expired' };

/** Absent (undefined) attribution is left out of the token, as the portal drops nil claims. */
export function mintIngestToken(key: Uint8Array, accountId: string, attribution: IngestAttribution, nowS: number, authorizationExpiresAtS: number): string {
  const claims: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(attribution)) if (value !== undefined && value !== null) claims[name] = value;
  claims['account_id'] = accountId;
  claims['iat'] = nowS;
  claims['exp'] = authorizationExpiresAtS + REPORTING_GRACE_SECONDS;
  const signingInput = `${segment({ alg: 'HS256' })}.${segment(claims)}`;
  return `${signingInput}.${sign(key, signingInput)}`;
}

/** HS256 pinned, signature checked with `key`, `exp` not passed (the portal's `FlowLogToken.verify`). */
export function verifyIngestToken(key: Uint8Array, token: string, nowS: number): IngestTokenCheck {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, error: 'malformed' };
  const [header, payload, signature] = parts as [string, string, string];
  let decodedHeader: unknown;
  let claims: unknown;
  try {
    decodedHeader = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, error: 'malformed' };
  }
  if (!isRecord(claims) || typeof claims['account_id'] !== 'string') return { ok: false, error: 'malformed' };
  if (!isRecord(decodedHeader) || decodedHeader['alg'] !== 'HS256') return { ok: false, error: 'invalid' };
  const expected = Buffer.from(sign(key, `${header}.${payload}`));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, error: 'invalid' };
  const exp = claims['exp'];
  if (typeof exp !== 'number' || !Number.isInteger(exp) || nowS > exp) return { ok: false, error: 'expired' };
  return { ok: true, claims };
}

/** ISO 8601 UTC with microseconds (`2026-07-06T12:00:00.000000Z`), as Elixir renders a `DateTime`. */
export function isoMicros(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function segment(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function sign(key: Uint8Array, input: string): string {
  return createHmac('sha256', key).update(input).digest('base64url');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
