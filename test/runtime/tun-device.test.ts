import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { privilegedSkipReason } from '../support/env.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import { createNamespace, deleteNamespace, describeRun, reportOf, runInNamespace } from './netns/harness.ts';

const skip = privilegedSkipReason('ip') ?? (isNativeAddonBuilt() ? undefined : 'native addon not built (npm run build:native)');

interface TunReport {
  name: string;
  queueCount: number;
  details: string;
  inbound: { queue: number; packet: number[] };
  whileDown: { single: boolean; batch: number; errno: number; dropped: number };
  single: boolean;
  batchWritten: number;
  delivered: string[];
  threaded: boolean;
  counters: { rxPackets: number; txPackets: number; txDropped: number };
  ringFull?: { queued: number; errno: number; dropped: number; threaded: boolean };
}

for (const mode of ['thread', 'sync'] as const) describe(`TunDevice in a network namespace (${mode} writes)`, { skip }, () => {
  let namespace = '';
  let report: TunReport;

  before(() => {
    namespace = createNamespace('tun');
    const run = runInNamespace(namespace, './tun-device.ts', [mode]);
    assert.equal(run.status, 0, describeRun(run));
    report = reportOf<TunReport>(run);
  });
  after(() => deleteNamespace(namespace));

  test('writes go through writer threads unless writerThread is false', () => {
    assert.equal(report.threaded, mode === 'thread');
  });

  test('opens tun-firezone as a multi-queue device with the requested queues', () => {
    assert.equal(report.name, 'tun-firezone');
    assert.equal(report.queueCount, 2);
    assert.match(report.details, /multi_queue/);
    assert.match(report.details, /numqueues 2/);
    assert.match(report.details, /pi off/);
  });

  test('reads a packet the kernel routes into the device', () => {
    const packet = Uint8Array.from(report.inbound.packet);
    assert.equal(packet[0]! >> 4, 4);
    assert.equal(packet[9], 17);
    assert.deepEqual([...packet.subarray(16, 20)], [10, 77, 0, 2]);
    assert.equal((packet[22]! << 8) | packet[23]!, 9999);
    assert.equal(Buffer.from(packet.subarray(28)).toString(), 'to-the-tun');
    assert.ok(report.counters.rxPackets >= 1);
  });

  test('packets written singly and in a batch reach the kernel stack', () => {
    assert.equal(report.single, true);
    assert.equal(report.batchWritten, 10);
    const expected = ['single', ...Array.from({ length: 10 }, (_, i) => `batch-${i}`)].sort();
    assert.deepEqual(report.delivered, expected);
    assert.equal(report.counters.txPackets, 11);
  });

  test('writes while the link is down are dropped and counted', () => {
    // A writer thread accepts the packets into its ring; the kernel refuses them on the thread.
    const accepted = mode === 'thread' ? { single: true, batch: 2 } : { single: false, batch: 0 };
    assert.deepEqual(report.whileDown, { ...accepted, errno: 5 /* EIO */, dropped: 3 });
    assert.equal(report.counters.txDropped, 3);
  });

  if (mode === 'thread') {
    test('a full writer ring refuses packets at once and counts them as drops', () => {
      assert.deepEqual(report.ringFull, { queued: 1, errno: 105 /* ENOBUFS */, dropped: 9, threaded: true });
    });
  }
});

describe('TunDevice without /dev/net/tun', { skip: skip ?? privilegedSkipReason('ip', 'unshare') }, () => {
  test('creates the character device 10:200 before opening', () => {
    const namespace = createNamespace('tunnode');
    try {
      const run = runInNamespace(namespace, './tun-device-node.ts', [], 30_000, { privateEmptyDevNet: true });
      assert.equal(run.status, 0, describeRun(run));
      assert.deepEqual(reportOf(run), { existedBefore: false, isCharacterDevice: true, major: 10, minor: 200 });
    } finally {
      deleteNamespace(namespace);
    }
  });
});
