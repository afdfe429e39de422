// The transport AEAD seam: where the bulk ChaCha20-Poly1305 of data messages runs.
//
// The Tunnel owns the protocol (session choice, counters, replay window) and describes the work
// as jobs in a Uint32Array; a `TransportCipher` runs a batch of jobs in one call. Two backends
// give identical bytes (test/wireguard/transport-cipher.test.ts): the native addon (OpenSSL, the
// keys in a native keyring until the session goes; src/runtime/native-cipher.ts)
// and node:crypto here, which stays the portable fallback and the default of the sans-IO core.
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { AEAD_TAG_SIZE, KEY_SIZE } from './constants.ts';

/** Words (u32) per job. */
export const AEAD_JOB_WORDS = 8;
export const AEAD_JOB_KEY = 0;
export const AEAD_JOB_COUNTER_LOW = 1;
export const AEAD_JOB_COUNTER_HIGH = 2;
export const AEAD_JOB_SOURCE = 3;
/** Seal: plaintext bytes. Open: sealed bytes (ciphertext and tag). */
export const AEAD_JOB_LENGTH = 4;
export const AEAD_JOB_TARGET = 5;
export const AEAD_JOB_STATUS = 6;

/** Job outcomes, written into AEAD_JOB_STATUS by `run`. */
export const AEAD_OK = 0;
export const AEAD_UNAUTHENTIC = 1;
export const AEAD_BAD_KEY = 2;
export const AEAD_BAD_RANGE = 3;
export const AEAD_FAILED = 4;

/** Largest `length` of one job. */
export const AEAD_MAX_LENGTH = 65535;

export type TransportCipherKind = 'native' | 'node:crypto';

export interface TransportCipher {
  readonly kind: TransportCipherKind;
  /**
   * Installs a 32-byte key for sealing or opening and returns its id. The caller wipes its own
   * copy afterwards; the backend keeps the key until `removeKey`.
   */
  addKey(raw: Uint8Array, seal: boolean): number;
  /** Forgets (and wipes) a key; later jobs naming it fail with AEAD_BAD_KEY. Idempotent. */
  removeKey(id: number): void;
  /** Keys currently installed. */
  readonly keyCount: number;
  /**
   * Runs `count` jobs, reading `source` and writing `target` (which may be the same array).
   * Seal: `length` plaintext bytes at the source offset become ciphertext ‖ tag at the target
   * offset. Open: `length` sealed bytes become length − 16 plaintext bytes at the target offset,
   * wiped when the tag does not verify. A job's source and target ranges either start at the
   * same byte (in place) or are disjoint. Each job's status is written; returns how many
   * succeeded. Nonces are WireGuard's: 4 zero bytes ‖ counter (little-endian 64 bits).
   */
  run(open: boolean, source: Uint8Array, target: Uint8Array, jobs: Uint32Array, count: number): number;
}

const AEAD = 'chacha20-poly1305';
const AEAD_OPTIONS = { authTagLength: AEAD_TAG_SIZE } as const;
const KEY_INDEX_BITS = 24;
const KEY_INDEX_MASK = (1 << KEY_INDEX_BITS) - 1;

interface NodeCryptoKey {
  readonly key: KeyObject;
  readonly seal: boolean;
  readonly id: number;
}

/**
 * node:crypto backend: a cipher object per job (its per-call cost is what the native backend
 * removes). Ids follow the native scheme (slot index and a generation byte), so a stale id
 * fails the same way on both.
 */
export class NodeCryptoTransportCipher implements TransportCipher {
  readonly kind = 'node:crypto';
  readonly #slots: (NodeCryptoKey | undefined)[] = [];
  readonly #generations: number[] = [];
  readonly #free: number[] = [];
  readonly #nonce = new Uint8Array(12);
  readonly #nonceView = new DataView(this.#nonce.buffer);
  #live = 0;

  get keyCount(): number {
    return this.#live;
  }

  addKey(raw: Uint8Array, seal: boolean): number {
    if (raw.length !== KEY_SIZE) throw new RangeError('a transport key has 32 bytes');
    let index = this.#free.pop();
    if (index === undefined) {
      index = this.#slots.length;
      this.#slots.push(undefined);
      this.#generations.push(0);
    }
    const generation = (this.#generations[index]! + 1) & 0xff;
    this.#generations[index] = generation;
    const id = (index | (generation << KEY_INDEX_BITS)) >>> 0;
    this.#slots[index] = { key: createSecretKey(raw), seal, id };
    this.#live++;
    return id;
  }

  removeKey(id: number): void {
    const index = id & KEY_INDEX_MASK;
    const entry = this.#slots[index];
    if (entry === undefined || entry.id !== id) return;
    this.#slots[index] = undefined;
    this.#free.push(index);
    this.#live--;
  }

  run(open: boolean, source: Uint8Array, target: Uint8Array, jobs: Uint32Array, count: number): number {
    let succeeded = 0;
    for (let i = 0; i < count; i++) {
      const base = i * AEAD_JOB_WORDS;
      const status = this.#runOne(open, source, target, jobs, base);
      jobs[base + AEAD_JOB_STATUS] = status;
      if (status === AEAD_OK) succeeded++;
    }
    return succeeded;
  }

  #runOne(open: boolean, source: Uint8Array, target: Uint8Array, jobs: Uint32Array, base: number): number {
    const id = jobs[base + AEAD_JOB_KEY]!;
    const entry = this.#slots[id & KEY_INDEX_MASK];
    if (entry === undefined || entry.id !== id || entry.seal === open) return AEAD_BAD_KEY;
    const length = jobs[base + AEAD_JOB_LENGTH]!;
    const from = jobs[base + AEAD_JOB_SOURCE]!;
    const to = jobs[base + AEAD_JOB_TARGET]!;
    const outLength = open ? length - AEAD_TAG_SIZE : length + AEAD_TAG_SIZE;
    if (
      (open && length < AEAD_TAG_SIZE) ||
      length > AEAD_MAX_LENGTH ||
      from + length > source.length ||
      to + outLength > target.length ||
      partlyOverlap(source, from, length, target, to, outLength)
    ) {
      return AEAD_BAD_RANGE;
    }
    const nonce = this.#nonce;
    nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
    this.#nonceView.setUint32(4, jobs[base + AEAD_JOB_COUNTER_LOW]!, true);
    this.#nonceView.setUint32(8, jobs[base + AEAD_JOB_COUNTER_HIGH]!, true);
    return open
      ? openOne(entry.key, nonce, source, from, length, target, to)
      : sealOne(entry.key, nonce, source, from, length, target, to);
  }
}

function sealOne(key: KeyObject, nonce: Uint8Array, source: Uint8Array, from: number, length: number, target: Uint8Array, to: number): number {
  const cipher = createCipheriv(AEAD, key, nonce, AEAD_OPTIONS);
  // Copy before writing: in place, the target range is the source range.
  const ciphertext = length > 0 ? cipher.update(source.subarray(from, from + length)) : undefined;
  cipher.final();
  if (ciphertext !== undefined) target.set(ciphertext, to);
  target.set(cipher.getAuthTag(), to + length);
  return AEAD_OK;
}

function openOne(key: KeyObject, nonce: Uint8Array, source: Uint8Array, from: number, length: number, target: Uint8Array, to: number): number {
  const ciphertextLength = length - AEAD_TAG_SIZE;
  const decipher = createDecipheriv(AEAD, key, nonce, AEAD_OPTIONS);
  decipher.setAuthTag(source.subarray(from + ciphertextLength, from + length));
  const plaintext = ciphertextLength > 0 ? decipher.update(source.subarray(from, from + ciphertextLength)) : undefined;
  try {
    decipher.final();
  } catch {
    // OpenSSL reports a bad tag only by throwing; nothing unauthenticated is written.
    if (ciphertextLength > 0) target.fill(0, to, to + ciphertextLength);
    return AEAD_UNAUTHENTIC;
  }
  if (plaintext !== undefined) target.set(plaintext, to);
  return AEAD_OK;
}

/** Whether two ranges overlap without starting at the same byte (in place is allowed). */
function partlyOverlap(a: Uint8Array, aFrom: number, aLength: number, b: Uint8Array, bFrom: number, bLength: number): boolean {
  if (a.buffer !== b.buffer) return false;
  const aStart = a.byteOffset + aFrom;
  const bStart = b.byteOffset + bFrom;
  if (aStart === bStart) return false;
  return aStart < bStart + bLength && bStart < aStart + aLength;
}

/** Writes one job's words. */
export function writeAeadJob(
  jobs: Uint32Array,
  index: number,
  key: number,
  counter: number,
  source: number,
  length: number,
  target: number,
): void {
  const base = index * AEAD_JOB_WORDS;
  jobs[base + AEAD_JOB_KEY] = key;
  jobs[base + AEAD_JOB_COUNTER_LOW] = counter >>> 0;
  jobs[base + AEAD_JOB_COUNTER_HIGH] = Math.floor(counter / 0x1_0000_0000);
  jobs[base + AEAD_JOB_SOURCE] = source;
  jobs[base + AEAD_JOB_LENGTH] = length;
  jobs[base + AEAD_JOB_TARGET] = target;
  jobs[base + AEAD_JOB_STATUS] = AEAD_FAILED;
}
