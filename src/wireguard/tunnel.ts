// One WireGuard peer as a sans-IO state machine.
//
// Outbound: `encapsulate` seals an IP packet with the current session, or queues it and starts
// a handshake. Inbound: `decapsulate` returns the decrypted IP packet, or handles a handshake
// message (its answer lands in the transmit queue), or names why the datagram was dropped.
// Timers: `pollTimeout` is the next instant `handleTimeout` has work (retransmission, rekey,
// keepalive, expiry); their rules are the whitepaper's §6 with boringtun's choices as
// configured by Firezone (rekey-attempt 15 s, no persistent keepalive).
import type { RandomSource } from '../util/random.ts';
import { RingQueue } from '../util/ring-queue.ts';
import { createLogger, Level } from '../log/index.ts';
import {
  COOKIE_EXPIRATION,
  COOKIE_OFFSET_COOKIE,
  COOKIE_OFFSET_NONCE,
  INITIATION_OFFSET_MAC1,
  INITIATION_OFFSET_MAC2,
  KEEPALIVE_TIMEOUT,
  KEY_SIZE,
  MAC_SIZE,
  MAX_QUEUED_PACKETS,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_ATTEMPT_TIME,
  REKEY_ON_RECEIVE_AGE,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  RESPONSE_OFFSET_MAC1,
  RESPONSE_OFFSET_MAC2,
  SESSION_RING_SIZE,
  TRANSPORT_OFFSET_RECEIVER,
  TRANSPORT_OVERHEAD,
  WIPE_AFTER_TIME,
  COOKIE_NONCE_SIZE,
  COOKIE_REPLY_SIZE,
} from './constants.ts';
import { constantTimeEqual, dh, mac, xaeadOpen } from './crypto.ts';
import { publicIdentity, type PublicIdentity, type StaticIdentity } from './keys.ts';
import { messageType, receiverIndex } from './messages.ts';
import {
  consumeResponse,
  createInitiation,
  createResponse,
  finishInitiation,
  openInitiation,
  type InitiationState,
  type SessionKeys,
} from './noise.ts';
import type { RateLimiter } from './rate-limiter.ts';
import { readU32, Session } from './session.ts';
import { isLater, tai64n } from './tai64n.ts';

export interface TunnelConfig {
  readonly local: StaticIdentity;
  /** The peer's static public key, raw or with its derived values precomputed. */
  readonly peer: PublicIdentity | Uint8Array;
  readonly presharedKey: Uint8Array;
  /** A 24-bit value from `SessionIndexAllocator.next()`, unique within the node. */
  readonly index: number;
  readonly rng: RandomSource;
  /** Shared by every tunnel of the node. */
  readonly rateLimiter: RateLimiter;
  readonly now: number;
  /** Unix time minus `now`, in ms, for handshake timestamps; the runtime measures it once. */
  readonly unixOffsetMs?: number;
  readonly rekeyAttemptTime?: number;
  /** Free bytes left in front of every datagram `encapsulate` returns (for a ChannelData header). */
  readonly headroom?: number;
}

/** Outcomes of `decapsulate` other than a decrypted IP packet. */
export type DecapsulateOutcome =
  /** A handshake message was accepted; drain `pollTransmit` and `pollEvent`. */
  | 'handshake'
  /** A cookie reply was accepted; the next handshake message carries MAC2. */
  | 'cookie'
  | 'keepalive';

export type DecapsulateDrop =
  | 'malformed'
  | 'badMac1'
  /** Over the handshake rate limit without a valid MAC2: a cookie reply is in `pollTransmit`. */
  | 'underLoad'
  | 'wrongPeer'
  | 'handshakeFailed'
  | 'staleTimestamp'
  | 'unexpected'
  | 'unknownSession'
  | 'expired'
  | 'replayed'
  | 'decryptFailed'
  | 'notIp';

export type DecapsulateResult = Uint8Array | DecapsulateOutcome | DecapsulateDrop;

export type EncapsulateResult = Uint8Array | 'queued' | 'queueFull';

export type TunnelEvent =
  /** A new session is ready for sending. */
  | { readonly kind: 'sessionEstablished' }
  /** Handshakes failed for REKEY_ATTEMPT_TIME, or no session for 540 s: all state is wiped. */
  | { readonly kind: 'connectionExpired' };

const SESSION_ESTABLISHED: TunnelEvent = Object.freeze({ kind: 'sessionEstablished' });
const CONNECTION_EXPIRED: TunnelEvent = Object.freeze({ kind: 'connectionExpired' });
const EMPTY = new Uint8Array(0);

/** Our initiation in flight. `state` is undefined when the peer key made the DH fail. */
interface PendingHandshake {
  readonly state: InitiationState | undefined;
  readonly startedAt: number;
  readonly retransmitAt: number;
}

const log = createLogger('wireguard');

export class Tunnel {
  readonly #local: StaticIdentity;
  readonly #peer: PublicIdentity;
  readonly #presharedKey: Uint8Array;
  readonly #staticStatic: Uint8Array | undefined;
  readonly #index: number;
  readonly #rng: RandomSource;
  readonly #rateLimiter: RateLimiter;
  readonly #unixOffsetMs: number;
  readonly #rekeyAttemptTime: number;
  readonly #headroom: number;

  readonly #sessions: (Session | undefined)[] = new Array<Session | undefined>(SESSION_RING_SIZE).fill(undefined);
  /** When the oldest session in the ring expires (Infinity with none): polls do not scan the ring. */
  #sessionsExpireAt = Infinity;
  /** The session used for sending. */
  #current: Session | undefined;
  /** A responder session waiting for the initiator's first transport message. */
  #unconfirmed: Session | undefined;
  #handshakeCounter = 0;

  #pending: PendingHandshake | undefined;
  #handshakeScheduledAt: number | undefined;
  #lastReceivedTimestamp: Uint8Array | undefined;
  /** MAC1 and sender index of the last handshake message we sent, to match cookie replies. */
  #lastSentMac1: Uint8Array | undefined;
  #lastSentIndex: number | undefined;
  #cookie: Uint8Array | undefined;
  #cookieReceivedAt = 0;
  #lastTimestampMs = 0;

  #sessionEstablishedAt: number;
  #isInitiator = false;
  #lastDataSentAt: number;
  #lastDataReceivedAt: number;
  #firstDataSentWithoutReply: number | undefined;
  #lastDataReceivedWithoutReply: number | undefined;

  readonly #queue: Uint8Array[] = [];
  readonly #transmits = new RingQueue<Uint8Array>(4);
  readonly #events = new RingQueue<TunnelEvent>(2);

  constructor(config: TunnelConfig) {
    this.#local = config.local;
    this.#peer = config.peer instanceof Uint8Array ? publicIdentity(config.peer) : config.peer;
    if (config.presharedKey.length !== KEY_SIZE) throw new RangeError('a preshared key has 32 bytes');
    this.#presharedKey = Uint8Array.from(config.presharedKey);
    this.#staticStatic = dh(this.#local.privateKey, this.#peer.keyObject);
    this.#index = config.index & 0xff_ffff;
    this.#rng = config.rng;
    this.#rateLimiter = config.rateLimiter;
    this.#unixOffsetMs = config.unixOffsetMs ?? 0;
    this.#rekeyAttemptTime = config.rekeyAttemptTime ?? REKEY_ATTEMPT_TIME;
    this.#headroom = config.headroom ?? 0;
    this.#sessionEstablishedAt = config.now;
    this.#lastDataSentAt = config.now;
    this.#lastDataReceivedAt = config.now;
  }

  get peerPublicKey(): Uint8Array {
    return this.#peer.publicKey;
  }

  /** Whether a session can carry data right now. */
  hasSession(now: number): boolean {
    return this.#current?.canSend(now) === true;
  }

  isHandshaking(): boolean {
    return this.#pending !== undefined || this.#handshakeScheduledAt !== undefined;
  }

  /**
   * Seals an IP packet. Returns the datagram (a view with `headroom` free bytes before it), or
   * 'queued' when it waits for a handshake (started here if none is running).
   */
  encapsulate(packet: Uint8Array, now: number): EncapsulateResult {
    const session = this.#current;
    if (session !== undefined && session.canSend(now)) return this.#seal(session, packet, now);

    if (this.#queue.length >= MAX_QUEUED_PACKETS) return 'queueFull';
    this.#queue.push(packet.slice());
    if (!this.isHandshaking()) this.#sendInitiation(now, false);
    return 'queued';
  }

  /**
   * Handles one datagram from the peer. `sourceIp` is the sender's IP address; under load a
   * cookie is bound to it.
   */
  decapsulate(datagram: Uint8Array, sourceIp: string | Uint8Array, now: number): DecapsulateResult {
    switch (messageType(datagram)) {
      case MESSAGE_TRANSPORT:
        return this.#receiveTransport(datagram, now);
      case MESSAGE_INITIATION:
      case MESSAGE_RESPONSE:
        return this.#receiveHandshake(datagram, sourceIp, now);
      case MESSAGE_COOKIE_REPLY:
        return this.#receiveCookieReply(datagram, now);
      default:
        return 'malformed';
    }
  }

  /**
   * Starts a handshake now (after ICE nomination, or to force a rekey), unless one is already
   * in flight: its retransmission timer covers that case.
   */
  initiateHandshake(now: number): void {
    if (this.#pending !== undefined) return;
    this.#handshakeScheduledAt = undefined;
    this.#sendInitiation(now, false);
  }

  handleTimeout(now: number): void {
    if (this.#handshakeScheduledAt !== undefined && now >= this.#handshakeScheduledAt) {
      this.#handshakeScheduledAt = undefined;
      this.#sendInitiation(now, this.#pending !== undefined);
    }

    this.#expireSessions(now);

    if (now >= this.#sessionEstablishedAt + WIPE_AFTER_TIME) {
      this.#expire(now, 'no session for 540 s');
      return;
    }

    if (this.#cookie !== undefined && now >= this.#cookieReceivedAt + COOKIE_EXPIRATION) this.#cookie = undefined;

    const pending = this.#pending;
    if (pending !== undefined) {
      if (now >= pending.startedAt + this.#rekeyAttemptTime) {
        this.#expire(now, 'handshake did not complete within REKEY_ATTEMPT_TIME');
        return;
      }
      if (now >= pending.retransmitAt && this.#handshakeScheduledAt === undefined) this.#sendInitiation(now, true);
      return;
    }
    if (this.#handshakeScheduledAt !== undefined) return;

    if (this.#isHandshakeDue(now)) {
      this.#handshakeScheduledAt = now + this.#jitter();
      if (this.#handshakeScheduledAt <= now) this.handleTimeout(now);
      return;
    }

    if (this.#lastDataReceivedWithoutReply !== undefined && now >= this.#lastDataReceivedWithoutReply + KEEPALIVE_TIMEOUT) {
      this.#lastDataReceivedWithoutReply = undefined;
      const session = this.#current;
      if (session !== undefined && session.canSend(now)) this.#transmits.push(this.#seal(session, EMPTY, now));
    }
  }

  pollTimeout(): number | undefined {
    let earliest = this.#sessionEstablishedAt + WIPE_AFTER_TIME;
    if (this.#sessionsExpireAt < earliest) earliest = this.#sessionsExpireAt;
    if (this.#handshakeScheduledAt !== undefined) return Math.min(earliest, this.#handshakeScheduledAt);
    const pending = this.#pending;
    if (pending !== undefined) return Math.min(earliest, pending.retransmitAt, pending.startedAt + this.#rekeyAttemptTime);
    const onSend = this.#rekeyOnSendAt();
    if (onSend !== undefined && onSend < earliest) earliest = onSend;
    const onReceive = this.#rekeyOnReceiveAt();
    if (onReceive !== undefined && onReceive < earliest) earliest = onReceive;
    const noReply = this.#firstDataSentWithoutReply;
    if (noReply !== undefined && noReply + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT < earliest) earliest = noReply + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT;
    const quiet = this.#lastDataReceivedWithoutReply;
    if (quiet !== undefined && quiet + KEEPALIVE_TIMEOUT < earliest) earliest = quiet + KEEPALIVE_TIMEOUT;
    return earliest;
  }

  pollTransmit(): Uint8Array | undefined {
    return this.#transmits.shift();
  }

  pollEvent(): TunnelEvent | undefined {
    return this.#events.shift();
  }

  // --- outbound ---

  #seal(session: Session, packet: Uint8Array, now: number): Uint8Array {
    const buffer = Buffer.allocUnsafe(this.#headroom + packet.length + TRANSPORT_OVERHEAD);
    session.seal(packet, buffer, this.#headroom);
    this.#lastDataReceivedWithoutReply = undefined;
    if (packet.length > 0) {
      this.#lastDataSentAt = now;
      this.#firstDataSentWithoutReply ??= now;
    }
    return this.#headroom === 0 ? buffer : buffer.subarray(this.#headroom);
  }

  #sendInitiation(now: number, isRetransmit: boolean): void {
    const startedAt = isRetransmit && this.#pending !== undefined ? this.#pending.startedAt : now;
    const localIndex = this.#nextLocalIndex();
    const ephemeral = new Uint8Array(KEY_SIZE);
    this.#rng.fill(ephemeral);
    const created =
      this.#staticStatic === undefined
        ? undefined
        : createInitiation(
            this.#local,
            this.#peer,
            this.#staticStatic,
            localIndex,
            ephemeral,
            tai64n(this.#nextTimestampMs(now)),
          );
    ephemeral.fill(0);
    this.#pending = { state: created?.state, startedAt, retransmitAt: now + REKEY_TIMEOUT + this.#jitter() };
    if (created === undefined) return;
    this.#addMacs(created.message, INITIATION_OFFSET_MAC1, INITIATION_OFFSET_MAC2, localIndex, now);
    this.#transmits.push(created.message);
    this.#lastDataReceivedWithoutReply = undefined;
    if (log.enabled(Level.Debug)) log.debug('sending handshake initiation', { index: localIndex, isRetransmit });
  }

  #addMacs(message: Uint8Array, mac1At: number, mac2At: number, senderIndex: number, now: number): void {
    const mac1 = mac(this.#peer.mac1Key, message.subarray(0, mac1At));
    message.set(mac1, mac1At);
    if (this.#cookie !== undefined && now < this.#cookieReceivedAt + COOKIE_EXPIRATION) {
      message.set(mac(this.#cookie, message.subarray(0, mac2At)), mac2At);
    }
    this.#lastSentMac1 = mac1;
    this.#lastSentIndex = senderIndex;
  }

  #flushQueue(now: number): void {
    const session = this.#current;
    if (session === undefined) return;
    for (const packet of this.#queue) this.#transmits.push(this.#seal(session, packet, now));
    this.#queue.length = 0;
  }

  // --- inbound ---

  #receiveTransport(datagram: Uint8Array, now: number): DecapsulateResult {
    const index = readU32(datagram, TRANSPORT_OFFSET_RECEIVER);
    const session = this.#sessions[index % SESSION_RING_SIZE];
    if (session === undefined || session.localIndex !== index) return 'unknownSession';
    if (session.isExpired(now)) return 'expired';
    const plaintext = session.open(datagram);
    if (typeof plaintext === 'string') return plaintext;

    this.#firstDataSentWithoutReply = undefined;
    if (session === this.#unconfirmed) {
      this.#unconfirmed = undefined;
      this.#current = session;
      this.#events.push(SESSION_ESTABLISHED);
      this.#flushQueue(now);
    }
    if (plaintext.length === 0) return 'keepalive';

    const packet = ipPacket(plaintext);
    if (packet === undefined) return 'notIp';
    this.#lastDataReceivedAt = now;
    this.#lastDataReceivedWithoutReply = now;
    return packet;
  }

  #receiveHandshake(datagram: Uint8Array, sourceIp: string | Uint8Array, now: number): DecapsulateResult {
    const verdict = this.#rateLimiter.verify(datagram, sourceIp, now);
    switch (verdict.kind) {
      case 'accept':
        return datagram[0] === MESSAGE_INITIATION
          ? this.#receiveInitiation(datagram, now)
          : this.#receiveResponse(datagram, now);
      case 'reject':
        return verdict.reason;
      case 'cookieReply':
        this.#transmits.push(verdict.message);
        return 'underLoad';
    }
  }

  #receiveInitiation(datagram: Uint8Array, now: number): DecapsulateResult {
    if (this.#staticStatic === undefined) return 'handshakeFailed';
    const opened = openInitiation(this.#local, datagram);
    if (opened === undefined) return 'handshakeFailed';
    if (!constantTimeEqual(opened.peerStatic, this.#peer.publicKey)) return 'wrongPeer';
    const finished = finishInitiation(opened, this.#staticStatic);
    if (finished === undefined) return 'handshakeFailed';
    if (this.#lastReceivedTimestamp !== undefined && !isLater(finished.timestamp, this.#lastReceivedTimestamp)) {
      return 'staleTimestamp';
    }

    const localIndex = this.#nextLocalIndex();
    const ephemeral = new Uint8Array(KEY_SIZE);
    this.#rng.fill(ephemeral);
    const response = createResponse(
      this.#peer,
      { peerIndex: opened.peerIndex, peerEphemeral: opened.peerEphemeral, chainKey: finished.chainKey, hash: finished.hash },
      localIndex,
      ephemeral,
      this.#presharedKey,
    );
    ephemeral.fill(0);
    if (response === undefined) return 'handshakeFailed';

    this.#lastReceivedTimestamp = finished.timestamp;
    this.#addMacs(response.message, RESPONSE_OFFSET_MAC1, RESPONSE_OFFSET_MAC2, localIndex, now);
    this.#transmits.push(response.message);
    this.#lastDataReceivedWithoutReply = undefined;
    this.#firstDataSentWithoutReply = undefined;
    this.#unconfirmed = this.#installSession(response.keys, false, now);
    if (log.enabled(Level.Debug)) log.debug('answered handshake initiation', { index: localIndex });
    return 'handshake';
  }

  #receiveResponse(datagram: Uint8Array, now: number): DecapsulateResult {
    const state = this.#pending?.state;
    if (state === undefined) return 'unexpected';
    const keys = consumeResponse(this.#local, state, datagram, this.#presharedKey);
    if (keys === undefined) return 'handshakeFailed';

    this.#pending = undefined;
    this.#handshakeScheduledAt = undefined;
    this.#firstDataSentWithoutReply = undefined;
    this.#current = this.#installSession(keys, true, now);
    this.#events.push(SESSION_ESTABLISHED);
    if (this.#queue.length > 0) this.#flushQueue(now);
    else this.#transmits.push(this.#seal(this.#current, EMPTY, now));
    if (log.enabled(Level.Debug)) log.debug('handshake completed', { index: keys.localIndex });
    return 'handshake';
  }

  #receiveCookieReply(datagram: Uint8Array, now: number): DecapsulateResult {
    if (this.#lastSentMac1 === undefined || receiverIndex(datagram) !== this.#lastSentIndex) return 'unexpected';
    const nonce = datagram.subarray(COOKIE_OFFSET_NONCE, COOKIE_OFFSET_NONCE + COOKIE_NONCE_SIZE);
    const sealed = datagram.subarray(COOKIE_OFFSET_COOKIE, COOKIE_REPLY_SIZE);
    const cookie = xaeadOpen(this.#peer.cookieKey, nonce, sealed, this.#lastSentMac1);
    if (cookie === undefined || cookie.length !== MAC_SIZE) return 'decryptFailed';
    this.#cookie = cookie;
    this.#cookieReceivedAt = now;
    return 'cookie';
  }

  // --- state ---

  #installSession(keys: SessionKeys, isInitiator: boolean, now: number): Session {
    const session = new Session(keys, isInitiator, now);
    this.#sessions[keys.localIndex % SESSION_RING_SIZE] = session;
    this.#updateSessionsExpiry();
    this.#sessionEstablishedAt = now;
    this.#isInitiator = isInitiator;
    return session;
  }

  #expireSessions(now: number): void {
    if (now < this.#sessionsExpireAt) return;
    for (let i = 0; i < SESSION_RING_SIZE; i++) {
      const session = this.#sessions[i];
      if (session === undefined || !session.isExpired(now)) continue;
      this.#sessions[i] = undefined;
      this.#updateSessionsExpiry();
      if (session === this.#unconfirmed) this.#unconfirmed = undefined;
      if (session !== this.#current) continue;
      this.#current = undefined;
      // The initiator of an expired session replaces it, as boringtun does.
      if (this.#isInitiator && this.#pending === undefined) this.#handshakeScheduledAt ??= now + this.#jitter();
    }
  }

  #updateSessionsExpiry(): void {
    let earliest = Infinity;
    for (const session of this.#sessions) if (session !== undefined && session.createdAt + REJECT_AFTER_TIME < earliest) earliest = session.createdAt + REJECT_AFTER_TIME;
    this.#sessionsExpireAt = earliest;
  }

  #isHandshakeDue(now: number): boolean {
    const onSend = this.#rekeyOnSendAt();
    const onReceive = this.#rekeyOnReceiveAt();
    const noReply = this.#firstDataSentWithoutReply;
    return (
      (onSend !== undefined && now >= onSend) ||
      (onReceive !== undefined && now >= onReceive) ||
      (noReply !== undefined && now >= noReply + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT)
    );
  }

  #rekeyOnSendAt(): number | undefined {
    if (!this.#isInitiator || this.#lastDataSentAt <= this.#sessionEstablishedAt) return undefined;
    return this.#sessionEstablishedAt + REKEY_AFTER_TIME;
  }

  #rekeyOnReceiveAt(): number | undefined {
    if (!this.#isInitiator || this.#lastDataReceivedAt <= this.#sessionEstablishedAt) return undefined;
    return this.#sessionEstablishedAt + REKEY_ON_RECEIVE_AGE;
  }

  #expire(now: number, reason: string): void {
    this.#sessions.fill(undefined);
    this.#sessionsExpireAt = Infinity;
    this.#current = undefined;
    this.#unconfirmed = undefined;
    this.#pending = undefined;
    this.#handshakeScheduledAt = undefined;
    this.#queue.length = 0;
    this.#sessionEstablishedAt = now;
    this.#lastDataSentAt = now;
    this.#lastDataReceivedAt = now;
    this.#firstDataSentWithoutReply = undefined;
    this.#lastDataReceivedWithoutReply = undefined;
    this.#events.push(CONNECTION_EXPIRED);
    log.debug('connection expired', { reason });
  }

  #nextLocalIndex(): number {
    this.#handshakeCounter = (this.#handshakeCounter + 1) & 0xff;
    return ((this.#index << 8) | this.#handshakeCounter) >>> 0;
  }

  /** Strictly increasing, so the peer never discards an initiation as a replay of our previous one. */
  #nextTimestampMs(now: number): number {
    this.#lastTimestampMs = Math.max(Math.floor(now + this.#unixOffsetMs), this.#lastTimestampMs + 1);
    return this.#lastTimestampMs;
  }

  #jitter(): number {
    return this.#rng.u32() % REKEY_TIMEOUT_JITTER_MAX;
  }
}

/**
 * The IP packet inside a decrypted payload, cut to the length its header states; undefined
 * when it is neither a well-formed IPv4 nor IPv6 packet.
 */
function ipPacket(plaintext: Uint8Array): Uint8Array | undefined {
  const version = plaintext[0]! >> 4;
  let length: number;
  if (version === 4) {
    if (plaintext.length < 20) return undefined;
    length = (plaintext[2]! << 8) | plaintext[3]!;
    if (length < 20) return undefined;
  } else if (version === 6) {
    if (plaintext.length < 40) return undefined;
    length = 40 + ((plaintext[4]! << 8) | plaintext[5]!);
  } else {
    return undefined;
  }
  if (length > plaintext.length) return undefined;
  return length === plaintext.length ? plaintext : plaintext.subarray(0, length);
}
