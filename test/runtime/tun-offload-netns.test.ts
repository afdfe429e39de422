// TUN offloads against the kernel, in a scratch namespace (test/runtime/netns/tun-offload.ts plays
// a TCP peer behind the device): merged writes reach a kernel socket byte for byte, TSO reads come
// out as MTU-sized segments with valid checksums, a UDP GSO send into the device arrives as
// separate datagrams. The byte work itself has property tests in tun-offload.test.ts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { privilegedSkipReason } from '../support/env.ts';
import { isNativeAddonBuilt, TUN_F_CSUM, TUN_F_TSO4, TUN_F_USO4 } from '../../src/runtime/native.ts';
import { createNamespace, deleteNamespace, describeRun, reportOf, runInNamespace } from './netns/harness.ts';

const skip = privilegedSkipReason('ip') ?? (isNativeAddonBuilt() ? undefined : 'native addon not built (npm run build:native)');

interface OffloadReport {
  vnet: boolean;
  offloads: number;
  features: string;
  writes: { received: number; equal: boolean; coalescedWrites: number; txPackets: number };
  reads: { bytes: number; segments: number; largest: number; badChecksums: number };
  udpWrites: { delivered: number[]; lengths: number[]; coalescedWrites: number };
  uso: { gsoSends: number; datagrams: number; lengths: number[]; valid: boolean; payloads: number[] };
}

describe('TunDevice with offloads in a network namespace', { skip }, () => {
  let namespace = '';
  let report: OffloadReport;

  before(() => {
    namespace = createNamespace('tuno');
    const run = runInNamespace(namespace, './tun-offload.ts');
    assert.equal(run.status, 0, describeRun(run));
    report = reportOf<OffloadReport>(run);
  });
  after(() => deleteNamespace(namespace));

  test('the device has a virtio header and the kernel takes checksum and TSO offloads', () => {
    assert.equal(report.vnet, true);
    assert.ok((report.offloads & (TUN_F_CSUM | TUN_F_TSO4)) === (TUN_F_CSUM | TUN_F_TSO4), `offloads ${report.offloads}`);
    assert.match(report.features, /vnet_hdr on/);
  });

  test('consecutive TCP segments written in one batch are merged and the kernel reads every byte in order', () => {
    assert.deepEqual(report.writes.received, 40_000);
    assert.equal(report.writes.equal, true);
    assert.ok(report.writes.coalescedWrites >= 1, 'at least one merged write');
    assert.equal(report.writes.txPackets, 42, 'the counters still count packets, not writes');
  });

  test('the kernel\'s large TCP packets come out as segments no larger than the MTU, with valid checksums and no gap', () => {
    assert.equal(report.reads.bytes, 300_000);
    assert.ok(report.reads.largest <= 1280, `largest ${report.reads.largest}`);
    assert.equal(report.reads.badChecksums, 0);
  });

  test('a UDP flow written in one batch reaches the kernel\'s socket as its datagrams, merged into one write where the device took USO', () => {
    assert.deepEqual(report.udpWrites.delivered, Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(report.udpWrites.lengths, [800]);
    if ((report.offloads & TUN_F_USO4) !== 0) assert.ok(report.udpWrites.coalescedWrites >= 1);
  });

  test('a UDP GSO send into the device arrives as its datagrams (USO where the kernel has it)', () => {
    assert.equal(report.uso.datagrams, 20);
    assert.deepEqual(report.uso.lengths, [928]);
    assert.equal(report.uso.valid, true);
    assert.deepEqual(report.uso.payloads, Array.from({ length: 20 }, (_, i) => i));
    if ((report.offloads & TUN_F_USO4) !== 0) assert.equal(report.uso.gsoSends, 1);
  });
});
