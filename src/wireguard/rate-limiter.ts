import type { RandomSource } from '../util/random.ts';
import {
  COOKIE_NONCE_SIZE,
  COOKIE_OFFSET_COOKIE,
  COOKIE_OFFSET_NONCE,
  COOKIE_OFFSET_RECEIVER,
  COOKIE_REPLY_SIZE,
  COOKIE_SECRET_ROTATION,
  HANDSHAKE_RATE_LIMIT,
  INITIATION_OFFSET_MAC1,
  INITIATION_OFFSET_MAC2,
  INITIATION_SIZE,
  KEY_SIZE,
  MAC_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  OFFSET_SENDER,
  RATE_LIMIT_RESET_INTERVAL,
  RESPONSE_OFFSET_MAC1,
  RESPONSE_OFFSET_MAC2,
  RESPONSE_SIZE,
} from './constants.ts';
import { constantTimeEqual, mac, xaeadSeal } from './crypto.ts';
import type { PublicIdentity } from './keys.ts';

export type HandshakeVerdict =
  | { readonly kind: 'accept' }
  | { readonly kind: 'reject'; readonly reason: 'malformed' | 'badMac1' }
  | { readonly kind: 'cookieReply'; readonly message: Uint8Array };

const ACCEPT: HandshakeVerdict = Object.freeze({ kind: 'accept' });
const MALFORMED: HandshakeVerdict = Object.freeze({ kind: 'reject', reason: 'malformed' });
const BAD_MAC1: HandshakeVerdict = Object.freeze({ kind: 'reject', reason: 'badMac1' });

const encoder = new TextEncoder();

/**
 * The node-wide handshake gate (whitepaper §5.4.7): MAC1 on every handshake message, and once
 * more than `limit` handshake messages arrived within the current second, a valid MAC2 for
 * the sender's IP or else a cookie reply. One instance is shared by every tunnel of a node.
 *
 * `verify` applies the per-second count reset and the secret rotation itself when their time
 * has passed, so an owner need not wake up for them (a node with no handshakes sleeps).
 */
export class RateLimiter {
  readonly #local: PublicIdentity;
  readonly #rng: RandomSource;
  readonly #limit: number;
  readonly #secret = new Uint8Array(KEY_SIZE);
  #secretRotatesAt: number;
  #count = 0;
  #countResetsAt: number;

  constructor(local: PublicIdentity, rng: RandomSource, now: number, limit = HANDSHAKE_RATE_LIMIT) {
    this.#local = local;
    this.#rng = rng;
    this.#limit = limit;
    rng.fill(this.#secret);
    this.#secretRotatesAt = now + COOKIE_SECRET_ROTATION;
    this.#countResetsAt = now + RATE_LIMIT_RESET_INTERVAL;
  }

  handleTimeout(now: number): void {
    if (now >= this.#countResetsAt) {
      this.#count = 0;
      this.#countResetsAt = now + RATE_LIMIT_RESET_INTERVAL;
    }
    if (now >= this.#secretRotatesAt) {
      this.#rng.fill(this.#secret);
      this.#secretRotatesAt = now + COOKIE_SECRET_ROTATION;
    }
  }

  pollTimeout(): number {
    return Math.min(this.#countResetsAt, this.#secretRotatesAt);
  }

  isUnderLoad(): boolean {
    return this.#count >= this.#limit;
  }

  /**
   * Checks a handshake initiation or response addressed to us. `sourceIp` is the sender's IP
   * address (textual or raw), to which a cookie is bound.
   */
  verify(message: Uint8Array, sourceIp: string | Uint8Array, now: number): HandshakeVerdict {
    this.handleTimeout(now);
    const offsets = macOffsets(message);
    if (offsets === undefined) return MALFORMED;
    const [mac1At, mac2At] = offsets;
    const mac1 = message.subarray(mac1At, mac2At);
    if (!constantTimeEqual(mac(this.#local.mac1Key, message.subarray(0, mac1At)), mac1)) return BAD_MAC1;

    const underLoad = this.#count >= this.#limit;
    this.#count++;
    if (!underLoad) return ACCEPT;

    const cookie = this.#cookieFor(sourceIp);
    const mac2 = message.subarray(mac2At, mac2At + MAC_SIZE);
    if (constantTimeEqual(mac(cookie, message.subarray(0, mac2At)), mac2)) return ACCEPT;
    return { kind: 'cookieReply', message: this.#cookieReply(message, mac1, cookie) };
  }

  #cookieFor(sourceIp: string | Uint8Array): Uint8Array {
    return mac(this.#secret, typeof sourceIp === 'string' ? encoder.encode(sourceIp) : sourceIp);
  }

  #cookieReply(message: Uint8Array, mac1: Uint8Array, cookie: Uint8Array): Uint8Array {
    const reply = new Uint8Array(COOKIE_REPLY_SIZE);
    reply[0] = MESSAGE_COOKIE_REPLY;
    reply.set(message.subarray(OFFSET_SENDER, OFFSET_SENDER + 4), COOKIE_OFFSET_RECEIVER);
    const nonce = reply.subarray(COOKIE_OFFSET_NONCE, COOKIE_OFFSET_NONCE + COOKIE_NONCE_SIZE);
    this.#rng.fill(nonce);
    reply.set(xaeadSeal(this.#local.cookieKey, nonce, cookie, mac1), COOKIE_OFFSET_COOKIE);
    return reply;
  }
}

function macOffsets(message: Uint8Array): readonly [number, number] | undefined {
  if (message[1] !== 0 || message[2] !== 0 || message[3] !== 0) return undefined;
  if (message[0] === MESSAGE_INITIATION && message.length === INITIATION_SIZE) {
    return INITIATION_MACS;
  }
  if (message[0] === MESSAGE_RESPONSE && message.length === RESPONSE_SIZE) return RESPONSE_MACS;
  return undefined;
}

const INITIATION_MACS = [INITIATION_OFFSET_MAC1, INITIATION_OFFSET_MAC2] as const;
const RESPONSE_MACS = [RESPONSE_OFFSET_MAC1, RESPONSE_OFFSET_MAC2] as const;
