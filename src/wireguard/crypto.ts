// The WireGuard primitives: BLAKE2s (hash, HMAC, keyed MAC), HKDF, ChaCha20-Poly1305,
// XChaCha20-Poly1305 and X25519. node:crypto wherever it has the primitive; @noble only for
// keyed BLAKE2s-128 (MAC1/MAC2) and XChaCha20-Poly1305 (cookies), which OpenSSL lacks.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AEAD_TAG_SIZE, KEY_SIZE, MAC_SIZE } from './constants.ts';

const AEAD = 'chacha20-poly1305';
const AEAD_OPTIONS = { authTagLength: AEAD_TAG_SIZE } as const;
const EMPTY = new Uint8Array(0);

export function hash(a: Uint8Array, b?: Uint8Array): Uint8Array {
  const h = createHash('blake2s256').update(a);
  if (b !== undefined) h.update(b);
  return h.digest();
}

export function hmac(key: Uint8Array, a: Uint8Array, b?: Uint8Array): Uint8Array {
  const h = createHmac('blake2s256', key).update(a);
  if (b !== undefined) h.update(b);
  return h.digest();
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/** HKDF with HMAC-BLAKE2s as the whitepaper's KDF1. */
export function kdf1(chainKey: Uint8Array, input: Uint8Array): Uint8Array {
  return hmac(hmac(chainKey, input), ONE);
}

export function kdf2(chainKey: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const prk = hmac(chainKey, input);
  const t1 = hmac(prk, ONE);
  return [t1, hmac(prk, t1, TWO)];
}

export function kdf3(chainKey: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const prk = hmac(chainKey, input);
  const t1 = hmac(prk, ONE);
  const t2 = hmac(prk, t1, TWO);
  return [t1, t2, hmac(prk, t2, THREE)];
}

/** Keyed BLAKE2s with a 16-byte output (MAC1, MAC2, cookie values). */
export function mac(key: Uint8Array, message: Uint8Array): Uint8Array {
  return blake2s(message, { key, dkLen: MAC_SIZE });
}

/** Writes `12-byte nonce = 4 zero bytes ‖ counter as u64 little-endian` into `nonce`. */
export function writeNonce(nonce: Uint8Array, view: DataView, counter: number): void {
  nonce[0] = 0;
  nonce[1] = 0;
  nonce[2] = 0;
  nonce[3] = 0;
  view.setUint32(4, counter >>> 0, true);
  view.setUint32(8, Math.floor(counter / 0x1_0000_0000), true);
}

/**
 * Seals `plaintext` and writes ciphertext ‖ tag into `out` at `offset`; returns the bytes
 * written. `out` must have room for plaintext.length + 16.
 */
export function aeadSeal(
  key: Uint8Array | KeyObject,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array | undefined,
  out: Uint8Array,
  offset: number,
): number {
  const cipher = createCipheriv(AEAD, key, nonce, AEAD_OPTIONS);
  if (aad !== undefined) cipher.setAAD(aad, { plaintextLength: plaintext.length });
  let written = 0;
  if (plaintext.length > 0) {
    const ciphertext = cipher.update(plaintext);
    out.set(ciphertext, offset);
    written = ciphertext.length;
  }
  cipher.final();
  out.set(cipher.getAuthTag(), offset + written);
  return written + AEAD_TAG_SIZE;
}

/**
 * Opens ciphertext ‖ tag. Returns the plaintext, or undefined when the tag does not verify
 * (the unverified output is discarded, never returned).
 */
export function aeadOpen(
  key: Uint8Array | KeyObject,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array | undefined,
): Uint8Array | undefined {
  if (sealed.length < AEAD_TAG_SIZE) return undefined;
  const ciphertextEnd = sealed.length - AEAD_TAG_SIZE;
  const decipher = createDecipheriv(AEAD, key, nonce, AEAD_OPTIONS);
  decipher.setAuthTag(sealed.subarray(ciphertextEnd));
  if (aad !== undefined) decipher.setAAD(aad, { plaintextLength: ciphertextEnd });
  const plaintext = ciphertextEnd > 0 ? decipher.update(sealed.subarray(0, ciphertextEnd)) : EMPTY;
  try {
    decipher.final();
  } catch {
    // OpenSSL reports a bad tag only by throwing; this is the one place it is turned into a value.
    return undefined;
  }
  return plaintext;
}

export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

export function xaeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Uint8Array | undefined {
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
  } catch {
    return undefined;
  }
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** PKCS#8 DER of an X25519 private key is this fixed prefix followed by the 32 raw bytes. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** Imports a raw X25519 private key once (Node 24 rejects a JWK whose `x` does not match `d`). */
export function importPrivateKey(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

/** SPKI DER of an X25519 public key is this fixed prefix followed by the 32 raw bytes. */
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export function importPublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

export function rawPublicKey(privateKey: KeyObject): Uint8Array {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  return Buffer.from(jwk.x ?? '', 'base64url');
}

/** X25519; undefined for a low-order peer key (all-zero shared secret), which WireGuard rejects. */
export function dh(privateKey: KeyObject, publicKey: KeyObject): Uint8Array | undefined {
  try {
    return diffieHellman({ privateKey, publicKey });
  } catch {
    return undefined;
  }
}

export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i]!;
  return acc === 0;
}
