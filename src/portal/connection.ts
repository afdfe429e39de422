/**
 * The IO wrapper around `PhoenixChannel`: one WebSocket (the `ws` package) at a time, timers from
 * `pollTimeout`, and the connect rules of 1.6.0 (spec gateway-1.6 §1.1-§1.2, §1.6):
 * - the portal host is resolved again for every attempt (a failed lookup gives no addresses; an IP
 *   literal host is always an address), and all addresses are dialled in parallel, the first
 *   connected one winning, within 5 s; the whole attempt (TCP, TLS, upgrade) within 15 s;
 * - the port is the URL's explicit port, else 443 (`portalConnectTarget`); TLS only for `wss`,
 *   SNI = host; the Host header is the bare host (no port);
 * - v2 (`/gateway/v2/websocket`): the token travels only in `X-Authorization: Bearer <token>`
 *   (all whitespace removed); the upgrade carries Host, Connection, Upgrade, Sec-WebSocket-Version,
 *   Sec-WebSocket-Key, User-Agent and X-Authorization (no Origin, subprotocol or compression);
 * - a 404 on the v2 path falls back, once and for the rest of the process, to the v1 path
 *   (`/gateway/websocket?token=…`, 1.4.13's dialect) with one WARN (a team extension: the official
 *   1.6.0 only retries; spec §5);
 * - `close()` ends the connection with a Close frame (1000) on shutdown.
 * The token and the URLs that carry it are never logged.
 */
import { lookup } from 'node:dns/promises';
import { isIP, Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type RawData } from 'ws';
import { createLogger } from '../log/index.ts';
import { parseRetryAfter } from './http-status.ts';
import { authorizationHeader, portalConnectTarget } from './login-url.ts';
import type { PortalDialect } from './messages.ts';
import type { ChannelEvent, PhoenixChannel } from './phoenix-channel.ts';

/** Budget of the TCP connect to all addresses. */
export const CONNECT_TIMEOUT_MS = 5_000;
/** Budget of a whole attempt: TCP, TLS and the WebSocket upgrade. */
export const ATTEMPT_TIMEOUT_MS = 15_000;
/** How long a graceful close waits for the portal's Close frame. */
export const CLOSE_TIMEOUT_MS = 1_000;
const MAX_ERROR_BODY_BYTES = 4096;

export interface PortalConnectionOptions<M> {
  /** The v2 login URL including `public_key` (no token). */
  readonly url: string;
  /** The v1 login URL including `token` and `public_key`, for portals without the v2 path; undefined: no fallback. */
  readonly v1Url?: string;
  /** Sent as `X-Authorization: Bearer` on the v2 path. */
  readonly token: string;
  readonly userAgent: string;
  readonly channel: PhoenixChannel<M>;
  /** Every channel event, after the connection has acted on it. */
  readonly onEvent: (event: ChannelEvent<M>) => void;
  /** The portal host's addresses, asked before every attempt; the system resolver by default. */
  readonly resolve?: (host: string) => Promise<readonly string[]>;
  readonly connectTimeoutMs?: number;
  readonly attemptTimeoutMs?: number;
  /** Extra TLS options (e.g. a test CA); SNI is always the URL host. */
  readonly tls?: ConnectionOptions;
  /** Monotonic milliseconds; `performance.now` by default. */
  readonly clock?: () => number;
  /** Wall-clock milliseconds, for Retry-After dates; `Date.now` by default. */
  readonly wallClock?: () => number;
  /** An unconnected TCP socket for one address (the runtime marks it with SO_MARK); `new Socket()` by default. */
  readonly createSocket?: (address: string) => Socket;
  /** Whether a text frame may be parsed (a size cap, src/portal/input-limits.ts); every frame by default. */
  readonly acceptsFrame?: (text: string) => boolean;
  /** The WebSocket refuses frames longer than this (ws's default, 100 MiB, otherwise). */
  readonly maxFrameBytes?: number;
}

interface Attempt {
  readonly id: number;
  socket: WebSocket | undefined;
  readonly tcp: Set<Socket>;
  finished: boolean;
  timer: NodeJS.Timeout | undefined;
}

const log = createLogger('phoenix_channel');

/** All addresses of a host in resolver order; an IP literal resolves to itself. */
export async function resolveHostAddresses(host: string): Promise<string[]> {
  const bare = bareHost(host);
  if (isIP(bare) !== 0) return [bare];
  const records = await lookup(bare, { all: true, verbatim: true });
  return records.map((record) => record.address);
}

/** The portal URL's host addresses (kept for tools that resolve once). */
export async function resolvePortalAddresses(url: string): Promise<string[]> {
  return resolveHostAddresses(portalConnectTarget(url).host);
}

export class PortalConnection<M> {
  private readonly options: PortalConnectionOptions<M>;
  private readonly channel: PhoenixChannel<M>;
  private readonly clock: () => number;
  private readonly wallClock: () => number;
  private readonly host: string;
  private readonly port: number;
  private readonly secure: boolean;
  private currentDialect: PortalDialect = 'v2';
  private attempt: Attempt | undefined;
  private attemptCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  private closing: { done: Promise<void>; finish: () => void } | undefined;

  constructor(options: PortalConnectionOptions<M>) {
    this.options = options;
    this.channel = options.channel;
    this.clock = options.clock ?? (() => performance.now());
    this.wallClock = options.wallClock ?? (() => Date.now());
    const url = new URL(options.url);
    const target = portalConnectTarget(url);
    this.host = target.host;
    this.port = target.port;
    this.secure = url.protocol === 'wss:';
  }

  /** The dialect of the path in use: v2 unless the portal answered 404 there and v1 took over. */
  get dialect(): PortalDialect {
    return this.currentDialect;
  }

  /** How many connection attempts were started. */
  get attempts(): number {
    return this.attemptCount;
  }

  start(): void {
    this.channel.connect(this.clock());
    this.pump();
  }

  /** Sends a message on the channel topic; returns its ref, or undefined when not connected (dropped). */
  send(event: string, payload: unknown): number | undefined {
    const ref = this.channel.send(event, payload, this.clock());
    this.pump();
    return ref;
  }

  /** A fresh connection right away, backoff cleared (the v1 dialect's answer to "no relays"). */
  reconnect(): void {
    this.channel.connect(this.clock());
    this.pump();
  }

  /** Closes the connection gracefully (Close 1000, up to CLOSE_TIMEOUT_MS for the answer); nothing reconnects afterwards. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing.done;
    let finish: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (finish = resolve));
    this.closing = { done, finish };
    this.channel.close(this.clock());
    this.pump();
    if (this.channel.connectionState !== 'closing') finish();
    return done;
  }

  /** Drops the socket and all timers; the channel is left as it is. */
  stop(): void {
    this.stopped = true;
    this.abandonAttempt();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.closing?.finish();
  }

  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.drainOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    this.armTimer();
  }

  private drainOnce(): void {
    for (let frame = this.channel.pollFrame(); frame !== undefined; frame = this.channel.pollFrame()) {
      const socket = this.attempt?.socket;
      if (socket !== undefined && socket.readyState === WebSocket.OPEN) socket.send(frame);
    }
    for (let event = this.channel.pollEvent(); event !== undefined; event = this.channel.pollEvent()) {
      if (this.stopped) return;
      if (event.kind === 'connect') this.openSocket();
      else if (event.kind === 'closeSocket') this.abandonAttempt();
      else if (event.kind === 'closeGracefully') this.closeGracefully();
      this.options.onEvent(event);
    }
  }

  private armTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    const deadline = this.channel.pollTimeout();
    if (deadline === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.channel.handleTimeout(this.clock());
      this.pump();
    }, Math.max(0, Math.ceil(deadline - this.clock())));
  }

  private openSocket(): void {
    this.abandonAttempt();
    const attempt: Attempt = { id: ++this.attemptCount, socket: undefined, tcp: new Set(), finished: false, timer: undefined };
    this.attempt = attempt;
    void this.runAttempt(attempt);
  }

  private async runAttempt(attempt: Attempt): Promise<void> {
    const addresses = await this.resolveAddresses();
    if (attempt.finished) return;
    log.debug('Connecting to portal', { host: this.host, addresses: addresses.join(', '), user_agent: this.options.userAgent });
    if (addresses.length === 0) {
      this.finish(attempt, () => this.channel.handleDisconnected('no IP addresses available', this.clock()));
      return;
    }
    const budget = this.options.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS;
    attempt.timer = setTimeout(() => {
      this.finish(attempt, () => this.channel.handleDisconnected('connection to portal timed out', this.clock()));
    }, budget);

    let tcp: Socket;
    try {
      tcp = await this.connectAny(attempt, addresses);
    } catch (error) {
      this.finish(attempt, () => this.channel.handleDisconnected(error instanceof Error ? error.message : String(error), this.clock()));
      return;
    }
    if (attempt.finished) {
      tcp.destroy();
      return;
    }
    const transport = this.secure
      ? tlsConnect({ ...this.options.tls, socket: tcp, servername: isIP(bareHost(this.host)) === 0 ? this.host : undefined })
      : tcp;
    const v2 = this.currentDialect === 'v2';
    const headers: Record<string, string> = { Host: this.host, 'User-Agent': asciiOnly(this.options.userAgent) };
    if (v2) headers['X-Authorization'] = authorizationHeader(this.options.token);
    const socket = new WebSocket(v2 ? this.options.url : this.options.v1Url!, {
      createConnection: () => transport,
      headers,
      perMessageDeflate: false,
      followRedirects: false,
      ...(this.options.maxFrameBytes === undefined ? {} : { maxPayload: this.options.maxFrameBytes }),
    });
    attempt.socket = socket;
    socket.on('open', () => {
      if (attempt.finished) return;
      clearTimeout(attempt.timer);
      this.channel.handleConnected(this.clock());
      this.pump();
    });
    socket.on('unexpected-response', (request, response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const retryAfter = parseRetryAfter(headerValue(response.headers['retry-after']), this.wallClock());
      readBody(response, (body) => {
        request.destroy();
        if (status === 404 && v2 && this.options.v1Url !== undefined && this.currentDialect === 'v2') {
          this.currentDialect = 'v1';
          log.warn('The portal has no /gateway/v2/websocket (HTTP 404): using /gateway/websocket and the 1.4.13 dialect from now on', { host: this.host });
        }
        this.finish(attempt, () => this.channel.handleUpgradeFailure(status, body, retryAfter, this.clock()));
      });
    });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (attempt.finished) return;
      if (isBinary) {
        log.warn('Received unexpected binary message from portal');
        return;
      }
      const text = messageText(data);
      if (this.options.acceptsFrame?.(text) === false) return;
      this.channel.handleFrame(text, this.clock());
      this.pump();
    });
    socket.on('error', (error: Error) => {
      this.finish(attempt, () => this.channel.handleDisconnected(`websocket connection failed: ${error.message}`, this.clock()));
    });
    socket.on('close', (code: number) => {
      const reason = code === 1005 ? 'portal sent empty websocket close frame' : code === 1006 ? 'websocket stream was closed' : `portal sent websocket close frame: ${code}`;
      this.finish(attempt, () => this.channel.handleDisconnected(reason, this.clock()));
    });
  }

  private async resolveAddresses(): Promise<string[]> {
    const host = bareHost(this.host);
    let resolved: readonly string[] = [];
    try {
      resolved = await (this.options.resolve ?? resolveHostAddresses)(host);
    } catch (error) {
      log.debug('Failed to lookup portal host', { host, error: error instanceof Error ? error.message : String(error) });
    }
    const addresses = [...resolved];
    if (isIP(host) !== 0) addresses.push(host);
    return [...new Set(addresses)];
  }

  /** Dials every address at once; the first to connect wins and the others are closed. */
  private connectAny(attempt: Attempt, addresses: readonly string[]): Promise<Socket> {
    const timeoutMs = this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    return new Promise<Socket>((resolve, reject) => {
      const errors: string[] = [];
      let settled = false;
      let failed = 0;
      const settle = (): void => {
        settled = true;
        clearTimeout(timer);
      };
      const timer = setTimeout(() => {
        if (settled) return;
        settle();
        for (const tcp of attempt.tcp) tcp.destroy();
        attempt.tcp.clear();
        reject(new Error(`failed to connect socket: [${addresses.map((a) => `${socketText(a, this.port)}: connection timed out`).join(', ')}]`));
      }, timeoutMs);
      for (const address of addresses) {
        let tcp: Socket;
        try {
          tcp = this.options.createSocket?.(address) ?? new Socket();
        } catch (error) {
          errors.push(`${socketText(address, this.port)}: ${(error as Error).message}`);
          if (++failed === addresses.length && !settled) {
            settle();
            reject(new Error(`failed to connect socket: [${errors.join(', ')}]`));
          }
          continue;
        }
        attempt.tcp.add(tcp);
        const onError = (error: Error): void => {
          tcp.destroy();
          attempt.tcp.delete(tcp);
          errors.push(`${socketText(address, this.port)}: ${error.message}`);
          if (++failed === addresses.length && !settled) {
            settle();
            reject(new Error(`failed to connect socket: [${errors.join(', ')}]`));
          }
        };
        tcp.once('error', onError);
        tcp.connect({ host: address, port: this.port }, () => {
          tcp.off('error', onError);
          if (settled || attempt.finished) {
            tcp.destroy();
            attempt.tcp.delete(tcp);
            return;
          }
          settle();
          for (const other of attempt.tcp) if (other !== tcp) other.destroy();
          attempt.tcp.clear();
          resolve(tcp);
        });
      }
    });
  }

  /** Reports the end of an attempt to the channel exactly once. */
  private finish(attempt: Attempt, report: () => void): void {
    if (attempt.finished || this.stopped) return;
    attempt.finished = true;
    clearTimeout(attempt.timer);
    if (this.attempt === attempt) this.attempt = undefined;
    attempt.socket?.terminate();
    for (const tcp of attempt.tcp) tcp.destroy();
    report();
    this.pump();
  }

  private abandonAttempt(): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt === undefined) return;
    attempt.finished = true;
    clearTimeout(attempt.timer);
    attempt.socket?.terminate();
    for (const tcp of attempt.tcp) tcp.destroy();
  }

  /** Close frame 1000, then the portal's answer or CLOSE_TIMEOUT_MS; the channel learns the end. */
  private closeGracefully(): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const done = (): void => {
      if (ended) return;
      ended = true;
      if (timer !== undefined) clearTimeout(timer);
      attempt?.socket?.terminate();
      this.channel.handleClosed(this.clock());
      this.pump();
      this.closing?.finish();
    };
    if (attempt !== undefined) {
      attempt.finished = true;
      clearTimeout(attempt.timer);
    }
    const socket = attempt?.socket;
    if (socket === undefined || socket.readyState !== WebSocket.OPEN) {
      queueMicrotask(done);
      return;
    }
    timer = setTimeout(done, CLOSE_TIMEOUT_MS);
    socket.once('close', done);
    socket.close(1000);
  }
}

function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function socketText(address: string, port: number): string {
  return `${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

function asciiOnly(text: string): string {
  return text.replace(/[^\x00-\x7f]/g, '');
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function messageText(data: RawData): string {
  const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  return buffer.toString('utf8');
}

function readBody(response: IncomingMessage, done: (body: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let called = false;
  const finish = (): void => {
    if (called) return;
    called = true;
    done(Buffer.concat(chunks).toString('utf8'));
  };
  response.on('data', (chunk: Buffer) => {
    if (size >= MAX_ERROR_BODY_BYTES) return;
    chunks.push(chunk.subarray(0, MAX_ERROR_BODY_BYTES - size));
    size += chunk.length;
  });
  response.on('end', finish);
  response.on('error', finish);
  response.on('aborted', finish);
  response.on('close', finish);
}
