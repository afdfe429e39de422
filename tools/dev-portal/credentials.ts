// Credentials the portal derives: ICE credentials per (client, gateway) pair, TURN credentials per relay and
// gateway, and the WireGuard preshared key per (client, gateway) pair (portal-protocol §2.2, §4.4).
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';

export interface IceCredentials {
  readonly username: string;
  readonly password: string;
}

export interface FlowIceCredentials {
  readonly client: IceCredentials;
  readonly gateway: IceCredentials;
}

/**
 * `h = base32_lower_nopad(sha256("<client_id>:<client_pubkey>:<gateway_id>:<gateway_pubkey>"))`, then slices
 * 4/22/4/22 for client username/password and gateway username/password. Deterministic, so the same pair of keys
 * always gets the same credentials (the gateway reuses the connection).
 */
export function deriveIceCredentials(
  clientId: string,
  clientPublicKey: string,
  gatewayId: string,
  gatewayPublicKey: string,
): FlowIceCredentials {
  const digest = createHash('sha256').update(`${clientId}:${clientPublicKey}:${gatewayId}:${gatewayPublicKey}`).digest();
  const h = base32LowerNoPad(digest);
  return {
    client: { username: h.slice(0, 4), password: h.slice(4, 26) },
    gateway: { username: h.slice(26, 30), password: h.slice(30, 52) },
  };
}

const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

export function base32LowerNoPad(bytes: Uint8Array): string {
  let out = '';
  let buffered = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffered = ((buffered << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(buffered >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(buffered << (5 - bits)) & 31];
  return out;
}

/**
 * How relay passwords are made:
 * - `coturn`: the TURN REST API that coturn's `use-auth-secret` mode checks, `base64(HMAC-SHA1(secret, username))`;
 * - `firezone`: the portal's formula for Firezone's own relay, `base64_nopad(sha256("<expires_at>:<secret>:<salt>"))`.
 */
export type RelayCredentialScheme = 'coturn' | 'firezone';

export interface RelayCredentials {
  readonly username: string;
  readonly password: string;
  readonly expiresAt: number;
}

/** `username = "<expires_at>:<salt>"` with `salt = base64_nopad(sha256(<gateway public key string>))`. */
export function relayCredentials(
  scheme: RelayCredentialScheme,
  secret: string,
  gatewayPublicKey: string,
  expiresAt: number,
): RelayCredentials {
  const salt = base64NoPad(createHash('sha256').update(gatewayPublicKey).digest());
  const username = `${expiresAt}:${salt}`;
  const password =
    scheme === 'coturn'
      ? createHmac('sha1', secret).update(username).digest('base64')
      : base64NoPad(createHash('sha256').update(`${expiresAt}:${secret}:${salt}`).digest());
  return { username, password, expiresAt };
}

function base64NoPad(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/=+$/, '');
}

/** Standard padded base64 of 32 bytes, the form the portal uses for keys and preshared keys. */
export function encodeKey(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

/** A key string is valid when it is exactly 44 characters of padded standard base64 decoding to 32 bytes. */
export function isValidKey(text: string): boolean {
  if (text.length !== 44 || !/^[A-Za-z0-9+/]{43}=$/.test(text)) return false;
  return Buffer.from(text, 'base64').length === 32;
}

/**
 * The WireGuard preshared key of a (client, gateway) pair, as the portal derives it (`Portal.Crypto.psk`):
 * PBKDF2-HMAC-SHA256 over the two devices' PSK bases with the pair's ids and keys as salt, one round, 32 bytes.
 * The same pair of keys always gets the same PSK, so a new flow reuses the connection (1.6.0 replaces a connection
 * whose PSK changed).
 */
export function derivePresharedKey(clientId: string, clientPublicKey: string, clientPskBase: Uint8Array, gatewayId: string, gatewayPublicKey: string, gatewayPskBase: Uint8Array): Uint8Array {
  const salt = `WG_PSK|C_ID:${clientId}|G_ID:${gatewayId}|C_PK:${clientPublicKey}|G_PK:${gatewayPublicKey}`;
  const secret = new Uint8Array(clientPskBase.length + gatewayPskBase.length);
  secret.set(clientPskBase, 0);
  secret.set(gatewayPskBase, clientPskBase.length);
  return new Uint8Array(pbkdf2Sync(secret, salt, 1, 32, 'sha256'));
}
