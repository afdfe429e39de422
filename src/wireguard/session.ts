import {
  AEAD_TAG_SIZE,
  KEEPALIVE_TIMEOUT,
  MESSAGE_TRANSPORT,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME,
  TRANSPORT_HEADER_SIZE,
  TRANSPORT_MIN_SIZE,
  TRANSPORT_OFFSET_COUNTER,
  TRANSPORT_OFFSET_DATA,
  TRANSPORT_OFFSET_RECEIVER,
} from './constants.ts';
import type { SessionKeys } from './noise.ts';
import { replayCheck, replayMark, type ReplayRings } from './replay.ts';
import { AEAD_JOB_WORDS, writeAeadJob, type TransportCipher } from './transport-cipher.ts';

/** The initiator stops sending on a session this old, so its last packets still arrive before expiry. */
const INITIATOR_SEND_LIMIT = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT;
const TWO_POW_32 = 0x1_0000_0000;
const MAX_COUNTER_HIGH_WORD = Math.floor(REJECT_AFTER_MESSAGES / TWO_POW_32);
/** Counters below this are kept as small integers (`#replayNext` stays one for 2^31 messages, longer than any session lives). */
const SMALL_COUNTER_LIMIT = 0x7fff_fffe;

export type OpenResult = Uint8Array | 'replayed' | 'decryptFailed';

/** The one job of an unbatched seal or open, shared: a cipher call finishes before the next is written. */
const SINGLE_JOB = new Uint32Array(AEAD_JOB_WORDS);

/**
 * One set of transport keys (whitepaper §5.4.6): a send counter and a receive replay window.
 * The keys themselves live in the transport cipher from construction until `release()`; the
 * copies the handshake produced are wiped here. The cipher and the replay rings are the tunnel's
 * (passed in), so that a session is a handful of numbers.
 */
export class Session {
  // What a data message reads comes first, so that it shares the object's first cache line.
  /**
   * Our index, as a signed 32-bit value (compare with readI32): a small integer to V8 whatever its
   * top bit, stored in the object. As an unsigned value half of all indices would be boxed numbers,
   * one more cache miss per data message at thousands of clients.
   */
  readonly localIndex: number;
  /** Key id in the cipher. */
  readonly receiveKey: number;
  /**
   * The receive replay window: a ring at `#replayBase` of the tunnel's rings (-1 once released),
   * its next counter and its top word (see replay.ts).
   */
  #replayBase: number;
  #replayNext = 0;
  #replayTop = 0;
  readonly createdAt: number;
  // The rest is for sending.
  /** The peer's index, signed 32-bit like `localIndex`. */
  readonly remoteIndex: number;
  readonly isInitiator: boolean;
  /** Key id in the cipher. */
  readonly sendKey: number;
  #sendCounter = 0;

  constructor(keys: SessionKeys, isInitiator: boolean, now: number, cipher: TransportCipher, replayRings: ReplayRings) {
    this.localIndex = keys.localIndex | 0;
    this.receiveKey = cipher.addKey(keys.receiveKey, false);
    this.#replayBase = replayRings.acquire();
    this.createdAt = now;
    this.remoteIndex = keys.remoteIndex | 0;
    this.isInitiator = isInitiator;
    this.sendKey = cipher.addKey(keys.sendKey, true);
    keys.sendKey.fill(0);
    keys.receiveKey.fill(0);
  }

  isExpired(now: number): boolean {
    return now - this.createdAt >= REJECT_AFTER_TIME;
  }

  /** Released: its keys are gone from the cipher and its ring may be another session's. */
  get released(): boolean {
    return this.#replayBase < 0;
  }

  canSend(now: number): boolean {
    const limit = this.isInitiator ? INITIATOR_SEND_LIMIT : REJECT_AFTER_TIME;
    return this.#replayBase >= 0 && now - this.createdAt < limit && this.#sendCounter < REJECT_AFTER_MESSAGES;
  }

  get sendCounter(): number {
    return this.#sendCounter;
  }

  /** Removes both keys from the cipher and returns the replay ring (idempotent); the session can no longer seal or open. */
  release(cipher: TransportCipher, replayRings: ReplayRings): void {
    const base = this.#replayBase;
    if (base < 0) return;
    this.#replayBase = -1;
    cipher.removeKey(this.sendKey);
    cipher.removeKey(this.receiveKey);
    replayRings.release(base);
  }

  /**
   * Takes the next send counter and writes the transport header at `offset` in `out`; the
   * caller seals the payload at offset + 16 under `sendKey` with that counter.
   */
  writeHeader(out: Uint8Array, offset: number): number {
    const counter = this.#sendCounter++;
    writeU32(out, offset, MESSAGE_TRANSPORT);
    writeU32(out, offset + TRANSPORT_OFFSET_RECEIVER, this.remoteIndex);
    writeU32(out, offset + TRANSPORT_OFFSET_COUNTER, counter >>> 0);
    writeU32(out, offset + TRANSPORT_OFFSET_COUNTER + 4, Math.floor(counter / TWO_POW_32));
    return counter;
  }

  /**
   * Writes a transport message carrying `plaintext` into `out` at `offset` (which needs room for
   * plaintext.length + 32 bytes) and returns its length.
   */
  seal(plaintext: Uint8Array, out: Uint8Array, offset: number, cipher: TransportCipher): number {
    const counter = this.writeHeader(out, offset);
    writeAeadJob(SINGLE_JOB, 0, this.sendKey, counter, 0, plaintext.length, offset + TRANSPORT_OFFSET_DATA);
    cipher.run(false, plaintext, out, SINGLE_JOB, 1);
    return TRANSPORT_HEADER_SIZE + plaintext.length + AEAD_TAG_SIZE;
  }

  /**
   * The counter of a transport message addressed to this session, if the replay window could
   * still accept it (nothing is recorded until `acceptCounter`; a released session accepts
   * nothing). `words` are the tunnel's rings'.
   */
  receivableCounter(message: Uint8Array, words: Uint32Array): number | 'replayed' {
    const high = readU32(message, TRANSPORT_OFFSET_COUNTER + 4);
    if (high > MAX_COUNTER_HIGH_WORD) return 'replayed';
    const counter = high * TWO_POW_32 + readU32(message, TRANSPORT_OFFSET_COUNTER);
    const base = this.#replayBase;
    if (counter >= REJECT_AFTER_MESSAGES || base < 0 || !replayCheck(words, base, this.#replayNext, this.#replayTop, counter)) return 'replayed';
    return counter;
  }

  /**
   * Records an authenticated counter; false when it was a replay after all (a duplicate in one
   * batch), or the session was released (its ring may be another session's now).
   */
  acceptCounter(counter: number, words: Uint32Array): boolean {
    const base = this.#replayBase;
    const next = this.#replayNext;
    if (base < 0 || !replayCheck(words, base, next, this.#replayTop, counter)) return false;
    this.#replayTop = replayMark(words, base, next, this.#replayTop, counter);
    // `| 0` while it fits: a counter that came through a batch's Float64Array would otherwise make the field a boxed number.
    if (counter >= next) this.#replayNext = counter < SMALL_COUNTER_LIMIT ? (counter + 1) | 0 : counter + 1;
    return true;
  }

  /** Opens a transport message already known to be addressed to this session, into a new array. */
  open(message: Uint8Array, cipher: TransportCipher, replayRings: ReplayRings): OpenResult {
    if (message.length < TRANSPORT_MIN_SIZE) return 'decryptFailed';
    const counter = this.receivableCounter(message, replayRings.words);
    if (counter === 'replayed') return counter;
    const plaintext = new Uint8Array(message.length - TRANSPORT_MIN_SIZE);
    writeAeadJob(SINGLE_JOB, 0, this.receiveKey, counter, TRANSPORT_OFFSET_DATA, message.length - TRANSPORT_HEADER_SIZE, 0);
    if (cipher.run(true, message, plaintext, SINGLE_JOB, 1) !== 1) return 'decryptFailed';
    if (!this.acceptCounter(counter, replayRings.words)) return 'replayed';
    return plaintext;
  }
}

export function writeU32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value;
  out[offset + 1] = value >>> 8;
  out[offset + 2] = value >>> 16;
  out[offset + 3] = value >>> 24;
}

export function readI32(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24);
}

export function readU32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}
