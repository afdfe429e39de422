/**
 * Connection floods on a TCP service: `count` connections opened and then held idle (`idle`),
 * held with a DNS-over-TCP length prefix that promises bytes never sent (`partial`), or fed
 * back-to-back DNS queries without reading a single answer (`stream`, `streamBytes` in total).
 * Reports how many connected, how many the server closed while held, and when.
 *
 * Standalone (for services outside the tunnel, e.g. the health port from the LAN side):
 *   node --import tsx tools/attacker/idle-connections.ts <host> <port> <count> <hold-ms> [idle|partial|stream]
 */
import { connect, type Socket } from 'node:net';
import { buildQuery } from '../../src/runtime/dns-forwarder.ts';

export type FloodMode = 'idle' | 'partial' | 'stream';

export interface ConnectionFloodOptions {
  readonly host: string;
  readonly port: number;
  readonly count: number;
  readonly holdMs: number;
  readonly mode?: FloodMode;
  /** Total bytes of queries written per connection in `stream` mode. */
  readonly streamBytes?: number;
  readonly connectTimeoutMs?: number;
}

export interface ConnectionFloodResult {
  readonly connected: number;
  readonly failed: number;
  /** Connections the server closed while we held them. */
  readonly closedByPeer: number;
  /** Milliseconds from the first connect to each close by the server (sorted). */
  readonly closeTimesMs: { readonly min: number | null; readonly median: number | null; readonly max: number | null };
  readonly stillOpen: number;
  /** Bytes the server sent back (answers in `stream` mode). */
  readonly bytesReceived: number;
  readonly bytesWritten: number;
}

export async function connectionFlood(options: ConnectionFloodOptions): Promise<ConnectionFloodResult> {
  const mode = options.mode ?? 'idle';
  const started = performance.now();
  const sockets: Socket[] = [];
  const closeTimes: number[] = [];
  let connected = 0;
  let failed = 0;
  let bytesReceived = 0;
  let bytesWritten = 0;
  let holding = true;
  const open = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = connect({ host: options.host, port: options.port });
      sockets.push(socket);
      let settled = false;
      let wasConnected = false;
      const timer = setTimeout(() => settle(false), options.connectTimeoutMs ?? 3_000);
      const settle = (ok: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (ok) connected++;
        else {
          failed++;
          socket.destroy();
        }
        resolve();
      };
      socket.on('connect', () => {
        wasConnected = true;
        settle(true);
        if (mode === 'partial') socket.write(Buffer.from([0xff, 0xff, 0, 1, 2, 3]));
        if (mode === 'stream') bytesWritten += streamQueries(socket, options.streamBytes ?? 1 << 20);
      });
      socket.on('data', (chunk: Buffer) => {
        bytesReceived += chunk.length;
      });
      socket.on('error', () => settle(false));
      socket.on('close', () => {
        if (wasConnected && holding) closeTimes.push(performance.now() - started);
        settle(false);
      });
    });
  for (let i = 0; i < options.count; i += 50) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(options.count, i + 50); j++) batch.push(open());
    await Promise.all(batch);
  }
  await new Promise((resolve) => setTimeout(resolve, options.holdMs));
  holding = false;
  const stillOpen = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  for (const socket of sockets) socket.destroy();
  closeTimes.sort((a, b) => a - b);
  const pick = (q: number): number | null => (closeTimes.length === 0 ? null : Math.round(closeTimes[Math.min(closeTimes.length - 1, Math.floor(q * closeTimes.length))]!));
  return {
    connected,
    failed,
    closedByPeer: closeTimes.length,
    closeTimesMs: { min: pick(0), median: pick(0.5), max: pick(1) },
    stillOpen,
    bytesReceived,
    bytesWritten,
  };
}

function streamQueries(socket: Socket, total: number): number {
  const query = buildQuery(1, 'app.lab.test');
  const frame = Buffer.alloc(2 + query.length);
  frame.writeUInt16BE(query.length, 0);
  frame.set(query, 2);
  const count = Math.ceil(total / frame.length);
  const chunk = Buffer.concat(Array.from({ length: Math.min(count, 1024) }, () => frame));
  let written = 0;
  for (let sent = 0; sent < count; sent += 1024) {
    socket.write(chunk);
    written += chunk.length;
  }
  return written;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [host, port, count, hold, mode] = process.argv.slice(2);
  connectionFlood({ host: host!, port: Number(port), count: Number(count), holdMs: Number(hold), mode: (mode ?? 'idle') as FloodMode }).then(
    (result) => process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`),
    (error: unknown) => process.stdout.write(`${JSON.stringify({ ok: false, error: String(error) })}\n`),
  );
}
