import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { privilegedSkipReason } from '../support/env.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import { createNamespace, deleteNamespace, describeRun, reportOf, runInNamespace } from './netns/harness.ts';

const skip = privilegedSkipReason('ip', 'ss') ?? (isNativeAddonBuilt() ? undefined : 'native addon not built (npm run build:native)');

interface UdpReport {
  ports: { v4: number; v6: number; fallback: number };
  buffers: { receive: number; send: number; errno: number };
  marked: boolean;
  markedLines: { udp4: boolean; udp6: boolean; tcp: boolean };
  seen: { payload: string; source: SocketAddr; destination: SocketAddr }[];
  peer4: { payload: string; from: string }[];
  peer6: { payload: string; from: string }[];
  wrongFamily: boolean;
  unreachable: { flushed: number; sendErrors: number[]; lastSendErrno: number };
  counters: { txDatagrams: number; txDropped: number };
  v4Received: { oversized: number; datagrams: number };
  offloads: {
    gro: boolean;
    gso: boolean;
    txGsoSends: number;
    txDatagrams: number;
    rxCoalesced: number;
    received: { payload: string; ecn: number; length: number }[];
  };
}

describe('UdpSocket in a network namespace', { skip }, () => {
  let namespace = '';
  let report: UdpReport;

  before(() => {
    namespace = createNamespace('udp');
    const run = runInNamespace(namespace, './udp-socket.ts');
    assert.equal(run.status, 0, describeRun(run));
    report = reportOf<UdpReport>(run);
  });
  after(() => deleteNamespace(namespace));

  test('binds 52625 on both families and falls back to an ephemeral port when taken', () => {
    assert.equal(report.ports.v4, 52625);
    assert.equal(report.ports.v6, 52625);
    assert.notEqual(report.ports.fallback, 52625);
    assert.ok(report.ports.fallback > 0);
  });

  test('requests socket buffers and marks the sockets', () => {
    assert.equal(report.buffers.errno, 0);
    assert.ok(report.buffers.receive > 0 && report.buffers.send > 0);
    assert.equal(report.marked, true);
    assert.deepEqual(report.markedLines, { udp4: true, udp6: true, tcp: true });
  });

  test('connectMarkedTcp marks the connection from its first packet', () => {
    assert.equal(report.markedLines.tcp, true);
  });

  test('reports the local destination address of every datagram', () => {
    const byPayload = new Map(report.seen.map((s) => [s.payload, s]));
    assert.equal(byPayload.get('to-v4-2')?.destination.address, '10.9.0.2');
    assert.equal(byPayload.get('to-v4-1')?.destination.address, '10.9.0.1');
    assert.equal(byPayload.get('to-v4-1')?.destination.port, 52625);
    assert.equal(byPayload.get('to-v4-1')?.source.address, '10.9.0.1');
    assert.equal(byPayload.get('to-v6-2')?.destination.address, 'fd00:99::2');
    assert.equal(byPayload.get('to-v6-2')?.source.address, 'fd00:99::1');
    assert.equal(byPayload.get('to-v6-2')?.destination.family, 6);
  });

  test('drops datagrams larger than 1316 bytes before anyone sees them', () => {
    assert.deepEqual(report.v4Received, { oversized: 1, datagrams: 3 });
    assert.ok(report.seen.every((s) => s.payload.length < 1317));
  });

  test('sends from the requested source address', () => {
    const from = new Map(report.peer4.map((r) => [r.payload, r.from]));
    assert.equal(from.get('from-2'), '10.9.0.2');
    assert.equal(from.get('from-1'), '10.9.0.1');
    assert.ok(from.has('from-any'));
    assert.deepEqual(report.peer6, [{ payload: 'from-6-2', from: 'fd00:99::2' }]);
  });

  test('with offloads, a burst to one destination leaves as GSO sends and arrives coalesced, in order, byte for byte', () => {
    const { offloads } = report;
    assert.equal(offloads.gro, true, 'the kernel took UDP_GRO');
    assert.equal(offloads.gso, true, 'the kernel has UDP_SEGMENT');
    assert.equal(offloads.txDatagrams, 95);
    // 60 + 30 datagrams of 1300 bytes (the last of each run shorter) in at most a few GSO sends.
    assert.ok(offloads.txGsoSends >= 2 && offloads.txGsoSends <= 6, `${offloads.txGsoSends} GSO sends`);
    assert.ok(offloads.rxCoalesced >= 80, `${offloads.rxCoalesced} datagrams arrived coalesced`);
    const expected = [
      ...Array.from({ length: 60 }, (_, i) => ({ payload: `ect0-${String(i).padStart(4, '0')}`.padEnd(12, String.fromCharCode(i & 0xff)), ecn: 0b10, length: i === 59 ? 1200 : 1300 })),
      ...Array.from({ length: 30 }, (_, i) => ({ payload: `ect1-${String(i).padStart(4, '0')}`.padEnd(12, String.fromCharCode(i & 0xff)), ecn: 0b01, length: i === 29 ? 1200 : 1300 })),
      ...Array.from({ length: 5 }, (_, i) => ({ payload: `none-${String(i).padStart(4, '0')}`.padEnd(12, String.fromCharCode(i & 0xff)), ecn: 0, length: i === 4 ? 100 : 200 })),
    ];
    assert.deepEqual(offloads.received, expected);
  });

  test('refuses a destination of the other family', () => {
    assert.equal(report.wrongFamily, false);
  });

  test('a datagram the kernel refuses is dropped without holding back the rest of the batch', () => {
    assert.deepEqual(report.unreachable, { flushed: 1, sendErrors: [101 /* ENETUNREACH */], lastSendErrno: 101 });
    assert.ok(report.peer4.some((r) => r.payload === 'after'));
    assert.equal(report.counters.txDropped, 2);
    assert.equal(report.counters.txDatagrams, 4);
  });
});
