/**
 * The flow-logs ingest token of a 1.6.0 authorization (spec gateway-1.6 §2.2.4): an HS256 JWT whose
 * claims attribute the flow logs of one authorization. It is parsed exactly as the reference does
 * when it decodes `create_authorization`: three base64url segments without padding, a header with
 * `"alg":"HS256"`, the guaranteed claims present and typed, a non-empty signature. The signature
 * is not verified (the gateway cannot; the ingest API does). Any failure rejects the whole message.
 *
 * The raw text is kept verbatim: it is the bearer credential of the upload and the content of the
 * spool's token file. The parsed form is `src/flow-logs`' `IngestToken` (claims named as on the
 * wire), which the flow-log code consumes.
 */
import { z } from 'zod';
import type { IngestToken, IngestTokenClaims } from '../flow-logs/index.ts';

export type { IngestToken, IngestTokenClaims };

export type IngestTokenResult = { readonly ok: true; readonly token: IngestToken } | { readonly ok: false; readonly error: string };

/** u64 as JSON number: a non-negative integer (serde rejects floats and negatives). */
const u64 = z.number().int().min(0);

const nullableText = z.string().nullish();

/** The claims as on the wire (snake_case, the shape `src/flow-logs` reads); unknown claims are dropped. */
const claimsSchema = z.object({
  account_id: z.string(),
  iat: u64,
  exp: u64,
  uploads_enabled: z.boolean(),
  role: z.enum(['initiator', 'responder']),
  initiator_device_id: z.string(),
  responder_device_id: z.string(),
  policy_authorization_id: z.string(),
  policy_id: z.string(),
  resource_id: z.string(),
  resource_name: z.string(),
  initiator_actor_id: z.string(),
  initiator_actor_name: z.string(),
  authorized_at: z.string(),
  authorization_expires_at: z.string(),
  resource_address: nullableText,
  initiator_actor_email: nullableText,
  initiator_auth_provider_id: nullableText,
  initiator_client_version: nullableText,
  initiator_device_os_name: nullableText,
  initiator_device_os_version: nullableText,
  initiator_device_serial: nullableText,
  initiator_device_uuid: nullableText,
  initiator_device_identifier_for_vendor: nullableText,
  initiator_device_firebase_installation_id: nullableText,
}) satisfies z.ZodType<IngestTokenClaims>;

const headerSchema = z.object({ alg: z.string() });

/** Never throws. */
export function parseIngestToken(raw: string): IngestTokenResult {
  const segments = raw.split('.');
  if (segments.length !== 3) return fail('ingest token is not made of three JWT segments');
  const [headerText, payloadText, signatureText] = segments as [string, string, string];

  const header = decodeJsonSegment(headerText, 'header');
  if (!header.ok) return header;
  const parsedHeader = headerSchema.safeParse(header.value);
  if (!parsedHeader.success) return fail('ingest token header is invalid');
  if (parsedHeader.data.alg !== 'HS256') return fail(`ingest token alg is not HS256: ${parsedHeader.data.alg}`);

  const payload = decodeJsonSegment(payloadText, 'payload');
  if (!payload.ok) return payload;
  const claims = claimsSchema.safeParse(payload.value);
  if (!claims.success) {
    const issue = claims.error.issues[0];
    return fail(`ingest token claims are invalid: ${issue === undefined ? 'unknown' : `${issue.path.join('.')}: ${issue.message}`}`);
  }

  const signature = decodeBase64UrlNoPad(signatureText);
  if (signature === undefined) return fail('ingest token signature is not base64url');
  if (signature.length === 0) return fail('ingest token signature is empty');

  return { ok: true, token: { raw, claims: claims.data } };
}

/**
 * Strict unpadded base64url as the reference's `URL_SAFE_NO_PAD` engine decodes it: only the
 * url-safe alphabet, no `=`, no length of 1 mod 4, and no non-zero bits after the last byte.
 */
export function decodeBase64UrlNoPad(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) return undefined;
  return new Uint8Array(bytes);
}

function decodeJsonSegment(text: string, what: 'header' | 'payload'): { ok: true; value: unknown } | { ok: false; error: string } {
  const bytes = decodeBase64UrlNoPad(text);
  if (bytes === undefined) return fail(`ingest token ${what} is not base64url`);
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return fail(`ingest token ${what} is not UTF-8`);
  }
  try {
    return { ok: true, value: JSON.parse(decoded) as unknown };
  } catch {
    return fail(`ingest token ${what} is not JSON`);
  }
}

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}
