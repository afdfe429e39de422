/**
 * Throughput through the gateway against wireguard-go, measured in the same run on the same
 * namespace topology (tools/lab): iperf3 from the client namespace to the resources namespace.
 *
 *   anchor: client wireguard-go ── gateway wireguard-go, kernel forwarding + masquerade ── resource
 *   ours:   test client (snownet client role) ── our gateway (TUN + native UDP) ── resource
 *
 * Both tunnels use MTU 1280. Prints per-run figures, medians and the ratio ours / anchor, and the
 * connection set-up time (authorize_flow to the first byte through). A benchmark, not a test: it
 * never fails on a number.
 *
 * usage: npm run bench:throughput [-- --seconds 10 --runs 3 --udp-rate 300M]
 */
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { labUp, type Lab } from '../tools/lab/lab.ts';
import { startGatewayStack, type GatewayStack } from '../test/e2e/stack.ts';

const args = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const index = args.indexOf(name);
  return index === -1 ? fallback : (args[index + 1] ?? fallback);
};
const SECONDS = Number(option('--seconds', '10'));
const RUNS = Number(option('--runs', '3'));
const UDP_RATE = option('--udp-rate', '300M');
const RESOURCE_NET = '10.78.0.0/24';

interface Figures {
  tcp: number[];
  tcpReverse: number[];
  udp: number[];
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function iperf(lab: Lab, target: string, extra: string[]): number {
  const out = lab.exec(lab.ns.client, ['iperf3', '-c', target, '-t', String(SECONDS), '-J', ...extra], { timeoutMs: (SECONDS + 30) * 1000 });
  const json = JSON.parse(out) as { end: { sum_received?: { bits_per_second: number }; sum?: { bits_per_second: number } } };
  return (json.end.sum_received ?? json.end.sum)!.bits_per_second / 1e9;
}

async function measure(lab: Lab, target: string): Promise<Figures> {
  const figures: Figures = { tcp: [], tcpReverse: [], udp: [] };
  for (let run = 0; run < RUNS; run++) {
    figures.tcp.push(iperf(lab, target, []));
    await sleep(500);
    figures.tcpReverse.push(iperf(lab, target, ['-R']));
    await sleep(500);
    figures.udp.push(iperf(lab, target, ['-u', '-b', UDP_RATE, '-l', '1200']));
    await sleep(500);
  }
  return figures;
}

function wg(lab: Lab, ns: string, args: string[], input?: string): string {
  return lab.exec(ns, ['wg', ...args], input === undefined ? {} : { input });
}

async function anchor(lab: Lab): Promise<Figures> {
  const keys = (): { priv: string; pub: string } => {
    const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
    const pub = execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim();
    return { priv, pub };
  };
  const client = keys();
  const gateway = keys();
  const clientIf = 'fzbwgc';
  const gatewayIf = 'fzbwgg';
  lab.exec(lab.ns.client, ['wireguard-go', clientIf]);
  lab.exec(lab.ns.gateway, ['wireguard-go', gatewayIf]);
  try {
    const keyFile = (ns: string, key: string): string => {
      const path = `/tmp/${ns}-${Date.now()}.key`;
      lab.exec(ns, ['sh', '-c', `umask 077; cat > ${path}`], { input: key });
      return path;
    };
    wg(lab, lab.ns.gateway, ['set', gatewayIf, 'listen-port', '51820', 'private-key', keyFile(lab.ns.gateway, gateway.priv), 'peer', client.pub, 'allowed-ips', '100.64.200.1/32']);
    wg(lab, lab.ns.client, ['set', clientIf, 'private-key', keyFile(lab.ns.client, client.priv), 'peer', gateway.pub, 'endpoint', `${lab.addresses.gateway}:51820`, 'allowed-ips', `100.64.200.2/32,${RESOURCE_NET}`]);
    lab.exec(lab.ns.client, ['ip', 'addr', 'add', '100.64.200.1/32', 'peer', '100.64.200.2', 'dev', clientIf]);
    lab.exec(lab.ns.gateway, ['ip', 'addr', 'add', '100.64.200.2/32', 'peer', '100.64.200.1', 'dev', gatewayIf]);
    lab.exec(lab.ns.client, ['ip', 'link', 'set', clientIf, 'mtu', '1280', 'up']);
    lab.exec(lab.ns.gateway, ['ip', 'link', 'set', gatewayIf, 'mtu', '1280', 'up']);
    lab.exec(lab.ns.client, ['ip', 'route', 'add', RESOURCE_NET, 'dev', clientIf]);
    lab.exec(lab.ns.client, ['ping', '-c', '3', '-i', '0.2', '-W', '2', lab.addresses.resources[0]!]);
    return await measure(lab, lab.addresses.resources[0]!);
  } finally {
    lab.exec(lab.ns.client, ['ip', 'link', 'del', clientIf]);
    lab.exec(lab.ns.gateway, ['ip', 'link', 'del', gatewayIf]);
  }
}

async function ours(lab: Lab): Promise<{ figures: Figures; setupMs: number }> {
  let stack: GatewayStack | undefined;
  try {
    stack = await startGatewayStack(lab, { resources: [{ name: 'iperf', type: 'cidr', address: RESOURCE_NET }] });
    const setupMs = await stack.connectClient('iperf');
    return { figures: await measure(lab, lab.addresses.resources[0]!), setupMs };
  } finally {
    await stack?.stop();
  }
}

function report(label: string, anchorValues: readonly number[], ourValues: readonly number[]): void {
  const a = median(anchorValues);
  const o = median(ourValues);
  const fmt = (v: number): string => v.toFixed(3);
  console.log(
    `${label.padEnd(22)} wireguard-go ${fmt(a)} Gbit/s [${anchorValues.map(fmt).join(' ')}]   ours ${fmt(o)} Gbit/s [${ourValues.map(fmt).join(' ')}]   ratio ${(o / a).toFixed(2)}`,
  );
}

const lab = labUp({ prefix: 'fzb' });
try {
  lab.spawn(lab.ns.resources, ['iperf3', '-s', '-B', lab.addresses.resources[0]!]);
  await sleep(500);
  console.log(`iperf3 ${SECONDS} s x ${RUNS} runs per figure, UDP at ${UDP_RATE} with 1200-byte datagrams, tunnel MTU 1280`);
  const anchorFigures = await anchor(lab);
  const { figures, setupMs } = await ours(lab);
  report('TCP client->resource', anchorFigures.tcp, figures.tcp);
  report('TCP resource->client', anchorFigures.tcpReverse, figures.tcpReverse);
  report(`UDP ${UDP_RATE} received`, anchorFigures.udp, figures.udp);
  console.log(`connection set-up (authorize_flow to first byte through): ${setupMs.toFixed(0)} ms`);
} finally {
  lab.down();
}
