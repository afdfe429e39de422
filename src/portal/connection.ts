/**
 * The IO wrapper around `PhoenixChannel`: one WebSocket (the `ws` package) at a time, timers from
 * `pollTimeout`, and the connect rules of spec portal-protocol §1.4-§1.5:
 * - the portal host is resolved once (`resolvePortalAddresses`) and every attempt tries the cached
 *   addresses in resolver order, one 5 s timeout for the whole TCP connect loop;
 * - the port is the URL's explicit port, else 443 (`portalConnectTarget`);
 * - TLS only for `wss`, SNI = host; the Host header is the bare host (no port);
 * - the upgrade request carries exactly Host, Connection, Upgrade, Sec-WebSocket-Version,
 *   Sec-WebSocket-Key and User-Agent (no Origin, subprotocol or compression).
 */
import { lookup } from 'node:dns/promises';
import { isIP, Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type RawData } from 'ws';
import { createLogger } from '../log/index.ts';
import { portalConnectTarget } from './login-url.ts';
import type { ChannelEvent, PhoenixChannel } from './phoenix-channel.ts';

export const CONNECT_TIMEOUT_MS = 5_000;
const MAX_ERROR_BODY_BYTES = 4096;

export interface PortalConnectionOptions<M> {
  /** The full login URL including `public_key`. */
  readonly url: string;
  readonly userAgent: string;
  /** From `resolvePortalAddresses`, resolved once at startup. */
  readonly addresses: readonly string[];
  readonly channel: PhoenixChannel<M>;
  /** Every channel event, after the connection has acted on `connect` / `closeSocket`. */
  readonly onEvent: (event: ChannelEvent<M>) => void;
  readonly connectTimeoutMs?: number;
  /** Extra TLS options (e.g. a test CA); SNI is always the URL host. */
  readonly tls?: ConnectionOptions;
  /** Monotonic milliseconds; `performance.now` by default. */
  readonly clock?: () => number;
  /** An unconnected TCP socket for one address (the runtime marks it with SO_MARK); `new Socket()` by default. */
  readonly createSocket?: (address: string) => Socket;
}

interface Attempt {
  readonly id: number;
  socket: WebSocket | undefined;
  tcp: Socket | undefined;
  finished: boolean;
  /** Ends a TCP connect loop still in progress. */
  cancelConnect: (() => void) | undefined;
}

const log = createLogger('phoenix_channel');

/** All addresses of the portal host in resolver order; an IP literal resolves to itself. */
export async function resolvePortalAddresses(url: string): Promise<string[]> {
  const host = bareHost(portalConnectTarget(url).host);
  if (isIP(host) !== 0) return [host];
  const records = await lookup(host, { all: true, verbatim: true });
  return records.map((record) => record.address);
}

export class PortalConnection<M> {
  private readonly options: PortalConnectionOptions<M>;
  private readonly channel: PhoenixChannel<M>;
  private readonly clock: () => number;
  private readonly host: string;
  private readonly port: number;
  private readonly secure: boolean;
  private attempt: Attempt | undefined;
  private attemptCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;

  constructor(options: PortalConnectionOptions<M>) {
    this.options = options;
    this.channel = options.channel;
    this.clock = options.clock ?? (() => performance.now());
    const url = new URL(options.url);
    const target = portalConnectTarget(url);
    this.host = target.host;
    this.port = target.port;
    this.secure = url.protocol === 'wss:';
  }

  start(): void {
    this.channel.connect(this.clock());
    this.pump();
  }

  /** Queues a message on the channel topic; returns its ref. */
  send(event: string, payload: unknown): number {
    const ref = this.channel.send(event, payload, this.clock());
    this.pump();
    return ref;
  }

  /** A fresh connection right away, backoff cleared (used when no TURN relay is left). */
  reconnect(): void {
    this.channel.connect(this.clock());
    this.pump();
  }

  /** Drops the socket and all timers; the channel is left as it is. */
  stop(): void {
    this.stopped = true;
    this.abandonAttempt();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
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
    const attempt: Attempt = { id: ++this.attemptCount, socket: undefined, tcp: undefined, finished: false, cancelConnect: undefined };
    this.attempt = attempt;
    void this.runAttempt(attempt);
  }

  private async runAttempt(attempt: Attempt): Promise<void> {
    log.debug('Connecting to portal', { host: this.host, addresses: this.options.addresses.join(', ') });
    let tcp: Socket;
    try {
      tcp = await this.connectTcp(attempt);
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
    const socket = new WebSocket(this.options.url, {
      createConnection: () => transport,
      headers: { Host: this.host, 'User-Agent': this.options.userAgent },
      perMessageDeflate: false,
      followRedirects: false,
    });
    attempt.socket = socket;
    socket.on('open', () => {
      if (attempt.finished) return;
      this.channel.handleConnected(this.clock());
      this.pump();
    });
    socket.on('unexpected-response', (request, response: IncomingMessage) => {
      readBody(response, (body) => {
        this.finish(attempt, () => this.channel.handleUpgradeFailure(response.statusCode ?? 0, body, this.clock()));
        request.destroy();
      });
    });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (attempt.finished) return;
      const text = messageText(data, isBinary);
      if (text === undefined) {
        log.warn('Received non-text message from portal');
        return;
      }
      this.channel.handleFrame(text, this.clock());
      this.pump();
    });
    socket.on('error', (error: Error) => {
      this.finish(attempt, () => this.channel.handleDisconnected(`websocket connection failed: ${error.message}`, this.clock()));
    });
    socket.on('close', () => {
      this.finish(attempt, () => this.channel.handleDisconnected('websocket stream was closed', this.clock()));
    });
  }

  /** Tries each cached address in order; one timeout covers the whole loop. */
  private connectTcp(attempt: Attempt): Promise<Socket> {
    const timeoutMs = this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    const addresses = this.options.addresses;
    return new Promise<Socket>((resolve, reject) => {
      const errors: string[] = [];
      let settled = false;
      const giveUp = (error: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        attempt.cancelConnect = undefined;
        attempt.tcp?.destroy();
        reject(error);
      };
      const timer = setTimeout(() => giveUp(new Error(`operation timed out after ${formatSeconds(timeoutMs)}`)), timeoutMs);
      attempt.cancelConnect = () => giveUp(new Error('connection attempt abandoned'));
      const tryNext = (index: number): void => {
        if (settled) return;
        const address = addresses[index];
        if (address === undefined) {
          giveUp(new Error(`failed to connect socket: [${errors.join(', ')}]`));
          return;
        }
        let tcp: Socket;
        try {
          tcp = this.options.createSocket?.(address) ?? new Socket();
        } catch (error) {
          errors.push(`${address}: ${(error as Error).message}`);
          tryNext(index + 1);
          return;
        }
        attempt.tcp = tcp;
        const onError = (error: Error): void => {
          tcp.destroy();
          errors.push(`${isIP(address) === 6 ? `[${address}]` : address}:${this.port}: ${error.message}`);
          tryNext(index + 1);
        };
        tcp.once('error', onError);
        tcp.connect({ host: address, port: this.port }, () => {
          tcp.off('error', onError);
          if (settled) {
            tcp.destroy();
            return;
          }
          settled = true;
          clearTimeout(timer);
          attempt.cancelConnect = undefined;
          resolve(tcp);
        });
      };
      tryNext(0);
    });
  }

  /** Reports the end of an attempt to the channel exactly once. */
  private finish(attempt: Attempt, report: () => void): void {
    if (attempt.finished || this.stopped) return;
    attempt.finished = true;
    if (this.attempt === attempt) this.attempt = undefined;
    attempt.socket?.terminate();
    report();
    this.pump();
  }

  private abandonAttempt(): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt === undefined) return;
    attempt.finished = true;
    attempt.cancelConnect?.();
    attempt.socket?.terminate();
    attempt.tcp?.destroy();
  }
}

function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function messageText(data: RawData, isBinary: boolean): string | undefined {
  const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (!isBinary) return buffer.toString('utf8');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buffer);
  } catch {
    return undefined;
  }
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

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
