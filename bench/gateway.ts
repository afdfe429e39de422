/**
 * Per-packet cost of the gateway policy core (GatewayState) in ns/packet: client -> resource (source check,
 * filter lookup, DNS-resource NAT) and resource -> client (client lookup, reverse NAT, filter), with 1000 clients
 * of 20 resources each. Prints garbage collections seen during each case (0 = nothing allocated per packet).
 * Each iteration first restores the packet's first 64 bytes (NAT rewrites them in place); that copy is included.
 * Then the control plane: 1,000 resources authorized for one client (filter updates are incremental), against
 * 1,000 clients of one resource each in the same run (a ratio near 1 means no growth with the client's size).
 * Never fails. Usage: npm run bench:gateway [-- packets]
 */
import v8 from 'node:v8';
import { GatewayState, TunAction, TunnelAction } from '../src/gateway/index.ts';
import type { ClientInfo, ResourceDescription } from '../src/gateway/index.ts';
import { makeAssignedIpsPacket, makeUdpPacket, parseIp } from '../src/ip/index.ts';
import type { IpAddr } from '../src/ip/index.ts';
import { configureLogging, LogFilter } from '../src/log/index.ts';

const PACKETS = Number(process.argv[2] ?? 1_000_000);
const CLIENTS = 1000;
const RESOURCES_PER_CLIENT = 20;
const PAYLOAD = 1200;

configureLogging({ filter: LogFilter.parse('off') });

function ip(text: string): IpAddr {
  return parseIp(text)!;
}

function client(i: number): ClientInfo {
  return {
    id: `c${String(i).padStart(7, '0')}-0000-0000-0000-000000000000`,
    ipv4: { family: 4, value: 0x64400000 + i + 1 },
    ipv6: ip(`fd00:2021:1111::${(i + 1).toString(16)}`),
  };
}

function udpPacket(src: string, sport: number, dst: string, dport: number): Uint8Array {
  return makeUdpPacket(ip(src), ip(dst), sport, dport, new Uint8Array(PAYLOAD).fill(0xab));
}

const state = new GatewayState();
state.init({ ipv4: ip('100.64.255.254'), ipv6: ip('fd00:2021:1111::ffff') }, undefined, 0);
const dns: ResourceDescription = { type: 'dns', id: 'd0000000-0000-0000-0000-000000000000', address: '*.corp', filters: [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }] };
for (let i = 0; i < CLIENTS; i++) {
  for (let r = 0; r < RESOURCES_PER_CLIENT; r++) {
    const resource: ResourceDescription = {
      type: 'cidr',
      id: `r${String(r).padStart(7, '0')}-0000-0000-0000-000000000000`,
      address: r % 2 === 0 ? `10.${r}.0.0/16` : `2001:db8:${r}::/48`,
      filters: [
        { protocol: 'tcp', portRangeStart: 80, portRangeEnd: 80 },
        { protocol: 'udp', portRangeStart: 1000, portRangeEnd: 2000 },
        { protocol: 'icmp' },
      ],
    };
    state.authorizeFlow(client(i), resource, undefined, 0);
  }
  state.authorizeFlow(client(i), dns, undefined, 0);
}
const target = client(CLIENTS >> 1);
state.handleTunnelPacket(target.id, makeAssignedIpsPacket({ resource: dns.id, domain: 'app.corp', proxyIps: [ip('100.96.0.1'), ip('fd00:2021:1111:8000::1')] })!, 0);
while (state.pollEvent() !== undefined);
state.handleDnsResolution('app.corp', [ip('10.200.0.1'), ip('2001:db8:ff::1')], 0);
state.pollClientPacket();

const v4 = (target.ipv4 as { value: number }).value;
const clientV4 = `${v4 >>> 24}.${(v4 >>> 16) & 0xff}.${(v4 >>> 8) & 0xff}.${v4 & 0xff}`;
const clientV6 = `fd00:2021:1111::${((CLIENTS >> 1) + 1).toString(16)}`;

interface Case {
  readonly name: string;
  readonly packet: Uint8Array;
  readonly run: (packet: Uint8Array) => number;
  readonly expected: number;
}

const toResource = (packet: Uint8Array): number => state.handleTunnelPacket(target.id, packet, 1).action;
const toClient = (packet: Uint8Array): number => state.handleTunPacket(packet, 1).action;

const cases: Case[] = [
  { name: 'client->resource cidr v4 (allowed)', packet: udpPacket(clientV4, 40000, '10.4.1.1', 1500), run: toResource, expected: TunnelAction.ToTun },
  { name: 'client->resource cidr v6 (allowed)', packet: udpPacket(clientV6, 40000, '2001:db8:5::1', 1500), run: toResource, expected: TunnelAction.ToTun },
  { name: 'client->resource denied (ICMP reply)', packet: udpPacket(clientV4, 40000, '10.4.1.1', 53), run: toResource, expected: TunnelAction.ReplyToClient },
  { name: 'client->resource dns NAT v4', packet: udpPacket(clientV4, 40000, '100.96.0.1', 53), run: toResource, expected: TunnelAction.ToTun },
  { name: 'client->resource dns NAT v6', packet: udpPacket(clientV6, 40000, 'fd00:2021:1111:8000::1', 53), run: toResource, expected: TunnelAction.ToTun },
  { name: 'resource->client cidr v4', packet: udpPacket('10.4.1.1', 1500, clientV4, 40000), run: toClient, expected: TunAction.ToClient },
  { name: 'resource->client cidr v6', packet: udpPacket('2001:db8:5::1', 1500, clientV6, 40000), run: toClient, expected: TunAction.ToClient },
  { name: 'resource->client dns NAT v4', packet: udpPacket('10.200.0.1', 53, clientV4, 40000), run: toClient, expected: TunAction.ToClient },
  { name: 'resource->client dns NAT v6', packet: udpPacket('2001:db8:ff::1', 53, clientV6, 40000), run: toClient, expected: TunAction.ToClient },
];

console.log(`gateway core: ${CLIENTS} clients x ${RESOURCES_PER_CLIENT + 1} resources, ${PACKETS} packets of ${28 + PAYLOAD} (v4) / ${48 + PAYLOAD} (v6) bytes per case`);
const rows: string[][] = [['case', 'ns/packet', 'Mpps', 'GCs']];
for (const c of cases) {
  const pristine = c.packet.slice();
  const work = c.packet;
  const headerBytes = 64;
  const restore = (): void => {
    for (let i = 0; i < headerBytes; i++) work[i] = pristine[i]!;
  };
  restore();
  const first = c.run(work);
  if (first !== c.expected) console.log(`  ! ${c.name}: unexpected verdict ${first}`);
  for (let i = 0; i < 20_000; i++) {
    restore();
    c.run(work);
  }
  const profiler = new v8.GCProfiler();
  profiler.start();
  const start = process.hrtime.bigint();
  for (let i = 0; i < PACKETS; i++) {
    restore();
    c.run(work);
  }
  const elapsed = Number(process.hrtime.bigint() - start);
  const gcs = profiler.stop().statistics.length;
  const ns = elapsed / PACKETS;
  rows.push([c.name, ns.toFixed(0), (1000 / ns).toFixed(2), String(gcs)]);
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const row of rows) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));

/** ms to authorize `clients` x `perClient` distinct CIDR resources into a fresh state. */
function authorizeAll(clients: number, perClient: number): number {
  const fresh = new GatewayState();
  fresh.init({ ipv4: ip('100.64.255.254'), ipv6: ip('fd00:2021:1111::ffff') }, undefined, 0);
  const resources: ResourceDescription[] = [];
  for (let r = 0; r < perClient; r++) {
    resources.push({ type: 'cidr', id: `e${String(r).padStart(7, '0')}-0000-0000-0000-000000000000`, address: `10.${r >> 8}.${r & 0xff}.0/24`, filters: [{ protocol: 'tcp', portRangeStart: 443, portRangeEnd: 443 }] });
  }
  const start = process.hrtime.bigint();
  for (let c = 0; c < clients; c++) for (const resource of resources) fresh.authorizeFlow(client(c), resource, undefined, 0);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

authorizeAll(50, 50);
const oneClient = Math.min(authorizeAll(1, 1000), authorizeAll(1, 1000), authorizeAll(1, 1000));
const manyClients = Math.min(authorizeAll(1000, 1), authorizeAll(1000, 1), authorizeAll(1000, 1));
console.log(`control plane: 1,000 resources for one client ${oneClient.toFixed(1)} ms; 1,000 clients of one resource ${manyClients.toFixed(1)} ms; ratio ${(oneClient / manyClients).toFixed(2)}`);
