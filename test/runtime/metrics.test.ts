import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import {
  BATCH_COUNT_BOUNDARIES,
  collectMetrics,
  exportIntervalMs,
  MetricName,
  MetricsRegistry,
  prometheusEnabled,
  serviceInstanceId,
  startMetrics,
  type MetricsSources,
} from '../../src/runtime/metrics.ts';
import { GatewayStatus } from '../../src/runtime/gateway-status.ts';
import { HealthServer } from '../../src/runtime/health-server.ts';
import type { UdpCounters } from '../../src/runtime/udp-socket.ts';
import { OtlpReceiver } from '../support/otlp-receiver.ts';

const udp = (overrides: Partial<UdpCounters> = {}): UdpCounters => ({
  rxDatagrams: 0, rxBytes: 0, rxBatches: 0, rxOversized: 0, rxWithoutPktinfo: 0, rxErrors: 0,
  txDatagrams: 0, txBytes: 0, txDropped: 0, txWouldBlock: 0, rxCoalesced: 0, txGsoSends: 0, ...overrides,
});

const node = { datagramsIn: 0, oversizeDropped: 0, unknownFormat: 3, wireguardDropped: 0, encapsulateDropped: 2, handshakes: 4 };

function sampleSources(): MetricsSources {
  const status = new GatewayStatus();
  status.portalStateChanged('joined');
  status.portalHiccup();
  return {
    udpV4: () => ({ counters: udp({ rxDatagrams: 10, rxBytes: 1000, txDatagrams: 7, txBytes: 700 }) }),
    node: () => node,
    connections: () => ({ direct: 2, relayed: 1, pending: 0 }),
    status: () => status,
    loop: () => ({ tunnelToTun: 0, tunToTunnel: 0, prohibitedReplies: 5, dropped: 0, internalErrors: 0 }),
  };
}

describe('MetricsRegistry', () => {
  test('a counter handle is shared by name and attribute set, whatever the key order', () => {
    const registry = new MetricsRegistry();
    const a = registry.counter('x', { a: '1', b: '2' });
    const b = registry.counter('x', { b: '2', a: '1' });
    assert.equal(a, b);
    assert.notEqual(a, registry.counter('x', { a: '1' }));
  });

  test('a histogram puts each value in the first bucket whose bound is not below it', () => {
    const histogram = new MetricsRegistry().histogram(MetricName.batchCount);
    for (const value of [1, 16, 17, 20, 2048, 5000]) histogram.record(value);
    const bucketOf = (bound: number): number => histogram.bucketCounts[BATCH_COUNT_BOUNDARIES.indexOf(bound)]!;
    assert.equal(bucketOf(1), 1);
    assert.equal(bucketOf(16), 1);
    assert.equal(bucketOf(20), 2, '17 and 20 both fall in (16, 20]');
    assert.equal(bucketOf(2048), 1);
    assert.equal(histogram.bucketCounts[BATCH_COUNT_BOUNDARIES.length], 1, 'the overflow bucket');
    assert.deepEqual([histogram.count, histogram.min, histogram.max], [6, 1, 5000]);
  });
});

describe('collectMetrics', () => {
  test('reads packets and bytes each way, drops by reason, handshakes, connections by path and portal state', () => {
    const snapshot = collectMetrics(new MetricsRegistry(), sampleSources());
    const byName = new Map(snapshot.map((metric) => [metric.name, metric]));
    const points = (name: string): { attributes: Record<string, string>; value: number }[] =>
      (byName.get(name)?.points ?? []).map((p) => ({ attributes: { ...p.attributes }, value: 'value' in p ? p.value : p.count }));

    assert.deepEqual(
      points(MetricName.bytes).map((p) => [p.attributes['network.io.direction'], p.value]),
      [['receive', 1000], ['transmit', 700]],
    );
    assert.ok(points(MetricName.dropped).some((p) => p.attributes['error.type'] === 'Filtered' && p.value === 5));
    assert.ok(points(MetricName.dropped).some((p) => p.attributes['error.type'] === 'NoConnection' && p.value === 2));
    assert.deepEqual(points(MetricName.handshakes), [{ attributes: {}, value: 4 }]);
    assert.deepEqual(points(MetricName.clients), [{ attributes: {}, value: 3 }]);
    assert.deepEqual(
      points(MetricName.connections).map((p) => [p.attributes['network.path'], p.value]),
      [['direct', 2], ['relayed', 1], ['pending', 0]],
      'gauges keep their zero points',
    );
    const joined = points(MetricName.portalState).filter((p) => p.value === 1);
    assert.deepEqual(joined, [{ attributes: { state: 'joined' }, value: 1 }]);
    assert.deepEqual(points(MetricName.portalHiccups), [{ attributes: {}, value: 1 }]);
    assert.ok(!points(MetricName.dropped).some((p) => p.value === 0), 'counters still at zero are left out');
  });
});

describe('startMetrics', () => {
  test('otel-collector exports OTLP/gRPC to http://OTLP_GRPC_ENDPOINT through the SDK', async () => {
    const receiver = await OtlpReceiver.start();
    const registry = new MetricsRegistry();
    registry.histogram(MetricName.batchCount, { 'network.transport': 'udp' }).record(3);
    const metrics = startMetrics({
      exporter: 'otel-collector',
      otlpGrpcEndpoint: `127.0.0.1:${receiver.port}`,
      firezoneId: 'gw-1',
      registry,
      sources: sampleSources(),
      intervalMs: 3_600_000,
    });
    try {
      await metrics.exportNow();
      await receiver.waitFor(1);
      const received = receiver.exports[0]!;
      assert.equal(received.resource['service.name'], 'firezone-gateway');
      assert.equal(received.resource['service.instance.id'], 'gw-1');
      assert.ok(received.scopes.includes('connlib'));
      const packets = received.metrics.find((m) => m.name === MetricName.packets);
      assert.equal(packets?.kind, 'sum');
      assert.ok(packets.points.some((p) => p.attributes['network.io.direction'] === 'receive' && p.value === 10));
      const connections = received.metrics.find((m) => m.name === MetricName.connections);
      assert.equal(connections?.kind, 'gauge');
      const batches = received.metrics.find((m) => m.name === MetricName.batchCount);
      assert.deepEqual([batches?.kind, batches?.points[0]?.value], ['histogram', 1]);
    } finally {
      await metrics.stop();
      await receiver.close();
    }
  });

  test('stop() exports a last time', async () => {
    const receiver = await OtlpReceiver.start();
    const metrics = startMetrics({
      exporter: 'otel-collector', otlpGrpcEndpoint: `127.0.0.1:${receiver.port}`, firezoneId: 'gw-2', sources: sampleSources(), intervalMs: 3_600_000,
    });
    try {
      await metrics.stop();
      await receiver.waitFor(1);
      assert.ok(receiver.exports[0]!.metrics.some((m) => m.name === MetricName.handshakes));
    } finally {
      await receiver.close();
    }
  });

  test('otel-collector without an endpoint exports nothing, as the reference', async () => {
    const metrics = startMetrics({ exporter: 'otel-collector', firezoneId: 'gw', sources: sampleSources() });
    assert.equal(metrics.prometheusHandler, undefined);
    await metrics.exportNow();
    await metrics.stop();
  });

  test('stdout writes OTLP/JSON lines and never to the log stream (stdout)', async () => {
    const stdoutWrite = process.stdout.write;
    const stderrWrite = process.stderr.write;
    const stdoutLines: string[] = [];
    const stderrLines: string[] = [];
    process.stdout.write = ((chunk: string) => (stdoutLines.push(String(chunk)), true)) as typeof process.stdout.write;
    process.stderr.write = ((chunk: string) => (stderrLines.push(String(chunk)), true)) as typeof process.stderr.write;
    const metrics = startMetrics({ exporter: 'stdout', firezoneId: 'gw', sources: sampleSources(), intervalMs: 3_600_000 });
    try {
      await metrics.exportNow();
      await metrics.stop();
    } finally {
      process.stdout.write = stdoutWrite;
      process.stderr.write = stderrWrite;
    }
    assert.deepEqual(stdoutLines.filter((line) => line.includes('resourceMetrics')), []);
    const line = stderrLines.find((text) => text.includes('resourceMetrics'));
    assert.ok(line !== undefined && line.endsWith('\n'));
    const document = JSON.parse(line) as { resourceMetrics: { scopeMetrics: { metrics: { name: string }[] }[] }[] };
    const names = document.resourceMetrics[0]!.scopeMetrics.flatMap((scope) => scope.metrics.map((m) => m.name));
    assert.ok(names.includes(MetricName.packets), names.join(','));
  });

  test('Prometheus /metrics on the health server, only when turned on', async () => {
    const metrics = startMetrics({ exporter: undefined, prometheus: true, firezoneId: 'gw', sources: sampleSources() });
    const health = await HealthServer.start('127.0.0.1:0', { metrics: metrics.prometheusHandler });
    const plain = await HealthServer.start('127.0.0.1:0');
    try {
      const scrape = await get(health.address!.port, '/metrics');
      assert.equal(scrape.status, 200);
      assert.match(scrape.body, /^connlib_network_packets_total\{[^}]*network_io_direction="receive"[^}]*\} 10/m);
      assert.match(scrape.body, /^wireguard_handshakes_total(\{[^}]*\})? 4/m);
      assert.match(scrape.body, /^portal_connection_state\{[^}]*state="joined"[^}]*\} 1/m);
      assert.equal((await get(plain.address!.port, '/metrics')).status, 404);
    } finally {
      await health.close();
      await plain.close();
      await metrics.stop();
    }
  });
});

test('the export interval is OTEL_METRIC_EXPORT_INTERVAL, else 60 s; Prometheus only with FIREZONE_PROMETHEUS_METRICS=true', () => {
  assert.equal(exportIntervalMs({ OTEL_METRIC_EXPORT_INTERVAL: '5000' }), 5000);
  assert.equal(exportIntervalMs({ OTEL_METRIC_EXPORT_INTERVAL: 'x' }), 60_000);
  assert.equal(exportIntervalMs({}), 60_000);
  assert.equal(prometheusEnabled({ FIREZONE_PROMETHEUS_METRICS: 'true' }), true);
  assert.equal(prometheusEnabled({ FIREZONE_PROMETHEUS_METRICS: '1' }), false);
  assert.equal(prometheusEnabled({}), false);
});

test('service.instance.id is the SHA-256 of a UUID id and any other id verbatim', () => {
  assert.equal(serviceInstanceId('gateway-one'), 'gateway-one');
  assert.match(serviceInstanceId('4694E56C-7643-4A15-9DF3-638E5B05F570'), /^[0-9a-f]{64}$/);
});

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
