/**
 * The portal login URL (spec gateway-1.6 §1.1-§1.2):
 * v2 (1.6.0): `<ws|wss>://<host>[:<port>]<base-path>/gateway/v2/websocket?external_id=…&name=…&public_key=…`,
 * the token in the `X-Authorization: Bearer` header only (`authorizationHeader`);
 * v1 (1.4.13, the fallback for portals without the v2 path):
 * `…/gateway/websocket?token=…&external_id=…&name=…&public_key=…`.
 *
 * The URL is built once at startup without the public key; `loginUrlWithPublicKey` appends the
 * key at connect time (the same key on every reconnect of the process).
 */
import { createHash } from 'node:crypto';

export interface LoginUrl {
  /** The URL up to and including `name`; never logged (v1: it carries the token). */
  readonly href: string;
  /** As the URL shows it: IPv6 literals keep their brackets (this is also the Host header). */
  readonly host: string;
  readonly port: number;
}

export interface LoginParams {
  readonly token: string;
  /** The gateway id (FIREZONE_ID or the id file); hashed by `externalId`. */
  readonly firezoneId: string;
  readonly name: string;
}

export type LoginUrlError =
  | { readonly code: 'invalidScheme'; readonly message: string }
  | { readonly code: 'invalidUrl'; readonly message: string }
  | { readonly code: 'missingHost'; readonly message: string };

export type LoginUrlResult = { readonly ok: true; readonly value: LoginUrl } | { readonly ok: false; readonly error: LoginUrlError };

export const GATEWAY_WEBSOCKET_PATH = '/gateway/websocket';
export const GATEWAY_V2_WEBSOCKET_PATH = '/gateway/v2/websocket';

/** The reference connects to 443 whenever the URL has no explicit port, even for `ws://` (§1.4). */
export const PORTAL_DEFAULT_PORT = 443;

const WEBSOCKET_SCHEMES: Readonly<Record<string, string>> = { http: 'ws', ws: 'ws', https: 'wss', wss: 'wss' };

/** `dialect` picks the path (and whether the token rides in the query: v1 only). */
export function createLoginUrl(apiUrl: string, params: LoginParams, dialect: 'v1' | 'v2' = 'v2'): LoginUrlResult {
  let url: URL;
  try {
    url = new URL(apiUrl);
  } catch (error) {
    return fail('invalidUrl', `failed to parse URL: ${error instanceof Error ? error.message : String(error)}`);
  }
  const scheme = url.protocol.slice(0, -1);
  const websocketScheme = WEBSOCKET_SCHEMES[scheme];
  if (websocketScheme === undefined) {
    return fail('invalidScheme', `invalid scheme \`${scheme}\`; only http(s) and ws(s) are allowed`);
  }
  if (url.hostname === '') return fail('missingHost', 'the url is missing a host');

  url.protocol = `${websocketScheme}:`;
  url.pathname = withoutTrailingEmptySegment(url.pathname) + (dialect === 'v2' ? GATEWAY_V2_WEBSOCKET_PATH : GATEWAY_WEBSOCKET_PATH);
  url.hash = '';
  const query = new URLSearchParams();
  if (dialect === 'v1') query.append('token', params.token);
  query.append('external_id', externalId(params.firezoneId));
  query.append('name', params.name);
  url.search = query.toString();

  const target = portalConnectTarget(url);
  return { ok: true, value: { href: url.href, host: target.host, port: target.port } };
}

/** The URL to connect to: the login URL plus `public_key` (standard base64 with padding). */
export function loginUrlWithPublicKey(login: LoginUrl, publicKey: Uint8Array): string {
  const url = new URL(login.href);
  url.searchParams.append('public_key', Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64'));
  return url.href;
}

/** `Bearer <token>` with every whitespace character removed from the token (as 1.6.0: Unicode White_Space). */
export function authorizationHeader(token: string): string {
  return `Bearer ${token.replace(/[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g, '')}`;
}

/**
 * `hex(sha256(id))` of the id exactly as given when it parses as a UUID in any textual form,
 * otherwise the id verbatim (§1.3).
 */
export function externalId(firezoneId: string): string {
  if (!isUuidText(firezoneId)) return firezoneId;
  return createHash('sha256').update(firezoneId, 'utf8').digest('hex');
}

/**
 * Where the TCP connection goes (§1.4): the URL's host (brackets kept for IPv6 literals) and its
 * explicit port, else 443 — even for `ws://`, and `ws://host:80` also means 443 because the URL
 * parser drops a port that equals the scheme default. This mirrors the reference exactly.
 */
export function portalConnectTarget(url: string | URL): { readonly host: string; readonly port: number } {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  return { host: parsed.hostname, port: parsed.port === '' ? PORTAL_DEFAULT_PORT : Number(parsed.port) };
}

/** The UUID text forms the `uuid` crate parses: simple, hyphenated, `urn:uuid:` and braced. */
export function isUuidText(text: string): boolean {
  return parseUuidText(text) !== undefined;
}

/** The canonical lowercase hyphenated form of a textual UUID, or undefined when it is not one. */
export function parseUuidText(text: string): string | undefined {
  let body = text;
  if (body.length === 45 && body.startsWith('urn:uuid:')) body = body.slice(9);
  else if (body.length === 38 && body.startsWith('{') && body.endsWith('}')) body = body.slice(1, -1);
  let hex: string;
  if (body.length === 32) {
    hex = body;
  } else if (body.length === 36) {
    if (body[8] !== '-' || body[13] !== '-' || body[18] !== '-' || body[23] !== '-') return undefined;
    hex = body.slice(0, 8) + body.slice(9, 13) + body.slice(14, 18) + body.slice(19, 23) + body.slice(24);
  } else {
    return undefined;
  }
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) return undefined;
  const lower = hex.toLowerCase();
  return `${lower.slice(0, 8)}-${lower.slice(8, 12)}-${lower.slice(12, 16)}-${lower.slice(16, 20)}-${lower.slice(20)}`;
}

function withoutTrailingEmptySegment(pathname: string): string {
  return pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
}

function fail(code: LoginUrlError['code'], message: string): LoginUrlResult {
  return { ok: false, error: { code, message } };
}
