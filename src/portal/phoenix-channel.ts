/**
 * A sans-IO Phoenix V1 channel client for one topic, behaving as the 1.6.0 gateway's (spec
 * gateway-1.6 §1.5-§1.8).
 *
 * The shell opens and closes the WebSocket; this machine decides what to write and when:
 *
 *   connect(now)                 -> event `connect`: resolve the host and open a WebSocket now
 *   handleConnected(now)         <- the upgrade succeeded: the join frame is written (refs restart at 0)
 *   handleUpgradeFailure(status, body, retryAfterMs, now)
 *                                <- 401 is fatal; every other status is retried (Retry-After honoured)
 *   handleDisconnected(error, now) <- TCP/TLS/WebSocket failure or close: retried with backoff
 *   handleFrame(text, now)       <- every inbound text frame
 *   send(event, payload, now)    -> the ref, or undefined when not connected (the message is dropped)
 *   close(now)                   -> event `closeGracefully`; then handleClosed(now)
 *   handleTimeout(now)           <- at pollTimeout(): heartbeat, join timeout, the next attempt
 *   pollFrame() / pollEvent() / pollTimeout()
 *
 * Rules (1.6.0): heartbeat every 10 s from the socket's opening, more than 3 unanswered drops the
 * connection; a join unanswered for more than 5 s drops it; a join error reply is fatal, as are a
 * 401 upgrade, `disconnect` `token_expired` and an exhausted retry budget. Before the first join of
 * the process, retries are 1 s apart for at most 15 s in all; once joined, exponential (500 ms x1.5,
 * jitter, at most 60 s apart) for at most the partition budget of cumulative delay. A Retry-After
 * delay replaces the backoff step without advancing it.
 *
 * Deliberate differences from the reference:
 * - `phx_error` on our topic triggers a rejoin (the reference only logs it and stays detached);
 * - at most MAX_BUFFERED_MESSAGES messages wait for a join acknowledgement (the reference's queue
 *   is unbounded);
 * - every connection state change is reported once as a `stateChanged` event.
 */
import { createLogger } from '../log/index.ts';
import type { RandomSource } from '../util/random.ts';
import { INITIAL_CONNECT_INTERVAL_MS, INITIAL_CONNECT_MAX_ELAPSED_MS, RetryBackoff, initialBackoff, reconnectBackoff } from './backoff.ts';
import { statusWithReason } from './http-status.ts';
import { decodeFrame, decodeReply, displayErrorReason, encodeFrame, isEmptyObject, isPlainObject, type ErrorReason } from './phoenix-frame.ts';
import type { MessageDecodeError } from './messages.ts';
import { describeMessageDecodeError } from './messages.ts';

export const HEARTBEAT_INTERVAL_MS = 10_000;
/** More unanswered heartbeats than this drop the connection. */
export const MAX_UNANSWERED_HEARTBEATS = 3;
/** A join unanswered for longer than this drops the connection. */
export const JOIN_TIMEOUT_MS = 5_000;
/** At most this many messages wait for the join acknowledgement; one more discards them. */
export const MAX_BUFFERED_MESSAGES = 32;
export const HEARTBEAT_TOPIC = 'phoenix';
/** `FIREZONE_MAX_PARTITION_TIME`'s default. */
export const DEFAULT_MAX_PARTITION_MS = 24 * 60 * 60 * 1000;

export { INITIAL_CONNECT_INTERVAL_MS, INITIAL_CONNECT_MAX_ELAPSED_MS };

export type ChannelState = 'disconnected' | 'connecting' | 'joining' | 'joined' | 'reconnecting' | 'closing' | 'failed';

export type PortalFatalError =
  | { readonly code: 'invalidToken'; readonly status: 401 | undefined; readonly message: string }
  | { readonly code: 'tokenExpired'; readonly message: string }
  | { readonly code: 'loginFailed'; readonly reason: ErrorReason; readonly message: string }
  | { readonly code: 'maxRetriesReached'; readonly message: string };

export type ChannelEvent<M> =
  /** Resolve the portal host and open a WebSocket now, abandoning any current one. */
  | { readonly kind: 'connect' }
  /** Drop the current WebSocket without a close handshake. */
  | { readonly kind: 'closeSocket' }
  /** Close the current WebSocket with a Close frame (1000), then report `handleClosed`. */
  | { readonly kind: 'closeGracefully' }
  | { readonly kind: 'stateChanged'; readonly state: ChannelState; readonly previous: ChannelState }
  /** The topic was joined (every join, the first and after each reconnect). */
  | { readonly kind: 'joined'; readonly topic: string }
  | { readonly kind: 'message'; readonly topic: string; readonly message: M }
  /** An inbound frame that could not be typed; log a warning and carry on. */
  | { readonly kind: 'dropped'; readonly topic: string | undefined; readonly event: string | undefined; readonly reason: string }
  /** An error reply to one of our requests (not the join). */
  | { readonly kind: 'requestFailed'; readonly topic: string; readonly ref: number; readonly reason: ErrorReason }
  /**
   * A transient failure: the connection is down and the next attempt comes after `delayMs`.
   * `maxElapsedMs` is the budget of the schedule in use (undefined after a Retry-After).
   */
  | { readonly kind: 'hiccup'; readonly delayMs: number; readonly maxElapsedMs: number | undefined; readonly error: string }
  /** The process must exit with `exitCode`. */
  | { readonly kind: 'fatal'; readonly error: PortalFatalError; readonly exitCode: 1 };

export type MessageDecoder<M> = (
  event: string,
  payload: unknown,
) => { readonly ok: true; readonly message: M } | { readonly ok: false; readonly error: MessageDecodeError };

export interface PhoenixChannelOptions<M> {
  readonly topic: string;
  readonly rng: RandomSource;
  readonly decode: MessageDecoder<M>;
  /** The retry budget (cumulative delay) once the process has joined once; 24 h by default. */
  readonly maxPartitionMs?: number;
}

interface Connected {
  readonly kind: 'connected';
  readonly openedAt: number;
  nextRef: number;
  pendingJoin: { readonly ref: number; readonly sentAt: number } | undefined;
  nextHeartbeatAt: number;
  readonly inflightHeartbeats: Set<number>;
  /** Messages waiting for the join acknowledgement (encoded, with their dedup key). */
  pending: { readonly key: string; readonly event: string; readonly payload: unknown; readonly ref: number }[];
}

type State =
  | { readonly kind: 'disconnected' }
  | { readonly kind: 'connecting' }
  | Connected
  | { readonly kind: 'reconnecting'; readonly at: number }
  | { readonly kind: 'closing' }
  | { readonly kind: 'failed' };

const log = createLogger('phoenix_channel');

export class PhoenixChannel<M> {
  private readonly topic: string;
  private readonly rng: RandomSource;
  private readonly decode: MessageDecoder<M>;
  private readonly maxPartitionMs: number;
  private state: State = { kind: 'disconnected' };
  private reportedState: ChannelState = 'disconnected';
  private backoff: RetryBackoff | undefined;
  /** Set by the first successful join of the process: later failures use the reconnect schedule. */
  private wasJoined = false;
  /** Frames to write on the current socket, drained by `pollFrame`. */
  private readonly wire: string[] = [];
  private readonly events: ChannelEvent<M>[] = [];

  constructor(options: PhoenixChannelOptions<M>) {
    this.topic = options.topic;
    this.rng = options.rng;
    this.decode = options.decode;
    this.maxPartitionMs = options.maxPartitionMs ?? DEFAULT_MAX_PARTITION_MS;
  }

  get connectionState(): ChannelState {
    return this.reportedState;
  }

  /** Messages waiting for the join acknowledgement. */
  get pendingCount(): number {
    return this.state.kind === 'connected' ? this.state.pending.length : 0;
  }

  /** Heartbeats sent on this socket and not answered yet. */
  get unansweredHeartbeats(): number {
    return this.state.kind === 'connected' ? this.state.inflightHeartbeats.size : 0;
  }

  /** True once a join has succeeded in this process. */
  get hasJoined(): boolean {
    return this.wasJoined;
  }

  /**
   * Starts a connection right away, dropping any current one; the backoff starts over (as the
   * reference's `connect` with a zero delay). No-op while connecting, closing or failed.
   */
  connect(_now: number): void {
    switch (this.state.kind) {
      case 'failed':
      case 'connecting':
      case 'closing':
        return;
      case 'connected':
        this.events.push({ kind: 'closeSocket' });
        break;
      case 'disconnected':
      case 'reconnecting':
        break;
    }
    this.backoff = undefined;
    this.startConnecting();
  }

  handleConnected(now: number): void {
    if (this.state.kind !== 'connecting') return;
    this.wire.length = 0;
    this.state = {
      kind: 'connected',
      openedAt: now,
      nextRef: 0,
      pendingJoin: undefined,
      nextHeartbeatAt: now + HEARTBEAT_INTERVAL_MS,
      inflightHeartbeats: new Set(),
      pending: [],
    };
    this.join(now);
  }

  /**
   * The server answered the upgrade with a status other than 101. `retryAfterMs` is the parsed
   * Retry-After header (see `parseRetryAfter`), if any.
   */
  handleUpgradeFailure(status: number, body: string, retryAfterMs: number | undefined, now: number): void {
    if (this.state.kind !== 'connecting') return;
    if (status === 401) {
      this.fail({ code: 'invalidToken', status: 401, message: 'Authentication token invalid' });
      return;
    }
    this.hiccup(`websocket connection failed: HTTP error: ${statusWithReason(status)}${body === '' ? '' : ` - ${body}`}`, now, retryAfterMs);
  }

  /** A TCP/TLS/DNS failure or timeout, a WebSocket error or Close frame, or the stream ending. */
  handleDisconnected(error: string, now: number): void {
    if (this.state.kind !== 'connecting' && this.state.kind !== 'connected') return;
    this.events.push({ kind: 'closeSocket' });
    this.hiccup(error, now, undefined);
  }

  /** Starts the graceful close of the current connection (shutdown); nothing reconnects after it. */
  close(_now: number): void {
    log.info('Closing connection to portal');
    switch (this.state.kind) {
      case 'connected':
        this.wire.length = 0;
        this.state = { kind: 'closing' };
        this.report('closing');
        this.events.push({ kind: 'closeGracefully' });
        return;
      case 'connecting':
        this.events.push({ kind: 'closeSocket' });
        this.toDisconnected();
        return;
      case 'reconnecting':
        this.toDisconnected();
        return;
      case 'closing':
      case 'disconnected':
      case 'failed':
        return;
    }
  }

  /** The graceful close finished (or failed): the channel is disconnected. */
  handleClosed(_now: number): void {
    if (this.state.kind !== 'closing') return;
    log.info('Closed websocket connection to portal');
    this.toDisconnected();
  }

  handleFrame(text: string, now: number): void {
    if (this.state.kind !== 'connected') return;
    const decoded = decodeFrame(text);
    if (!decoded.ok) {
      if (decoded.error.code === 'eof') {
        this.handleDisconnected('failed to deserialize message', now);
        return;
      }
      this.drop(undefined, undefined, decoded.error.detail);
      return;
    }
    const { topic, event, payload, ref } = decoded.frame;
    switch (event) {
      case 'phx_reply':
        this.handleReply(topic, payload, ref, now);
        return;
      case 'phx_error':
        if (!isEmptyObject(payload)) return this.drop(topic, event, '`phx_error` payload is not `{}`');
        this.handlePhxError(topic, now);
        return;
      case 'phx_close':
        if (!isEmptyObject(payload)) return this.drop(topic, event, '`phx_close` payload is not `{}`');
        this.handleDisconnected('portal closed the websocket connection', now);
        return;
      case 'disconnect':
        if (!isPlainObject(payload) || payload.reason !== 'token_expired') {
          return this.drop(topic, event, 'unknown disconnect reason');
        }
        this.fail({ code: 'tokenExpired', message: 'Authentication token invalid' });
        return;
      default: {
        const result = this.decode(event, payload);
        if (!result.ok) return this.drop(topic, event, describeMessageDecodeError(result.error));
        this.events.push({ kind: 'message', topic, message: result.message });
      }
    }
  }

  /**
   * Sends a message on the channel topic and returns its ref. Not connected, the message is
   * dropped (undefined), as the reference does; while the join is pending it waits, and a message
   * equal to one already waiting is dropped (its ref is returned).
   */
  send(event: string, payload: unknown, _now: number): number | undefined {
    const state = this.state;
    if (state.kind !== 'connected') {
      log.debug('Failed to send message to portal: Not connected', { event });
      return undefined;
    }
    if (state.pendingJoin === undefined) {
      const ref = state.nextRef++;
      this.wire.push(encodeFrame(this.topic, event, payload, ref));
      return ref;
    }
    const key = `${event}\u0000${JSON.stringify(payload ?? null)}`;
    const duplicate = state.pending.find((entry) => entry.key === key);
    if (duplicate !== undefined) {
      log.debug('Refusing to queue exact duplicate', { event });
      return duplicate.ref;
    }
    if (state.pending.length >= MAX_BUFFERED_MESSAGES) {
      log.debug(`Dropping pending messages to portal because we exceeded the maximum of ${MAX_BUFFERED_MESSAGES}`);
      state.pending = [];
    }
    const ref = state.nextRef++;
    state.pending.push({ key, event, payload, ref });
    return ref;
  }

  handleTimeout(now: number): void {
    const state = this.state;
    switch (state.kind) {
      case 'reconnecting':
        if (now >= state.at) this.startConnecting();
        return;
      case 'connected':
        if (now >= state.nextHeartbeatAt) {
          // Ticks missed while the process was stalled are skipped, not sent in a burst.
          const missed = Math.floor((now - state.nextHeartbeatAt) / HEARTBEAT_INTERVAL_MS);
          state.nextHeartbeatAt += (missed + 1) * HEARTBEAT_INTERVAL_MS;
          const ref = state.nextRef++;
          state.inflightHeartbeats.add(ref);
          this.wire.push(encodeFrame(HEARTBEAT_TOPIC, 'heartbeat', {}, ref));
        }
        if (state.pendingJoin !== undefined && now - state.pendingJoin.sentAt > JOIN_TIMEOUT_MS) {
          this.handleDisconnected('room join timed out', now);
          return;
        }
        if (state.inflightHeartbeats.size > MAX_UNANSWERED_HEARTBEATS) {
          this.handleDisconnected('too many heartbeats were unanswered', now);
        }
        return;
      case 'disconnected':
      case 'connecting':
      case 'closing':
      case 'failed':
        return;
    }
  }

  pollFrame(): string | undefined {
    return this.wire.shift();
  }

  pollEvent(): ChannelEvent<M> | undefined {
    return this.events.shift();
  }

  pollTimeout(): number | undefined {
    const state = this.state;
    switch (state.kind) {
      case 'reconnecting':
        return state.at;
      case 'connected': {
        // "More than 5 s" pending: due at the first millisecond past it.
        const joinDeadline = state.pendingJoin === undefined ? Infinity : state.pendingJoin.sentAt + JOIN_TIMEOUT_MS + 1;
        return Math.min(state.nextHeartbeatAt, joinDeadline);
      }
      case 'disconnected':
      case 'connecting':
      case 'closing':
      case 'failed':
        return undefined;
    }
  }

  private startConnecting(): void {
    this.state = { kind: 'connecting' };
    this.report('connecting');
    this.events.push({ kind: 'connect' });
  }

  private join(now: number): void {
    const state = this.state;
    if (state.kind !== 'connected') return;
    const ref = state.nextRef++;
    state.pendingJoin = { ref, sentAt: now };
    this.wire.push(encodeFrame(this.topic, 'phx_join', null, ref));
    this.report('joining');
  }

  private handleReply(topic: string, payload: unknown, ref: number | undefined, now: number): void {
    const state = this.state;
    if (state.kind !== 'connected') return;
    if (ref === undefined) return this.drop(topic, 'phx_reply', 'reply without ref');
    const reply = decodeReply(payload);
    if (reply === undefined) return this.drop(topic, 'phx_reply', 'reply cannot be typed');
    const isJoinReply = ref === state.pendingJoin?.ref;
    if (reply.status === 'error') {
      if (isJoinReply && topic === this.topic) {
        this.fail({ code: 'loginFailed', reason: reply.reason, message: `Failed to login with portal: ${displayErrorReason(reply.reason)}` });
        return;
      }
      if (reply.reason === 'unmatched topic' && topic === this.topic && state.pendingJoin === undefined) {
        log.debug('We are no longer part of our room, rejoining', { topic });
        this.join(now);
        return;
      }
      this.events.push({ kind: 'requestFailed', topic, ref, reason: reply.reason });
      return;
    }
    if (state.inflightHeartbeats.delete(ref)) return;
    if (!isJoinReply || topic !== this.topic) return;
    state.pendingJoin = undefined;
    this.backoff = undefined;
    this.wasJoined = true;
    for (const entry of state.pending) this.wire.push(encodeFrame(this.topic, entry.event, entry.payload, entry.ref));
    state.pending = [];
    this.report('joined');
    this.events.push({ kind: 'joined', topic });
  }

  private handlePhxError(topic: string, now: number): void {
    if (this.state.kind !== 'connected' || topic !== this.topic) return;
    if (this.state.pendingJoin !== undefined) return;
    log.info('Portal channel crashed; rejoining', { topic });
    this.join(now);
  }

  /**
   * The connection is down: the next attempt after the Retry-After delay, else after the next step
   * of the schedule in use (initial before the first join, reconnect after); none left is fatal.
   */
  private hiccup(error: string, now: number, retryAfterMs: number | undefined): void {
    this.wire.length = 0;
    let delayMs: number;
    if (retryAfterMs !== undefined) {
      delayMs = retryAfterMs;
    } else {
      this.backoff ??= this.wasJoined ? reconnectBackoff(this.rng, this.maxPartitionMs) : initialBackoff();
      const next = this.backoff.nextDelayMs();
      if (next === undefined) {
        this.fail({ code: 'maxRetriesReached', message: `Got disconnected from portal and hit the max-retry limit. Last connection error: ${error}` });
        return;
      }
      delayMs = next;
    }
    this.events.push({ kind: 'hiccup', delayMs, maxElapsedMs: this.backoff?.maxElapsedMs, error });
    this.state = { kind: 'reconnecting', at: now + delayMs };
    this.report('reconnecting');
  }

  private fail(error: PortalFatalError): void {
    this.wire.length = 0;
    this.state = { kind: 'failed' };
    this.report('failed');
    this.events.push({ kind: 'closeSocket' });
    this.events.push({ kind: 'fatal', error, exitCode: 1 });
  }

  private toDisconnected(): void {
    this.state = { kind: 'disconnected' };
    this.report('disconnected');
  }

  private drop(topic: string | undefined, event: string | undefined, reason: string): void {
    this.events.push({ kind: 'dropped', topic, event, reason });
  }

  private report(state: ChannelState): void {
    if (state === this.reportedState) return;
    const previous = this.reportedState;
    this.reportedState = state;
    this.events.push({ kind: 'stateChanged', state, previous });
  }
}
