import type { KeyObject } from 'node:crypto';
import { CONSTRUCTION, IDENTIFIER, KEY_SIZE, LABEL_COOKIE, LABEL_MAC1 } from './constants.ts';
import { hash, importPrivateKey, rawPublicKey } from './crypto.ts';

const encoder = new TextEncoder();
const INITIAL_CHAIN_KEY = hash(encoder.encode(CONSTRUCTION));
const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, encoder.encode(IDENTIFIER));
const MAC1_LABEL = encoder.encode(LABEL_MAC1);
const COOKIE_LABEL = encoder.encode(LABEL_COOKIE);

export function initialChainKey(): Uint8Array {
  return INITIAL_CHAIN_KEY.slice();
}

/**
 * A public key with the hashes derived from it precomputed: the MAC1 and cookie keys, and the
 * handshake hash a handshake *to* this key starts from. Its X25519 KeyObject is imported only
 * for a handshake (`importPublicKey`): a KeyObject per peer would cost ~0.7 KB of heap.
 */
export interface PublicIdentity {
  readonly publicKey: Uint8Array;
  /** HASH("mac1----" ‖ public key) */
  readonly mac1Key: Uint8Array;
  /** HASH("cookie--" ‖ public key) */
  readonly cookieKey: Uint8Array;
  /** HASH(HASH(HASH(Construction) ‖ Identifier) ‖ public key) */
  readonly initialHash: Uint8Array;
}

/** Our static keypair, imported once per process and shared by every tunnel. */
export interface StaticIdentity extends PublicIdentity {
  readonly privateKey: KeyObject;
}

export function publicIdentity(publicKey: Uint8Array): PublicIdentity {
  if (publicKey.length !== KEY_SIZE) throw new RangeError('an X25519 public key has 32 bytes');
  const raw = Uint8Array.from(publicKey);
  return { publicKey: raw, mac1Key: mac1Key(raw), cookieKey: cookieKey(raw), initialHash: hash(INITIAL_HASH, raw) };
}

/** HASH("mac1----" ‖ public key): the key of MAC1 on handshake messages to that public key. */
export function mac1Key(publicKey: Uint8Array): Uint8Array {
  return hash(MAC1_LABEL, publicKey);
}

/** HASH("cookie--" ‖ public key): the key of cookie replies from that public key. */
export function cookieKey(publicKey: Uint8Array): Uint8Array {
  return hash(COOKIE_LABEL, publicKey);
}

export function staticIdentity(privateKey: Uint8Array): StaticIdentity {
  if (privateKey.length !== KEY_SIZE) throw new RangeError('an X25519 private key has 32 bytes');
  const keyObject = importPrivateKey(privateKey);
  return { ...publicIdentity(rawPublicKey(keyObject)), privateKey: keyObject };
}
