import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { hasCommand } from '../support/env.ts';
import { seededRandom } from '../../src/util/random.ts';
import { createLoginUrl, loginUrlWithPublicKey } from '../../src/portal/login-url.ts';
import { decodeIngress, encodeEgress, type IngressMessage } from '../../src/portal/messages.ts';
import { PhoenixChannel, type ChannelEvent } from '../../src/portal/phoenix-channel.ts';
import { PortalConnection, resolvePortalAddresses } from '../../src/portal/connection.ts';

const USER_AGENT = 'Debian/12.0.0 connlib/1.4.13 (x86_64; 6.1.0)';
const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const INIT = '{"event":"init","ref":null,"topic":"gateway","payload":{"interface":{"ipv6":"fd00:2021:1111::2c:f6ab","ipv4":"100.115.164.78"},"config":{"ipv4_masquerade_enabled":true,"ipv6_masquerade_enabled":true}}}';

interface Upgrade {
  readonly requestLine: string;
  readonly rawHeaders: readonly string[];
}

/** A Phoenix V1 stand-in: answers upgrades from a script of HTTP statuses, then speaks raw frames. */
class MockPortal {
  readonly upgrades: Upgrade[] = [];
  readonly frames: string[] = [];
  readonly sockets: WebSocket[] = [];
  private readonly server: Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  private readonly statuses: number[];
  private waiters: (() => void)[] = [];

  constructor(statuses: number[] = []) {
    this.statuses = statuses;
    this.server = createServer();
    this.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(request, socket, head));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  send(text: string): void {
    this.sockets.at(-1)!.send(text);
  }

  async nextFrame(timeoutMs = 2000): Promise<string> {
    const index = this.frames.length;
    await until(() => this.frames.length > index, timeoutMs, 'no frame from the gateway', (wake) => this.waiters.push(wake));
    return this.frames[index]!;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgrades.push({ requestLine: `${request.method} ${request.url} HTTP/${request.httpVersion}`, rawHeaders: request.rawHeaders });
    const status = this.statuses.shift() ?? 101;
    if (status !== 101) {
      const body = status === 401 ? 'Invalid token' : 'unavailable';
      socket.end(`HTTP/1.1 ${status} X\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      this.sockets.push(ws);
      ws.on('message', (data) => {
        this.frames.push(data.toString());
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      });
    });
  }
}

class Harness {
  readonly events: ChannelEvent<IngressMessage>[] = [];
  readonly connection: PortalConnection<IngressMessage>;
  private waiters: (() => void)[] = [];

  constructor(url: string, addresses: readonly string[]) {
    const channel = new PhoenixChannel<IngressMessage>({ topic: 'gateway', rng: seededRandom(3), decode: decodeIngress });
    this.connection = new PortalConnection({
      url,
      userAgent: USER_AGENT,
      addresses,
      channel,
      onEvent: (event) => {
        this.events.push(event);
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      },
    });
  }

  async waitFor<K extends ChannelEvent<IngressMessage>['kind']>(kind: K, timeoutMs = 3000): Promise<Extract<ChannelEvent<IngressMessage>, { kind: K }>> {
    const find = (): Extract<ChannelEvent<IngressMessage>, { kind: K }> | undefined =>
      this.events.find((e): e is Extract<ChannelEvent<IngressMessage>, { kind: K }> => e.kind === kind);
    await until(() => find() !== undefined, timeoutMs, `no ${kind} event; got ${this.events.map((e) => e.kind).join(', ')}`, (wake) => this.waiters.push(wake));
    return find()!;
  }
}

let cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

describe('portal connection against an in-process Phoenix server', () => {
  test('sends exactly the specified upgrade request, joins, receives init and sends egress', async () => {
    const { portal, harness, url } = await setUp();

    harness.connection.start();
    const join = await portal.nextFrame();

    const upgrade = portal.upgrades[0]!;
    assert.equal(upgrade.requestLine, `GET ${new URL(url).pathname}${new URL(url).search} HTTP/1.1`);
    assert.equal(
      new URL(url).search,
      '?token=secret+token&external_id=c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca&name=gw+1&public_key=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8%3D',
    );
    const headers = headerMap(upgrade.rawHeaders);
    assert.deepEqual(Object.keys(headers).sort(), ['connection', 'host', 'sec-websocket-key', 'sec-websocket-version', 'upgrade', 'user-agent']);
    assert.equal(headers.host, '127.0.0.1');
    assert.equal(headers.connection, 'Upgrade');
    assert.equal(headers.upgrade, 'websocket');
    assert.equal(headers['sec-websocket-version'], '13');
    assert.match(headers['sec-websocket-key']!, /^[A-Za-z0-9+/]{22}==$/);
    assert.equal(headers['user-agent'], USER_AGENT);

    assert.equal(join, '{"topic":"gateway","event":"phx_join","payload":null,"ref":0}');
    harness.connection.send('flow_authorized', { ref: 'early' });
    await assert.rejects(portal.nextFrame(150), /no frame/);

    portal.send('{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}');
    assert.equal(await portal.nextFrame(), '{"topic":"gateway","event":"flow_authorized","payload":{"ref":"early"},"ref":1}');
    await harness.waitFor('joined');

    portal.send(INIT);
    const message = await harness.waitFor('message');
    assert.equal(message.message.kind, 'init');

    const { event, payload } = encodeEgress({ kind: 'flowAuthorized', ref: 'SFMyNTY.abc' });
    harness.connection.send(event, payload);
    assert.equal(await portal.nextFrame(), '{"topic":"gateway","event":"flow_authorized","payload":{"ref":"SFMyNTY.abc"},"ref":2}');
  });

  test('valid UTF-8 binary frames are parsed like text and other binary frames are dropped', async () => {
    const { harness, portal } = await setUp();
    harness.connection.start();
    await portal.nextFrame();
    portal.send('{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}');
    await harness.waitFor('joined');

    portal.sockets[0]!.send(Buffer.from([0xff, 0xfe, 0x7b]), { binary: true });
    portal.sockets[0]!.send(Buffer.from(INIT, 'utf8'), { binary: true });
    const message = await harness.waitFor('message');

    assert.equal(message.message.kind, 'init');
    assert.deepEqual(harness.events.filter((e) => e.kind === 'hiccup' || e.kind === 'dropped'), []);
  });

  test('401 on the upgrade is fatal with the reference message', async () => {
    const { harness, portal } = await setUp([401]);

    harness.connection.start();
    const fatal = await harness.waitFor('fatal');

    assert.equal(fatal.error.message, 'Failed to establish WebSocket connection: 401 Unauthorized');
    assert.equal(fatal.exitCode, 1);
    assert.equal(portal.upgrades.length, 1);
  });

  test('503 on the upgrade is retried immediately', async () => {
    const { harness, portal } = await setUp([503]);

    harness.connection.start();
    const join = await portal.nextFrame();

    const hiccup = await harness.waitFor('hiccup');
    assert.deepEqual(hiccup, { kind: 'hiccup', delayMs: 0, error: 'http error: 503 Service Unavailable - unavailable' });
    assert.equal(portal.upgrades.length, 2);
    assert.equal(join, '{"topic":"gateway","event":"phx_join","payload":null,"ref":0}');
  });

  test('disconnect token_expired is fatal', async () => {
    const { harness, portal } = await setUp();
    harness.connection.start();
    await portal.nextFrame();
    portal.send('{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}');
    await harness.waitFor('joined');

    portal.send('{"topic":"gateway","event":"disconnect","payload":{"reason":"token_expired"},"ref":null}');
    const fatal = await harness.waitFor('fatal');

    assert.deepEqual(fatal.error, { code: 'tokenExpired', message: 'Authentication token expired' });
  });

  test('a closed socket reconnects and joins again', async () => {
    const { harness, portal } = await setUp();
    harness.connection.start();
    await portal.nextFrame();

    portal.sockets[0]!.close();
    const rejoin = await portal.nextFrame();

    assert.equal(rejoin, '{"topic":"gateway","event":"phx_join","payload":null,"ref":1}');
    assert.equal(portal.upgrades.length, 2);
  });

  test('tries the cached addresses in order', async () => {
    const { harness, portal } = await setUp([], ['127.0.0.2', '127.0.0.1']);

    harness.connection.start();
    await portal.nextFrame();

    assert.equal(portal.upgrades.length, 1);
    assert.equal(harness.events.some((e) => e.kind === 'hiccup'), false);
  });

  test('wss connects to the cached address with SNI and Host set to the URL host', { skip: hasCommand('openssl') ? undefined : 'needs openssl' }, async () => {
    const { cert, key } = selfSignedCertificate('portal.test');
    const seen: { servername: string | false | null; host: string | undefined }[] = [];
    const server = createHttpsServer({ cert, key });
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      seen.push({ servername: (socket as TLSSocket).servername, host: request.headers.host });
      wss.handleUpgrade(request, socket, head, (ws) => ws.on('message', (data) => frames.push(data.toString())));
    });
    const frames: string[] = [];
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const channel = new PhoenixChannel<IngressMessage>({ topic: 'gateway', rng: seededRandom(1), decode: decodeIngress });
    const events: ChannelEvent<IngressMessage>[] = [];
    const connection = new PortalConnection({
      url: `wss://portal.test:${port}/gateway/websocket?token=t`,
      userAgent: USER_AGENT,
      addresses: ['127.0.0.1'],
      channel,
      tls: { ca: cert },
      onEvent: (event) => events.push(event),
    });
    cleanups.push(async () => {
      connection.stop();
      for (const client of wss.clients) client.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    connection.start();
    await until(() => frames.length > 0, 3000, 'no join over TLS', (wake) => setTimeout(wake, 20));

    assert.deepEqual(seen, [{ servername: 'portal.test', host: 'portal.test' }]);
    assert.equal(frames[0], '{"topic":"gateway","event":"phx_join","payload":null,"ref":0}');
    assert.equal(events.some((e) => e.kind === 'hiccup'), false);
  });

  test('one timeout covers the TCP connect loop', { skip: hasCommand('python3') ? undefined : 'needs python3' }, async () => {
    const port = await unresponsiveListener();
    const channel = new PhoenixChannel<IngressMessage>({ topic: 'gateway', rng: seededRandom(1), decode: decodeIngress });
    const events: ChannelEvent<IngressMessage>[] = [];
    const connection = new PortalConnection({
      url: `ws://127.0.0.1:${port}/gateway/websocket?token=t`,
      userAgent: USER_AGENT,
      addresses: ['127.0.0.1', '127.0.0.1'],
      channel,
      connectTimeoutMs: 200,
      onEvent: (event) => events.push(event),
    });
    cleanups.push(() => connection.stop());
    const started = Date.now();

    connection.start();
    await until(() => events.some((e) => e.kind === 'hiccup'), 3000, 'no hiccup', (wake) => setTimeout(wake, 20));

    assert.ok(Date.now() - started >= 190);
    assert.deepEqual(events.find((e) => e.kind === 'hiccup'), { kind: 'hiccup', delayMs: 0, error: 'operation timed out after 200ms' });
  });

  test('an IP literal resolves to itself', async () => {
    assert.deepEqual(await resolvePortalAddresses('ws://127.0.0.1:1/x'), ['127.0.0.1']);
    assert.deepEqual(await resolvePortalAddresses('ws://[::1]:1/x'), ['::1']);
  });
});

async function setUp(statuses: number[] = [], addresses: readonly string[] = ['127.0.0.1']): Promise<{ portal: MockPortal; harness: Harness; url: string }> {
  const portal = new MockPortal(statuses);
  const port = await portal.listen();
  const login = createLoginUrl(`http://127.0.0.1:${port}`, { token: 'secret token', firezoneId: '4694E56C-7643-4A15-9DF3-638E5B05F570', name: 'gw 1' });
  if (!login.ok) throw new Error(login.error.message);
  const url = loginUrlWithPublicKey(login.value, KEY);
  const harness = new Harness(url, addresses);
  cleanups.push(() => portal.close(), () => harness.connection.stop());
  return { portal, harness, url };
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

/** A loopback port whose accept queue is full, so new TCP handshakes never complete. */
async function unresponsiveListener(): Promise<number> {
  const script = [
    'import socket, time',
    's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
    'port = s.getsockname()[1]; fillers = []',
    'for _ in range(4):',
    '    c = socket.socket(); c.setblocking(False)',
    '    try: c.connect(("127.0.0.1", port))',
    '    except BlockingIOError: pass',
    '    fillers.append(c)',
    'time.sleep(0.2); print(port, flush=True); time.sleep(30)',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  cleanups.push(() => {
    child.kill();
  });
  return new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (data: Buffer) => resolve(Number(data.toString().trim())));
  });
}
