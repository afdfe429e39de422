/**
 * Connection set-up time through the real gateway, ICE against ICE-less (spec 1.6 §3.9), on the
 * namespace lab: from the client's flow request (the authorization) to the first byte back from a
 * resource through the tunnel.
 *
 * One stack per topology (direct: no NAT; relayed: the client behind a symmetric NAT and direct
 * UDP to the gateway dropped, so every path goes through coturn) with two test clients in the
 * client namespace, one plain (ICE) and one started with `--iceless`. They take turns, so load
 * drifts touch both alike: a client connects, a prober in the client namespace sends a UDP echo
 * datagram to the resource every 2 ms from the moment the flow is requested, and the first echo
 * that comes back ends the sample; the client then disconnects (GOODBYE, the gateway forgets the
 * connection) before the next sample. Relay allocations stay warm between samples, as on a client
 * that has been up for a while. The gateway is the compiled one in dist/ (the stack runs it).
 *
 * Used by bench/setup-time.ts and at the end of bench/throughput.ts. A benchmark: it never fails on
 * a number.
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { labUp, type Lab } from '../../tools/lab/lab.ts';
import { startGatewayStack, type ClientHandle, type GatewayStack } from '../../test/e2e/stack.ts';

const RESOURCE_NET = '10.78.0.0/24';
const ICELESS_TUN = 'tun-fzicl';

export type Mode = 'ice' | 'iceless';
export type Topology = 'direct' | 'relayed';

export interface SetupSample {
  /** Flow request to the first echo back through the tunnel. */
  readonly firstByteMs: number;
  /** Flow request to the client's WireGuard session (the connect command's answer). */
  readonly connectMs: number;
  /** The path the client reported once connected ('direct' / 'relayed'). */
  readonly path: string;
  /** Whether the connection ran the path agent (the portal answered use_iceless). */
  readonly iceless: boolean;
}

export interface SetupFigures {
  readonly topology: Topology;
  readonly samples: Readonly<Record<Mode, SetupSample[]>>;
  /** Load average (1, 5, 15 min) before -> after the topology's runs. */
  readonly load: string;
}

/** Sends a datagram every 2 ms after "go" until the first echo; prints the elapsed ms. */
const PROBER_SCRIPT = `
const dgram = require('node:dgram');
const readline = require('node:readline');
const [host, port] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
socket.on('error', () => {});
let started = 0, timer;
socket.on('message', () => {
  if (timer === undefined) return;
  clearInterval(timer);
  timer = undefined;
  process.stdout.write(JSON.stringify({ first_byte_ms: performance.now() - started }) + '\\n');
});
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'quit') { clearInterval(timer); socket.close(); process.exit(0); }
  if (line.trim() !== 'go') return;
  clearInterval(timer);
  started = performance.now();
  let seq = 0;
  const send = () => socket.send('setup-' + seq++, Number(port), host, () => {});
  send();
  timer = setInterval(send, 2);
});
process.stdout.write('ready\\n');
`;

class Prober {
  private readonly lines: string[] = [];
  private wake: (() => void) | undefined;

  constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.wake?.();
    });
  }

  static async start(lab: Lab, target: string): Promise<Prober> {
    const prober = new Prober(lab.spawn(lab.ns.client, ['node', '-e', PROBER_SCRIPT, target, '7'], { interactive: true }));
    if ((await prober.next(10_000)) !== 'ready') throw new Error('the prober did not start');
    return prober;
  }

  go(): void {
    this.lines.length = 0;
    this.child.stdin!.write('go\n');
  }

  async firstByte(timeoutMs: number): Promise<number> {
    const line = await this.next(timeoutMs);
    if (line === undefined) throw new Error(`no echo through the tunnel within ${timeoutMs} ms`);
    return (JSON.parse(line) as { first_byte_ms: number }).first_byte_ms;
  }

  quit(): void {
    this.child.stdin!.write('quit\n');
  }

  private async next(timeoutMs: number): Promise<string | undefined> {
    const end = Date.now() + timeoutMs;
    while (this.lines.length === 0 && Date.now() < end) {
      await Promise.race([new Promise<void>((resolve) => (this.wake = resolve)), sleep(Math.max(0, end - Date.now()))]);
      this.wake = undefined;
    }
    return this.lines.shift();
  }
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

async function sample(stack: GatewayStack, client: ClientHandle, prober: Prober): Promise<SetupSample> {
  const resourceId = stack.resourceIds['setup']!;
  prober.go();
  const started = performance.now();
  const reply = await client.command({ cmd: 'connect', resource_id: resourceId, timeout_ms: 30_000 }, 40_000);
  const connectMs = performance.now() - started;
  if (reply['ok'] !== true) throw new Error(`connect: ${String(reply['error'])}`);
  const firstByteMs = await prober.firstByte(30_000);
  const disconnected = await client.command({ cmd: 'disconnect', resource_id: resourceId });
  if (disconnected['ok'] !== true) throw new Error(`disconnect: ${String(disconnected['error'])}`);
  return { firstByteMs, connectMs, path: String(reply['path']), iceless: reply['iceless'] === true };
}

/** Runs `runs` samples per mode on one topology, alternating the modes. */
export async function measureSetupTimes(topology: Topology, runs: number, options: { labPrefix?: string; logDir?: string } = {}): Promise<SetupFigures> {
  const lab = labUp({ prefix: options.labPrefix ?? 'fzs', clientNat: topology === 'relayed' ? 'symmetric' : 'none' });
  let stack: GatewayStack | undefined;
  let prober: Prober | undefined;
  try {
    if (topology === 'relayed') {
      // Only the relay (and the portal) reach the gateway: the client's NATed address is dropped.
      lab.exec(lab.ns.gateway, ['nft', '-f', '-'], {
        input: ['table ip fzsetup {', '  chain input {', '    type filter hook input priority filter; policy accept;', `    ip saddr ${natPublicAddress(lab)} drop`, '  }', '}'].join('\n'),
      });
    }
    stack = await startGatewayStack(lab, {
      resources: [{ name: 'setup', type: 'cidr', address: RESOURCE_NET }],
      // A benchmark on a shared machine: waiting longer for the stack costs nothing, failing costs the run.
      startWaitScale: 4,
      ...(options.logDir === undefined ? {} : { logDir: options.logDir }),
    });
    const iceless = await stack.addClient(lab.ns.client, { tun: ICELESS_TUN, args: ['--iceless'] });
    prober = await Prober.start(lab, lab.addresses.resources[0]!);
    const load = loadAverage();
    const samples: Record<Mode, SetupSample[]> = { ice: [], iceless: [] };
    for (let run = 0; run < runs; run++) {
      // Alternate which mode goes first, so neither always follows the other's clean-up.
      const order: Mode[] = run % 2 === 0 ? ['ice', 'iceless'] : ['iceless', 'ice'];
      for (const mode of order) {
        samples[mode].push(await sample(stack, mode === 'ice' ? stack.client : iceless.client, prober));
        await sleep(500);
      }
    }
    return { topology, samples, load: `${load} -> ${loadAverage()}` };
  } finally {
    prober?.quit();
    await stack?.stop().catch(() => undefined);
    lab.down();
  }
}

/** The address the client's traffic leaves its NAT with (the lab's client address when there is no NAT). */
function natPublicAddress(lab: Lab): string {
  return lab.addresses.client.startsWith('192.168') ? '10.77.0.2' : lab.addresses.client;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The side-by-side table: medians and every sample, ICE and ICE-less per topology. */
export function formatSetupTimes(figures: readonly SetupFigures[]): string {
  const lines = ['connection set-up, authorization (flow request) to the first byte back through the gateway, ICE vs ICE-less:'];
  for (const f of figures) {
    for (const mode of ['ice', 'iceless'] as const) {
      const s = f.samples[mode];
      const label = `${f.topology}, ${mode === 'ice' ? 'ICE' : 'ICE-less'}`;
      const paths = [...new Set(s.map((x) => `${x.path}${x.iceless ? ' (path agent)' : ''}`))].join(', ');
      lines.push(
        `  ${label.padEnd(20)} first byte ${median(s.map((x) => x.firstByteMs)).toFixed(0).padStart(5)} ms [${s.map((x) => x.firstByteMs.toFixed(0)).join(' ')}]` +
          `   session ${median(s.map((x) => x.connectMs)).toFixed(0).padStart(5)} ms   path ${paths}`,
      );
    }
    const ratio = median(f.samples.iceless.map((x) => x.firstByteMs)) / median(f.samples.ice.map((x) => x.firstByteMs));
    lines.push(`  ${f.topology}: ICE-less / ICE first-byte median ${ratio.toFixed(2)}; load average ${f.load}`);
  }
  return lines.join('\n');
}
