import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer } from 'node:net';
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
