/**
 * An OTLP/gRPC metrics receiver on loopback for tests: the collector's
 * `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`, with a small protobuf
 * reader for the fields the tests look at (resource attributes, metric names, sum and gauge
 * values, histogram counts).
 */
import { Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';

export interface ReceivedPoint {
  readonly attributes: Readonly<Record<string, string>>;
  /** Sum or gauge value; for histograms the count. */
  readonly value: number;
}

export interface ReceivedMetric {
  readonly name: string;
  readonly unit: string;
  readonly kind: 'sum' | 'gauge' | 'histogram' | 'other';
  readonly points: readonly ReceivedPoint[];
}

export interface ReceivedExport {
  readonly resource: Readonly<Record<string, string>>;
  readonly scopes: readonly string[];
  readonly metrics: readonly ReceivedMetric[];
}

const identity = (value: Buffer): Buffer => value;

const METRICS_SERVICE: ServiceDefinition = {
  Export: {
    path: '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

export class OtlpReceiver {
  readonly exports: ReceivedExport[] = [];
  #waiters: (() => void)[] = [];

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(): Promise<OtlpReceiver> {
    const server = new Server();
    let receiver: OtlpReceiver | undefined;
    server.addService(METRICS_SERVICE, {
      Export: (call: { request: Buffer }, callback: (error: null, response: Buffer) => void) => {
        receiver?.record(decodeExport(call.request));
        callback(null, Buffer.alloc(0));
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    receiver = new OtlpReceiver(server, port);
    return receiver;
  }

  /** Resolves once at least `count` exports have arrived. */
  async waitFor(count: number): Promise<void> {
    while (this.exports.length < count) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }

  private record(received: ReceivedExport): void {
    this.exports.push(received);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

type Field = { readonly number: number; readonly wire: number; readonly bytes?: Buffer; readonly int?: bigint; readonly fixed?: Buffer };

function* fields(buffer: Buffer): Generator<Field> {
  let offset = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[offset++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const key = Number(varint());
    const number = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { number, wire, int: varint() };
    else if (wire === 1) {
      yield { number, wire, fixed: buffer.subarray(offset, offset + 8) };
      offset += 8;
    } else if (wire === 2) {
      const length = Number(varint());
      yield { number, wire, bytes: buffer.subarray(offset, offset + length) };
      offset += length;
    } else if (wire === 5) {
      yield { number, wire, fixed: buffer.subarray(offset, offset + 4) };
      offset += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

function keyValue(buffer: Buffer): [string, string] {
  let key = '';
  let value = '';
  for (const field of fields(buffer)) {
    if (field.number === 1) key = field.bytes!.toString('utf8');
    if (field.number === 2) {
      for (const any of fields(field.bytes!)) {
        if (any.number === 1) value = any.bytes!.toString('utf8');
        else if (any.number === 3) value = String(any.int);
        else if (any.number === 2) value = String(any.int !== 0n);
      }
    }
  }
  return [key, value];
}

function dataPoint(buffer: Buffer, histogram: boolean): ReceivedPoint {
  const attributes: Record<string, string> = {};
  let value = 0;
  for (const field of fields(buffer)) {
    if (field.number === (histogram ? 9 : 7) && field.bytes) {
      const [key, text] = keyValue(field.bytes);
      attributes[key] = text;
    } else if (!histogram && field.number === 6 && field.fixed) value = Number(field.fixed.readBigInt64LE());
    else if (!histogram && field.number === 4 && field.fixed) value = field.fixed.readDoubleLE();
    else if (histogram && field.number === 4 && field.fixed) value = Number(field.fixed.readBigUInt64LE());
  }
  return { attributes, value };
}

function metric(buffer: Buffer): ReceivedMetric {
  let name = '';
  let unit = '';
  let kind: ReceivedMetric['kind'] = 'other';
  const points: ReceivedPoint[] = [];
  for (const field of fields(buffer)) {
    if (field.number === 1) name = field.bytes!.toString('utf8');
    else if (field.number === 3) unit = field.bytes!.toString('utf8');
    else if (field.number === 5 || field.number === 7 || field.number === 9) {
      kind = field.number === 5 ? 'gauge' : field.number === 7 ? 'sum' : 'histogram';
      for (const inner of fields(field.bytes!)) {
        if (inner.number === 1 && inner.bytes) points.push(dataPoint(inner.bytes, kind === 'histogram'));
      }
    }
  }
  return { name, unit, kind, points };
}

function decodeExport(request: Buffer): ReceivedExport {
  const resource: Record<string, string> = {};
  const scopes: string[] = [];
  const metrics: ReceivedMetric[] = [];
  for (const resourceMetrics of fields(request)) {
    if (resourceMetrics.number !== 1) continue;
    for (const field of fields(resourceMetrics.bytes!)) {
      if (field.number === 1) {
        for (const attribute of fields(field.bytes!)) {
          if (attribute.number !== 1) continue;
          const [key, value] = keyValue(attribute.bytes!);
          resource[key] = value;
        }
      } else if (field.number === 2) {
        for (const scopeField of fields(field.bytes!)) {
          if (scopeField.number === 1) {
            for (const scope of fields(scopeField.bytes!)) if (scope.number === 1) scopes.push(scope.bytes!.toString('utf8'));
          } else if (scopeField.number === 2) metrics.push(metric(scopeField.bytes!));
        }
      }
    }
  }
  return { resource, scopes, metrics };
}
