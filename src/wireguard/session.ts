import { createSecretKey, type KeyObject } from 'node:crypto';
import {
  KEEPALIVE_TIMEOUT,
  MESSAGE_TRANSPORT,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME,
  TRANSPORT_HEADER_SIZE,
  TRANSPORT_OFFSET_COUNTER,
  TRANSPORT_OFFSET_DATA,
  TRANSPORT_OFFSET_RECEIVER,
} from './constants.ts';
import { aeadOpen, aeadSeal, writeNonce } from './crypto.ts';
import type { SessionKeys } from './noise.ts';
import { ReplayWindow } from './replay.ts';

/** The initiator stops sending on a session this old, so its last packets still arrive before expiry. */
const INITIATOR_SEND_LIMIT = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT;
const TWO_POW_32 = 0x1_0000_0000;
const MAX_COUNTER_HIGH_WORD = Math.floor(REJECT_AFTER_MESSAGES / TWO_POW_32);

export type OpenResult = Uint8Array | 'replayed' | 'decryptFailed';

/** One set of transport keys (whitepaper §5.4.6): a send counter and a receive replay window. */
export class Session {
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly createdAt: number;
  readonly isInitiator: boolean;
  readonly #sendKey: KeyObject;
  readonly #receiveKey: KeyObject;
  readonly #sendNonce = new Uint8Array(12);
  readonly #sendNonceView = new DataView(this.#sendNonce.buffer);
  readonly #receiveNonce = new Uint8Array(12);
  readonly #receiveNonceView = new DataView(this.#receiveNonce.buffer);
  readonly #replay = new ReplayWindow();
  #sendCounter = 0;

  constructor(keys: SessionKeys, isInitiator: boolean, now: number) {
    this.localIndex = keys.localIndex;
    this.remoteIndex = keys.remoteIndex;
    this.isInitiator = isInitiator;
    this.createdAt = now;
    this.#sendKey = createSecretKey(keys.sendKey);
    this.#receiveKey = createSecretKey(keys.receiveKey);
  }

  isExpired(now: number): boolean {
    return now - this.createdAt >= REJECT_AFTER_TIME;
  }

  canSend(now: number): boolean {
    const limit = this.isInitiator ? INITIATOR_SEND_LIMIT : REJECT_AFTER_TIME;
    return now - this.createdAt < limit && this.#sendCounter < REJECT_AFTER_MESSAGES;
  }

  get sendCounter(): number {
    return this.#sendCounter;
  }

  /**
   * Writes a transport message carrying `plaintext` into `out` at `offset` (which needs room for
   * plaintext.length + 32 bytes) and returns its length.
   */
  seal(plaintext: Uint8Array, out: Uint8Array, offset: number): number {
    const counter = this.#sendCounter++;
    writeU32(out, offset, MESSAGE_TRANSPORT);
    writeU32(out, offset + TRANSPORT_OFFSET_RECEIVER, this.remoteIndex);
    writeU32(out, offset + TRANSPORT_OFFSET_COUNTER, counter >>> 0);
    writeU32(out, offset + TRANSPORT_OFFSET_COUNTER + 4, Math.floor(counter / TWO_POW_32));
    writeNonce(this.#sendNonce, this.#sendNonceView, counter);
    return TRANSPORT_HEADER_SIZE + aeadSeal(this.#sendKey, this.#sendNonce, plaintext, undefined, out, offset + TRANSPORT_OFFSET_DATA);
  }

  /** Opens a transport message already known to be addressed to this session. */
  open(message: Uint8Array): OpenResult {
    const high = readU32(message, TRANSPORT_OFFSET_COUNTER + 4);
    if (high > MAX_COUNTER_HIGH_WORD) return 'replayed';
    const counter = high * TWO_POW_32 + readU32(message, TRANSPORT_OFFSET_COUNTER);
    if (counter >= REJECT_AFTER_MESSAGES || !this.#replay.check(counter)) return 'replayed';
    writeNonce(this.#receiveNonce, this.#receiveNonceView, counter);
    const plaintext = aeadOpen(this.#receiveKey, this.#receiveNonce, message.subarray(TRANSPORT_OFFSET_DATA), undefined);
    if (plaintext === undefined) return 'decryptFailed';
    if (!this.#replay.update(counter)) return 'replayed';
    return plaintext;
  }
}

export function writeU32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value;
  out[offset + 1] = value >>> 8;
  out[offset + 2] = value >>> 16;
  out[offset + 3] = value >>> 24;
}

export function readU32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}
