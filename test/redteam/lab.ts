/**
 * The red-team lab: the namespace lab and gateway stack of the e2e suite, plus
 * - an attacker namespace on the wan bridge, running tools/attacker (an authorized client);
 * - the stack's own client as the victim, with a steady UDP echo loop to its resource;
 * - IPv6 on the gateway's LAN side and no masquerade there, so the resources see each client's
 *   tunnel address and what reaches them can be told apart by source;
 * - nft counters in the resources namespace (victim, granted to the attacker, the gateway's own DNS,
 *   everything else) and in the gateway namespace (packets from the tunnel delivered to the host
 *   itself, other than DNS :53535 and ICMP echo; client-to-client hairpins);
 * - a TCP+UDP service on the gateway host (port 2222) that no client may reach;
 * - a sampler of the gateway process's CPU time and RSS.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { labUp, type Lab } from '../../tools/lab/lab.ts';
import type { AttackTargets } from '../../tools/attacker/packets.ts';
import { REPO_ROOT, startGatewayStack, waitFor, type ClientHandle, type GatewayStack } from '../e2e/stack.ts';

export const WEB = '10.78.0.2';
export const DNS_REAL = '10.78.0.3';
export const ECHO = '10.78.0.4';
export const WEB6 = 'fd00:78::2';
export const LAN6_OTHER = 'fd00:78::3';
export const GATEWAY_LAN6 = 'fd00:78::1';
export const HOST_SERVICE_PORT = 2222;
const ATTACKER_ADDRESS = '10.77.0.6';
/**
 * How long the victim waits for an echo before it counts the request as lost: long enough that a
 * request queued behind a flood the gateway is still reading (on a busy machine, for many seconds)
 * is answered late, not lost; only one the gateway dropped stays unanswered.
 */
export const VICTIM_TIMEOUT_MS = 30_000;
/** An echo answered later than this counts as late (figures only). */
export const VICTIM_LATE_MS = 2_000;
const CLK_TCK = 100;

type Json = Record<string, unknown>;

export interface RedteamLab {
  readonly lab: Lab;
  readonly stack: GatewayStack;
  readonly victim: ClientHandle;
  readonly attacker: ClientHandle;
  readonly attackerNs: string;
  readonly targets: AttackTargets;
  readonly gatewayPublicKey: string;
  readonly gatewayId: string;
  readonly resourceIds: Readonly<Record<string, string>>;
  readonly victimLoop: RequestLoop;
  readonly monitor: GatewayMonitor;
  counters(): Counters;
  /** The kernel's UDP counters and receive queues in the gateway's namespace. */
  udpState(): UdpState;
  /** The gateway's UDP receive buffer (what SO_RCVBUF gave it), bytes. */
  readonly receiveBufferBytes: number;
  /** Reconnects the attacker when its session to the gateway is gone (an earlier case may have cost it). */
  ensureAttackerConnected(): Promise<void>;
  healthy(): boolean;
  close(): Promise<void>;
}

export interface Counters {
  readonly victim: number;
  readonly granted: number;
  /** The gateway's own traffic to the LAN: its DNS queries, its health server's answers. */
  readonly gatewayOwn: number;
  readonly ungranted: number;
  readonly host: number;
  readonly hairpin: number;
  /** What the ungranted packets were: `saddr . daddr . protocol`. */
  readonly ungrantedSeen: readonly string[];
}

export interface UdpState {
  /** Datagrams delivered to the gateway namespace's UDP sockets (IPv4 and IPv6). */
  readonly received: number;
  /** Datagrams the kernel dropped because a socket's receive buffer was full. */
  readonly bufferDrops: number;
  /** Bytes waiting in the receive queues of the namespace's UDP sockets. */
  readonly queuedBytes: number;
}

/**
 * Starts the lab, once more if the first start fails: on a machine shared with other work the
 * stack's start-up waits (the dev portal's first compile, the gateway's join) can run out, and
 * the suite measures attacks, not start-up time.
 */
export async function startRedteamLab(prefix: string, logDir: string): Promise<RedteamLab> {
  try {
    return await startOnce(prefix, logDir);
  } catch (error) {
    console.log(`# the red-team lab did not start (${String(error)}); starting it once more`);
    return await startOnce(prefix, logDir);
  }
}

async function startOnce(prefix: string, logDir: string): Promise<RedteamLab> {
  const lab = labUp({ prefix });
  const attackerNs = `${lab.prefix}-atk`;
  const cleanups: (() => void)[] = [() => removeNamespace(lab.prefix, attackerNs)];
  try {
    prepareLan(lab);
    addBridgeHost(lab, attackerNs, ATTACKER_ADDRESS);
    lab.spawn(lab.ns.gateway, ['node', '--import', 'tsx', `${REPO_ROOT}tools/test-client/resource-server.ts`, '--listen', '::', '--udp-port', String(HOST_SERVICE_PORT), '--http-port', String(HOST_SERVICE_PORT)], {
      log: `${logDir}/${lab.prefix}-host-service.log`,
    });

    const stack = await startGatewayStack(lab, {
      logDir,
      resources: [
        { name: 'web', type: 'cidr', address: `${WEB}/32`, filters: [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }] },
        { name: 'web6', type: 'cidr', address: `${WEB6}/128`, filters: [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }] },
        { name: 'app', type: 'dns', address: '*.lab.test', filters: [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }, { protocol: 'icmp' }] },
        { name: 'echo', type: 'cidr', address: `${ECHO}/32`, filters: [{ protocol: 'udp', port_range_start: 7, port_range_end: 7 }] },
      ],
      // Every name under lab.test resolves (so each AssignedIps of a flood costs a resolution and NAT state).
      dnsNames: { 'lab.test': DNS_REAL },
    });
    const victim = stack.client;
    const victimIps = await victim.waitForEvent('ready');
    const echoGrant = await victim.command({ cmd: 'connect', resource_id: stack.resourceIds['echo'] }, 45_000);
    if (echoGrant['ok'] !== true) throw new Error(`victim connect: ${JSON.stringify(echoGrant)}`);

    writeFileSync(`/etc/netns/${attackerNs}/hosts`, '127.0.0.1 localhost\n');
    const extra = await stack.addClient(attackerNs, { tun: 'tun-fzatk', program: 'tools/attacker/main.ts' });
    const attacker = extra.client;
    const attackerIps = await attacker.waitForEvent('ready');
    const web = await connectOrThrow(attacker, stack.resourceIds['web']!);
    await connectOrThrow(attacker, stack.resourceIds['web6']!);
    const app = await connectOrThrow(attacker, stack.resourceIds['app']!, { domain: 'app.lab.test' });
    const gateway = { ipv4: String(web['gateway_ipv4']), ipv6: String(web['gateway_ipv6']) };
    // Kernel routes to the gateway's own tunnel addresses, for TCP floods on its DNS forwarder.
    await connectOrThrow(attacker, stack.resourceIds['web']!, { routes: [gateway.ipv4, gateway.ipv6] });
    const proxy4 = (app['proxy_ips'] as string[]).find((ip) => !ip.includes(':'))!;

    quietAttackerKernel(lab, attackerNs);
    installCounters(lab, { victim4: String(victimIps['ipv4']), attacker4: String(attackerIps['ipv4']), attacker6: String(attackerIps['ipv6']) });

    const targets: AttackTargets = {
      self: { ipv4: String(attackerIps['ipv4']), ipv6: String(attackerIps['ipv6']) },
      victim: { ipv4: String(victimIps['ipv4']), ipv6: String(victimIps['ipv6']) },
      gateway,
      granted: [
        { address: WEB, protocol: 'tcp', port: 80 },
        { address: WEB6, protocol: 'tcp', port: 80 },
        { address: proxy4, protocol: 'tcp', port: 80 },
        { address: proxy4, protocol: 'icmp' },
      ],
      ungranted: [ECHO, DNS_REAL, lab.addresses.gatewayLan, LAN6_OTHER, GATEWAY_LAN6, lab.addresses.portal, lab.addresses.relay],
      dnsResource: { id: stack.resourceIds['app']!, domain: 'app.lab.test' },
      otherResourceId: stack.resourceIds['echo']!,
      hostServicePort: HOST_SERVICE_PORT,
    };

    const monitor = new GatewayMonitor(findGatewayPid(lab));
    const victimLoop = new RequestLoop(lab.spawn(lab.ns.client, ['node', '--import', 'tsx', `${REPO_ROOT}tools/attacker/request-loop.ts`, ECHO, '7', '--interval-ms', '50', '--timeout-ms', String(VICTIM_TIMEOUT_MS)], { interactive: true, log: `${logDir}/${lab.prefix}-victim-loop.log` }), 50);
    await waitFor(() => victimLoop.results.some((r) => r.ok), 10_000, 'the victim loop to get its first echo');

    /** Whether the attacker's tunnel carries a ping to the gateway's tunnel address (two tries). */
    const tunnelWorks = (): boolean => {
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          lab.exec(attackerNs, ['ping', '-c', '1', '-W', '1', gateway.ipv4]);
          return true;
        } catch {
          // Next attempt.
        }
      }
      return false;
    };
    const reconnect = async (): Promise<void> => {
      const state = await attacker.command({ cmd: 'state' });
      const connections = (state['connections'] as { established: boolean }[] | undefined) ?? [];
      // The client's own view lags: a connection the gateway dropped (a goodbye among the hostile control
      // payloads ends it) still looks established until the client's ICE gives up on it, about 20 s later.
      if (connections.length > 0 && connections.every((c) => c.established) && tunnelWorks()) return;
      await attacker.command({ cmd: 'drop_connections' });
      await connectOrThrow(attacker, stack.resourceIds['web']!, { routes: [gateway.ipv4, gateway.ipv6] });
      await connectOrThrow(attacker, stack.resourceIds['app']!, { domain: 'app.lab.test' });
      await waitFor(tunnelWorks, 30_000, "the attacker's tunnel to carry a ping again");
    };

    return {
      lab,
      stack,
      victim,
      attacker,
      attackerNs,
      targets,
      gatewayPublicKey: String(web['gateway_public_key']),
      gatewayId: String(web['gateway_id']),
      resourceIds: stack.resourceIds,
      victimLoop,
      monitor,
      counters: () => readCounters(lab),
      udpState: () => readUdpState(lab),
      receiveBufferBytes: receiveBufferOf(stack.gatewayLog()),
      ensureAttackerConnected: reconnect,
      healthy: () => monitor.alive() && health(lab),
      async close() {
        victimLoop.stop();
        monitor.stop();
        await stack.stop().catch(() => undefined);
        for (const cleanup of cleanups) cleanup();
        lab.down();
      },
    };
  } catch (error) {
    for (const cleanup of cleanups) cleanup();
    lab.down();
    throw error;
  }
}

async function connectOrThrow(client: ClientHandle, resourceId: string, extra: Json = {}): Promise<Json> {
  const reply = await client.command({ cmd: 'connect', resource_id: resourceId, ...extra }, 45_000);
  if (reply['ok'] !== true) throw new Error(`connect ${resourceId}: ${String(reply['error'])}`);
  return reply;
}

/** IPv6 on the LAN (gateway fd00:78::1, resources ::2 and ::3) and no masquerade, so resources see tunnel addresses. */
function prepareLan(lab: Lab): void {
  lab.exec(lab.ns.gateway, ['ip', '-6', 'addr', 'add', `${GATEWAY_LAN6}/64`, 'dev', 'eth1', 'nodad']);
  for (const address of [WEB6, LAN6_OTHER]) lab.exec(lab.ns.resources, ['ip', '-6', 'addr', 'add', `${address}/64`, 'dev', 'eth0', 'nodad']);
  lab.exec(lab.ns.resources, ['ip', '-6', 'route', 'add', 'default', 'via', GATEWAY_LAN6]);
  lab.exec(lab.ns.gateway, ['nft', 'delete', 'table', 'ip', 'fz']);
  lab.exec(lab.ns.gateway, ['nft', 'delete', 'table', 'ip6', 'fz']);
}

/**
 * The gateway's answers to crafted packets (DNS replies to ports nobody listens on) reach the attacker's
 * kernel through its TUN device; its ICMP errors back would be counted as traffic to the gateway host.
 */
function quietAttackerKernel(lab: Lab, ns: string): void {
  lab.exec(ns, ['nft', '-f', '-'], {
    input: [
      'table inet quiet {',
      '  chain output {',
      '    type filter hook output priority filter; policy accept;',
      '    oifname "tun-fzatk" icmp type destination-unreachable drop',
      '    oifname "tun-fzatk" icmpv6 type destination-unreachable drop',
      '  }',
      '}',
    ].join('\n'),
  });
}

function installCounters(lab: Lab, ips: { victim4: string; attacker4: string; attacker6: string }): void {
  lab.exec(lab.ns.resources, ['nft', '-f', '-'], {
    input: [
      'table inet redteam {',
      '  counter victim {}',
      '  counter granted {}',
      '  counter gateway_own {}',
      '  counter ungranted {}',
      '  set seen4 { type ipv4_addr . ipv4_addr . inet_proto; flags dynamic; size 4096; }',
      '  set seen6 { type ipv6_addr . ipv6_addr . inet_proto; flags dynamic; size 4096; }',
      '  chain input {',
      '    type filter hook input priority filter; policy accept;',
      '    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query, mld-listener-report, mld2-listener-report } accept',
      `    ip saddr ${ips.victim4} ip daddr ${ECHO} udp dport 7 counter name victim accept`,
      `    ip saddr ${ips.attacker4} ip daddr { ${WEB}, ${DNS_REAL} } tcp dport 80 counter name granted accept`,
      `    ip saddr ${ips.attacker4} ip daddr ${DNS_REAL} meta l4proto icmp counter name granted accept`,
      `    ip6 saddr ${ips.attacker6} ip6 daddr ${WEB6} tcp dport 80 counter name granted accept`,
      `    ip saddr ${lab.addresses.gatewayLan} ip daddr ${WEB} meta l4proto { tcp, udp } th dport 53 counter name gateway_own accept`,
      // The health server's side of the connections the health-port flood opens from here.
      `    ip saddr ${lab.addresses.gatewayLan} tcp sport 8080 counter name gateway_own accept`,
      '    meta nfproto ipv4 update @seen4 { ip saddr . ip daddr . meta l4proto }',
      '    meta nfproto ipv6 update @seen6 { ip6 saddr . ip6 daddr . meta l4proto }',
      '    counter name ungranted',
      '  }',
      '}',
    ].join('\n'),
  });
  lab.exec(lab.ns.gateway, ['nft', '-f', '-'], {
    input: [
      'table inet redteam {',
      '  counter host {}',
      '  counter hairpin {}',
      '  chain input {',
      '    type filter hook input priority filter; policy accept;',
      '    iifname "tun-firezone" meta l4proto { tcp, udp } th dport 53535 accept',
      '    iifname "tun-firezone" icmp type echo-request accept',
      '    iifname "tun-firezone" icmpv6 type echo-request accept',
      '    iifname "tun-firezone" counter name host',
      '  }',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      '    iifname "tun-firezone" oifname "tun-firezone" counter name hairpin',
      '  }',
      '}',
    ].join('\n'),
  });
}

function readCounters(lab: Lab): Counters {
  const packets = (ns: string): Map<string, number> => {
    const json = JSON.parse(lab.exec(ns, ['nft', '-j', 'list', 'counters', 'table', 'inet', 'redteam'])) as { nftables: Json[] };
    const out = new Map<string, number>();
    for (const item of json.nftables) {
      const counter = item['counter'] as { name: string; packets: number } | undefined;
      if (counter !== undefined) out.set(counter.name, counter.packets);
    }
    return out;
  };
  const res = packets(lab.ns.resources);
  const gw = packets(lab.ns.gateway);
  const seen: string[] = [];
  for (const set of ['seen4', 'seen6']) {
    const text = lab.exec(lab.ns.resources, ['nft', 'list', 'set', 'inet', 'redteam', set]);
    const elements = /elements = \{([^}]*)\}/s.exec(text)?.[1];
    if (elements !== undefined) seen.push(...elements.split(',').map((e) => e.trim().replace(/\s+/g, ' ')).filter(Boolean));
  }
  return {
    victim: res.get('victim') ?? 0,
    granted: res.get('granted') ?? 0,
    gatewayOwn: res.get('gateway_own') ?? 0,
    ungranted: res.get('ungranted') ?? 0,
    host: gw.get('host') ?? 0,
    hairpin: gw.get('hairpin') ?? 0,
    ungrantedSeen: seen,
  };
}

/** The smallest receive buffer the gateway's start-up log reports for its UDP sockets (8 MB if none). */
function receiveBufferOf(log: string): number {
  const sizes = [...log.matchAll(/ recv_buffer_size=(\d+)/g)].map((m) => Number(m[1]));
  return sizes.length === 0 ? 8 * 1024 * 1024 : Math.min(...sizes);
}

function readUdpState(lab: Lab): UdpState {
  const text = lab.exec(lab.ns.gateway, ['sh', '-c', 'cat /proc/net/snmp; echo ==; cat /proc/net/snmp6; echo ==; cat /proc/net/udp /proc/net/udp6']);
  const [snmp = '', snmp6 = '', sockets = ''] = text.split('==\n');
  const udpLines = snmp.split('\n').filter((line) => line.startsWith('Udp: '));
  const names = udpLines[0]?.split(/\s+/) ?? [];
  const values = udpLines[1]?.split(/\s+/).map(Number) ?? [];
  const v4 = (name: string): number => values[names.indexOf(name)] ?? 0;
  const v6 = (name: string): number => Number(new RegExp(`^Udp6${name}\\s+(\\d+)`, 'm').exec(snmp6)?.[1] ?? 0);
  let queuedBytes = 0;
  for (const line of sockets.split('\n')) {
    // `sl local_address rem_address st tx_queue:rx_queue ...`
    const queues = line.trim().split(/\s+/)[4];
    if (queues?.includes(':') === true && /^[0-9A-F]+:[0-9A-F]+$/i.test(queues)) queuedBytes += parseInt(queues.split(':')[1]!, 16);
  }
  return {
    received: v4('InDatagrams') + v6('InDatagrams'),
    bufferDrops: v4('RcvbufErrors') + v6('RcvbufErrors'),
    queuedBytes,
  };
}

function health(lab: Lab): boolean {
  try {
    return lab.exec(lab.ns.gateway, ['curl', '-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://${lab.addresses.gatewayLan}:8080/healthz`], { timeoutMs: 5_000 }) === '200';
  } catch {
    return false;
  }
}

function findGatewayPid(lab: Lab): number {
  const pids = lab.exec(lab.ns.gateway, ['ip', 'netns', 'pids', lab.ns.gateway]).split('\n').filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('firezone-gateway.js')) return pid;
    } catch {
      // Exited meanwhile.
    }
  }
  throw new Error('no gateway process in the gateway namespace');
}

/** One more host on the lab's wan bridge. */
function addBridgeHost(lab: Lab, name: string, address: string): void {
  removeNamespace(lab.prefix, name);
  const left = `${lab.prefix}atka`;
  const right = `${lab.prefix}atkb`;
  const sh = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
  sh('netns', 'add', name);
  sh('-n', name, 'link', 'set', 'lo', 'up');
  sh('link', 'add', left, 'type', 'veth', 'peer', 'name', right);
  sh('link', 'set', left, 'netns', name);
  sh('link', 'set', right, 'netns', lab.ns.wan);
  sh('-n', name, 'link', 'set', left, 'name', 'eth0');
  sh('-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
  sh('-n', name, 'link', 'set', 'eth0', 'up');
  sh('-n', lab.ns.wan, 'link', 'set', right, 'master', 'br0');
  sh('-n', lab.ns.wan, 'link', 'set', right, 'up');
  mkdirSync(`/etc/netns/${name}`, { recursive: true });
  writeFileSync(`/etc/netns/${name}/resolv.conf`, `nameserver ${lab.addresses.portal}\n`);
}

function removeNamespace(prefix: string, name: string): void {
  const quiet = (...args: string[]): string => {
    try {
      return execFileSync(args[0]!, args.slice(1), { stdio: 'pipe', encoding: 'utf8' });
    } catch {
      return '';
    }
  };
  quiet('ip', 'link', 'del', `${prefix}atka`);
  for (const pid of quiet('ip', 'netns', 'pids', name).split('\n').filter(Boolean)) quiet('kill', '-9', pid);
  quiet('ip', 'netns', 'del', name);
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

export interface LoopResult {
  readonly seq: number;
  /** Epoch ms when the request was sent. */
  readonly at: number;
  readonly ok: boolean;
  readonly rtt?: number;
}

/** The victim's request loop (tools/attacker/request-loop.ts), its results as they come. */
export class RequestLoop {
  readonly results: LoopResult[] = [];

  constructor(
    private readonly child: ChildProcess,
    private readonly intervalMs: number,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.results.push(JSON.parse(line) as LoopResult);
      } catch {
        // Not a result line.
      }
    });
  }

  /** Whether every request sent up to `to` (epoch ms) has been answered or given up on. */
  resolvedThrough(to: number): boolean {
    const seen = new Set<number>();
    let boundary: number | undefined;
    for (const r of this.results) {
      seen.add(r.seq);
      if (r.at > to && (boundary === undefined || r.seq < boundary)) boundary = r.seq;
    }
    if (boundary === undefined) return false;
    const first = Math.min(...seen);
    for (let seq = first; seq < boundary; seq++) if (!seen.has(seq)) return false;
    return true;
  }

  /** Requests sent in [from, to] (epoch ms): how many, how many lost, how many late, the worst round trip, the longest run of losses. */
  window(from: number, to: number): { sent: number; lost: number; late: number; maxRttMs: number; longestOutageMs: number; lostAt: number[] } {
    let sent = 0;
    let lost = 0;
    const lostAt: number[] = [];
    let late = 0;
    let maxRttMs = 0;
    let longestOutageMs = 0;
    let outageStart: number | undefined;
    for (const r of [...this.results].sort((a, b) => a.seq - b.seq)) {
      if (r.at < from || r.at > to) continue;
      sent++;
      if (!r.ok) {
        lost++;
        lostAt.push(r.at);
        outageStart ??= r.at;
        longestOutageMs = Math.max(longestOutageMs, r.at - outageStart + this.intervalMs);
        continue;
      }
      outageStart = undefined;
      if ((r.rtt ?? 0) > VICTIM_LATE_MS) late++;
      if ((r.rtt ?? 0) > maxRttMs) maxRttMs = r.rtt ?? 0;
    }
    return { sent, lost, late, maxRttMs, longestOutageMs, lostAt };
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill('SIGTERM');
  }
}

export interface Sample {
  /** Epoch ms. */
  readonly at: number;
  /** CPU time (user + system) in ms. */
  readonly cpuMs: number;
  readonly rssMb: number;
  /** The longest receive queue among the gateway namespace's UDP sockets, bytes. */
  readonly rxQueueBytes: number;
  /** Packets the kernel dropped on their way to the gateway through its TUN device (its queue full), so far. */
  readonly tunDrops: number;
}

/**
 * Samples the gateway process's CPU time, RSS and its namespace's UDP receive queues every 100 ms
 * from /proc (`/proc/<pid>/net` is the process's own namespace).
 */
export class GatewayMonitor {
  readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 100);
    this.sample();
  }

  alive(): boolean {
    try {
      return readFileSync(`/proc/${this.pid}/cmdline`, 'utf8').includes('firezone-gateway.js');
    } catch {
      return false;
    }
  }

  /** CPU use in [from, to] as a percentage of one core, from the last sample at or before `from` to the first at or after `to`. */
  cpuPercent(from: number, to: number): number {
    let before: Sample | undefined;
    let after: Sample | undefined;
    for (const sample of this.samples) {
      if (sample.at <= from) before = sample;
      if (sample.at >= to && after === undefined) after = sample;
    }
    before ??= this.samples[0];
    after ??= this.samples.at(-1);
    if (before === undefined || after === undefined || after.at <= before.at) return NaN;
    return Math.round(((after.cpuMs - before.cpuMs) / (after.at - before.at)) * 1000) / 10;
  }

  /** CPU time (ms) used in [from, to], between the same samples as `cpuPercent`. */
  cpuMs(from: number, to: number): number {
    let before: Sample | undefined;
    let after: Sample | undefined;
    for (const sample of this.samples) {
      if (sample.at <= from) before = sample;
      if (sample.at >= to && after === undefined) after = sample;
    }
    before ??= this.samples[0];
    after ??= this.samples.at(-1);
    if (before === undefined || after === undefined) return NaN;
    return after.cpuMs - before.cpuMs;
  }

  /**
   * Whether the kernel was dropping what came to the gateway around `at`: a UDP receive queue of
   * its namespace was full (within 64 KB, one GRO-merged datagram, of `bufferBytes`), or its TUN
   * device dropped packets (the victim's echoes come back through it), in a sample within 250 ms,
   * or in the last sample before or the first after `at` (the sampler runs late on a busy machine).
   * A datagram or packet arriving then could have been dropped for want of room, whoever sent it.
   */
  bufferFullNear(at: number, bufferBytes: number): boolean {
    const full = (s: Sample | undefined): boolean => s !== undefined && s.rxQueueBytes >= bufferBytes - 65_536;
    let before: Sample | undefined;
    let after: Sample | undefined;
    let firstNear: Sample | undefined;
    let lastNear: Sample | undefined;
    for (const s of this.samples) {
      const near = Math.abs(s.at - at) <= 250;
      if (near && full(s)) return true;
      if (s.at <= at) before = s;
      else if (after === undefined) after = s;
      if (s.at <= at - 250) firstNear = s;
      if (s.at >= at + 250 && lastNear === undefined) lastNear = s;
    }
    if (full(before) || full(after)) return true;
    // TUN drops are a counter: any rise over the samples bracketing [at - 250 ms, at + 250 ms].
    const from = firstNear ?? before;
    const to = lastNear ?? after;
    return from !== undefined && to !== undefined && to.tunDrops > from.tunDrops;
  }

  /** Packets the gateway's TUN device dropped in [from, to]. */
  tunDrops(from: number, to: number): number {
    const inside = this.samples.filter((s) => s.at >= from && s.at <= to);
    return inside.length < 2 ? 0 : inside.at(-1)!.tunDrops - inside[0]!.tunDrops;
  }

  /** The longest receive queue sampled in [from, to], bytes, and the longest gap between samples there, ms. */
  rxQueuePeak(from: number, to: number): { bytes: number; sampleGapMs: number } {
    let bytes = 0;
    let sampleGapMs = 0;
    let last: number | undefined;
    for (const s of this.samples) {
      if (s.at < from || s.at > to) continue;
      bytes = Math.max(bytes, s.rxQueueBytes);
      if (last !== undefined) sampleGapMs = Math.max(sampleGapMs, s.at - last);
      last = s.at;
    }
    return { bytes, sampleGapMs };
  }

  rssMb(from: number, to: number): { first: number; peak: number; last: number } {
    const inside = this.samples.filter((s) => s.at >= from && s.at <= to);
    if (inside.length === 0) return { first: NaN, peak: NaN, last: NaN };
    return { first: inside[0]!.rssMb, peak: Math.max(...inside.map((s) => s.rssMb)), last: inside.at(-1)!.rssMb };
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'))?.[1] ?? NaN);
      let rxQueueBytes = 0;
      for (const table of ['udp', 'udp6']) {
        for (const line of readFileSync(`/proc/${this.pid}/net/${table}`, 'utf8').split('\n')) {
          const queues = line.trim().split(/\s+/)[4];
          if (queues !== undefined && /^[0-9A-F]+:[0-9A-F]+$/i.test(queues)) rxQueueBytes = Math.max(rxQueueBytes, parseInt(queues.split(':')[1]!, 16));
        }
      }
      // `tun-firezone: rx bytes packets errs drop fifo frame compressed multicast tx bytes packets errs drop ...`
      const tun = /^\s*tun-firezone:\s*(.*)$/m.exec(readFileSync(`/proc/${this.pid}/net/dev`, 'utf8'))?.[1]?.split(/\s+/);
      const tunDrops = Number(tun?.[11] ?? 0);
      this.samples.push({ at: Date.now(), cpuMs: (ticks * 1000) / CLK_TCK, rssMb: Math.round(rssKb / 102.4) / 10, rxQueueBytes, tunDrops });
    } catch {
      // The process is gone; alive() says so.
    }
  }
}
