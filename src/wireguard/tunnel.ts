// One WireGuard peer as a sans-IO state machine.
//
// Outbound: `encapsulate` seals an IP packet with the current session, or queues it and starts
// a handshake. Inbound: `decapsulate` returns the decrypted IP packet, or handles a handshake
// message (its answer lands in the transmit queue), or names why the datagram was dropped.
// Timers: `pollTimeout` is the next instant `handleTimeout` has work (retransmission, rekey,
// keepalive, expiry); their rules are the whitepaper's §6 with boringtun's choices as
// configured by Firezone (rekey-attempt 15 s, no persistent keepalive); an ICE-less connection
// sets its own rekey-attempt time, keepalive timeout and rekey timeout per tunnel.
//
// Data messages can also go through batches (transport-batch.ts): `encapsulateInto` and
// `decapsulate(..., batch)` do the protocol work per packet and leave the AEAD to one cipher
// call per batch; `completeOpen` is the batch handing an opened message back. The AEAD itself
// runs in the injected `TransportCipher` (native or node:crypto), which holds each session's keys
// until the session is dropped or the tunnel closed.
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
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  RESPONSE_OFFSET_MAC1,
  RESPONSE_OFFSET_MAC2,
  SESSION_RING_SIZE,
  TRANSPORT_MIN_SIZE,
  TRANSPORT_OFFSET_RECEIVER,
  TRANSPORT_OVERHEAD,
  WIPE_AFTER_TIME,
  COOKIE_NONCE_SIZE,
  COOKIE_REPLY_SIZE,
  TIMESTAMP_SIZE,
} from './constants.ts';
import { constantTimeEqual, dh, importPublicKey, mac, xaeadOpen } from './crypto.ts';
import { cookieKey, mac1Key, publicIdentity, type PublicIdentity, type StaticIdentity } from './keys.ts';
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
import { ReplayRings } from './replay.ts';
import { readI32, Session } from './session.ts';
import { isLater, tai64n } from './tai64n.ts';
import type { OpenBatch, OpenOutcome, SealBatch } from './transport-batch.ts';
import { AEAD_BAD_KEY, AEAD_OK, NodeCryptoTransportCipher, type TransportCipher } from './transport-cipher.ts';

export interface TunnelConfig {
  readonly local: StaticIdentity;
  /** The peer's static public key, raw or as a PublicIdentity (only its key is kept). */
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
  /** Passive keepalive after this long with data received and nothing sent (default KEEPALIVE_TIMEOUT). */
  readonly keepaliveTimeout?: number;
  /** Handshake retransmission interval, before jitter (default REKEY_TIMEOUT). */
  readonly rekeyTimeout?: number;
  /** Free bytes left in front of every datagram `encapsulate` returns (for a ChannelData header). */
  readonly headroom?: number;
  /** Where transport keys live and data messages are sealed and opened (node:crypto by default). */
  readonly cipher?: TransportCipher;
  /** Storage of the sessions' replay windows, best shared by every tunnel of the node (the tunnel's own by default). */
  readonly replayRings?: ReplayRings;
}

/** Outcomes of `decapsulate` other than a decrypted IP packet. */
export type DecapsulateOutcome =
  /** A handshake message was accepted; drain `pollTransmit` and `pollEvent`. */
  | 'handshake'
  /** A cookie reply was accepted; the next handshake message carries MAC2. */
  | 'cookie'
  | 'keepalive'
  /** A data message joined the open batch passed in; its result comes from the batch. */
  | 'pending';

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

/** `encapsulateInto`: the batch slot the packet was queued in, or why not. */
export type EncapsulateIntoResult = number | 'queued' | 'queueFull' | 'batchFull';

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

// A tunnel's fixed-size secrets and handshake values live at these offsets of one buffer (a
// standalone Uint8Array costs ~200 B of heap besides its bytes). The hashes of the peer's key
// (MAC1 and cookie keys, initial hash) are not kept: a handshake recomputes them in microseconds.
const PEER_PUBLIC_KEY = 0;
const PRESHARED_KEY = PEER_PUBLIC_KEY + KEY_SIZE;
/** DH(our static, their static), computed once per tunnel. */
const STATIC_STATIC = PRESHARED_KEY + KEY_SIZE;
const LAST_SENT_MAC1 = STATIC_STATIC + KEY_SIZE;
const COOKIE = LAST_SENT_MAC1 + MAC_SIZE;
const LAST_RECEIVED_TIMESTAMP = COOKIE + MAC_SIZE;
const TUNNEL_BYTES = LAST_RECEIVED_TIMESTAMP + TIMESTAMP_SIZE;

/** What a node's tunnels with the same settings share: one object instead of ten fields per tunnel. */
interface TunnelContext {
  readonly local: StaticIdentity;
  readonly rng: RandomSource;
  readonly rateLimiter: RateLimiter;
  readonly unixOffsetMs: number;
  readonly rekeyAttemptTime: number;
  readonly keepaliveTimeout: number;
  readonly rekeyTimeout: number;
  readonly headroom: number;
  readonly cipher: TransportCipher;
  readonly replayRings: ReplayRings;
}

/** The contexts made so far, by the node's rate limiter (every tunnel of a node has the same one). */
const MAX_CONTEXTS_PER_NODE = 8;
const contexts = new WeakMap<RateLimiter, TunnelContext[]>();

function contextFor(config: TunnelConfig): TunnelContext {
  const wanted: TunnelContext = {
    local: config.local,
    rng: config.rng,
    rateLimiter: config.rateLimiter,
    unixOffsetMs: config.unixOffsetMs ?? 0,
    rekeyAttemptTime: config.rekeyAttemptTime ?? REKEY_ATTEMPT_TIME,
    keepaliveTimeout: config.keepaliveTimeout ?? KEEPALIVE_TIMEOUT,
    rekeyTimeout: config.rekeyTimeout ?? REKEY_TIMEOUT,
    headroom: config.headroom ?? 0,
    cipher: config.cipher ?? new NodeCryptoTransportCipher(),
    replayRings: config.replayRings ?? new ReplayRings(2),
  };
  // A tunnel with a cipher or rings of its own has a context of its own.
  if (config.cipher === undefined || config.replayRings === undefined) return wanted;
  let known = contexts.get(config.rateLimiter);
  if (known === undefined) contexts.set(config.rateLimiter, (known = []));
  for (const context of known) if (sameContext(context, wanted)) return context;
  if (known.length < MAX_CONTEXTS_PER_NODE) known.push(wanted);
  return wanted;
}

function sameContext(a: TunnelContext, b: TunnelContext): boolean {
  return (
    a.local === b.local &&
    a.rng === b.rng &&
    a.rateLimiter === b.rateLimiter &&
    a.unixOffsetMs === b.unixOffsetMs &&
    a.rekeyAttemptTime === b.rekeyAttemptTime &&
    a.keepaliveTimeout === b.keepaliveTimeout &&
    a.rekeyTimeout === b.rekeyTimeout &&
    a.headroom === b.headroom &&
    a.cipher === b.cipher &&
    a.replayRings === b.replayRings
  );
}

export class Tunnel {
  // Declared in the order a data message reads them (receive, timers, then the poll of the
  // deadline), so that it touches as few of the tunnel's cache lines as it can.
  /** The session used for sending. */
  #current: Session | undefined;
  readonly #context: TunnelContext;
  /** A responder session waiting for the initiator's first transport message. */
  #unconfirmed: Session | undefined;
  #firstDataSentWithoutReply: number | undefined;
  #lastDataReceivedAt: number;
  #lastDataReceivedWithoutReply: number | undefined;
  /**
   * The earliest deadline that data received since the last `pollTimeout()` added (Infinity when
   * none; -Infinity when it changed more than a timer). Most data adds none: see `receiveDeadline`.
   */
  #receiveDeadline = Infinity;
  /** `#receiveDeadline` is not Infinity: a flag in the object, so most data need not load the boxed deadline. */
  #receiveDeadlineAdded = false;
  #isInitiator = false;
  // Allocated while they hold something: an idle tunnel has nothing queued.
  #transmits: RingQueue<Uint8Array> | undefined;
  #events: RingQueue<TunnelEvent> | undefined;
  #sessionEstablishedAt: number;
  /** When the oldest session in the ring expires (Infinity with none): polls do not scan the ring. */
  #sessionsExpireAt = Infinity;
  #handshakeScheduledAt: number | undefined;
  #pending: PendingHandshake | undefined;
  #lastDataSentAt: number;

  readonly #sessions: (Session | undefined)[] = new Array<Session | undefined>(SESSION_RING_SIZE).fill(undefined);
  #queue: Uint8Array[] | undefined;
  /** The peer's key, the preshared key, DH(static, static), last MAC1 sent, cookie, last timestamp. */
  readonly #bytes = new Uint8Array(TUNNEL_BYTES);
  /** False when the peer's static key made the DH fail: no handshake can succeed. */
  readonly #hasStaticStatic: boolean;
  readonly #index: number;
  #handshakeCounter = 0;
  #hasReceivedTimestamp = false;
  /** Sender index of the last handshake message we sent (its MAC1 is at LAST_SENT_MAC1), to match cookie replies. */
  #lastSentIndex: number | undefined;
  /** When the cookie at COOKIE arrived; undefined without one. */
  #cookieReceivedAt: number | undefined;
  #lastTimestampMs = 0;

  constructor(config: TunnelConfig) {
    this.#context = contextFor(config);
    const peerPublicKey = config.peer instanceof Uint8Array ? config.peer : config.peer.publicKey;
    if (peerPublicKey.length !== KEY_SIZE) throw new RangeError('an X25519 public key has 32 bytes');
    if (config.presharedKey.length !== KEY_SIZE) throw new RangeError('a preshared key has 32 bytes');
    const bytes = this.#bytes;
    bytes.set(peerPublicKey, PEER_PUBLIC_KEY);
    bytes.set(config.presharedKey, PRESHARED_KEY);
    const staticStatic = dh(config.local.privateKey, importPublicKey(peerPublicKey));
    this.#hasStaticStatic = staticStatic !== undefined;
    if (staticStatic !== undefined) {
      bytes.set(staticStatic, STATIC_STATIC);
      staticStatic.fill(0);
    }
    this.#index = config.index & 0xff_ffff;
    this.#sessionEstablishedAt = config.now;
    this.#lastDataSentAt = config.now;
    this.#lastDataReceivedAt = config.now;
  }

  get peerPublicKey(): Uint8Array {
    return this.#field(PEER_PUBLIC_KEY, KEY_SIZE);
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

    return this.#queueForHandshake(packet, now);
  }

  /**
   * `encapsulate` into a batch: with a session, the packet is copied into a slot of `batch`
   * under its counter and sealed with the rest of the batch. 'batchFull': drain the batch
   * and try again (a packet larger than a slot never fits: use `encapsulate`).
   */
  encapsulateInto(packet: Uint8Array, now: number, batch: SealBatch): EncapsulateIntoResult {
    const session = this.#current;
    if (session === undefined || !session.canSend(now)) return this.#queueForHandshake(packet, now);
    if (!batch.hasRoom(packet.length)) return 'batchFull';
    const slot = batch.queue(session, packet);
    this.#onDataSent(packet.length, now);
    return slot;
  }

  /**
   * Handles one datagram from the peer. `sourceIp` is the sender's IP address; under load a
   * cookie is bound to it. With `batch`, a data message it accepts is checked and queued there
   * ('pending'); any other message first lets the batch finish what it holds, so that handshakes
   * and data keep their order.
   */
  decapsulate(datagram: Uint8Array, sourceIp: string | Uint8Array, now: number, batch?: OpenBatch): DecapsulateResult {
    const type = messageType(datagram);
    if (type === MESSAGE_TRANSPORT) {
      if (batch !== undefined && batch.accepts(datagram)) return this.#queueTransport(datagram, now, batch);
      return this.#receiveTransport(datagram, now);
    }
    if (batch !== undefined) batch.run(now);
    switch (type) {
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
   * The batch hands back a message it opened for `session` (queued by `decapsulate`): the
   * plaintext is at `offset` in `buffer`. Returns the IP packet's length there, or why none.
   */
  completeOpen(session: Session, counter: number, status: number, buffer: Uint8Array, offset: number, length: number, now: number): OpenOutcome {
    if (status !== AEAD_OK) return status === AEAD_BAD_KEY ? 'unknownSession' : 'decryptFailed';
    if (!session.acceptCounter(counter, this.#context.replayRings.words)) return 'replayed';
    return this.#received(session, buffer, offset, length, now);
  }

  /** Drops every session and releases its keys from the cipher. The tunnel is unusable after. */
  close(): void {
    for (let i = 0; i < SESSION_RING_SIZE; i++) {
      this.#release(this.#sessions[i]);
      this.#sessions[i] = undefined;
    }
    this.#sessionsExpireAt = Infinity;
    this.#current = undefined;
    this.#unconfirmed = undefined;
    this.#pending = undefined;
    this.#handshakeScheduledAt = undefined;
    this.#queue = undefined;
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

    if (this.#cookieReceivedAt !== undefined && now >= this.#cookieReceivedAt + COOKIE_EXPIRATION) this.#forgetCookie();

    const pending = this.#pending;
    if (pending !== undefined) {
      if (now >= pending.startedAt + this.#context.rekeyAttemptTime) {
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

    if (this.#lastDataReceivedWithoutReply !== undefined && now >= this.#lastDataReceivedWithoutReply + this.#context.keepaliveTimeout) {
      this.#lastDataReceivedWithoutReply = undefined;
      const session = this.#current;
      if (session !== undefined && session.canSend(now)) this.#transmit(this.#seal(session, EMPTY, now));
    }
  }

  /**
   * Reads the first and the last of the fields a data message reads of a tunnel and of a session,
   * as hints kept for the next data message (see IndexTable): every line of them is then in the
   * cache, fetched side by side, when the message reads them. Anything else, or a stale session, is
   * only a wasted read. Changes nothing.
   */
  static readAhead(tunnel: unknown, session: unknown): number {
    const fromTunnel = tunnel instanceof Tunnel && (tunnel.#current === undefined || tunnel.#events !== undefined) ? 1 : 0;
    const fromSession = session instanceof Session ? session.localIndex + session.createdAt : 0;
    return (fromTunnel + fromSession) | 0;
  }

  /** The session the next data message most likely comes in on: the current one. */
  get sessionHint(): Session | undefined {
    return this.#current;
  }

  /**
   * The earliest deadline that data received since the last `pollTimeout()` may have added: it
   * moved this tunnel's deadline earlier only if it is before the one last polled. Infinity for
   * most data (a stream only moves its timers later), so a caller can skip the poll.
   */
  get receiveDeadline(): number {
    return this.#receiveDeadline;
  }

  /** Whether data received since the last `pollTimeout()` added a deadline (`receiveDeadline` is then finite or -Infinity). */
  get receiveDeadlineAdded(): boolean {
    return this.#receiveDeadlineAdded;
  }

  pollTimeout(): number | undefined {
    this.#receiveDeadline = Infinity;
    this.#receiveDeadlineAdded = false;
    let earliest = this.#sessionEstablishedAt + WIPE_AFTER_TIME;
    if (this.#sessionsExpireAt < earliest) earliest = this.#sessionsExpireAt;
    if (this.#handshakeScheduledAt !== undefined) return Math.min(earliest, this.#handshakeScheduledAt);
    const pending = this.#pending;
    if (pending !== undefined) return Math.min(earliest, pending.retransmitAt, pending.startedAt + this.#context.rekeyAttemptTime);
    const onSend = this.#rekeyOnSendAt();
    if (onSend !== undefined && onSend < earliest) earliest = onSend;
    const onReceive = this.#rekeyOnReceiveAt();
    if (onReceive !== undefined && onReceive < earliest) earliest = onReceive;
    const noReply = this.#firstDataSentWithoutReply;
    if (noReply !== undefined && noReply + this.#context.keepaliveTimeout + this.#context.rekeyTimeout < earliest) earliest = noReply + this.#context.keepaliveTimeout + this.#context.rekeyTimeout;
    const quiet = this.#lastDataReceivedWithoutReply;
    if (quiet !== undefined && quiet + this.#context.keepaliveTimeout < earliest) earliest = quiet + this.#context.keepaliveTimeout;
    return earliest;
  }

  pollTransmit(): Uint8Array | undefined {
    const transmits = this.#transmits;
    if (transmits === undefined) return undefined;
    const datagram = transmits.shift();
    if (transmits.length === 0) this.#transmits = undefined;
    return datagram;
  }

  pollEvent(): TunnelEvent | undefined {
    const events = this.#events;
    if (events === undefined) return undefined;
    const event = events.shift();
    if (events.length === 0) this.#events = undefined;
    return event;
  }

  #transmit(datagram: Uint8Array): void {
    (this.#transmits ??= new RingQueue<Uint8Array>(4)).push(datagram);
  }

  #emit(event: TunnelEvent): void {
    (this.#events ??= new RingQueue<TunnelEvent>(2)).push(event);
  }

  /** A view of `length` bytes at `offset` of the tunnel's buffer (for a handshake, never per packet). */
  #field(offset: number, length: number): Uint8Array {
    return this.#bytes.subarray(offset, offset + length);
  }

  #peerIdentity(): PublicIdentity {
    return publicIdentity(this.#field(PEER_PUBLIC_KEY, KEY_SIZE));
  }

  #forgetCookie(): void {
    this.#cookieReceivedAt = undefined;
    this.#bytes.fill(0, COOKIE, COOKIE + MAC_SIZE);
  }

  // --- outbound ---

  #seal(session: Session, packet: Uint8Array, now: number): Uint8Array {
    const headroom = this.#context.headroom;
    const buffer = new Uint8Array(headroom + packet.length + TRANSPORT_OVERHEAD);
    session.seal(packet, buffer, headroom, this.#context.cipher);
    this.#onDataSent(packet.length, now);
    return headroom === 0 ? buffer : buffer.subarray(headroom);
  }

  #onDataSent(length: number, now: number): void {
    this.#lastDataReceivedWithoutReply = undefined;
    if (length > 0) {
      this.#lastDataSentAt = now;
      this.#firstDataSentWithoutReply ??= now;
    }
  }

  #queueForHandshake(packet: Uint8Array, now: number): 'queued' | 'queueFull' {
    const queue = (this.#queue ??= []);
    if (queue.length >= MAX_QUEUED_PACKETS) return 'queueFull';
    queue.push(packet.slice());
    if (!this.isHandshaking()) this.#sendInitiation(now, false);
    return 'queued';
  }

  #sendInitiation(now: number, isRetransmit: boolean): void {
    const startedAt = isRetransmit && this.#pending !== undefined ? this.#pending.startedAt : now;
    const localIndex = this.#nextLocalIndex();
    const ephemeral = new Uint8Array(KEY_SIZE);
    this.#context.rng.fill(ephemeral);
    const created = this.#hasStaticStatic
      ? createInitiation(
          this.#context.local,
          this.#peerIdentity(),
          this.#field(STATIC_STATIC, KEY_SIZE),
          localIndex,
          ephemeral,
          tai64n(this.#nextTimestampMs(now)),
        )
      : undefined;
    ephemeral.fill(0);
    this.#pending = { state: created?.state, startedAt, retransmitAt: now + this.#context.rekeyTimeout + this.#jitter() };
    if (created === undefined) return;
    this.#addMacs(created.message, INITIATION_OFFSET_MAC1, INITIATION_OFFSET_MAC2, localIndex, now);
    this.#transmit(created.message);
    this.#lastDataReceivedWithoutReply = undefined;
    if (log.enabled(Level.Debug)) log.debug('sending handshake initiation', { index: localIndex, isRetransmit });
  }

  #addMacs(message: Uint8Array, mac1At: number, mac2At: number, senderIndex: number, now: number): void {
    const mac1 = mac(mac1Key(this.#field(PEER_PUBLIC_KEY, KEY_SIZE)), message.subarray(0, mac1At));
    message.set(mac1, mac1At);
    if (this.#cookieReceivedAt !== undefined && now < this.#cookieReceivedAt + COOKIE_EXPIRATION) {
      message.set(mac(this.#field(COOKIE, MAC_SIZE), message.subarray(0, mac2At)), mac2At);
    }
    this.#bytes.set(mac1, LAST_SENT_MAC1);
    this.#lastSentIndex = senderIndex;
  }

  #flushQueue(now: number): void {
    const session = this.#current;
    const queue = this.#queue;
    if (session === undefined || queue === undefined) return;
    this.#queue = undefined;
    for (const packet of queue) this.#transmit(this.#seal(session, packet, now));
  }

  // --- inbound ---

  #receiveTransport(datagram: Uint8Array, now: number): DecapsulateResult {
    const session = this.#receivingSession(datagram, now);
    if (typeof session === 'string') return session;
    const plaintext = session.open(datagram, this.#context.cipher, this.#context.replayRings);
    if (typeof plaintext === 'string') return plaintext;
    const outcome = this.#received(session, plaintext, 0, plaintext.length, now);
    if (typeof outcome === 'string') return outcome;
    return outcome === plaintext.length ? plaintext : plaintext.subarray(0, outcome);
  }

  #queueTransport(datagram: Uint8Array, now: number, batch: OpenBatch): DecapsulateResult {
    const session = this.#receivingSession(datagram, now);
    if (typeof session === 'string') return session;
    const counter = session.receivableCounter(datagram, this.#context.replayRings.words);
    if (counter === 'replayed') return counter;
    batch.queue(this, session, counter, datagram);
    return 'pending';
  }

  #receivingSession(datagram: Uint8Array, now: number): Session | DecapsulateDrop {
    if (datagram.length < TRANSPORT_MIN_SIZE) return 'malformed';
    // As a signed 32-bit value: always a small integer, never a heap number (see receiverTunnelIndex).
    const index = readI32(datagram, TRANSPORT_OFFSET_RECEIVER);
    // Most data is for the current session: found without reading the ring. A released current
    // session (its slot taken by a newer one) is left to the ring, which no longer holds it.
    const current = this.#current;
    const session = current !== undefined && current.localIndex === index && !current.released ? current : this.#sessions[index & (SESSION_RING_SIZE - 1)];
    if (session === undefined || session.localIndex !== index) return 'unknownSession';
    if (session.isExpired(now)) return 'expired';
    return session;
  }

  /** An authenticated data message: its IP packet's length at `offset`, or what it was instead. */
  #received(session: Session, plaintext: Uint8Array, offset: number, length: number, now: number): OpenOutcome {
    this.#firstDataSentWithoutReply = undefined;
    if (session === this.#unconfirmed) {
      this.#unconfirmed = undefined;
      this.#current = session;
      this.#emit(SESSION_ESTABLISHED);
      this.#flushQueue(now);
      this.#receiveDeadline = -Infinity;
      this.#receiveDeadlineAdded = true;
    }
    if (length === 0) return 'keepalive';
    const packetLength = ipPacketLength(plaintext, offset, length);
    if (packetLength === 0) return 'notIp';
    // Only the first data of a session (the initiator's rekey) and the first since our last
    // message (the passive keepalive) start a timer; later data moves them later or not at all.
    const startsRekey = this.#isInitiator && this.#lastDataReceivedAt <= this.#sessionEstablishedAt;
    const startsKeepalive = this.#lastDataReceivedWithoutReply === undefined;
    this.#lastDataReceivedAt = now;
    this.#lastDataReceivedWithoutReply = now;
    if (startsKeepalive && now + this.#context.keepaliveTimeout < this.#receiveDeadline) {
      this.#receiveDeadline = now + this.#context.keepaliveTimeout;
      this.#receiveDeadlineAdded = true;
    }
    if (startsRekey) {
      // Undefined still when the data came in the session's first millisecond.
      const rekeyAt = this.#rekeyOnReceiveAt();
      if (rekeyAt !== undefined && rekeyAt < this.#receiveDeadline) {
        this.#receiveDeadline = rekeyAt;
        this.#receiveDeadlineAdded = true;
      }
    }
    return packetLength;
  }

  #receiveHandshake(datagram: Uint8Array, sourceIp: string | Uint8Array, now: number): DecapsulateResult {
    const verdict = this.#context.rateLimiter.verify(datagram, sourceIp, now);
    switch (verdict.kind) {
      case 'accept':
        return datagram[0] === MESSAGE_INITIATION
          ? this.#receiveInitiation(datagram, now)
          : this.#receiveResponse(datagram, now);
      case 'reject':
        return verdict.reason;
      case 'cookieReply':
        this.#transmit(verdict.message);
        return 'underLoad';
    }
  }

  #receiveInitiation(datagram: Uint8Array, now: number): DecapsulateResult {
    if (!this.#hasStaticStatic) return 'handshakeFailed';
    const opened = openInitiation(this.#context.local, datagram);
    if (opened === undefined) return 'handshakeFailed';
    if (!constantTimeEqual(opened.peerStatic, this.#field(PEER_PUBLIC_KEY, KEY_SIZE))) return 'wrongPeer';
    const finished = finishInitiation(opened, this.#field(STATIC_STATIC, KEY_SIZE));
    if (finished === undefined) return 'handshakeFailed';
    if (this.#hasReceivedTimestamp && !isLater(finished.timestamp, this.#field(LAST_RECEIVED_TIMESTAMP, TIMESTAMP_SIZE))) {
      return 'staleTimestamp';
    }

    const localIndex = this.#nextLocalIndex();
    const ephemeral = new Uint8Array(KEY_SIZE);
    this.#context.rng.fill(ephemeral);
    const response = createResponse(
      this.#peerIdentity(),
      { peerIndex: opened.peerIndex, peerEphemeral: opened.peerEphemeral, chainKey: finished.chainKey, hash: finished.hash },
      localIndex,
      ephemeral,
      this.#field(PRESHARED_KEY, KEY_SIZE),
    );
    ephemeral.fill(0);
    if (response === undefined) return 'handshakeFailed';

    this.#bytes.set(finished.timestamp, LAST_RECEIVED_TIMESTAMP);
    this.#hasReceivedTimestamp = true;
    this.#addMacs(response.message, RESPONSE_OFFSET_MAC1, RESPONSE_OFFSET_MAC2, localIndex, now);
    this.#transmit(response.message);
    this.#lastDataReceivedWithoutReply = undefined;
    this.#firstDataSentWithoutReply = undefined;
    this.#unconfirmed = this.#installSession(response.keys, false, now);
    if (log.enabled(Level.Debug)) log.debug('answered handshake initiation', { index: localIndex });
    return 'handshake';
  }

  #receiveResponse(datagram: Uint8Array, now: number): DecapsulateResult {
    const state = this.#pending?.state;
    if (state === undefined) return 'unexpected';
    const keys = consumeResponse(this.#context.local, state, datagram, this.#field(PRESHARED_KEY, KEY_SIZE));
    if (keys === undefined) return 'handshakeFailed';

    this.#pending = undefined;
    this.#handshakeScheduledAt = undefined;
    this.#firstDataSentWithoutReply = undefined;
    this.#current = this.#installSession(keys, true, now);
    this.#emit(SESSION_ESTABLISHED);
    if (this.#queue !== undefined) this.#flushQueue(now);
    else this.#transmit(this.#seal(this.#current, EMPTY, now));
    if (log.enabled(Level.Debug)) log.debug('handshake completed', { index: keys.localIndex });
    return 'handshake';
  }

  #receiveCookieReply(datagram: Uint8Array, now: number): DecapsulateResult {
    if (this.#lastSentIndex === undefined || receiverIndex(datagram) !== this.#lastSentIndex) return 'unexpected';
    const nonce = datagram.subarray(COOKIE_OFFSET_NONCE, COOKIE_OFFSET_NONCE + COOKIE_NONCE_SIZE);
    const sealed = datagram.subarray(COOKIE_OFFSET_COOKIE, COOKIE_REPLY_SIZE);
    const cookie = xaeadOpen(cookieKey(this.#field(PEER_PUBLIC_KEY, KEY_SIZE)), nonce, sealed, this.#field(LAST_SENT_MAC1, MAC_SIZE));
    if (cookie === undefined || cookie.length !== MAC_SIZE) return 'decryptFailed';
    this.#bytes.set(cookie, COOKIE);
    this.#cookieReceivedAt = now;
    return 'cookie';
  }

  // --- state ---

  #installSession(keys: SessionKeys, isInitiator: boolean, now: number): Session {
    const session = new Session(keys, isInitiator, now, this.#context.cipher, this.#context.replayRings);
    const slot = keys.localIndex % SESSION_RING_SIZE;
    this.#release(this.#sessions[slot]);
    this.#sessions[slot] = session;
    this.#updateSessionsExpiry();
    this.#sessionEstablishedAt = now;
    this.#isInitiator = isInitiator;
    return session;
  }

  #release(session: Session | undefined): void {
    session?.release(this.#context.cipher, this.#context.replayRings);
  }

  #expireSessions(now: number): void {
    if (now < this.#sessionsExpireAt) return;
    for (let i = 0; i < SESSION_RING_SIZE; i++) {
      const session = this.#sessions[i];
      if (session === undefined || !session.isExpired(now)) continue;
      this.#release(session);
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
      (noReply !== undefined && now >= noReply + this.#context.keepaliveTimeout + this.#context.rekeyTimeout)
    );
  }

  #rekeyOnSendAt(): number | undefined {
    if (!this.#isInitiator || this.#lastDataSentAt <= this.#sessionEstablishedAt) return undefined;
    return this.#sessionEstablishedAt + REKEY_AFTER_TIME;
  }

  #rekeyOnReceiveAt(): number | undefined {
    if (!this.#isInitiator || this.#lastDataReceivedAt <= this.#sessionEstablishedAt) return undefined;
    return this.#sessionEstablishedAt + REJECT_AFTER_TIME - this.#context.keepaliveTimeout - this.#context.rekeyTimeout;
  }

  #expire(now: number, reason: string): void {
    for (const session of this.#sessions) this.#release(session);
    this.#sessions.fill(undefined);
    this.#sessionsExpireAt = Infinity;
    this.#current = undefined;
    this.#unconfirmed = undefined;
    this.#pending = undefined;
    this.#handshakeScheduledAt = undefined;
    this.#queue = undefined;
    this.#sessionEstablishedAt = now;
    this.#lastDataSentAt = now;
    this.#lastDataReceivedAt = now;
    this.#firstDataSentWithoutReply = undefined;
    this.#lastDataReceivedWithoutReply = undefined;
    this.#emit(CONNECTION_EXPIRED);
    log.debug('connection expired', { reason });
  }

  #nextLocalIndex(): number {
    this.#handshakeCounter = (this.#handshakeCounter + 1) & 0xff;
    return ((this.#index << 8) | this.#handshakeCounter) >>> 0;
  }

  /** Strictly increasing, so the peer never discards an initiation as a replay of our previous one. */
  #nextTimestampMs(now: number): number {
    this.#lastTimestampMs = Math.max(Math.floor(now + this.#context.unixOffsetMs), this.#lastTimestampMs + 1);
    return this.#lastTimestampMs;
  }

  #jitter(): number {
    return this.#context.rng.u32() % REKEY_TIMEOUT_JITTER_MAX;
  }
}

/**
 * The length of the IP packet inside a decrypted payload (`length` bytes at `offset`), as its
 * header states (the rest is padding); 0 when it is neither a well-formed IPv4 nor IPv6 packet.
 */
function ipPacketLength(plaintext: Uint8Array, offset: number, length: number): number {
  const version = plaintext[offset]! >> 4;
  let stated: number;
  if (version === 4) {
    if (length < 20) return 0;
    stated = (plaintext[offset + 2]! << 8) | plaintext[offset + 3]!;
    if (stated < 20) return 0;
  } else if (version === 6) {
    if (length < 40) return 0;
    stated = 40 + ((plaintext[offset + 4]! << 8) | plaintext[offset + 5]!);
  } else {
    return 0;
  }
  return stated > length ? 0 : stated;
}
