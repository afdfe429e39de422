/**
 * The load client (issue 18): the real gateway binary (dist/) in the namespace lab, the
 * development portal and coturn as in the e2e suite, and one process in the client namespace
 * running many client-role nodes, each with its own UDP socket (./worker.ts). It connects them
 * all, keeps them idle, then sends a steady packet rate to the resource's UDP echo, and reports the
 * gateway process's RSS and CPU from /proc. Needs root (namespaces), coturn, dnsmasq. Never fails
 * on a figure.
 *
 * Usage: npm run bench:load [-- --clients 2000 --rate 1000 --seconds 30 --concurrency 64 --idle-wait 25]
 *   --rate: packets per second in total, from the clients in turn (0: idle only).
 *   --concurrency: clients connecting at the same time (a pool: the next starts when one is through).
 *   --idle-wait: seconds between the last connection and the idle window (connections go idle after 20 s).
 *   --gateway-node-args=...: extra Node.js options for the gateway, space-separated (e.g. "--cpu-prof
 *     --cpu-prof-dir=/tmp/prof": a CPU profile written when the gateway stops).
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { labUp, type Lab } from '../lab/lab.ts';
import { REPO_ROOT, RELAY_SECRET, startGatewayStack, type GatewayStack } from '../../test/e2e/stack.ts';
import { runWorker } from './worker.ts';

const { values } = parseArgs({
  options: {
    worker: { type: 'boolean', default: false },
    clients: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '64' },
    'idle-wait': { type: 'string', default: '25' },
    'connect-timeout': { type: 'string', default: '60000' },
    portal: { type: 'string' },
    resource: { type: 'string' },
    relay: { type: 'string' },
    'relay-secret': { type: 'string' },
    local: { type: 'string' },
    target: { type: 'string' },
    'gateway-node-args': { type: 'string', default: '' },
  },
});


interface ProcSample {
  readonly at: number;
  readonly cpuSeconds: number;
  /** Of `cpuSeconds`, the kernel's share (system calls: in the lab a send also runs the veth peer's receive path). */
  readonly systemSeconds: number;
  readonly rssBytes: number;
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function sample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { at: performance.now(), cpuSeconds, systemSeconds: Number(fields[12]) / CLOCK_TICKS, rssBytes: Number(rss?.[1] ?? 0) * 1024 };
}

/** CPU seconds of each of the process's threads, summed by thread name (V8's GC helpers share one name). */
function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS);
  }
  return byName;
}

/** Each thread name's share of a core between two `threadCpu` samples `seconds` apart, busiest first. */
function threadShares(before: Map<string, number>, after: Map<string, number>, seconds: number): string {
  return [...after]
    .map(([name, cpu]) => [name, ((cpu - (before.get(name) ?? 0)) / seconds) * 100] as const)
    .filter(([, percent]) => percent >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([name, percent]) => `${name} ${percent.toFixed(2)} %`)
    .join(', ');
}

const cpuPercent = (a: ProcSample, b: ProcSample): number => ((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 100;
const systemPercent = (a: ProcSample, b: ProcSample): number => ((b.systemSeconds - a.systemSeconds) / ((b.at - a.at) / 1000)) * 100;
const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ');

class WorkerHandle {
  private readonly waiting: { name: string; resolve: (event: Record<string, unknown>) => void }[] = [];

  constructor(readonly process: ChildProcess) {
    createInterface({ input: process.stdout! }).on('line', (line) => {
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (event['event'] === 'progress') console.log(`  ... ${(Number(event['ms']) / 1000).toFixed(0)} s: ${String(event['done'])} through, ${String(event['established'])} connected (load ${load()})`);
      const index = this.waiting.findIndex((w) => w.name === event['event']);
      if (index >= 0) this.waiting.splice(index, 1)[0]!.resolve(event);
    });
  }

  next(name: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the load worker sent no ${name} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        name,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event);
        },
      });
    });
  }

  command(command: Record<string, unknown>): void {
    this.process.stdin!.write(`${JSON.stringify(command)}\n`);
  }
}

/** UDP datagrams a namespace received and sent so far (its /proc/net/snmp). */
function udpDatagrams(lab: Lab, ns: string): { received: number; sent: number } {
  try {
    const lines = lab.exec(ns, ['cat', '/proc/net/snmp']).split('\n');
    const at = lines.findIndex((line) => line.startsWith('Udp: InDatagrams'));
    const names = lines[at]!.split(' ');
    const numbers = lines[at + 1]!.split(' ');
    return { received: Number(numbers[names.indexOf('InDatagrams')]), sent: Number(numbers[names.indexOf('OutDatagrams')]) };
  } catch {
    return { received: NaN, sent: NaN };
  }
}

/** Kernel counters of a namespace that say where datagrams or connections were dropped. */
function dropCounters(lab: Lab, ns: string): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    const text = lab.exec(ns, ['cat', '/proc/net/snmp', '/proc/net/netstat']);
    const lines = text.split('\n');
    for (let i = 0; i + 1 < lines.length; i++) {
      const [prefix, ...names] = lines[i]!.split(' ');
      const [prefix2, ...numbers] = lines[i + 1]!.split(' ');
      if (prefix !== prefix2 || numbers.length !== names.length) continue;
      names.forEach((name, at) => {
        const key = `${prefix!.replace(':', '')}.${name}`;
        if (['Udp.InErrors', 'Udp.RcvbufErrors', 'Udp.SndbufErrors', 'Udp.NoPorts', 'TcpExt.ListenOverflows', 'TcpExt.ListenDrops'].includes(key)) out[key] = Number(numbers[at]);
      });
      i++;
    }
  } catch {
    // Counters are a diagnosis, never a reason to fail.
  }
  return Object.fromEntries(Object.entries(out).filter(([, value]) => value > 0));
}

const fixed = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const row = (label: string, measured: string, target = ''): string => `${label.padEnd(46)}${measured.padEnd(34)}${target}`.trimEnd();

async function orchestrate(): Promise<void> {
  const clients = Number(values.clients);
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const idleWait = Number(values['idle-wait']);
  let lab = labUp({ prefix: 'fzld' });
  let stack: GatewayStack | undefined;
  try {
    const target = lab.addresses.resources[0]!;
    // The gateway's flow-log spool outlives a lab (/tmp/<prefix>-flow_logs). A previous run's batches
    // carry ingest tokens of a previous dev portal's key: the new portal rejects them (401), the
    // gateway keeps them and tries all again each minute (6,372 rejected uploads in one run here,
    // ~30 % of a core in the idle window). Each run starts with an empty spool.
    const clearSpool = (): void => rmSync(`/tmp/${lab.prefix}-flow_logs`, { recursive: true, force: true });
    clearSpool();
    // On a loaded machine the dev portal (through tsx) can miss the stack's start-up wait: try again.
    for (let attempt = 1; stack === undefined; attempt++) {
      try {
        stack = await startGatewayStack(lab, {
          resources: [{ name: 'load', type: 'cidr', address: `${target}/32` }],
          startWaitScale: 2,
          gatewayNodeArgs: values['gateway-node-args'].split(' ').filter((arg) => arg !== ''),
        });
      } catch (error) {
        if (attempt === 3) throw error;
        console.log(`lab start-up failed (${error instanceof Error ? error.message : String(error)}); again`);
        lab.down();
        lab = labUp({ prefix: 'fzld' });
        clearSpool();
      }
    }
    const pid = stack.gatewayPid();
    if (pid === undefined) throw new Error('the gateway is not running');
    console.log(`bench:load: ${clients} clients (${values.concurrency} connecting at a time), then ${rate} packets/s in total; ${seconds} s windows; real gateway (dist/), ${os.cpus().length} cores, load ${load()}`);
    const empty = sample(pid);

    const child = lab.spawn(
      lab.ns.client,
      [
        'node', `${REPO_ROOT}dist/bench/load-client.js`, '--worker', '--portal', stack.portal, '--resource', stack.resourceIds['load']!, '--clients', String(clients),
        '--relay', `${lab.addresses.relay}:3478`, '--relay-secret', RELAY_SECRET, '--local', lab.addresses.client, '--target', target,
        '--concurrency', values.concurrency, '--connect-timeout', values['connect-timeout'],
      ],
      { interactive: true, log: `/tmp/${lab.prefix}-load-worker.log` },
    );
    const worker = new WorkerHandle(child);
    const connected = await worker.next('connected', 60 * 60_000);
    const afterSetup = sample(pid);
    const established = Number(connected['established']);
    const connectSeconds = Number(connected['ms']) / 1000;
    console.log(`connected ${established} of ${clients} in ${connectSeconds.toFixed(1)} s (load ${load()})`);
    console.log(`  clients started over (connection failed): ${String(connected['restarts'])} ${JSON.stringify(connected['errors'])}`);
    console.log(`  portal requests tried again: ${JSON.stringify(connected['retried'])}`);
    console.log(`  load worker: ${fixed(Number(connected['cpuSeconds']))} s CPU, event-loop delay p99 ${fixed(Number(connected['loopDelayP99Ms']), 0)} ms, max ${fixed(Number(connected['loopDelayMaxMs']), 0)} ms`);

    // Connections go idle after 20 s without packets.
    await sleep(idleWait * 1000);
    worker.command({ cmd: 'stats' });
    const idleStats = await worker.next('stats', 60_000);
    const idleStart = sample(pid);
    const idleThreadsStart = threadCpu(pid);
    const idleUdpStart = udpDatagrams(lab, lab.ns.gateway);
    await sleep(seconds * 1000);
    const idleEnd = sample(pid);
    const idleThreadsEnd = threadCpu(pid);
    const idleUdpEnd = udpDatagrams(lab, lab.ns.gateway);
    worker.command({ cmd: 'stats' });
    const idleStatsEnd = await worker.next('stats', 60_000);
    console.log(`idle: client connections ${JSON.stringify(idleStatsEnd['states'])}, paths ${JSON.stringify(idleStatsEnd['paths'])}; load worker ${fixed(((Number(idleStatsEnd['cpuSeconds']) - Number(idleStats['cpuSeconds'])) / seconds) * 100)} % of a core, RSS ${mb(Number(idleStatsEnd['rssBytes']))} MB`);

    let busy: { start: ProcSample; end: ProcSample; before: Record<string, unknown>; after: Record<string, unknown> } | undefined;
    let perSecond: Record<string, number>[] = [];
    if (rate > 0) {
      worker.command({ cmd: 'rate', pps: rate });
      await worker.next('rate', 60_000);
      await sleep(3_000);
      worker.command({ cmd: 'stats' });
      const before = await worker.next('stats', 60_000);
      const start = sample(pid);
      await sleep(seconds * 1000);
      const end = sample(pid);
      worker.command({ cmd: 'stats' });
      const after = await worker.next('stats', 60_000);
      worker.command({ cmd: 'rate', pps: 0 });
      await worker.next('rate', 60_000);
      // Echoes of the last packets still on their way.
      await sleep(3_000);
      worker.command({ cmd: 'report' });
      perSecond = (await worker.next('report', 60_000))['seconds'] as Record<string, number>[];
      busy = { start, end, before, after };
    }
    worker.command({ cmd: 'stats' });
    const final = await worker.next('stats', 60_000);
    // Read while every socket is still open (afterwards, late datagrams count as NoPorts).
    const drops = { client: dropCounters(lab, lab.ns.client), gateway: dropCounters(lab, lab.ns.gateway), resources: dropCounters(lab, lab.ns.resources), wan: dropCounters(lab, lab.ns.wan) };
    worker.command({ cmd: 'quit' });
    await worker.next('quit', 10_000).catch(() => undefined);

    if (perSecond.length > 0) {
      console.log('');
      console.log('steady rate, by the second a packet was sent in (the first 3 s are the warm-up before the window):');
      console.log('  second   sent  echoed  lost   rtt p50    p99    max (ms)');
      perSecond.forEach((s, second) => {
        const lost = s['sent']! - s['returned']!;
        console.log(`  ${String(second).padStart(6)} ${String(s['sent']).padStart(6)} ${String(s['returned']).padStart(7)} ${String(lost).padStart(5)}   ${fixed(s['rttP50']!).padStart(6)} ${fixed(s['rttP99']!).padStart(6)} ${fixed(s['rttMax']!).padStart(6)}`);
      });
    }

    const setupCpu = afterSetup.cpuSeconds - empty.cpuSeconds;
    const idleCpu = cpuPercent(idleStart, idleEnd);
    const at2000 = established >= 2_000;
    console.log('');
    console.log(row('figure', 'measured', 'target'));
    console.log(row('clients connected', `${established} of ${clients} in ${connectSeconds.toFixed(1)} s (${fixed(established / connectSeconds)}/s)`, '2,000'));
    console.log(row('gateway RSS, no clients', `${mb(empty.rssBytes)} MB`));
    console.log(row(`gateway RSS, ${established} clients idle`, `${mb(idleEnd.rssBytes)} MB`, `< 300 MB at 2,000: ${at2000 ? (idleEnd.rssBytes < 300 * 1024 * 1024 ? 'met' : 'not met') : 'not measured'}`));
    console.log(row('gateway RSS per client', `${fixed((idleEnd.rssBytes - empty.rssBytes) / Math.max(1, established) / 1024)} KB`));
    console.log(row(`gateway CPU, ${established} clients idle (${seconds} s)`, `${fixed(idleCpu, 2)} % of a core (${fixed(systemPercent(idleStart, idleEnd), 2)} % in the kernel)`, `< 5 %: ${idleCpu < 5 ? 'met' : 'not met'}${at2000 ? '' : ' (fewer than 2,000 clients)'}`));
    // Each client replaces its session every 180 s even when idle: a window shorter than that may miss them.
    const idleSeconds = (idleEnd.at - idleStart.at) / 1000;
    const idleReceived = (idleUdpEnd.received - idleUdpStart.received) / idleSeconds;
    const idleSent = (idleUdpEnd.sent - idleUdpStart.sent) / idleSeconds;
    console.log(row('  gateway datagrams in the idle window', `${fixed(idleReceived)}/s in, ${fixed(idleSent)}/s out (${fixed(((idleEnd.cpuSeconds - idleStart.cpuSeconds) * 1e6) / Math.max(1, (idleReceived + idleSent) * idleSeconds))} us of CPU each)`));
    console.log(row('  gateway CPU by thread, idle', threadShares(idleThreadsStart, idleThreadsEnd, idleSeconds)));
    console.log(row('WireGuard handshakes in the idle window', `${Number(idleStatsEnd['handshakes']) - Number(idleStats['handshakes'])} (every client renews its session each 180 s)`));
    console.log(row('gateway CPU to set up the clients', `${fixed(setupCpu, 2)} s (${fixed((setupCpu / Math.max(1, established)) * 1000, 2)} ms per client)`));
    if (busy !== undefined) {
      const window = (busy.end.at - busy.start.at) / 1000;
      const sent = Number(busy.after['sent']) - Number(busy.before['sent']);
      const received = Number(busy.after['received']) - Number(busy.before['received']);
      const busyCpu = cpuPercent(busy.start, busy.end);
      const allSent = perSecond.reduce((sum, s) => sum + s['sent']!, 0);
      const allReturned = perSecond.reduce((sum, s) => sum + s['returned']!, 0);
      const rtts = perSecond.map((s) => s['rttP50']!).filter(Number.isFinite).sort((a, b) => a - b);
      console.log(row(`steady rate asked`, `${rate} packets/s from ${established} clients in turn`));
      console.log(row(`packets sent / echoed in the ${seconds} s window`, `${sent} / ${received} (${fixed(sent / window, 0)}/s sent, ${fixed(received / window, 0)}/s echoed)`));
      console.log(row('packets lost, whole phase', `${allSent - allReturned} of ${allSent} (${fixed(((allSent - allReturned) / Math.max(1, allSent)) * 100, 2)} %), worst second ${Math.max(0, ...perSecond.map((s) => s['sent']! - s['returned']!))}`));
      console.log(row('round trip, median of the seconds\' medians', `${fixed(rtts[Math.floor(rtts.length / 2)] ?? NaN, 2)} ms (worst p99 ${fixed(Math.max(...perSecond.map((s) => s['rttP99']!).filter(Number.isFinite)), 1)} ms)`));
      console.log(row(`gateway CPU at the steady rate`, `${fixed(busyCpu, 2)} % of a core, ${fixed(systemPercent(busy.start, busy.end), 2)} % in the kernel (${fixed((busyCpu * 10_000) / Math.max(1, sent / window), 1)} us per packet and its echo, with the STUN checks every active client sends)`));
      console.log(row('load worker at the steady rate', `${fixed(((Number(busy.after['cpuSeconds']) - Number(busy.before['cpuSeconds'])) / window) * 100)} % of a core, event-loop delay p99 ${fixed(Number(busy.after['loopDelayP99Ms']), 0)} ms, max ${fixed(Number(busy.after['loopDelayMaxMs']), 0)} ms`));
      console.log(row('packets the late pacer ticks left out', `${String(busy.after['short'])} (whole phase)`));
      console.log(row('WireGuard handshakes in the window', `${Number(busy.after['handshakes']) - Number(busy.before['handshakes'])} (${Number(final['unsealed'])} packets waited for one)`));
    }
    console.log(row('kernel drop counters (non-zero)', JSON.stringify(drops)));
    console.log(`load average (1, 5, 15 min) at the end: ${load()}`);
  } finally {
    await stack?.stop();
    lab.down();
  }
}

if (values.worker) {
  await runWorker({
    portal: values.portal!,
    resourceId: values.resource!,
    clients: Number(values.clients),
    relay: values.relay!,
    relaySecret: values['relay-secret']!,
    local: values.local!,
    target: values.target!,
    concurrency: Number(values.concurrency),
    connectTimeoutMs: Number(values['connect-timeout']),
  });
} else {
  await orchestrate();
}
