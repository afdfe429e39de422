import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { HealthServer } from '../../src/runtime/health-server.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';

describe('HealthServer', () => {
  test('GET and HEAD /healthz answer 200 with an empty body', async () => {
    const server = await HealthServer.start('127.0.0.1:0');
    try {
      const port = server.address!.port;
      const get = await fetchStatus(port, 'GET', '/healthz');
      assert.deepEqual(get, { status: 200, body: '' });
      const head = await fetchStatus(port, 'HEAD', '/healthz');
      assert.equal(head.status, 200);
    } finally {
      await server.close();
    }
  });

  test('other paths answer 404 and other methods 405', async () => {
    const server = await HealthServer.start('127.0.0.1:0');
    try {
      const port = server.address!.port;
      assert.equal((await fetchStatus(port, 'GET', '/')).status, 404);
      assert.equal((await fetchStatus(port, 'GET', '/healthz/extra')).status, 404);
      assert.equal((await fetchStatus(port, 'POST', '/healthz')).status, 405);
    } finally {
      await server.close();
    }
  });

  test('/readyz answers 503 until the gateway is ready and follows it both ways; /healthz stays 200', async () => {
    let ready = false;
    const server = await HealthServer.start('127.0.0.1:0', { isReady: () => ready });
    try {
      const port = server.address!.port;
      assert.equal((await fetchStatus(port, 'GET', '/readyz')).status, 503);
      assert.equal((await fetchStatus(port, 'GET', '/healthz')).status, 200);
      ready = true;
      assert.equal((await fetchStatus(port, 'GET', '/readyz')).status, 200);
      assert.equal((await fetchStatus(port, 'HEAD', '/readyz')).status, 200);
      ready = false;
      assert.equal((await fetchStatus(port, 'GET', '/readyz')).status, 503);
      assert.equal((await fetchStatus(port, 'POST', '/readyz')).status, 405);
    } finally {
      await server.close();
    }
  });

  test('a connection that never sends a byte, and one that never finishes its request head, are closed', async () => {
    const server = await HealthServer.start('127.0.0.1:0', { limits: { headersTimeoutMs: 200, idleTimeoutMs: 200 } });
    try {
      const port = server.address!.port;
      const silent = await open(port);
      const partial = await open(port);
      partial.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      // Read what the server sends: a socket nobody reads never consumes the server's FIN, so it would
      // look open however long after the server closed it.
      silent.resume();
      partial.resume();
      // Poll the sockets' state rather than wait for their 'close' events (a run here once waited forever).
      const closedBy = Date.now() + 10_000;
      const ended = (socket: typeof silent) => socket.destroyed || socket.readyState === 'closed' || socket.readableEnded;
      while (!(ended(silent) && ended(partial)) && Date.now() < closedBy) await new Promise((r) => setTimeout(r, 50));
      assert.ok(ended(silent), 'the silent connection was closed');
      assert.ok(ended(partial), 'the partial request head was closed');
      assert.equal((await fetchStatus(port, 'GET', '/healthz')).status, 200);
    } finally {
      await server.close();
    }
  });

  test('beyond the connection cap new connections are closed at once; held ones keep theirs', async () => {
    const server = await HealthServer.start('127.0.0.1:0', { limits: { maxConnections: 3, idleTimeoutMs: 60_000, headersTimeoutMs: 60_000 } });
    const held: Socket[] = [];
    try {
      const port = server.address!.port;
      for (let i = 0; i < 3; i++) held.push(await open(port));
      // Let the server accept the held three before the fourth arrives.
      await fetchStatusOn(held[0]!);
      const extra = await open(port);
      await once(extra, 'close');
      assert.ok(held.every((socket) => !socket.destroyed));
      const answer = await fetchStatusOn(held[1]!);
      assert.match(answer, /^HTTP\/1\.1 200/);
    } finally {
      for (const socket of held) socket.destroy();
      await server.close();
    }
  });

  test('a port already in use is logged as a warning and not fatal', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as { port: number }).port;
    const lines: string[] = [];
    configureLogging({ filter: LogFilter.parse('warn'), sink: { write: (line) => lines.push(line) } });
    try {
      const server = await HealthServer.start(`127.0.0.1:${port}`);
      assert.equal(server.address, undefined);
      assert.ok(lines.some((line) => line.includes('WARN') && line.includes('health check')), lines.join(''));
      await server.close();
    } finally {
      configureLogging({ filter: LogFilter.parse('off'), sink: { write: (line) => process.stdout.write(line) } });
      blocker.close();
    }
  });
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

/** One keep-alive request on an open socket; resolves with the raw response head. */
function fetchStatusOn(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    socket.once('data', (data: Buffer) => resolve(data.toString('latin1')));
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

function fetchStatus(port: number, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
