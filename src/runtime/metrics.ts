/**
 * Metrics, exported through the OpenTelemetry SDK.
 *
 * The hot path never calls the SDK. The IO shell keeps plain counters it needs anyway (event
 * loop, node, UDP sockets, TUN, gateway status) and hands out pre-resolved handles from a
 * `MetricsRegistry` for the few extra ones (`handle.add(n)` is a field increment). A
 * `MetricProducer` reads all of them only when a reader collects: every export interval for
 * OTLP, on each scrape for Prometheus.
 *
 * Where they go:
 * - `--metrics otel-collector` with `OTLP_GRPC_ENDPOINT=host:port`: OTLP/gRPC in plaintext to
 *   `http://host:port`, as the reference does; without an endpoint nothing is exported (also
 *   as the reference). Interval `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s).
 * - `--metrics stdout`: one OTLP/JSON `ExportMetricsServiceRequest` per line on **stderr**, so
 *   that the log stream on stdout stays parseable.
 * - `--metrics sentry` (the reference's default): nothing, this gateway sends no telemetry.
 * - `FIREZONE_PROMETHEUS_METRICS=true`: `/metrics` on the health server, independent of the above.
 *
 * Names follow the reference 1.6.0 where it has the instrument (`connlib.network.*`,
 * `tunnel.connection.count`, `portal.connection.hiccup`, `dns.lookup.duration`); the others are
 * this gateway's own (`connlib.network.io`, `firezone.gateway.clients`,
 * `wireguard.handshakes`, `portal.connection.state`).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { diag, DiagLogLevel, ValueType, type Attributes as OtelAttributes, type HrTime } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { JsonMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  PeriodicExportingMetricReader,
  type CollectionResult,
  type MetricData,
  type MetricProducer,
  type MetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { BINARY_NAME, GATEWAY_VERSION } from '../cli/version.ts';
import { createLogger } from '../log/index.ts';
import type { NodeStats } from '../snownet/node.ts';
import type { LoopStats } from './event-loop.ts';
import { PORTAL_STATES, type GatewayStatus } from './gateway-status.ts';
import type { TunCounters } from './tun-device.ts';
import type { UdpCounters } from './udp-socket.ts';

const log = createLogger('firezone_gateway::metrics');

export const METRICS_SCOPE = 'connlib';
export const DEFAULT_EXPORT_INTERVAL_MS = 60_000;

export const MetricName = {
  packets: 'connlib.network.packets',
  bytes: 'connlib.network.io',
  errors: 'connlib.network.errors',
  batchCount: 'connlib.network.packets.batch_count',
  dropped: 'connlib.network.dropped',
  connections: 'tunnel.connection.count',
  clients: 'firezone.gateway.clients',
  handshakes: 'wireguard.handshakes',
  portalState: 'portal.connection.state',
  portalHiccups: 'portal.connection.hiccup',
  dnsLookupDuration: 'dns.lookup.duration',
} as const;

type Kind = 'counter' | 'gauge' | 'histogram';

const INSTRUMENTS: Readonly<Record<string, { readonly kind: Kind; readonly description: string; readonly unit: string }>> = {
  [MetricName.packets]: { kind: 'counter', description: 'The number of packets processed.', unit: '{packet}' },
  [MetricName.bytes]: { kind: 'counter', description: 'The number of bytes sent and received.', unit: 'By' },
  [MetricName.errors]: { kind: 'counter', description: 'Number of IO errors encountered', unit: '{error}' },
  [MetricName.batchCount]: { kind: 'histogram', description: 'How many packets we have processed in a single syscall.', unit: '{packet}' },
  [MetricName.dropped]: { kind: 'counter', description: 'Count of packets that are dropped or discarded', unit: '{packet}' },
  [MetricName.connections]: { kind: 'gauge', description: 'Number of connections by the network path in use.', unit: '{connection}' },
  [MetricName.clients]: { kind: 'gauge', description: 'Number of clients with a connection to this gateway.', unit: '{client}' },
  [MetricName.handshakes]: { kind: 'counter', description: 'WireGuard handshake messages accepted.', unit: '{handshake}' },
  [MetricName.portalState]: { kind: 'gauge', description: 'State of the portal connection: 1 for the current state, 0 for the others.', unit: '' },
  [MetricName.portalHiccups]: { kind: 'counter', description: 'Number of portal connection hiccups by cause.', unit: '{hiccup}' },
  [MetricName.dnsLookupDuration]: { kind: 'histogram', description: 'Duration of a DNS lookup for a DNS resource.', unit: 's' },
};

/** The reference's boundaries for packets per syscall: unit steps to 16, then coarser up to 2048. */
export const BATCH_COUNT_BOUNDARIES: readonly number[] = [
  ...Array.from({ length: 16 }, (_, i) => i + 1),
  20, 24, 28, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
];

/** The reference's boundaries for `dns.lookup.duration`, in seconds. */
export const DNS_LOOKUP_BOUNDARIES: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

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
    let low = 0;
    let high = bounds.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (value > bounds[mid]!) low = mid + 1;
      else high = mid;
    }
    this.bucketCounts[low]!++;
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

export interface ConnectionCounts {
  readonly direct: number;
  readonly relayed: number;
  /** Not nominated yet. */
  readonly pending: number;
}

/** Getters for the counters the IO shell keeps anyway; any of them may be absent or not yet created. */
export interface MetricsSources {
  readonly loop?: () => LoopStats | undefined;
  readonly node?: () => NodeStats | undefined;
  readonly connections?: () => ConnectionCounts | undefined;
  readonly udpV4?: () => { readonly counters: UdpCounters } | undefined;
  readonly udpV6?: () => { readonly counters: UdpCounters } | undefined;
  readonly tun?: () => { readonly name: string; readonly counters: TunCounters } | undefined;
  readonly status?: () => GatewayStatus | undefined;
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
  | { readonly name: string; readonly kind: 'counter' | 'gauge'; readonly points: SumPoint[] }
  | { readonly name: string; readonly kind: 'histogram'; readonly points: HistogramPoint[] };

/** Reads every source and handle once. Counters still at zero are left out; gauges are always there. */
export function collectMetrics(registry: MetricsRegistry, sources: MetricsSources): MetricSnapshot[] {
  const metrics = new Map<string, MetricSnapshot>();
  const point = (name: string, attributes: Attributes, value: number): void => {
    const kind = INSTRUMENTS[name]?.kind ?? 'counter';
    if (kind === 'histogram' || (kind === 'counter' && value <= 0)) return;
    let metric = metrics.get(name);
    if (metric === undefined) {
      metric = { name, kind, points: [] };
      metrics.set(name, metric);
    }
    if (metric.kind !== 'histogram') metric.points.push({ attributes, value });
  };

  collectUdp(point, 'ipv4', sources.udpV4?.()?.counters);
  collectUdp(point, 'ipv6', sources.udpV6?.()?.counters);
  const tun = sources.tun?.();
  if (tun !== undefined) collectTun(point, tun.name, tun.counters);
  const node = sources.node?.();
  if (node !== undefined) collectNode(point, node);
  const connections = sources.connections?.();
  if (connections !== undefined) {
    point(MetricName.connections, { 'network.path': 'direct' }, connections.direct);
    point(MetricName.connections, { 'network.path': 'relayed' }, connections.relayed);
    point(MetricName.connections, { 'network.path': 'pending' }, connections.pending);
    point(MetricName.clients, {}, connections.direct + connections.relayed + connections.pending);
  }
  const loop = sources.loop?.();
  if (loop !== undefined) collectLoop(point, loop);
  const status = sources.status?.();
  if (status !== undefined) {
    for (const state of PORTAL_STATES) point(MetricName.portalState, { state }, status.portalState === state ? 1 : 0);
    point(MetricName.portalHiccups, {}, status.portalHiccups);
  }

  for (const counter of registry.counters()) point(counter.name, counter.attributes, counter.value);
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

type PointSink = (name: string, attributes: Attributes, value: number) => void;

function collectUdp(point: PointSink, networkType: 'ipv4' | 'ipv6', counters: UdpCounters | undefined): void {
  if (counters === undefined) return;
  const receive = { 'network.type': networkType, 'network.io.direction': 'receive' };
  const transmit = { 'network.type': networkType, 'network.io.direction': 'transmit' };
  point(MetricName.packets, { ...receive, 'network.transport': 'udp' }, counters.rxDatagrams);
  point(MetricName.packets, { ...transmit, 'network.transport': 'udp' }, counters.txDatagrams);
  point(MetricName.bytes, { ...receive, 'network.transport': 'udp' }, counters.rxBytes);
  point(MetricName.bytes, { ...transmit, 'network.transport': 'udp' }, counters.txBytes);
  point(MetricName.errors, receive, counters.rxErrors);
  point(MetricName.errors, { ...transmit, 'error.type': 'io::ErrorKind::WouldBlock' }, counters.txWouldBlock);
  point(MetricName.errors, transmit, counters.txDropped - counters.txWouldBlock);
  point(MetricName.dropped, { ...receive, 'error.type': 'PacketTooLarge' }, counters.rxOversized);
  point(MetricName.dropped, { ...receive, 'error.type': 'MissingPacketInfo' }, counters.rxWithoutPktinfo);
}

function collectTun(point: PointSink, name: string, counters: TunCounters): void {
  const receive = { 'network.interface.name': name, 'network.io.direction': 'receive' };
  const transmit = { 'network.interface.name': name, 'network.io.direction': 'transmit' };
  point(MetricName.packets, receive, counters.rxPackets);
  point(MetricName.packets, transmit, counters.txPackets);
  point(MetricName.bytes, receive, counters.rxBytes);
  point(MetricName.bytes, transmit, counters.txBytes);
  point(MetricName.errors, receive, counters.rxErrors);
  point(MetricName.errors, transmit, counters.txDropped);
  point(MetricName.dropped, { ...receive, 'error.type': 'PacketTooLarge' }, counters.rxOversized);
}

function collectNode(point: PointSink, stats: NodeStats): void {
  const receive = (errorType: string): Attributes => ({ 'network.io.direction': 'receive', 'error.type': errorType });
  point(MetricName.dropped, receive('PacketTooLarge'), stats.oversizeDropped);
  point(MetricName.dropped, receive('UnknownFormat'), stats.unknownFormat);
  point(MetricName.dropped, receive('WireGuardRejected'), stats.wireguardDropped);
  point(MetricName.dropped, { 'network.io.direction': 'transmit', 'error.type': 'NoConnection' }, stats.encapsulateDropped);
  point(MetricName.handshakes, {}, stats.handshakes);
}

function collectLoop(point: PointSink, stats: LoopStats): void {
  point(MetricName.dropped, { 'network.io.direction': 'receive', 'error.type': 'Filtered' }, stats.prohibitedReplies);
  point(MetricName.dropped, { 'error.type': 'NotRouted' }, stats.dropped);
  point(MetricName.dropped, { 'error.type': 'InternalError' }, stats.internalErrors);
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

/** Feeds the snapshot of the plain counters into the SDK's readers, as one instrumentation scope. */
export class GatewayMetricProducer implements MetricProducer {
  constructor(
    private readonly registry: MetricsRegistry,
    private readonly sources: MetricsSources,
    private readonly startMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  async collect(): Promise<CollectionResult> {
    const startTime = hrTime(this.startMs);
    const endTime = hrTime(this.clock());
    const metrics = collectMetrics(this.registry, this.sources).map((metric) => toMetricData(metric, startTime, endTime));
    return {
      resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics: [{ scope: { name: METRICS_SCOPE }, metrics }] },
      errors: [],
    };
  }
}

function toMetricData(metric: MetricSnapshot, startTime: HrTime, endTime: HrTime): MetricData {
  const info = INSTRUMENTS[metric.name];
  const descriptor = {
    name: metric.name,
    description: info?.description ?? '',
    unit: info?.unit ?? '',
    valueType: metric.kind === 'histogram' && metric.name === MetricName.dnsLookupDuration ? ValueType.DOUBLE : ValueType.INT,
  };
  if (metric.kind === 'histogram') {
    return {
      descriptor,
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: metric.points.map((point) => ({
        startTime,
        endTime,
        attributes: point.attributes as OtelAttributes,
        value: {
          buckets: { boundaries: [...point.boundaries], counts: [...point.bucketCounts] },
          count: point.count,
          sum: point.sum,
          min: point.min,
          max: point.max,
        },
      })),
    };
  }
  const dataPoints = metric.points.map((point) => ({ startTime, endTime, attributes: point.attributes as OtelAttributes, value: point.value }));
  if (metric.kind === 'gauge') {
    return { descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.GAUGE, dataPoints };
  }
  return { descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints };
}

/** The OpenTelemetry SDK's `OTEL_METRIC_EXPORT_INTERVAL`, in milliseconds. */
export function exportIntervalMs(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env['OTEL_METRIC_EXPORT_INTERVAL']?.trim() ?? '';
  if (!/^\d+$/.test(raw)) return DEFAULT_EXPORT_INTERVAL_MS;
  const value = Number(raw);
  return value > 0 ? value : DEFAULT_EXPORT_INTERVAL_MS;
}

/** `FIREZONE_PROMETHEUS_METRICS`: `true` serves `/metrics` on the health server. */
export function prometheusEnabled(env: Readonly<Record<string, string | undefined>>): boolean {
  return env['FIREZONE_PROMETHEUS_METRICS']?.trim().toLowerCase() === 'true';
}

export interface MetricsOptions {
  /** `--metrics`: `stdout`, `otel-collector`, `sentry` or unset. */
  readonly exporter: string | undefined;
  readonly otlpGrpcEndpoint?: string | undefined;
  readonly prometheus?: boolean;
  readonly sources: MetricsSources;
  readonly firezoneId: string;
  /** Lets handles be made before metrics start (e.g. for the UDP sockets); a new one by default. */
  readonly registry?: MetricsRegistry;
  /** `stdout` exporter: receives one JSON document per export, without a newline. Default: stderr. */
  readonly write?: (line: string) => void;
  /** Default: `OTEL_METRIC_EXPORT_INTERVAL` from `env`, else 60 s. */
  readonly intervalMs?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Wall clock, Unix milliseconds. */
  readonly clock?: () => number;
}

export interface RunningMetrics {
  /** Where hot-path code gets its handles; recording into it is harmless when nothing exports. */
  readonly registry: MetricsRegistry;
  /** Serves a Prometheus scrape; undefined unless Prometheus is on. */
  readonly prometheusHandler: ((request: IncomingMessage, response: ServerResponse) => void) | undefined;
  /** Exports once now through the push exporters (OTLP, stdout). */
  exportNow(): Promise<void>;
  /** Exports a last time and stops. */
  stop(): Promise<void>;
}

export function startMetrics(options: MetricsOptions): RunningMetrics {
  const registry = options.registry ?? new MetricsRegistry();
  const clock = options.clock ?? Date.now;
  const env = options.env ?? process.env;
  const producer = new GatewayMetricProducer(registry, options.sources, clock(), clock);
  const intervalMs = options.intervalMs ?? exportIntervalMs(env);
  const readers: MetricReader[] = [];
  const pushReaders: PeriodicExportingMetricReader[] = [];

  const push = (exporter: PushMetricExporter): void => {
    const reader = new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: intervalMs,
      exportTimeoutMillis: Math.min(30_000, intervalMs),
      metricProducers: [producer],
    });
    readers.push(reader);
    pushReaders.push(reader);
  };

  switch (options.exporter) {
    case 'otel-collector':
      if (options.otlpGrpcEndpoint === undefined) {
        log.info('No OTLP_GRPC_ENDPOINT given; metrics are not exported');
      } else {
        push(new OTLPMetricExporter({ url: `http://${options.otlpGrpcEndpoint}` }));
      }
      break;
    case 'stdout':
      push(new JsonLinesExporter(options.write ?? ((line) => void process.stderr.write(`${line}\n`))));
      break;
    default:
      break;
  }

  let prometheus: PrometheusExporter | undefined;
  if (options.prometheus === true) {
    prometheus = new PrometheusExporter({ preventServerStart: true, metricProducers: [producer] });
    readers.push(prometheus);
  }

  if (readers.length === 0) {
    return { registry, prometheusHandler: undefined, exportNow: async () => undefined, stop: async () => undefined };
  }

  routeSdkDiagnostics();
  const provider = new MeterProvider({
    resource: defaultResource().merge(resourceFromAttributes(metricsResource(options.firezoneId))),
    readers,
  });
  let stopped: Promise<void> | undefined;
  return {
    registry,
    prometheusHandler: prometheus === undefined ? undefined : (request, response) => prometheus.getMetricsRequestHandler(request, response),
    exportNow: async () => {
      await Promise.all(pushReaders.map((reader) => reader.forceFlush()));
    },
    stop: () =>
      (stopped ??= provider.shutdown({ timeoutMillis: 5_000 }).catch((error: unknown) => {
        log.debug('Metrics shutdown failed', { error: String(error) });
      })),
  };
}

/** The `stdout` exporter: OTLP/JSON lines. */
class JsonLinesExporter implements PushMetricExporter {
  readonly #decoder = new TextDecoder();

  constructor(private readonly write: (line: string) => void) {}

  export(metrics: ResourceMetrics, resultCallback: (result: { code: number; error?: Error }) => void): void {
    try {
      const bytes = JsonMetricsSerializer.serializeRequest(metrics);
      if (bytes !== undefined) this.write(this.#decoder.decode(bytes));
      resultCallback({ code: 0 });
    } catch (error) {
      resultCallback({ code: 1, error: error instanceof Error ? error : new Error(String(error)) });
    }
  }

  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {}
}

let diagnosticsRouted = false;

/** The SDK reports failed exports through `diag`: one log line each, never a crash. */
function routeSdkDiagnostics(): void {
  if (diagnosticsRouted) return;
  diagnosticsRouted = true;
  const sdkLog = createLogger('opentelemetry_sdk');
  const text = (message: string, args: unknown[]): string => [message, ...args.map(String)].join(' ');
  diag.setLogger(
    {
      error: (message, ...args) => sdkLog.warn(text(message, args)),
      warn: (message, ...args) => sdkLog.warn(text(message, args)),
      info: (message, ...args) => sdkLog.debug(text(message, args)),
      debug: (message, ...args) => sdkLog.trace(text(message, args)),
      verbose: (message, ...args) => sdkLog.trace(text(message, args)),
    },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
}

function handleKey(name: string, attributes: Attributes): string {
  const keys = Object.keys(attributes).sort();
  return JSON.stringify([name, ...keys.map((key) => [key, attributes[key]])]);
}

function hrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}
