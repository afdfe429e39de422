/**
 * A sans-IO Phoenix V1 channel client for one topic (spec portal-protocol §1.7-§1.14).
 *
 * The shell opens and closes the WebSocket; this machine decides what to write and when:
 *
 *   connect(now)                 -> event `connect`: open a WebSocket now (dropping any current one)
 *   handleConnected(now)         <- the upgrade succeeded: the join frame is written
 *   handleUpgradeFailure(status, body, now), handleDisconnected(error, now)
 *                                <- 4xx is fatal, everything else reconnects with backoff
 *   handleFrame(text, now)       <- every inbound text frame
 *   send(event, payload, now)    -> the ref; the frame waits until the join is acknowledged
 *   handleTimeout(now)           <- at pollTimeout(): heartbeat or the next reconnect attempt
 *   pollFrame() / pollEvent() / pollTimeout()
 *
 * Behaviour follows the reference gateway 1.4.13, with these deliberate differences:
 * - the pending join belongs to one connection, so a socket that dies before the join ack never
 *   blocks later connections (the reference's blocked-queue defect);
 * - `phx_error` on our topic triggers a rejoin (the reference only logs it and stays detached);
 * - every connection state change is reported once as a `stateChanged` event.
 * As in the reference there is no heartbeat-reply timeout and no join timeout: liveness relies on
 * the socket failing and on the portal closing idle sockets after 37 s.
 */
import { createLogger } from '../log/index.ts';
import type { RandomSource } from '../util/random.ts';
import { ExponentialBackoff } from './backoff.ts';
import { isClientError, statusWithReason } from './http-status.ts';
import { decodeFrame, decodeReply, displayErrorReason, encodeFrame, isEmptyObject, isPlainObject, type ErrorReason } from './phoenix-frame.ts';
import type { MessageDecodeError } from './messages.ts';
import { describeMessageDecodeError } from './messages.ts';

export const HEARTBEAT_INTERVAL_MS = 30_000;
/** The outbound FIFO is discarded when it already holds more than this many frames. */
export const MAX_BUFFERED_MESSAGES = 32;
export const HEARTBEAT_TOPIC = 'phoenix';

export type ChannelState = 'disconnected' | 'connecting' | 'joining' | 'joined' | 'reconnecting' | 'failed';

export type PortalFatalError =
  | { readonly code: 'upgradeRejected'; readonly status: number; readonly message: string }
  | { readonly code: 'tokenExpired'; readonly message: string }
  | { readonly code: 'loginFailed'; readonly reason: ErrorReason; readonly message: string };

export type ChannelEvent<M> =
  /** Open a WebSocket to the portal now, abandoning any current one. */
  | { readonly kind: 'connect' }
  /** Drop the current WebSocket without a close handshake. */
  | { readonly kind: 'closeSocket' }
  | { readonly kind: 'stateChanged'; readonly state: ChannelState; readonly previous: ChannelState }
  | { readonly kind: 'joined'; readonly topic: string }
  | { readonly kind: 'message'; readonly topic: string; readonly message: M }
  /** An inbound frame that could not be typed; log a warning and carry on. */
  | { readonly kind: 'dropped'; readonly topic: string | undefined; readonly event: string | undefined; readonly reason: string }
  /** An error reply to one of our requests (not the join); the reference logs `Request failed`. */
  | { readonly kind: 'requestFailed'; readonly topic: string; readonly ref: number; readonly reason: ErrorReason }
  /** A transient failure; the reference logs it at INFO as `Hiccup in portal connection: …`. */
  | { readonly kind: 'hiccup'; readonly delayMs: number; readonly error: string }
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
}

type State =
  | { readonly kind: 'disconnected' }
  | { readonly kind: 'connecting' }
  | { readonly kind: 'connected'; pendingJoinRef: number | undefined; nextHeartbeatAt: number }
  | { readonly kind: 'reconnecting'; readonly at: number }
  | { readonly kind: 'failed' };

const log = createLogger('phoenix_channel');

export class PhoenixChannel<M> {
  private readonly topic: string;
  private readonly rng: RandomSource;
  private readonly decode: MessageDecoder<M>;
  private state: State = { kind: 'disconnected' };
  private reportedState: ChannelState = 'disconnected';
  private backoff: ExponentialBackoff | undefined;
  private nextRef = 0;
  /** Messages and heartbeats waiting for a joined connection; survives reconnects. */
  private pending: string[] = [];
  /** Frames to write on the current socket, drained by `pollFrame`. */
  private readonly wire: string[] = [];
  private readonly events: ChannelEvent<M>[] = [];

  constructor(options: PhoenixChannelOptions<M>) {
    this.topic = options.topic;
    this.rng = options.rng;
    this.decode = options.decode;
  }

  get connectionState(): ChannelState {
    return this.reportedState;
  }

  /** Number of frames waiting for the join acknowledgement (or for a connection). */
  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * Starts the first connection, or forces a fresh one (the gateway does this when no TURN relay
   * is left): backoff cleared, current socket dropped, immediate attempt. No-op while connecting.
   */
  connect(_now: number): void {
    switch (this.state.kind) {
      case 'failed':
      case 'connecting':
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
    this.backoff = undefined;
    this.wire.length = 0;
    this.state = { kind: 'connected', pendingJoinRef: undefined, nextHeartbeatAt: now + HEARTBEAT_INTERVAL_MS };
    this.join(now);
  }

  /** The server answered the upgrade with a status other than 101. */
  handleUpgradeFailure(status: number, body: string, now: number): void {
    if (this.state.kind !== 'connecting') return;
    const statusText = statusWithReason(status);
    if (isClientError(status)) {
      this.fail({ code: 'upgradeRejected', status, message: `Failed to establish WebSocket connection: ${statusText}` });
      return;
    }
    this.hiccup(`http error: ${statusText} - ${body}`, now);
  }

  /** A TCP/TLS failure or timeout, a WebSocket error or Close frame, or the stream ending. */
  handleDisconnected(error: string, now: number): void {
    if (this.state.kind !== 'connecting' && this.state.kind !== 'connected') return;
    this.hiccup(error, now);
  }

  handleFrame(text: string, now: number): void {
    if (this.state.kind !== 'connected') return;
    const decoded = decodeFrame(text);
    if (!decoded.ok) {
      if (decoded.error.code === 'eof') {
        this.events.push({ kind: 'closeSocket' });
        this.hiccup('failed to deserialize message', now);
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
        this.events.push({ kind: 'closeSocket' });
        this.hiccup('portal closed the websocket connection', now);
        return;
      case 'disconnect':
        if (!isPlainObject(payload) || payload.reason !== 'token_expired') {
          return this.drop(topic, event, 'unknown disconnect reason');
        }
        this.fail({ code: 'tokenExpired', message: 'Authentication token expired' });
        return;
      default: {
        const result = this.decode(event, payload);
        if (!result.ok) return this.drop(topic, event, describeMessageDecodeError(result.error));
        this.events.push({ kind: 'message', topic, message: result.message });
      }
    }
  }

  /** Queues a message on the channel topic and returns its ref. */
  send(event: string, payload: unknown, now: number): number {
    const ref = this.nextRef++;
    this.enqueue(encodeFrame(this.topic, event, payload, ref));
    this.flush(now);
    return ref;
  }

  handleTimeout(now: number): void {
    const state = this.state;
    switch (state.kind) {
      case 'reconnecting':
        if (now >= state.at) this.startConnecting();
        return;
      case 'connected':
        if (now < state.nextHeartbeatAt) return;
        state.nextHeartbeatAt = now + HEARTBEAT_INTERVAL_MS;
        this.enqueue(encodeFrame(HEARTBEAT_TOPIC, 'heartbeat', {}, this.nextRef++));
        this.flush(now);
        return;
      case 'disconnected':
      case 'connecting':
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
    switch (this.state.kind) {
      case 'reconnecting':
        return this.state.at;
      case 'connected':
        return this.state.nextHeartbeatAt;
      case 'disconnected':
      case 'connecting':
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
    if (this.state.kind !== 'connected') return;
    const ref = this.nextRef++;
    this.state.pendingJoinRef = ref;
    this.state.nextHeartbeatAt = now + HEARTBEAT_INTERVAL_MS;
    this.wire.push(encodeFrame(this.topic, 'phx_join', null, ref));
    this.report('joining');
  }

  private handleReply(topic: string, payload: unknown, ref: number | undefined, now: number): void {
    if (this.state.kind !== 'connected') return;
    if (ref === undefined) return this.drop(topic, 'phx_reply', 'reply without ref');
    const reply = decodeReply(payload);
    if (reply === undefined) return this.drop(topic, 'phx_reply', 'reply cannot be typed');
    const isJoinReply = ref === this.state.pendingJoinRef;
    if (reply.status === 'error') {
      if (isJoinReply && topic === this.topic) {
        this.fail({
          code: 'loginFailed',
          reason: reply.reason,
          message: `Failed to login with portal: ${displayErrorReason(reply.reason)}`,
        });
        return;
      }
      this.events.push({ kind: 'requestFailed', topic, ref, reason: reply.reason });
      return;
    }
    if (!isJoinReply) return;
    this.state.pendingJoinRef = undefined;
    this.report('joined');
    this.events.push({ kind: 'joined', topic });
    this.flush(now);
  }

  private handlePhxError(topic: string, now: number): void {
    if (this.state.kind !== 'connected' || topic !== this.topic) return;
    if (this.state.pendingJoinRef !== undefined) return;
    log.info('Portal channel crashed; rejoining', { topic });
    this.join(now);
  }

  private enqueue(frame: string): void {
    if (this.pending.length > MAX_BUFFERED_MESSAGES) {
      this.pending = [];
      log.debug(`Dropping pending messages to portal because we exceeded the maximum of ${MAX_BUFFERED_MESSAGES}`);
    }
    this.pending.push(frame);
  }

  private flush(now: number): void {
    if (this.state.kind !== 'connected' || this.state.pendingJoinRef !== undefined || this.pending.length === 0) return;
    for (const frame of this.pending) this.wire.push(frame);
    this.pending = [];
    this.state.nextHeartbeatAt = now + HEARTBEAT_INTERVAL_MS;
  }

  private hiccup(error: string, now: number): void {
    this.wire.length = 0;
    let delayMs = 0;
    if (this.backoff === undefined) {
      this.backoff = new ExponentialBackoff(this.rng);
    } else {
      delayMs = this.backoff.nextDelayMs();
    }
    this.events.push({ kind: 'hiccup', delayMs, error });
    if (delayMs === 0) {
      this.startConnecting();
      return;
    }
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
