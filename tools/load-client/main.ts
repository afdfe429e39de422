/**
 * The load client (issue 18): the real gateway binary (dist/) in the namespace lab, the
 * development portal and coturn as in the e2e suite, and one process in the client namespace
 * running many client-role nodes, each with its own UDP socket (./worker.ts). It connects them
 * all, keeps them idle, then sends a steady packet rate to the resource's UDP echo, and reports the
 * gateway process's RSS and CPU from /proc. Needs root (namespaces), coturn, dnsmasq. Never fails
 * on a figure.
 *
 * Usage: npm run bench:load [-- --clients 2000 --rate 1000 --seconds 30 --concurrency 100]
 *   --rate: packets per second in total, from the clients in turn (0: idle only).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { labUp } from '../lab/lab.ts';
import { REPO_ROOT, RELAY_SECRET, startGatewayStack, type GatewayStack } from '../../test/e2e/stack.ts';
import { runWorker } from './worker.ts';

const { values } = parseArgs({
  options: {
    worker: { type: 'boolean', default: false },
    clients: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '100' },
    'connect-timeout': { type: 'string', default: '60000' },
    portal: { type: 'string' },
    resource: { type: 'string' },
    relay: { type: 'string' },
    'relay-secret': { type: 'string' },
    local: { type: 'string' },
    target: { type: 'string' },
  },
});


interface ProcSample {
  readonly at: number;
  readonly cpuSeconds: number;
  readonly rssBytes: number;
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function sample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { at: performance.now(), cpuSeconds, rssBytes: Number(rss?.[1] ?? 0) * 1024 };
}

const cpuPercent = (a: ProcSample, b: ProcSample): number => ((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 100;
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
      if (event['event'] === 'progress') console.log(`  ... ${String(event['done'])} tried, ${String(event['established'])} connected (load ${load()})`);
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

async function orchestrate(): Promise<void> {
  const clients = Number(values.clients);
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  let lab = labUp({ prefix: 'fzld' });
  let stack: GatewayStack | undefined;
  try {
    const target = lab.addresses.resources[0]!;
    // On a loaded machine the dev portal (through tsx) can miss the stack's 15 s start-up wait: try again.
    for (let attempt = 1; stack === undefined; attempt++) {
      try {
        stack = await startGatewayStack(lab, { resources: [{ name: 'load', type: 'cidr', address: `${target}/32` }] });
      } catch (error) {
        if (attempt === 3) throw error;
        console.log(`lab start-up failed (${error instanceof Error ? error.message : String(error)}); again`);
        lab.down();
        lab = labUp({ prefix: 'fzld' });
      }
    }
    const pid = stack.gatewayPid();
    if (pid === undefined) throw new Error('the gateway is not running');
    console.log(`bench:load: ${clients} clients, then ${rate} packets/s in total, ${seconds} s windows; real gateway (dist/), ${os.cpus().length} cores, load ${load()}`);
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
    const connected = await worker.next('connected', 30 * 60_000);
    const afterSetup = sample(pid);
    const established = Number(connected['established']);
    console.log(`connected ${established} of ${clients} in ${(Number(connected['ms']) / 1000).toFixed(1)} s (${String(connected['retries'])} attempts again); failed attempts: ${JSON.stringify(connected['errors'])}`);

    // Connections go idle after 20 s without packets.
    await sleep(25_000);
    const idleStart = sample(pid);
    await sleep(seconds * 1000);
    const idleEnd = sample(pid);

    let busy: { start: ProcSample; end: ProcSample; sent: number; received: number } | undefined;
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
      busy = { start, end, sent: Number(after['sent']) - Number(before['sent']), received: Number(after['received']) - Number(before['received']) };
    }
    worker.command({ cmd: 'quit' });
    await worker.next('quit', 10_000).catch(() => undefined);

    const setupCpu = afterSetup.cpuSeconds - empty.cpuSeconds;
    const idleCpu = cpuPercent(idleStart, idleEnd);
    console.log('');
    console.log(`figure                                   measured                 target`);
    console.log(`gateway RSS, no clients                  ${mb(empty.rssBytes).padStart(8)} MB`);
    console.log(`gateway RSS, ${established} clients connected`.padEnd(41) + `${mb(idleEnd.rssBytes).padStart(8)} MB              < 300 MB at 2,000: ${established >= 2_000 ? (idleEnd.rssBytes < 300 * 1024 * 1024 ? 'met' : 'not met') : 'not measured'}`);
    console.log(`RSS per client                           ${((idleEnd.rssBytes - empty.rssBytes) / Math.max(1, established) / 1024).toFixed(1).padStart(8)} KB`);
    console.log(`gateway CPU, all idle (${seconds} s)`.padEnd(41) + `${idleCpu.toFixed(2).padStart(8)} % of a core     < 5 %: ${idleCpu < 5 ? 'met' : 'not met'}`);
    console.log(`gateway CPU to set up all clients        ${setupCpu.toFixed(2).padStart(8)} s (${((setupCpu / Math.max(1, established)) * 1000).toFixed(2)} ms per client)`);
    if (busy !== undefined) {
      const pps = busy.sent / ((busy.end.at - busy.start.at) / 1000);
      console.log(`gateway CPU at ${rate} packets/s`.padEnd(41) + `${cpuPercent(busy.start, busy.end).toFixed(2).padStart(8)} % of a core (${((cpuPercent(busy.start, busy.end) * 10_000) / rate).toFixed(1)} us per packet and its echo)`);
      console.log(`packets sent / echoes received           ${busy.sent} / ${busy.received} (~${pps.toFixed(0)}/s sent)`);
    }
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
