/**
 * Per-packet cost of the IP layer on 1280-byte packets: parse, NAT rewrite (destination address + source
 * port, incremental checksums), full checksum recomputation, and prefix-table lookups. Prints ns/packet and
 * the garbage collections (v8.GCProfiler) over each case's runs: zero means nothing is allocated per packet.
 * Never fails. Usage: npm run bench:ip [-- packets]
 */
import v8 from 'node:v8';
import { IpPacket, PrefixTable, makeTcpPacket, makeUdpPacket, parseCidr, parseIp } from '../src/ip/index.ts';
import type { IpAddr } from '../src/ip/index.ts';

const PACKETS = Number(process.argv[2] ?? 1_000_000);
const MAX_IP = 1280;

interface Case {
  readonly name: string;
  readonly packet: Uint8Array;
  readonly real: IpAddr;
  readonly proxy: IpAddr;
}

const cases: Case[] = [
  makeCase('udp/v4', 'udp', '100.64.0.1', '100.96.0.1', '10.0.0.1'),
  makeCase('tcp/v4', 'tcp', '100.64.0.1', '100.96.0.1', '10.0.0.1'),
  makeCase('udp/v6', 'udp', 'fd00:2021:1111::1', 'fd00:2021:1111:8000::1', '2001:db8::1'),
  makeCase('tcp/v6', 'tcp', 'fd00:2021:1111::1', 'fd00:2021:1111:8000::1', '2001:db8::1'),
];

const rows: string[][] = [['case', 'parse', 'parse+NAT (incr.)', 'parse+NAT+full csum', 'full csum only', 'GCs']];

for (const c of cases) {
  const view = new IpPacket();
  const profiler = new v8.GCProfiler();
  profiler.start();
  const parse = measure(() => {
    view.parse(c.packet);
  });
  let flip = false;
  const nat = measure(() => {
    view.parse(c.packet);
    flip = !flip;
    view.setDestination(flip ? c.real : c.proxy);
    view.setSourceValue(flip ? 5402 : 5401);
  });
  const natFull = measure(() => {
    view.parse(c.packet);
    flip = !flip;
    view.setDestination(flip ? c.real : c.proxy);
    view.setSourceValue(flip ? 5402 : 5401);
    view.updateChecksums();
  });
  view.parse(c.packet);
  const full = measure(() => {
    view.updateChecksums();
  });
  const gcs = profiler.stop()?.statistics.length ?? 0;
  rows.push([c.name, ns(parse), ns(nat), ns(natFull), ns(full), String(gcs)]);
}

const table = new PrefixTable<number>();
for (let i = 0; i < 1000; i++) table.insert(parseCidr(`100.64.${i >> 8}.${i & 255}/32`)!, i);
table.insert(parseCidr('100.64.0.0/11')!, -1);
table.insert(parseCidr('10.0.0.0/8')!, -2);
for (let i = 0; i < 1000; i++) table.insert(parseCidr(`fd00:2021:1111::${i.toString(16)}/128`)!, i);
table.insert(parseCidr('fd00:2021:1111::/107')!, -1);
const lookupProfiler = new v8.GCProfiler();
lookupProfiler.start();
const v4Lookup = measure((i) => {
  table.lookupV4((0x64400000 + (i & 1023)) >>> 0);
});
const v6Key = new Uint8Array(16);
v6Key.set(ipBytes('fd00:2021:1111::'));
const v6Lookup = measure((i) => {
  v6Key[14] = (i >> 8) & 3;
  v6Key[15] = i & 0xff;
  table.lookupV6(v6Key, 0);
});

const lookupGcs = lookupProfiler.stop()?.statistics.length ?? 0;

console.log(`IP layer, ${MAX_IP}-byte packets, ${PACKETS} iterations per figure (ns/packet):`);
printTable(rows);
console.log(`prefix table (2003 entries): lookupV4 ${ns(v4Lookup)} ns, lookupV6 ${ns(v6Lookup)} ns, GCs ${lookupGcs}`);

function makeCase(name: string, kind: 'udp' | 'tcp', client: string, proxy: string, real: string): Case {
  const source = parseIp(client)!;
  const destination = parseIp(proxy)!;
  const headers = (source.family === 4 ? 20 : 40) + (kind === 'udp' ? 8 : 20);
  const payload = new Uint8Array(MAX_IP - headers).map((_, i) => i * 7);
  const packet =
    kind === 'udp'
      ? makeUdpPacket(source, destination, 5401, 443, payload)
      : makeTcpPacket(source, destination, 5401, 443, { flags: 0x18 }, payload);
  return { name, packet, real: parseIp(real)!, proxy: destination };
}

/** Runs `body` PACKETS times after a warm-up; returns ns per call. */
function measure(body: (i: number) => void): number {
  for (let i = 0; i < 50_000; i++) body(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < PACKETS; i++) body(i);
  return Number(process.hrtime.bigint() - start) / PACKETS;
}

function ns(value: number): string {
  return value.toFixed(1);
}

function ipBytes(text: string): Uint8Array {
  const ip = parseIp(text);
  return ip?.family === 6 ? ip.bytes : new Uint8Array(16);
}

function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, col) => Math.max(...table.map((row) => row[col]!.length)));
  for (const row of table) console.log(row.map((cell, col) => cell.padStart(widths[col]!)).join('  '));
}
