/**
 * `--metrics` (`FIREZONE_METRICS`): the reference's OpenTelemetry metrics, scope "connlib".
 *
 * Hot-path code records through pre-resolved handles (`registry.counter(name, attrs).add(n)`
 * is a field increment). Everything the IO shell already counts (event loop, node, UDP
 * sockets, TUN) is read only at export time through `MetricsSources`, so metrics add no
 * per-packet work.
 *
 * `stdout` prints one OTLP/JSON `ExportMetricsServiceRequest` per line, cumulative temporality.
 *
 * `otel-collector` logs one warning and exports nothing. The reference speaks OTLP/gRPC to
 * `OTLP_GRPC_ENDPOINT`, and this build has no gRPC stack. Posting OTLP/HTTP to port 4318 of
 * that host instead would depend on a receiver the operator never configured and would fail
 * silently wherever only gRPC is enabled, so an explicit "not supported" is the honest answer.
 */
import { createHash } from 'node:crypto';
import type { MetricsExporter } from '../cli/options.ts';
import { BINARY_NAME, GATEWAY_VERSION } from '../cli/version.ts';
import { createLogger } from '../log/index.ts';
import type { NodeStats } from '../snownet/node.ts';
import type { LoopStats } from './event-loop.ts';
import type { TunCounters } from './tun-device.ts';
import type { UdpCounters } from './udp-socket.ts';

const log = createLogger('firezone_gateway::metrics');

export const METRICS_SCOPE = 'connlib';
export const DEFAULT_EXPORT_INTERVAL_MS = 60_000;

export const MetricName = {
  packets: 'system.network.packets',
  errors: 'system.network.errors',
  batchCount: 'system.network.packets.batch_count',
  dropped: 'network.packet.dropped',
} as const;

/** The reference's bucket boundaries for packets per receive syscall: 1, 2, ..., 31. */
export const BATCH_COUNT_BOUNDARIES: readonly number[] = Array.from({ length: 31 }, (_, i) => i + 1);

const DESCRIPTIONS: Readonly<Record<string, { readonly description: string; readonly unit: string }>> = {
  [MetricName.packets]: { description: 'The number of packets processed.', unit: '' },
  [MetricName.errors]: { description: 'Number of IO errors encountered', unit: '{error}' },
  [MetricName.batchCount]: { description: 'How many batches of packets we have processed in a single syscall.', unit: '{batches}' },
  [MetricName.dropped]: { description: 'Count of packets that are dropped or discarded', unit: '{packet}' },
};

export type Attributes = Readonly<Record<string, string>>;

export class Counter {
  value = 0;

  constructor(
    readonly name: string,
    readonly attributes: Attributes,
  ) {}

  add(n: number): void {
    this.value += n;
  }
}

/** Explicit-bucket histogram: bucket i counts values in (bounds[i-1], bounds[i]], the last one the rest. */
export class Histogram {
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;
  readonly bucketCounts: Float64Array;

  constructor(
    readonly name: string,
    readonly attributes: Attributes,
    readonly boundaries: readonly number[],
  ) {
    this.bucketCounts = new Float64Array(boundaries.length + 1);
  }

  record(value: number): void {
    const bounds = this.boundaries;
    let bucket = 0;
    while (bucket < bounds.length && value > bounds[bucket]!) bucket++;
    this.bucketCounts[bucket]!++;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }
}

/** Hands out one handle per (name, attributes); callers keep the handle, never look it up per packet. */
export class MetricsRegistry {
  readonly #counters = new Map<string, Counter>();
  readonly #histograms = new Map<string, Histogram>();

  counter(name: string, attributes: Attributes = {}): Counter {
    const key = handleKey(name, attributes);
    let counter = this.#counters.get(key);
    if (counter === undefined) {
      counter = new Counter(name, { ...attributes });
      this.#counters.set(key, counter);
    }
    return counter;
  }

  histogram(name: string, attributes: Attributes = {}, boundaries: readonly number[] = BATCH_COUNT_BOUNDARIES): Histogram {
    const key = handleKey(name, attributes);
    let histogram = this.#histograms.get(key);
    if (histogram === undefined) {
      histogram = new Histogram(name, { ...attributes }, [...boundaries]);
      this.#histograms.set(key, histogram);
    }
    return histogram;
  }

  counters(): IterableIterator<Counter> {
    return this.#counters.values();
  }

  histograms(): IterableIterator<Histogram> {
    return this.#histograms.values();
  }
}

/** Getters for the counters the IO shell keeps anyway; any of them may be absent or not yet created. */
export interface MetricsSources {
  readonly loop?: () => LoopStats | undefined;
  readonly node?: () => NodeStats | undefined;
  readonly udpV4?: () => { readonly counters: UdpCounters } | undefined;
  readonly udpV6?: () => { readonly counters: UdpCounters } | undefined;
  readonly tun?: () => { readonly name: string; readonly counters: TunCounters } | undefined;
}

export interface SumPoint {
  readonly attributes: Attributes;
  readonly value: number;
}

export interface HistogramPoint {
  readonly attributes: Attributes;
  readonly count: number;
  readonly sum: number;
  readonly min: number;
  readonly max: number;
  readonly bucketCounts: readonly number[];
  readonly boundaries: readonly number[];
}

export type MetricSnapshot =
  | { readonly name: string; readonly kind: 'sum'; readonly points: SumPoint[] }
  | { readonly name: string; readonly kind: 'histogram'; readonly points: HistogramPoint[] };

/** Reads every source and handle once. Points that are still zero are left out. */
export function collectMetrics(registry: MetricsRegistry, sources: MetricsSources): MetricSnapshot[] {
  const metrics = new Map<string, MetricSnapshot>();
  const sum = (name: string, attributes: Attributes, value: number): void => {
    if (value <= 0) return;
    let metric = metrics.get(name);
    if (metric === undefined) {
      metric = { name, kind: 'sum', points: [] };
      metrics.set(name, metric);
    }
    if (metric.kind === 'sum') metric.points.push({ attributes, value });
  };

  collectUdp(sum, 'ipv4', sources.udpV4?.()?.counters);
  collectUdp(sum, 'ipv6', sources.udpV6?.()?.counters);
  const tun = sources.tun?.();
  if (tun !== undefined) collectTun(sum, tun.name, tun.counters);
  const node = sources.node?.();
  if (node !== undefined) collectNode(sum, node);
  const loop = sources.loop?.();
  if (loop !== undefined) collectLoop(sum, loop);

  for (const counter of registry.counters()) sum(counter.name, counter.attributes, counter.value);
  for (const histogram of registry.histograms()) {
    if (histogram.count === 0) continue;
    let metric = metrics.get(histogram.name);
    if (metric === undefined) {
      metric = { name: histogram.name, kind: 'histogram', points: [] };
      metrics.set(histogram.name, metric);
    }
    if (metric.kind !== 'histogram') continue;
    metric.points.push({
      attributes: histogram.attributes,
      count: histogram.count,
      sum: histogram.sum,
      min: histogram.min,
      max: histogram.max,
      bucketCounts: Array.from(histogram.bucketCounts),
      boundaries: histogram.boundaries,
    });
  }
  return [...metrics.values()];
}

type SumSink = (name: string, attributes: Attributes, value: number) => void;

function collectUdp(sum: SumSink, networkType: 'ipv4' | 'ipv6', counters: UdpCounters | undefined): void {
  if (counters === undefined) return;
  const receive = { 'network.type': networkType, 'network.io.direction': 'receive' };
  const transmit = { 'network.type': networkType, 'network.io.direction': 'transmit' };
  sum(MetricName.packets, { ...receive, 'network.transport': 'udp' }, counters.rxDatagrams);
  sum(MetricName.packets, { ...transmit, 'network.transport': 'udp' }, counters.txDatagrams);
  sum(MetricName.errors, receive, counters.rxErrors);
  sum(MetricName.errors, { ...transmit, 'error.type': 'io::ErrorKind::WouldBlock' }, counters.txWouldBlock);
  sum(MetricName.errors, transmit, counters.txDropped - counters.txWouldBlock);
  sum(MetricName.dropped, { ...receive, 'error.type': 'PacketTooLarge' }, counters.rxOversized);
  sum(MetricName.dropped, { ...receive, 'error.type': 'MissingPacketInfo' }, counters.rxWithoutPktinfo);
}

function collectTun(sum: SumSink, name: string, counters: TunCounters): void {
  const receive = { 'network.interface.name': name, 'network.io.direction': 'receive' };
  const transmit = { 'network.interface.name': name, 'network.io.direction': 'transmit' };
  sum(MetricName.packets, receive, counters.rxPackets);
  sum(MetricName.packets, transmit, counters.txPackets);
  sum(MetricName.errors, receive, counters.rxErrors);
  sum(MetricName.errors, transmit, counters.txDropped);
  sum(MetricName.dropped, { ...receive, 'error.type': 'PacketTooLarge' }, counters.rxOversized);
}

function collectNode(sum: SumSink, stats: NodeStats): void {
  const receive = (errorType: string): Attributes => ({ 'network.io.direction': 'receive', 'error.type': errorType });
  sum(MetricName.dropped, receive('PacketTooLarge'), stats.oversizeDropped);
  sum(MetricName.dropped, receive('UnknownFormat'), stats.unknownFormat);
  sum(MetricName.dropped, receive('WireGuardRejected'), stats.wireguardDropped);
  sum(MetricName.dropped, { 'network.io.direction': 'transmit', 'error.type': 'NoConnection' }, stats.encapsulateDropped);
}

function collectLoop(sum: SumSink, stats: LoopStats): void {
  sum(MetricName.dropped, { 'network.io.direction': 'receive', 'error.type': 'Filtered' }, stats.prohibitedReplies);
  sum(MetricName.dropped, { 'error.type': 'NotRouted' }, stats.dropped);
}

/** The reference hashes UUID ids (legacy) and reports any other id as it is. */
export function serviceInstanceId(firezoneId: string): string {
  return UUID.test(firezoneId) ? createHash('sha256').update(firezoneId).digest('hex') : firezoneId;
}

const HYPHENATED = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const UUID = new RegExp(`^(?:[0-9a-f]{32}|${HYPHENATED}|\\{${HYPHENATED}\\}|urn:uuid:${HYPHENATED})$`, 'i');

export function metricsResource(firezoneId: string): Attributes {
  return {
    'service.name': BINARY_NAME,
    'service.version': GATEWAY_VERSION,
    'service.instance.id': serviceInstanceId(firezoneId),
    'os.type': process.platform,
  };
}

interface OtlpKeyValue {
  readonly key: string;
  readonly value: { readonly stringValue: string };
}

/** `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest` in the OTLP/JSON mapping. */
export interface OtlpMetricsRequest {
  readonly resourceMetrics: readonly {
    readonly resource: { readonly attributes: readonly OtlpKeyValue[] };
    readonly scopeMetrics: readonly {
      readonly scope: { readonly name: string };
      readonly metrics: readonly Record<string, unknown>[];
    }[];
  }[];
}

const AGGREGATION_TEMPORALITY_CUMULATIVE = 2;

/** Times are Unix milliseconds; 64-bit integers are decimal strings as the protobuf JSON mapping has them. */
export function encodeOtlp(metrics: readonly MetricSnapshot[], resource: Attributes, startMs: number, nowMs: number): OtlpMetricsRequest {
  const startTimeUnixNano = unixNano(startMs);
  const timeUnixNano = unixNano(nowMs);
  return {
    resourceMetrics: [
      {
        resource: { attributes: keyValues(resource) },
        scopeMetrics: [{ scope: { name: METRICS_SCOPE }, metrics: metrics.map(encodeMetric) }],
      },
    ],
  };

  function encodeMetric(metric: MetricSnapshot): Record<string, unknown> {
    const head = { name: metric.name, description: DESCRIPTIONS[metric.name]?.description ?? '', unit: DESCRIPTIONS[metric.name]?.unit ?? '' };
    if (metric.kind === 'sum') {
      return {
        ...head,
        sum: {
          dataPoints: metric.points.map((point) => ({
            attributes: keyValues(point.attributes),
            startTimeUnixNano,
            timeUnixNano,
            asInt: String(point.value),
          })),
          aggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
          isMonotonic: true,
        },
      };
    }
    return {
      ...head,
      histogram: {
        dataPoints: metric.points.map((point) => ({
          attributes: keyValues(point.attributes),
          startTimeUnixNano,
          timeUnixNano,
          count: String(point.count),
          sum: point.sum,
          bucketCounts: point.bucketCounts.map(String),
          explicitBounds: point.boundaries,
          min: point.min,
          max: point.max,
        })),
        aggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
      },
    };
  }
}

/** The OpenTelemetry SDK's `OTEL_METRIC_EXPORT_INTERVAL`, in milliseconds. */
export function exportIntervalMs(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env['OTEL_METRIC_EXPORT_INTERVAL']?.trim() ?? '';
  if (!/^\d+$/.test(raw)) return DEFAULT_EXPORT_INTERVAL_MS;
  const value = Number(raw);
  return value > 0 ? value : DEFAULT_EXPORT_INTERVAL_MS;
}

export interface MetricsOptions {
  readonly exporter: MetricsExporter | undefined;
  readonly sources: MetricsSources;
  readonly firezoneId: string;
  /** Lets handles be made before metrics start (e.g. for the UDP sockets); a new one by default. */
  readonly registry?: MetricsRegistry;
  /** Receives one JSON document per export, without a trailing newline. Default: stdout. */
  readonly write?: (line: string) => void;
  /** Default: `OTEL_METRIC_EXPORT_INTERVAL` from `env`, else 60 s. */
  readonly intervalMs?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Wall clock, Unix milliseconds. */
  readonly clock?: () => number;
  readonly setTimer?: (callback: () => void, intervalMs: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
}

export interface RunningMetrics {
  /** Where hot-path code gets its handles; recording into it is harmless when nothing exports. */
  readonly registry: MetricsRegistry;
  /** Exports once, now (no-op unless the exporter is `stdout`). */
  exportNow(): void;
  stop(): void;
}

export function startMetrics(options: MetricsOptions): RunningMetrics {
  const registry = options.registry ?? new MetricsRegistry();
  const idle: RunningMetrics = { registry, exportNow: () => undefined, stop: () => undefined };
  if (options.exporter === undefined) return idle;
  if (options.exporter === 'otel-collector') {
    log.warn('otel-collector export is not supported by this build; use --metrics stdout');
    return idle;
  }

  const clock = options.clock ?? Date.now;
  const write = options.write ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const clearTimer = options.clearTimer ?? ((handle) => clearInterval(handle as NodeJS.Timeout));
  const setTimer = options.setTimer ?? ((callback, ms) => setInterval(callback, ms).unref());
  const resource = metricsResource(options.firezoneId);
  const startMs = clock();
  let stopped = false;

  const exportNow = (): void => {
    if (stopped) return;
    const request = encodeOtlp(collectMetrics(registry, options.sources), resource, startMs, clock());
    try {
      write(JSON.stringify(request));
    } catch (error) {
      log.debug('Failed to write metrics', { error: String(error) });
    }
  };
  const timer = setTimer(exportNow, options.intervalMs ?? exportIntervalMs(options.env ?? process.env));

  return {
    registry,
    exportNow,
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearTimer(timer);
    },
  };
}

function handleKey(name: string, attributes: Attributes): string {
  const keys = Object.keys(attributes).sort();
  return JSON.stringify([name, ...keys.map((key) => [key, attributes[key]])]);
}

function keyValues(attributes: Attributes): OtlpKeyValue[] {
  return Object.entries(attributes).map(([key, value]) => ({ key, value: { stringValue: value } }));
}

function unixNano(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}
