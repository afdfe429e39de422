import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { privilegedSkipReason } from '../support/env.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import {
  buildQuery,
  buildServfail,
  DnsForwarder,
  fitUdpResponse,
  inspectDnsMessage,
  UpstreamTable,
} from '../../src/runtime/dns-forwarder.ts';
import { createNamespace, deleteNamespace, describeRun, reportOf, runInNamespace } from './netns/harness.ts';

const skip =
  privilegedSkipReason('ip', 'dnsmasq', 'dig') ??
  (isNativeAddonBuilt() ? undefined : 'native addon not built (npm run build:native)');

const QR = 0x8000;
const TC = 0x0200;
const RCODE_MASK = 0x000f;

interface Summary {
  id: number;
  flags: number;
  answers: number;
  length: number;
  tail: string;
}

describe('DnsForwarder against a dnsmasq upstream in a network namespace', { skip }, () => {
  let namespace = '';
  let report: Record<string, Summary[] | string>;

  before(() => {
    namespace = createNamespace('dns');
    const run = runInNamespace(namespace, './dns-forwarder.ts');
    assert.equal(run.status, 0, describeRun(run));
    report = reportOf(run);
  });
  after(() => deleteNamespace(namespace));

  test('answers SERVFAIL while no upstream has answered a probe', () => {
    const [reply] = report['beforeProbe'] as Summary[];
    assert.equal(reply!.id, 1);
    assert.equal(reply!.flags & RCODE_MASK, 2);
    assert.equal(reply!.answers, 0);
  });

  test('an unreachable upstream fails its probe without crashing the process', () => {
    assert.equal(report['unreachableUpstreamFastest'], null);
  });

  test('probing selects the upstream', () => {
    assert.equal(report['fastest'], '10.53.0.1');
  });

  test('forwards UDP queries on the TUN IPv4 and IPv6 addresses', () => {
    for (const key of ['udp4', 'udp6']) {
      const [reply] = report[key] as Summary[];
      assert.equal(reply!.flags & RCODE_MASK, 0, key);
      assert.equal(reply!.answers, 1, key);
      assert.equal(reply!.tail, '10.1.2.3', key);
    }
  });

  test('forwards TCP queries, several on one connection', () => {
    const replies = [...(report['tcp4'] as Summary[]), ...(report['tcp6'] as Summary[])];
    assert.deepEqual(
      replies.map((r) => [r.id, r.answers, r.tail]),
      [
        [4, 1, '10.1.2.3'],
        [5, 1, '10.1.2.3'],
        [6, 1, '10.1.2.3'],
      ],
    );
  });

  test('truncates UDP answers above 1200 bytes and returns them whole over TCP', () => {
    const [udp] = report['bigUdp'] as Summary[];
    assert.ok((udp!.flags & TC) !== 0);
    assert.equal(udp!.answers, 0);
    assert.ok(udp!.length < 100);
    const [tcp] = report['bigTcp'] as Summary[];
    assert.equal(tcp!.flags & TC, 0);
    assert.equal(tcp!.answers, 6);
    assert.ok(tcp!.length > 1200);
  });

  test('ignores malformed queries', () => {
    assert.equal(report['malformed'], 'silent');
  });

  test('re-binds to new TUN addresses and leaves the old ones', () => {
    const [reply] = report['afterRebind'] as Summary[];
    assert.equal(reply!.tail, '10.1.2.3');
    assert.equal(report['oldAddress'], 'silent');
    assert.equal(report['idleClientClosed'], true);
  });

  test('fails with a stable code only when no address can be bound', () => {
    assert.equal(report['unbindable'], 'DNS_BIND_FAILED');
  });
});

describe('DNS message handling', () => {
  test('a query with one question is accepted', () => {
    const info = inspectDnsMessage(buildQuery(0x1234, 'example.com'));
    assert.equal(info?.id, 0x1234);
    assert.equal(info?.isResponse, false);
    assert.equal(info?.questionEnd, 12 + 13 + 4);
  });

  test('messages without exactly one question are rejected', () => {
    const query = buildQuery(1, 'example.com');
    query[5] = 2;
    assert.equal(inspectDnsMessage(query), undefined);
    query[5] = 0;
    assert.equal(inspectDnsMessage(query), undefined);
    assert.equal(inspectDnsMessage(query.subarray(0, 11)), undefined);
  });

  test('inspecting random or mutated bytes never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        inspectDnsMessage(bytes);
      }),
    );
    const base = responseWithAnswers(3);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: base.length - 1 }), fc.integer({ min: 0, max: 255 }), (index, value) => {
        const mutated = base.slice();
        mutated[index] = value;
        inspectDnsMessage(mutated);
        inspectDnsMessage(mutated.subarray(0, index));
      }),
    );
  });

  test('a truncated answer section is rejected', () => {
    const response = responseWithAnswers(2);
    assert.ok(inspectDnsMessage(response));
    assert.equal(inspectDnsMessage(response.subarray(0, response.length - 3)), undefined);
  });

  test('SERVFAIL keeps ID, opcode, RD and the question and carries no records', () => {
    const query = buildQuery(0xbeef, 'a.example');
    query[2] = query[2]! | 0x10; // opcode 2
    const info = inspectDnsMessage(query)!;
    const servfail = buildServfail(query, info);
    const view = new DataView(servfail.buffer);
    assert.equal(view.getUint16(0), 0xbeef);
    assert.equal(view.getUint16(2), QR | 0x1000 | 0x0100 | 2);
    assert.deepEqual([view.getUint16(4), view.getUint16(6), view.getUint16(8), view.getUint16(10)], [1, 0, 0, 0]);
    assert.deepEqual(servfail.subarray(12), query.subarray(12, info.questionEnd));
  });

  test('UDP responses up to 1200 bytes pass unchanged, larger ones become header + question with TC', () => {
    const small = responseWithAnswers(2);
    assert.equal(fitUdpResponse(small, inspectDnsMessage(small)!), small);
    const big = responseWithAnswers(80);
    assert.ok(big.length > 1200);
    const info = inspectDnsMessage(big)!;
    const fitted = fitUdpResponse(big, info);
    const view = new DataView(fitted.buffer);
    assert.equal(fitted.length, info.questionEnd);
    assert.ok((view.getUint16(2) & TC) !== 0);
    assert.deepEqual([view.getUint16(4), view.getUint16(6), view.getUint16(8), view.getUint16(10)], [1, 0, 0, 0]);
  });

  test('the fastest upstream is the smallest RTT ever seen', () => {
    const table = new UpstreamTable();
    assert.equal(table.fastest(), undefined);
    table.recordRtt('10.0.0.1', 5);
    table.recordRtt('10.0.0.2', 3);
    table.recordRtt('10.0.0.2', 50);
    assert.equal(table.fastest(), '10.0.0.2');
  });

  test('without upstreams every query gets SERVFAIL and malformed ones nothing', async () => {
    const forwarder = new DnsForwarder({ upstreams: [] });
    const reply = await forwarder.answer(buildQuery(7, 'x.example'), 'udp');
    assert.equal(new DataView(reply!.buffer).getUint16(2) & RCODE_MASK, 2);
    assert.equal(await forwarder.answer(Uint8Array.from([1, 2, 3]), 'udp'), undefined);
    await forwarder.close();
  });
});

describe('DnsForwarder bounds (loopback)', { skip }, () => {
  test('a TCP connection idle for the idle timeout is closed', async () => {
    const { forwarder, port } = await listening({ tcpIdleTimeoutMs: 150 });
    try {
      const socket = await tcpClient(port);
      await closedWithin(socket, 5_000);
      assert.equal(forwarder.stats.tcpIdleClosed, 1);
      await waitUntil(() => forwarder.tcpConnectionCount === 0);
    } finally {
      await forwarder.close();
    }
  });

  test('at the connection cap a new connection closes the least recently active one', async () => {
    const { forwarder, port } = await listening({ maxTcpConnections: 3 });
    try {
      const [first, second, third] = [await tcpClient(port), await tcpClient(port), await tcpClient(port)];
      await waitUntil(() => forwarder.tcpConnectionCount === 3);
      // Activity (a frame too short to be a query, dropped) makes `first` the most recently active.
      first!.write(Buffer.from([0, 1, 0]));
      await waitUntil(() => forwarder.stats.tcpMaxBufferedBytes > 0);
      const fourth = await tcpClient(port);
      await closedWithin(second!, 5_000);
      assert.equal(forwarder.stats.tcpEvicted, 1);
      assert.equal(forwarder.tcpConnectionCount, 3);
      for (const socket of [first!, third!, fourth]) assert.equal(socket.destroyed, false);
      for (const socket of [first!, third!, fourth]) socket.destroy();
    } finally {
      await forwarder.close();
    }
  });

  test('one source beyond its own cap loses its own oldest connection', async () => {
    const { forwarder, port } = await listening({ maxTcpConnections: 100, maxTcpConnectionsPerSource: 2 });
    try {
      const sockets = [await tcpClient(port), await tcpClient(port)];
      await waitUntil(() => forwarder.tcpConnectionCount === 2);
      sockets.push(await tcpClient(port));
      await closedWithin(sockets[0]!, 5_000);
      assert.equal(forwarder.stats.tcpEvicted, 1);
      for (const socket of sockets) socket.destroy();
    } finally {
      await forwarder.close();
    }
  });

  test('queries streamed while one waits upstream stay in the kernel, not in a growing buffer', async () => {
    const upstream = await silentTcpUpstream();
    const { forwarder, port } = await listening({ upstreamPort: upstream.port, queryTimeoutMs: 2_000 });
    forwarder.upstreams.recordRtt('127.0.0.1', 1);
    try {
      const socket = await tcpClient(port);
      const frame = tcpFrame(buildQuery(1, 'app.test.lab'));
      const burst = Buffer.concat(Array.from({ length: 4096 }, () => frame));
      for (let i = 0; i < 64; i++) socket.write(burst);
      await waitUntil(() => upstream.accepted >= 1);
      await sleep(300);
      assert.ok(forwarder.stats.tcpMaxBufferedBytes <= 2 + 0xffff + 65536, `buffered ${forwarder.stats.tcpMaxBufferedBytes} bytes`);
      assert.ok(socket.writableLength > 1_000_000, 'the client is held back by TCP flow control');
      socket.destroy();
      await sleep(2_500);
      assert.ok(upstream.accepted <= 2, `the closed connection's remaining queries are dropped (${upstream.accepted} sent upstream)`);
    } finally {
      await forwarder.close();
      upstream.server.close();
    }
  });

  test('queries beyond the in-flight cap are dropped, not queued', async () => {
    const upstream = createSocket('udp4');
    upstream.bind(0, '127.0.0.1');
    await once(upstream, 'listening');
    const forwarder = new DnsForwarder({ upstreams: ['127.0.0.1'], upstreamPort: upstream.address().port, maxInflightQueries: 2, queryTimeoutMs: 300 });
    forwarder.upstreams.recordRtt('127.0.0.1', 1);
    try {
      const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => forwarder.answer(buildQuery(i, 'app.test.lab'), 'udp')));
      assert.equal(forwarder.stats.queriesDropped, 3);
      assert.equal(answers.filter((a) => a === undefined).length, 3, 'dropped queries get no answer');
      assert.equal(answers.filter((a) => a !== undefined).length, 2, 'the two upstream ones time out into SERVFAIL');
    } finally {
      await forwarder.close();
      upstream.close();
    }
  });
});

async function listening(options: Partial<ConstructorParameters<typeof DnsForwarder>[0]>): Promise<{ forwarder: DnsForwarder; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const port = 40_000 + Math.floor(Math.random() * 20_000);
    const forwarder = new DnsForwarder({ upstreams: [], listenPort: port, ...options });
    try {
      await forwarder.rebind({ ipv4: '127.0.0.1' });
      return { forwarder, port };
    } catch (error) {
      await forwarder.close();
      if (attempt > 5) throw error;
    }
  }
}

async function tcpClient(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  socket.on('error', () => undefined);
  return socket;
}

function closedWithin(socket: Socket, ms: number): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not closed within ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function waitUntil(condition: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tcpFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(2 + message.length);
  frame.writeUInt16BE(message.length, 0);
  frame.set(message, 2);
  return frame;
}

/** A TCP "nameserver" that accepts connections and never answers. */
async function silentTcpUpstream(): Promise<{ server: Server; port: number; readonly accepted: number }> {
  const state = { accepted: 0 };
  const server = createServer((socket) => {
    state.accepted++;
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  return {
    server,
    port: typeof address === 'object' && address !== null ? address.port : 0,
    get accepted() {
      return state.accepted;
    },
  };
}

/** A response to `A example.com` with `count` A records using name compression. */
function responseWithAnswers(count: number): Uint8Array {
  const query = buildQuery(9, 'example.com');
  const record = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1];
  const bytes = new Uint8Array(query.length + count * record.length);
  bytes.set(query);
  for (let i = 0; i < count; i++) bytes.set(record, query.length + i * record.length);
  const view = new DataView(bytes.buffer);
  view.setUint16(2, QR | 0x0100);
  view.setUint16(6, count);
  return bytes;
}
