// The portal connection against an in-process WebSocket server: the v2 upgrade request, every row of the
// 1.6.0 fatal/retry table (spec gateway-1.6 §1.7), Retry-After, DNS on every attempt, parallel dialling and
// the 5 s / 15 s budgets, the graceful close, and the fallback to the v1 path on 404.
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { hasCommand } from '../support/env.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { createLoginUrl, loginUrlWithPublicKey } from '../../src/portal/login-url.ts';
import { decodeIngress, encodeEgress, type IngressMessage } from '../../src/portal/messages.ts';
import { PhoenixChannel, type ChannelEvent } from '../../src/portal/phoenix-channel.ts';
import { PortalConnection, resolvePortalAddresses } from '../../src/portal/connection.ts';
import { parseRetryAfter } from '../../src/portal/http-status.ts';

const USER_AGENT = 'Debian/12.0.0 gateway/1.6.0 (x86_64; 6.1.0)';
const TOKEN = 'secret token';
const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const JOIN = '{"topic":"gateway","event":"phx_join","payload":null,"ref":0}';
const JOIN_OK = '{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}';
const INIT = '{"event":"init","ref":null,"topic":"gateway","payload":{"interface":{"ipv6":"fd00:2021:1111::2c:f6ab","ipv4":"100.115.164.78"},"config":{"ipv4_masquerade_enabled":true,"ipv6_masquerade_enabled":true},"flow_logs":{"api_url":"https://x/","upload_interval_secs":0,"upload_batch_size":0}}}';

interface Upgrade {
  readonly path: string;
  readonly requestLine: string;
  readonly rawHeaders: readonly string[];
}

/** What the mock answers an upgrade with: 101 (accept) or an HTTP error, with optional headers. */
type Answer = number | { readonly status: number; readonly headers?: Record<string, string>; readonly body?: string } | 'hang';

/** A Phoenix V1 stand-in: answers upgrades from a script, then speaks raw frames. */
class MockPortal {
  readonly upgrades: Upgrade[] = [];
  readonly frames: string[] = [];
  readonly sockets: WebSocket[] = [];
  readonly closeCodes: number[] = [];
  private readonly server: Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  private readonly answers: Answer[];
  private readonly v2: boolean;
  private readonly connections = new Set<Duplex>();
  private waiters: (() => void)[] = [];

  /** `v2: false` plays a portal older than the v2 socket: 404 there. */
  constructor(answers: Answer[] = [], options: { v2?: boolean } = {}) {
    this.answers = answers;
    this.v2 = options.v2 ?? true;
    this.server = createServer();
    this.server.on('connection', (socket: Duplex) => {
      this.connections.add(socket);
      socket.on('close', () => this.connections.delete(socket));
    });
    this.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(request, socket, head));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  send(text: string): void {
    this.sockets.at(-1)!.send(text);
  }

  async nextFrame(timeoutMs = 4000): Promise<string> {
    const index = this.frames.length;
    await until(() => this.frames.length > index, timeoutMs, 'no frame from the gateway', (wake) => this.waiters.push(wake));
    return this.frames[index]!;
  }

  async waitUpgrades(count: number, timeoutMs = 5000): Promise<void> {
    await until(() => this.upgrades.length >= count, timeoutMs, `fewer than ${count} upgrades`, (wake) => this.waiters.push(wake));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.terminate();
    // Upgraded and held sockets are no longer the HTTP server's to close.
    for (const socket of this.connections) socket.destroy();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    this.upgrades.push({ path, requestLine: `${request.method} ${request.url} HTTP/${request.httpVersion}`, rawHeaders: request.rawHeaders });
    this.wake();
    if (!this.v2 && path === '/gateway/v2/websocket') {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nNot Found');
      return;
    }
    const answer = this.answers.shift() ?? 101;
    if (answer === 'hang') return;
    if (answer !== 101) {
      const { status, headers = {}, body = 'unavailable' } = typeof answer === 'number' ? { status: answer } : answer;
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.end(`HTTP/1.1 ${status} X\r\ncontent-type: text/plain\r\n${extra}content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      this.sockets.push(ws);
      ws.on('close', (code) => {
        this.closeCodes.push(code);
        this.wake();
      });
      ws.on('message', (data) => {
        this.frames.push(data.toString());
        this.wake();
      });
    });
  }
}

interface HarnessOptions {
  readonly resolve?: (host: string) => Promise<readonly string[]>;
  readonly createSocket?: (address: string) => Socket;
  readonly connectTimeoutMs?: number;
  readonly attemptTimeoutMs?: number;
  readonly maxPartitionMs?: number;
  readonly v1Fallback?: boolean;
  readonly wallClock?: () => number;
}

class Harness {
  readonly events: ChannelEvent<IngressMessage>[] = [];
  readonly connection: PortalConnection<IngressMessage>;
  private waiters: (() => void)[] = [];

  constructor(urls: { v2: string; v1: string }, options: HarnessOptions = {}) {
    const channel = new PhoenixChannel<IngressMessage>({
      topic: 'gateway',
      rng: seededRandom(3),
      decode: (event, payload) => decodeIngress(event, payload, this.connection.dialect),
      ...(options.maxPartitionMs !== undefined ? { maxPartitionMs: options.maxPartitionMs } : {}),
    });
    this.connection = new PortalConnection({
      url: urls.v2,
      ...(options.v1Fallback === false ? {} : { v1Url: urls.v1 }),
      token: TOKEN,
      userAgent: USER_AGENT,
      channel,
      resolve: options.resolve ?? (async () => ['127.0.0.1']),
      ...(options.createSocket ? { createSocket: options.createSocket } : {}),
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.attemptTimeoutMs !== undefined ? { attemptTimeoutMs: options.attemptTimeoutMs } : {}),
      ...(options.wallClock ? { wallClock: options.wallClock } : {}),
      onEvent: (event) => {
        this.events.push(event);
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      },
    });
  }

  async waitFor<K extends ChannelEvent<IngressMessage>['kind']>(kind: K, timeoutMs = 5000, nth = 1): Promise<Extract<ChannelEvent<IngressMessage>, { kind: K }>> {
    const find = (): Extract<ChannelEvent<IngressMessage>, { kind: K }> | undefined =>
      this.events.filter((e): e is Extract<ChannelEvent<IngressMessage>, { kind: K }> => e.kind === kind)[nth - 1];
    await until(() => find() !== undefined, timeoutMs, `no ${kind} event #${nth}; got ${this.events.map((e) => e.kind).join(', ')}`, (wake) => this.waiters.push(wake));
    return find()!;
  }

  has(kind: ChannelEvent<IngressMessage>['kind']): boolean {
    return this.events.some((e) => e.kind === kind);
  }
}

let cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
  configureLogging({ filter: LogFilter.parse('off') });
});

describe('portal connection (v2) against an in-process Phoenix server', () => {
  test('the upgrade: v2 path, query external_id, name, public_key, the token only in X-Authorization; then join, init, egress', async () => {
    const lines = captureLogs();
    const { portal, harness } = await setUp();

    harness.connection.start();
    const join = await portal.nextFrame();

    const upgrade = portal.upgrades[0]!;
    assert.equal(
      upgrade.requestLine,
      'GET /gateway/v2/websocket?external_id=c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca&name=gw+1&public_key=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8%3D HTTP/1.1',
    );
    const headers = headerMap(upgrade.rawHeaders);
    assert.deepEqual(Object.keys(headers).sort(), ['connection', 'host', 'sec-websocket-key', 'sec-websocket-version', 'upgrade', 'user-agent', 'x-authorization']);
    assert.equal(headers.host, '127.0.0.1');
    assert.equal(headers.connection, 'Upgrade');
    assert.equal(headers.upgrade, 'websocket');
    assert.equal(headers['sec-websocket-version'], '13');
    assert.match(headers['sec-websocket-key']!, /^[A-Za-z0-9+/]{22}==$/);
    assert.equal(headers['user-agent'], USER_AGENT);
    assert.equal(headers['x-authorization'], 'Bearer secrettoken', 'whitespace stripped');

    assert.equal(join, JOIN);
    assert.equal(harness.connection.send('authorization_created', { ref: 'early' }), 1);
    await assert.rejects(portal.nextFrame(150), /no frame/);

    portal.send(JOIN_OK);
    assert.equal(await portal.nextFrame(), '{"topic":"gateway","event":"authorization_created","payload":{"ref":"early"},"ref":1}');
    await harness.waitFor('joined');

    portal.send(INIT);
    const message = await harness.waitFor('message');
    assert.equal(message.message.kind, 'init');

    const { event, payload } = encodeEgress({ kind: 'authorizationCreated', ref: 'SFMyNTY.abc' });
    harness.connection.send(event, payload);
    assert.equal(await portal.nextFrame(), '{"topic":"gateway","event":"authorization_created","payload":{"ref":"SFMyNTY.abc"},"ref":2}');
    assert.ok(!lines.some((line) => line.includes('secret')), 'the token is in no log line');
  });

  test('binary frames are ignored', async () => {
    const { harness, portal } = await joinedSetUp();
    portal.sockets[0]!.send(Buffer.from(INIT, 'utf8'), { binary: true });
    portal.send(INIT);
    await harness.waitFor('message');
    assert.equal(harness.events.filter((e) => e.kind === 'message').length, 1);
  });

  test('a message sent while the portal is unreachable is dropped', async () => {
    const { harness } = await setUp(['hang']);
    harness.connection.start();
    assert.equal(harness.connection.send('no_relays', {}), undefined);
  });

  test('shutdown closes the WebSocket with a Close frame (1000) and nothing reconnects', async () => {
    const { harness, portal } = await joinedSetUp();
    await harness.connection.close();
    await until(() => portal.closeCodes.length > 0, 3000, 'no close', (wake) => setTimeout(wake, 20));
    assert.deepEqual(portal.closeCodes, [1000]);
    assert.equal(harness.connection.dialect, 'v2');
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    assert.equal(portal.upgrades.length, 1);
    assert.equal(harness.has('hiccup'), false);
  });
});

describe('the 1.6.0 fatal/retry table, one condition each', () => {
  test('HTTP 401 on the upgrade: fatal', async () => {
    const { harness, portal } = await setUp([{ status: 401, body: 'invalid_token' }]);
    harness.connection.start();
    const fatal = await harness.waitFor('fatal');
    assert.deepEqual(fatal.error, { code: 'invalidToken', status: 401, message: 'Authentication token invalid' });
    assert.equal(fatal.exitCode, 1);
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    assert.equal(portal.upgrades.length, 1, 'never retried');
  });

  for (const status of [400, 403, 404, 408, 409, 429, 500, 503]) {
    test(`HTTP ${status} on the upgrade: retried after the backoff step (1 s before the first join)`, async () => {
      const { harness, portal } = await setUp([{ status, body: 'why' }], { v1Fallback: false });
      harness.connection.start();
      const hiccup = await harness.waitFor('hiccup');
      assert.equal(hiccup.delayMs, 1_000);
      assert.match(hiccup.error, new RegExp(`HTTP error: ${status} .* - why$`));
      assert.equal(await portal.nextFrame(), JOIN, 'the next attempt joins');
      assert.equal(portal.upgrades.length, 2);
      assert.equal(harness.has('fatal'), false);
    });
  }

  test('TCP connection refused: retried', async () => {
    const { harness } = await setUp([], { resolve: async () => ['127.0.0.1'], v1Fallback: false }, 1);
    harness.connection.start();
    const hiccup = await harness.waitFor('hiccup');
    assert.match(hiccup.error, /^failed to connect socket: \[127\.0\.0\.1:1: .*ECONNREFUSED/);
    await harness.waitFor('hiccup', 5000, 2);
    assert.equal(harness.has('fatal'), false);
  });

  test('DNS failure (no addresses): retried, and the host is resolved again on every attempt', async () => {
    let lookups = 0;
    const { harness, portal } = await setUp([], {
      resolve: async (host) => {
        assert.equal(host, 'portal.test');
        lookups++;
        if (lookups === 1) throw new Error('ENOTFOUND');
        return ['127.0.0.1'];
      },
    }, undefined, {}, 'portal.test');
    harness.connection.start();
    assert.equal((await harness.waitFor('hiccup')).error, 'no IP addresses available');
    assert.equal(await portal.nextFrame(), JOIN);
    portal.sockets[0]!.terminate();
    await portal.waitUpgrades(2);
    assert.equal(lookups, 3, 'one lookup per attempt');
  });

  test('TLS invalid peer certificate: retried (1.4.13 exited)', { skip: hasCommand('openssl') ? undefined : 'needs openssl' }, async () => {
    const { cert, key } = selfSignedCertificate('portal.test');
    let handshakes = 0;
    const server = createHttpsServer({ cert, key });
    server.on('connection', () => handshakes++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const harness = new Harness({ v2: `wss://portal.test:${port}/gateway/v2/websocket?x=1`, v1: `wss://portal.test:${port}/gateway/websocket?token=t` });
    cleanups.push(async () => {
      harness.connection.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    harness.connection.start();
    const hiccup = await harness.waitFor('hiccup');
    assert.match(hiccup.error, /certificate/);
    await harness.waitFor('hiccup', 5000, 2);
    assert.ok(handshakes >= 2);
    assert.equal(harness.has('fatal'), false);
  });

  test('Retry-After in seconds is the delay (and 0 retries at once)', async () => {
    const { harness, portal } = await setUp([{ status: 503, headers: { 'retry-after': '0' } }, { status: 429, headers: { 'retry-after': '7' } }]);
    harness.connection.start();
    assert.equal((await harness.waitFor('hiccup')).delayMs, 0);
    assert.equal((await harness.waitFor('hiccup', 5000, 2)).delayMs, 7_000);
    assert.equal(portal.upgrades.length, 2);
  });

  test('Retry-After as an HTTP date is the time until then', async () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:27:00 GMT');
    const { harness } = await setUp([{ status: 503, headers: { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' } }], { wallClock: () => now });
    harness.connection.start();
    assert.equal((await harness.waitFor('hiccup')).delayMs, 60_000);
  });

  test('disconnect token_expired: fatal', async () => {
    const { harness, portal } = await joinedSetUp();
    portal.send('{"topic":"gateway","event":"disconnect","payload":{"reason":"token_expired"},"ref":null}');
    const fatal = await harness.waitFor('fatal');
    assert.equal(fatal.error.code, 'tokenExpired');
  });

  test('a join error reply: fatal', async () => {
    const { harness, portal } = await setUp();
    harness.connection.start();
    await portal.nextFrame();
    portal.send('{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"invalid_version"}},"ref":0}');
    const fatal = await harness.waitFor('fatal');
    assert.deepEqual(fatal.error, { code: 'loginFailed', reason: 'invalid_version', message: 'Failed to login with portal: invalid version' });
  });

  test('an exhausted retry budget: fatal', async () => {
    const { harness, portal } = await setUp([], { maxPartitionMs: 1_000 });
    harness.connection.start();
    await portal.nextFrame();
    portal.send(JOIN_OK);
    await harness.waitFor('joined');
    await portal.close();
    const fatal = await harness.waitFor('fatal', 8000);
    assert.equal(fatal.error.code, 'maxRetriesReached');
    const delays = harness.events.flatMap((e) => (e.kind === 'hiccup' ? [e.delayMs] : []));
    assert.ok(delays.reduce((a, b) => a + b, 0) <= 1_000, String(delays));
    assert.ok(delays.every((d, i) => i > 0 || (d >= 500 && d < 1_000)), 'the reconnect schedule, not the initial one');
  });

  test('phx_close: reconnect', async () => {
    const { harness, portal } = await joinedSetUp();
    portal.send('{"topic":"gateway","event":"phx_close","payload":{},"ref":null}');
    assert.equal((await harness.waitFor('hiccup')).error, 'portal closed the websocket connection');
    await portal.waitUpgrades(2);
  });

  test('a Close frame from the portal: reconnect', async () => {
    const { harness, portal } = await joinedSetUp();
    portal.sockets[0]!.close(1001, 'going away');
    assert.match((await harness.waitFor('hiccup')).error, /close frame: 1001|stream was closed/);
    await portal.waitUpgrades(2);
  });
});

describe('connect budgets and addresses', () => {
  test('all resolved addresses are dialled in parallel: one that never answers does not hold up the one that does', async () => {
    const { harness, portal } = await setUp([], {
      resolve: async () => ['127.0.0.2', '127.0.0.1'],
      createSocket: (address) => (address === '127.0.0.2' ? new NeverConnects() : new Socket()),
      connectTimeoutMs: 5_000,
    });
    const started = Date.now();
    harness.connection.start();
    assert.equal(await portal.nextFrame(), JOIN);
    assert.ok(Date.now() - started < 4_000, 'did not wait for the silent address');
    assert.equal(harness.has('hiccup'), false);
  });

  test('the TCP connect has its own budget', async () => {
    const { harness } = await setUp([], { resolve: async () => ['127.0.0.1', '127.0.0.2'], createSocket: () => new NeverConnects(), connectTimeoutMs: 200 });
    const started = Date.now();
    harness.connection.start();
    const hiccup = await harness.waitFor('hiccup');
    assert.ok(Date.now() - started >= 190);
    assert.equal(hiccup.error, 'failed to connect socket: [127.0.0.1:PORT: connection timed out, 127.0.0.2:PORT: connection timed out]'.replaceAll('PORT', String(harness.port)));
  });

  test('the whole attempt (TCP, TLS, upgrade) has a budget', async () => {
    const { harness } = await setUp(['hang'], { attemptTimeoutMs: 300 });
    const started = Date.now();
    harness.connection.start();
    assert.equal((await harness.waitFor('hiccup')).error, 'connection to portal timed out');
    assert.ok(Date.now() - started >= 290);
  });

  test('an IP literal resolves to itself', async () => {
    assert.deepEqual(await resolvePortalAddresses('ws://127.0.0.1:1/x'), ['127.0.0.1']);
    assert.deepEqual(await resolvePortalAddresses('ws://[::1]:1/x'), ['::1']);
  });
});

describe('fallback to the v1 path', () => {
  test('a portal without /gateway/v2/websocket (404) is reached on /gateway/websocket with the token in the query, the v1 dialect, one WARN', async () => {
    const lines = captureLogs();
    const { harness, portal } = await setUp([], {}, undefined, { v2: false });
    harness.connection.start();
    assert.equal(await portal.nextFrame(), JOIN);
    assert.deepEqual(portal.upgrades.map((u) => u.path), ['/gateway/v2/websocket', '/gateway/websocket']);
    const v1 = portal.upgrades[1]!;
    assert.match(v1.requestLine, /^GET \/gateway\/websocket\?token=secret\+token&external_id=c9cc.*&name=gw\+1&public_key=AAEC.* HTTP\/1\.1$/);
    assert.equal(headerMap(v1.rawHeaders)['x-authorization'], undefined);
    assert.equal(harness.connection.dialect, 'v1');
    portal.send(JOIN_OK);
    await harness.waitFor('joined');

    // The v1 dialect: authorize_flow is understood there.
    portal.send('{"topic":"gateway","event":"create_authorization","payload":{},"ref":null}');
    await harness.waitFor('dropped');
    assert.equal((harness.events.find((e) => e.kind === 'dropped') as { reason: string }).reason, 'unknown event `create_authorization`');

    portal.sockets[0]!.terminate();
    await portal.waitUpgrades(3, 6000);
    assert.equal(portal.upgrades[2]!.path, '/gateway/websocket', 'stays on v1');
    assert.equal(lines.filter((line) => line.includes('WARN') && line.includes('/gateway/v2/websocket')).length, 1);
  });
});

describe('Retry-After parsing', () => {
  test('seconds, HTTP dates (past = 0), garbage', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:20:00 GMT', now), 0);
    assert.equal(parseRetryAfter('21 Oct 2015 07:29:00 +0000', now), 60_000);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-1', now), undefined);
    assert.equal(parseRetryAfter('1.5', now), undefined);
  });
});

/** A socket whose TCP connect never completes (a silent address). */
class NeverConnects extends Socket {
  override connect(): this {
    return this;
  }
}

async function setUp(
  answers: Answer[] = [],
  options: HarnessOptions = {},
  portOverride?: number,
  portalOptions: { v2?: boolean } = {},
  host = '127.0.0.1',
): Promise<{ portal: MockPortal; harness: Harness & { port: number } }> {
  const portal = new MockPortal(answers, portalOptions);
  const listening = await portal.listen();
  const port = portOverride ?? listening;
  const params = { token: TOKEN, firezoneId: '4694E56C-7643-4A15-9DF3-638E5B05F570', name: 'gw 1' };
  const v2 = createLoginUrl(`http://${host}:${port}`, params, 'v2');
  const v1 = createLoginUrl(`http://${host}:${port}`, params, 'v1');
  if (!v2.ok || !v1.ok) throw new Error('login url');
  const harness = Object.assign(new Harness({ v2: loginUrlWithPublicKey(v2.value, KEY), v1: loginUrlWithPublicKey(v1.value, KEY) }, options), { port });
  cleanups.push(() => portal.close(), () => harness.connection.stop());
  return { portal, harness };
}

async function joinedSetUp(): Promise<{ portal: MockPortal; harness: Harness }> {
  const env = await setUp();
  env.harness.connection.start();
  await env.portal.nextFrame();
  env.portal.send(JOIN_OK);
  await env.harness.waitFor('joined');
  return env;
}

function captureLogs(): string[] {
  const lines: string[] = [];
  configureLogging({ filter: LogFilter.parse('debug'), format: 'text', sink: { write: (line) => lines.push(line) } });
  return lines;
}

function headerMap(rawHeaders: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i]!.toLowerCase()] = rawHeaders[i + 1]!;
  return headers;
}

async function until(condition: () => boolean, timeoutMs: number, message: string, register: (wake: () => void) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(message);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, remaining);
      register(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

function selfSignedCertificate(host: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'portal-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', `/CN=${host}`, '-addext', `subjectAltName=DNS:${host}`,
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
