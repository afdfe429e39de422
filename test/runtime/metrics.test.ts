import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import {
  BATCH_COUNT_BOUNDARIES,
  collectMetrics,
  exportIntervalMs,
  MetricName,
  MetricsRegistry,
  serviceInstanceId,
  startMetrics,
  type MetricsOptions,
  type MetricsSources,
} from '../../src/runtime/metrics.ts';
import { emptyTunCounters } from '../../src/runtime/tun-device.ts';
import { emptyUdpCounters } from '../../src/runtime/udp-socket.ts';

const START_MS = 1_700_000_000_000;

describe('MetricsRegistry', () => {
  test('a counter handle is shared by name and attribute set, whatever the key order', () => {
    const registry = new MetricsRegistry();
    const a = registry.counter(MetricName.packets, { 'network.type': 'ipv4', 'network.io.direction': 'receive' });
    const b = registry.counter(MetricName.packets, { 'network.io.direction': 'receive', 'network.type': 'ipv4' });
    const other = registry.counter(MetricName.packets, { 'network.type': 'ipv6', 'network.io.direction': 'receive' });
    a.add(2);
    b.add(3);
    other.add(1);
    assert.equal(a, b);
    assert.equal(a.value, 5);
    assert.equal(other.value, 1);
    assert.deepEqual([...registry.counters()].map((c) => [c.attributes['network.type'], c.value]), [
      ['ipv4', 5],
      ['ipv6', 1],
    ]);
  });

  test('the batch histogram puts each value in the first bucket whose bound is not below it', () => {
    const histogram = new MetricsRegistry().histogram(MetricName.batchCount);
    assert.deepEqual(histogram.boundaries, BATCH_COUNT_BOUNDARIES);
    assert.equal(histogram.bucketCounts.length, 32);
    for (const value of [1, 2, 2, 31, 32, 64]) histogram.record(value);
    const counts = Array.from(histogram.bucketCounts);
    assert.equal(counts[0], 1);
    assert.equal(counts[1], 2);
    assert.equal(counts[30], 1);
    assert.equal(counts[31], 2);
    assert.equal(counts.reduce((a, b) => a + b, 0), 6);
    assert.deepEqual([histogram.count, histogram.sum, histogram.min, histogram.max], [6, 132, 1, 64]);
  });
});

describe('collectMetrics', () => {
  test('reads the shell counters at collection time and leaves out zero points', () => {
    const udp = emptyUdpCounters();
    const tun = emptyTunCounters();
    const sources: MetricsSources = {
      udpV4: () => ({ counters: udp }),
      udpV6: () => undefined,
      tun: () => ({ name: 'tun-firezone', counters: tun }),
    };
    const registry = new MetricsRegistry();
    assert.deepEqual(collectMetrics(registry, sources), []);

    udp.rxDatagrams = 7;
    tun.txPackets = 4;
    tun.rxOversized = 1;
    const metrics = collectMetrics(registry, sources);
    assert.deepEqual(metrics, [
      {
        name: MetricName.packets,
        kind: 'sum',
        points: [
          { attributes: { 'network.type': 'ipv4', 'network.io.direction': 'receive', 'network.transport': 'udp' }, value: 7 },
          { attributes: { 'network.interface.name': 'tun-firezone', 'network.io.direction': 'transmit' }, value: 4 },
        ],
      },
      {
        name: MetricName.dropped,
        kind: 'sum',
        points: [{ attributes: { 'network.interface.name': 'tun-firezone', 'network.io.direction': 'receive', 'error.type': 'PacketTooLarge' }, value: 1 }],
      },
    ]);
  });

  test('node and loop drops become network.packet.dropped by error type', () => {
    const node = { datagramsIn: 10, oversizeDropped: 0, unknownFormat: 2, wireguardDropped: 0, encapsulateDropped: 3 };
    const loop = { tunnelToTun: 5, tunToTunnel: 5, prohibitedReplies: 1, dropped: 0, internalErrors: 0 };
    const [dropped] = collectMetrics(new MetricsRegistry(), { node: () => node, loop: () => loop });
    assert.equal(dropped?.name, MetricName.dropped);
    assert.deepEqual(
      dropped?.points.map((p) => [p.attributes['error.type'], 'value' in p ? p.value : undefined]),
      [
        ['UnknownFormat', 2],
        ['NoConnection', 3],
        ['Filtered', 1],
      ],
    );
  });
});

describe('startMetrics', () => {
  test('one stdout export is an OTLP/JSON metrics request', () => {
    const udp = emptyUdpCounters();
    udp.txDatagrams = 3;
    const harness = start({ exporter: 'stdout', sources: { udpV4: () => ({ counters: udp }) } });
    const batches = harness.metrics.registry.histogram(MetricName.batchCount, { 'network.transport': 'udp', 'network.io.direction': 'receive' });
    batches.record(2);
    batches.record(40);
    harness.now = START_MS + 60_000.5;
    harness.metrics.exportNow();

    assert.equal(harness.lines.length, 1);
    const buckets = Array.from({ length: 32 }, () => '0');
    buckets[1] = '1';
    buckets[31] = '1';
    const times = { startTimeUnixNano: '1700000000000000000', timeUnixNano: '1700000060000500000' };
    assert.deepEqual(JSON.parse(harness.lines[0]!), {
      resourceMetrics: [
        {
          resource: {
            attributes: [
              { key: 'service.name', value: { stringValue: 'firezone-gateway' } },
              { key: 'service.version', value: { stringValue: '1.4.13' } },
              { key: 'service.instance.id', value: { stringValue: 'gateway-1' } },
              { key: 'os.type', value: { stringValue: process.platform } },
            ],
          },
          scopeMetrics: [
            {
              scope: { name: 'connlib' },
              metrics: [
                {
                  name: 'system.network.packets',
                  description: 'The number of packets processed.',
                  unit: '',
                  sum: {
                    dataPoints: [
                      {
                        attributes: [
                          { key: 'network.type', value: { stringValue: 'ipv4' } },
                          { key: 'network.io.direction', value: { stringValue: 'transmit' } },
                          { key: 'network.transport', value: { stringValue: 'udp' } },
                        ],
                        ...times,
                        asInt: '3',
                      },
                    ],
                    aggregationTemporality: 2,
                    isMonotonic: true,
                  },
                },
                {
                  name: 'system.network.packets.batch_count',
                  description: 'How many batches of packets we have processed in a single syscall.',
                  unit: '{batches}',
                  histogram: {
                    dataPoints: [
                      {
                        attributes: [
                          { key: 'network.transport', value: { stringValue: 'udp' } },
                          { key: 'network.io.direction', value: { stringValue: 'receive' } },
                        ],
                        ...times,
                        count: '2',
                        sum: 42,
                        bucketCounts: buckets,
                        explicitBounds: BATCH_COUNT_BOUNDARIES,
                        min: 2,
                        max: 40,
                      },
                    ],
                    aggregationTemporality: 2,
                  },
                },
              ],
            },
          ],
        },
      ],
    });
  });

  test('exports what a registry given at start records', () => {
    const registry = new MetricsRegistry();
    registry.counter(MetricName.dropped, { 'error.type': 'BufferFull' }).add(4);
    const harness = start({ exporter: 'stdout', registry });
    assert.equal(harness.metrics.registry, registry);
    harness.metrics.exportNow();
    assert.deepEqual(harness.lines.map(firstSumValue), ['4']);
  });

  test('exports on every interval tick until stopped', () => {
    const udp = emptyUdpCounters();
    const harness = start({ exporter: 'stdout', sources: { udpV6: () => ({ counters: udp }) }, env: { OTEL_METRIC_EXPORT_INTERVAL: '5000' } });
    assert.equal(harness.intervalMs, 5000);

    udp.rxDatagrams = 1;
    harness.tick();
    udp.rxDatagrams = 9;
    harness.tick();
    assert.deepEqual(harness.lines.map(firstSumValue), ['1', '9']);

    harness.metrics.stop();
    assert.equal(harness.cleared, harness.timerHandle);
    harness.tick();
    harness.metrics.exportNow();
    assert.equal(harness.lines.length, 2);
  });

  test('the interval comes from the option, then OTEL_METRIC_EXPORT_INTERVAL, then 60 s', () => {
    assert.equal(start({ exporter: 'stdout', intervalMs: 250, env: { OTEL_METRIC_EXPORT_INTERVAL: '5000' } }).intervalMs, 250);
    assert.equal(exportIntervalMs({}), 60_000);
    assert.equal(exportIntervalMs({ OTEL_METRIC_EXPORT_INTERVAL: '1500' }), 1500);
    assert.equal(exportIntervalMs({ OTEL_METRIC_EXPORT_INTERVAL: '0' }), 60_000);
    assert.equal(exportIntervalMs({ OTEL_METRIC_EXPORT_INTERVAL: '10s' }), 60_000);
  });

  test('without an exporter nothing is scheduled or written', () => {
    const harness = start({ exporter: undefined });
    harness.metrics.registry.counter(MetricName.packets).add(1);
    harness.metrics.exportNow();
    harness.metrics.stop();
    assert.equal(harness.intervalMs, undefined);
    assert.deepEqual(harness.lines, []);
  });

  test('otel-collector warns once and exports nothing', () => {
    const logged: string[] = [];
    configureLogging({ filter: LogFilter.parse('warn'), sink: { write: (line) => logged.push(line) } });
    try {
      const harness = start({ exporter: 'otel-collector' });
      harness.metrics.registry.counter(MetricName.packets).add(1);
      harness.metrics.exportNow();
      assert.equal(harness.intervalMs, undefined);
      assert.deepEqual(harness.lines, []);
      assert.equal(logged.length, 1);
      assert.match(logged[0]!, /WARN.*otel-collector export is not supported by this build; use --metrics stdout/);
    } finally {
      configureLogging({ filter: LogFilter.parse('off'), sink: { write: (line) => process.stdout.write(line) } });
    }
  });

  test('with real timers, exports repeat and stop() ends them', async () => {
    const lines: string[] = [];
    const metrics = startMetrics({ exporter: 'stdout', sources: {}, firezoneId: 'x', intervalMs: 10, write: (line) => lines.push(line) });
    await sleep(55);
    metrics.stop();
    const exported = lines.length;
    assert.ok(exported >= 2, `exported ${exported} times`);
    await sleep(30);
    assert.equal(lines.length, exported);
  });
});

test('service.instance.id is the SHA-256 of a UUID id and any other id verbatim', () => {
  const uuid = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';
  assert.equal(serviceInstanceId(uuid), createHash('sha256').update(uuid).digest('hex'));
  assert.equal(serviceInstanceId('a'.repeat(64)), 'a'.repeat(64));
  assert.equal(serviceInstanceId('6ba7b810-9dad-11d1-80b4'), '6ba7b810-9dad-11d1-80b4');
});

interface Harness {
  readonly metrics: ReturnType<typeof startMetrics>;
  readonly lines: string[];
  now: number;
  intervalMs: number | undefined;
  readonly timerHandle: object;
  cleared: unknown;
  tick(): void;
}

function start(overrides: Partial<MetricsOptions>): Harness {
  const timerHandle = {};
  let callback: (() => void) | undefined;
  const harness: Omit<Harness, 'metrics'> = {
    lines: [],
    now: START_MS,
    intervalMs: undefined,
    timerHandle,
    cleared: undefined,
    tick: () => callback?.(),
  };
  const metrics = startMetrics({
    exporter: 'stdout',
    sources: {},
    firezoneId: 'gateway-1',
    write: (line) => harness.lines.push(line),
    clock: () => harness.now,
    env: {},
    setTimer: (cb, ms) => {
      callback = cb;
      harness.intervalMs = ms;
      return timerHandle;
    },
    clearTimer: (handle) => (harness.cleared = handle),
    ...overrides,
  });
  return Object.assign(harness, { metrics });
}

function firstSumValue(line: string): unknown {
  return JSON.parse(line).resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt;
}
