// MESSAGE-INTEGRITY keys (RFC 8489 §9.2); the HMAC itself is in hmac-sha1.ts.
import { createHash } from 'node:crypto';

const encoder = new TextEncoder();

/** Short-term credential (ICE): the key is the password's UTF-8 bytes. */
export function shortTermKey(password: string): Uint8Array {
  return encoder.encode(password);
}

/**
 * Long-term credential (TURN): MD5(username ":" realm ":" password). No SASLprep, as in
 * the reference; callers pass already-normalised strings.
 */
export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  return new Uint8Array(createHash('md5').update(`${username}:${realm}:${password}`, 'utf8').digest());
}
