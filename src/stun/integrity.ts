// MESSAGE-INTEGRITY keys and HMAC-SHA1 (RFC 8489 §9.2, §14.5).
import { createHash, createHmac } from 'node:crypto';

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

/**
 * HMAC-SHA1 over `message[0, end)` with the header's length field replaced by
 * `lengthField`, without copying or modifying the message.
 */
export function integrityHmac(key: Uint8Array, message: Uint8Array, end: number, lengthField: number): Uint8Array {
  const length = new Uint8Array([lengthField >>> 8, lengthField & 0xff]);
  const hmac = createHmac('sha1', key);
  hmac.update(message.subarray(0, 2));
  hmac.update(length);
  hmac.update(message.subarray(4, end));
  return new Uint8Array(hmac.digest());
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
