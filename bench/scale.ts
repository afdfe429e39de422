/**
 * What a gateway costs per connected client, in-process: the real event loop, policy state and node
 * behind an in-memory socket, N client-role nodes (each its own host and socket) on the simulated
 * network of test/support/fleet.ts, the portal played directly. For N = 10, 100, 1,000, 10,000:
 *   heap     bytes the gateway holds per connected client (idle, one resource): the heap it frees
 *            when it is let go, less what a gateway with no client frees, over N; the same for
 *            off-heap buffers (ArrayBuffer stores, printed apart: the target is about the heap);
 *   idle     gateway CPU per second of (simulated) time with every client idle, in % of one core;
 *   packet   gateway CPU per datagram from a random client (decryption, policy, TUN write), each
 *            client having sent one before (so its session is warm); and the same from 10 of the N
 *            clients only (a working set that fits the CPU caches: the difference is memory latency);
 *            and the same from random clients in socket reads of 32 (as a loaded gateway reads);
 *   setup    gateway CPU per client while N clients are authorized at once and connect (a burst);
 *   1k res   gateway CPU to authorize 1,000 resources for one client, with the N others connected.
 * Gateway CPU is the main thread's CPU time (process.threadCpuUsage) inside the gateway's calls,
 * without the clients' work. Each figure is min / median / max of the runs; then the ratio of the
 * largest N to the smallest (medians), and the issue's targets beside. A first run of the smallest N
 * warms the JIT and is not counted. Never fails.
 * Usage: npm run bench:scale [-- --sizes 10,100,1000,10000 --runs 3 --packets 100000 --profile DIR]
 */
import os from 'node:os';
import v8 from 'node:v8';
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { configureLogging, LogFilter } from '../src/log/index.ts';
import { Fleet } from '../test/support/fleet.ts';
import { dataPathMode, transportCipherFor } from '../src/runtime/data-path.ts';
import { ipv4UdpPacket } from '../test/snownet/harness.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10,100,1000,10000' },
    runs: { type: 'string', default: '3' },
    packets: { type: 'string', default: '100000' },
    'idle-seconds': { type: 'string', default: '60' },
    profile: { type: 'string' },
  },
});
const SIZES = values.sizes.split(',').map(Number);
const RUNS = Number(values.runs);
const PACKETS = Number(values.packets);
const IDLE_SECONDS = Number(values['idle-seconds']);
const RESOURCES = 1_000;
/** Datagrams per socket read in the batched per-packet figure (a loaded gateway's reads hold up to 64). */
const READ = 32;
/** Where to write a CPU profile of each phase of the last run of the largest N (for finding what costs). */
const PROFILE_DIR = values.profile;

const gc = globalThis.gc;
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:scale does)');

configureLogging({ filter: LogFilter.parse('off') });

/** Garbage-collection pauses inside the timed per-packet loops (ms), to say how much of them they took. */
let gcInTimedLoops = 0;

interface Figures {
  heapBytesPerClient: number;
  externalBytesPerClient: number;
  idleCpuPercent: number;
  packetMicros: number;
  packetFewMicros: number;
  packetReadMicros: number;
  setupMillisPerClient: number;
  resourcesMillis: number;
}

const METRICS: readonly { key: keyof Figures; label: string; unit: string; digits: number; target: (ratio: number, byN: Map<number, number>) => string }[] = [
  { key: 'heapBytesPerClient', label: 'heap per client', unit: 'B', digits: 0, target: (_r, byN) => `<= 10,240 B at N=10,000: ${met(byN.get(10_000), (v) => v <= 10_240)}` },
  { key: 'externalBytesPerClient', label: 'off-heap buffers per client', unit: 'B', digits: 0, target: () => '(ArrayBuffers; not in the heap target)' },
  { key: 'idleCpuPercent', label: 'idle CPU', unit: '% core', digits: 3, target: (_r, byN) => `< 5 % with 10,000 idle: ${met(byN.get(10_000), (v) => v < 5)}` },
  { key: 'packetMicros', label: 'per packet', unit: 'us', digits: 2, target: (ratio) => `N=10,000 within 1.5x of N=10: ${met(ratio, (r) => r <= 1.5)}` },
  {
    key: 'packetFewMicros',
    label: 'per packet, 10 hot clients',
    unit: 'us',
    digits: 2,
    target: () => '(10 of the N: the same code on a working set that fits the caches)',
  },
  {
    key: 'packetReadMicros',
    label: `per packet, reads of ${READ}`,
    unit: 'us',
    digits: 2,
    target: () => `(random clients, ${READ} datagrams a socket read, as under load)`,
  },
  {
    key: 'setupMillisPerClient',
    label: 'setup per client (burst)',
    unit: 'ms',
    digits: 3,
    target: (_r, byN) => `burst of 1,000 < 5 s in total: ${byN.get(1_000) === undefined ? 'not measured' : `${((byN.get(1_000)! * 1_000) / 1_000).toFixed(2)} s, ${byN.get(1_000)! * 1_000 < 5_000 ? 'met' : 'not met'}`}`,
  },
  { key: 'resourcesMillis', label: '1,000 resources, one client', unit: 'ms', digits: 1, target: (_r, byN) => `< 100 ms: ${met(byN.get(SIZES[SIZES.length - 1]!), (v) => v < 100)}` },
];

function met(value: number | undefined, ok: (v: number) => boolean): string {
  if (value === undefined) return 'not measured';
  return ok(value) ? 'met' : 'not met';
}

function threadMicros(): number {
  const usage = process.threadCpuUsage();
  return usage.user + usage.system;
}

/**
 * The cost of one read of the thread's CPU clock (a system call, about 1.5 us here): the fleet's
 * meter reads it twice around every gateway input, and each pair of reads adds about one read to
 * what it measures, which at 10,000 idle clients is more than the gateway's own work.
 */
function clockReadMicros(): number {
  // Measured in the thread's own CPU time (what the meter adds to), the least of five rounds: wall
  // time would count other processes' turns on a busy machine.
  let least = Infinity;
  for (let round = 0; round < 5; round++) {
    const reads = 20_000;
    const start = threadMicros();
    for (let i = 0; i < reads; i++) threadMicros();
    least = Math.min(least, (threadMicros() - start) / reads);
  }
  return least;
}
const CLOCK_READ_MICROS = clockReadMicros();

/** The gateway's CPU the fleet metered so far, less the meter's own clock reads. */
function gatewayMicros(fleet: Fleet): number {
  return fleet.gatewayCpuMicros - fleet.meterReadPairs * CLOCK_READ_MICROS;
}

interface Memory {
  heap: number;
  external: number;
}

/** JS heap and off-heap buffers in use, after the current job ends (its microtasks may still hold objects). */
async function memoryUsed(): Promise<Memory> {
  await new Promise((resolve) => setTimeout(resolve, 1));
  for (let i = 0; i < 3; i++) gc!();
  const stats = v8.getHeapStatistics();
  return { heap: stats.used_heap_size, external: stats.external_memory };
}

const minus = (a: Memory, b: Memory): Memory => ({ heap: a.heap - b.heap, external: a.external - b.external });

/** The memory a gateway with its clients' connections holds, measured by letting go of it. */
async function gatewayMemory(fleet: Fleet): Promise<Memory> {
  const before = await memoryUsed();
  fleet.dropGateway();
  return minus(before, await memoryUsed());
}

async function emptyGatewayMemory(): Promise<Memory> {
  const fleet = new Fleet({ clients: 0, gateway: 'loop', record: false, transportCipher: transportCipherFor(dataPathMode()) });
  fleet.net.runUntil(1_000);
  return gatewayMemory(fleet);
}

async function measure(n: number, seed: number, profile: boolean): Promise<Figures> {
  const phase = <T>(name: string, work: () => T): Promise<T> => (profile ? profiled(`N${n}-${name}`, work) : Promise.resolve(work()));
  const base = await emptyGatewayMemory();
  const fleet = new Fleet({ clients: n, gateway: 'loop', seed, record: false, transportCipher: transportCipherFor(dataPathMode()) });
  fleet.meterGateway = true;

  const setupStart = gatewayMicros(fleet);
  if (!(await phase('setup', () => fleet.connectAll(120_000)))) throw new Error(`N=${n}: only ${fleet.connectedCount()} clients connected`);
  const setupMillisPerClient = (gatewayMicros(fleet) - setupStart) / 1_000 / n;

  // Idle after 20 s without packets; then the gateway's CPU over IDLE_SECONDS of simulated time.
  fleet.net.runUntil(fleet.net.now + 25_000);
  const idleStart = gatewayMicros(fleet);
  await phase('idle', () => fleet.net.runUntil(fleet.net.now + IDLE_SECONDS * 1_000));
  const idleCpuPercent = ((gatewayMicros(fleet) - idleStart) / (IDLE_SECONDS * 1e6)) * 100;

  const packetMicros = await phase('packet', () => perPacket(fleet, seed, fleet.clients.length));
  const packetFewMicros = perPacket(fleet, seed + 1, Math.min(10, fleet.clients.length));
  const packetReadMicros = perPacket(fleet, seed + 2, fleet.clients.length, READ);
  // Heap of the gateway as it is now (sessions warm, one resource each); the drop comes last.
  const withClients = await memoryUsed();

  const resourcesMillis = await phase('resources', () => authorizeResources(fleet));
  const afterResources = await memoryUsed();
  const held = minus(minus(await gatewayMemory(fleet), minus(afterResources, withClients)), base);
  return { heapBytesPerClient: held.heap / n, externalBytesPerClient: held.external / n, idleCpuPercent, packetMicros, packetFewMicros, packetReadMicros, setupMillisPerClient, resourcesMillis };
}

/** Runs `work` under the V8 sampling profiler and writes `<PROFILE_DIR>/<name>.cpuprofile` (open it in Chrome's DevTools). */
async function profiled<T>(name: string, work: () => T): Promise<T> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  const result = work();
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  writeFileSync(`${PROFILE_DIR}/${name}.cpuprofile`, JSON.stringify(profile));
  return result;
}

/**
 * One datagram from each client and PACKETS from random ones (untimed), then PACKETS from clients
 * picked at random among the first `among`, timed together: one datagram a socket read, or `read`
 * a read (views of one buffer, as the runtime's receive ring gives them).
 */
function perPacket(fleet: Fleet, seed: number, among: number, read = 1): number {
  fleet.meterGateway = false;
  const payload = new Uint8Array(1_000).fill(0x5a);
  const sealed = (index: number): { from: { address: string; port: number; family: 4 }; payload: Uint8Array } => {
    const client = fleet.client(index);
    const transmit = client.agent.seal(ipv4UdpPacket(client.tunV4, '10.0.0.1', payload), fleet.net.now);
    if (transmit === undefined) throw new Error(`client ${index} has no session`);
    return { from: { address: client.ip, port: 52625, family: 4 }, payload: transmit.payload };
  };
  for (let i = 0; i < fleet.clients.length; i++) {
    const d = sealed(i);
    fleet.deliverToGateway(d.from, d.payload);
  }
  let state = seed >>> 0 || 1;
  const random = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  // As many again untimed first, so that the code is optimized and the caches hold what they will.
  for (let i = 0; i < PACKETS; i++) {
    const d = sealed(Math.floor(random() * among));
    fleet.deliverToGateway(d.from, d.payload);
  }
  const datagrams = Array.from({ length: PACKETS }, () => sealed(Math.floor(random() * among)));
  const reads: (typeof datagrams)[] = [];
  if (read > 1) {
    for (let i = 0; i < PACKETS; i += read) {
      const group = datagrams.slice(i, i + read);
      const buffer = new Uint8Array(group.reduce((sum, d) => sum + d.payload.length, 0));
      let at = 0;
      reads.push(
        group.map((d) => {
          buffer.set(d.payload, at);
          at += d.payload.length;
          return { from: d.from, payload: buffer.subarray(at - d.payload.length, at) };
        }),
      );
    }
  }
  const tunBefore = fleet.gatewayTunWrites();
  // The clients' sealing above allocated ~1 KB a packet into a heap that holds N client nodes: the
  // collection it starts belongs to the bench, not to the gateway's packets, so it ends here.
  gc!();
  const gcProfiler = new v8.GCProfiler();
  gcProfiler.start();
  const start = threadMicros();
  if (read > 1) for (const group of reads) fleet.deliverReadToGateway(group);
  else for (const d of datagrams) fleet.deliverToGateway(d.from, d.payload);
  const micros = threadMicros() - start;
  for (const event of gcProfiler.stop()?.statistics ?? []) gcInTimedLoops += event.cost / 1_000;
  const written = fleet.gatewayTunWrites() - tunBefore;
  if (written !== PACKETS) throw new Error(`${written} of ${PACKETS} packets reached the TUN device`);
  // The memory socket keeps its last read, here views of a shared buffer: a single datagram lets it go,
  // so the heap figures do not count the bench's buffer as the gateway's.
  if (read > 1) {
    const single = sealed(0);
    fleet.deliverToGateway(single.from, single.payload);
  }
  fleet.net.wake('gateway');
  fleet.meterGateway = true;
  return micros / PACKETS;
}

function authorizeResources(fleet: Fleet): number {
  const client = fleet.client(0);
  const start = gatewayMicros(fleet);
  for (let r = 0; r < RESOURCES; r++) fleet.authorizeResource(client, { id: `5ca1ab1e-0000-4000-8000-${r.toString(16).padStart(12, '0')}`, address: `172.${16 + (r >> 8)}.${r & 0xff}.0/24` });
  return (gatewayMicros(fleet) - start) / 1_000;
}

function fmt(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(`bench:scale: N = ${SIZES.join(', ')}; ${RUNS} runs; ${PACKETS} packets per run; idle over ${IDLE_SECONDS} s; CPU clock read ${CLOCK_READ_MICROS.toFixed(2)} us (subtracted per metered input); transport cipher ${transportCipherFor(dataPathMode()).kind}; ${os.cpus().length} cores; node ${process.version}; load ${load()}`);
// One run of the smallest N first, not counted: otherwise the first N's figures are taken while the
// JIT is still optimizing (per packet at N=10 measured 4.7, 4.1 and 2.3 us in its first three runs),
// which flatters every ratio to it.
{
  const started = performance.now();
  const warm = await measure(SIZES[0]!, 1, false);
  console.log(`  warm-up, not counted: N=${SIZES[0]} per packet ${warm.packetMicros.toFixed(2)} us (${((performance.now() - started) / 1_000).toFixed(1)} s)`);
}
const results = new Map<number, Figures[]>();
for (const n of SIZES) {
  const runs: Figures[] = [];
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    runs.push(await measure(n, 1 + run, PROFILE_DIR !== undefined && n === SIZES[SIZES.length - 1] && run === RUNS - 1));
    console.log(`  N=${n} run ${run + 1}: ${JSON.stringify(runs[runs.length - 1], (_k, v: unknown) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v))} (${((performance.now() - started) / 1_000).toFixed(1)} s, load ${load()})`);
  }
  results.set(n, runs);
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};
const smallest = SIZES[0]!;
const largest = SIZES[SIZES.length - 1]!;
console.log('');
console.log(`figure (min / median / max)`.padEnd(34) + SIZES.map((n) => `N=${n.toLocaleString('en-US')}`.padEnd(26)).join('') + `ratio ${largest}/${smallest}   target`);
for (const metric of METRICS) {
  const byN = new Map<number, number>();
  const cells = SIZES.map((n) => {
    const values = results.get(n)!.map((f) => f[metric.key]);
    byN.set(n, median(values));
    return `${fmt(Math.min(...values), metric.digits)} / ${fmt(median(values), metric.digits)} / ${fmt(Math.max(...values), metric.digits)}`.padEnd(26);
  });
  const ratio = byN.get(largest)! / byN.get(smallest)!;
  // Idle CPU at N=10 is the meter's noise around zero (its clock reads are subtracted): no ratio to it.
  const shown = byN.get(smallest)! > 0 ? `${ratio.toFixed(2)}x` : '-';
  console.log(`${metric.label} (${metric.unit})`.padEnd(34) + cells.join('') + shown.padEnd(14) + metric.target(ratio, byN));
}
console.log(`load average (1, 5, 15 min) at the end: ${load()}; garbage collection inside the timed per-packet loops: ${gcInTimedLoops.toFixed(1)} ms in all`);
