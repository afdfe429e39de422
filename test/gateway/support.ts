// Packet builders and fixture access for the gateway tests (etherparse-like defaults: DF set, id 0, TTL 64).

import { readFileSync } from 'node:fs';
import { fixturePath } from '../support/env.ts';
import { IpPacket, makeAssignedIpsPacket, parseIp, writeIp, writeU16 } from '../../src/ip/index.ts';
import type { IpAddr } from '../../src/ip/index.ts';
import type { Logger } from '../../src/log/index.ts';

export function ip(text: string): IpAddr {
  const parsed = parseIp(text);
  if (parsed === undefined) throw new Error(`bad IP ${text}`);
  return parsed;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

const vectors = new Map<string, string>(
  (JSON.parse(readFileSync(fixturePath('packets', 'generated-etherparse-vectors.json'), 'utf8')) as { vectors: { name: string; hex: string }[] }).vectors.map(
    (v) => [v.name, v.hex],
  ),
);

/** A fresh copy of a named packet vector. */
export function vector(name: string): Uint8Array {
  const text = vectors.get(name);
  if (text === undefined) throw new Error(`no vector ${name}`);
  return fromHex(text);
}

export function readFixtureJson<T>(...parts: string[]): T {
  return JSON.parse(readFileSync(fixturePath(...parts), 'utf8')) as T;
}

function ipPacket(src: IpAddr, dst: IpAddr, protocol: number, l4: Uint8Array, ecn = 0): Uint8Array {
  if (src.family !== dst.family) throw new Error('mixed families');
  const header = src.family === 4 ? 20 : 40;
  const out = new Uint8Array(header + l4.length);
  if (src.family === 4) {
    out[0] = 0x45;
    out[1] = ecn;
    writeU16(out, 2, out.length);
    out[6] = 0x40;
    out[8] = 64;
    out[9] = protocol;
    writeIp(out, 12, src);
    writeIp(out, 16, dst);
  } else {
    out[0] = 0x60;
    out[1] = ecn << 4;
    writeU16(out, 4, l4.length);
    out[6] = protocol;
    out[7] = 64;
    writeIp(out, 8, src);
    writeIp(out, 24, dst);
  }
  out.set(l4, header);
  const view = new IpPacket();
  if (view.parse(out) === undefined) view.updateChecksums();
  return out;
}

export function udp(src: string, sport: number, dst: string, dport: number, payload = new Uint8Array([1, 2, 3, 4]), ecn = 0): Uint8Array {
  const l4 = new Uint8Array(8 + payload.length);
  writeU16(l4, 0, sport);
  writeU16(l4, 2, dport);
  writeU16(l4, 4, l4.length);
  l4.set(payload, 8);
  return ipPacket(ip(src), ip(dst), 17, l4, ecn);
}

export function tcp(src: string, sport: number, dst: string, dport: number, flags = 0x02): Uint8Array {
  const l4 = new Uint8Array(20);
  writeU16(l4, 0, sport);
  writeU16(l4, 2, dport);
  l4[12] = 0x50;
  l4[13] = flags;
  writeU16(l4, 14, 128);
  return ipPacket(ip(src), ip(dst), 6, l4);
}

export function icmpEcho(src: string, dst: string, id: number, seq: number, reply = false): Uint8Array {
  const source = ip(src);
  const l4 = new Uint8Array(12);
  l4[0] = source.family === 4 ? (reply ? 0 : 8) : reply ? 129 : 128;
  writeU16(l4, 4, id);
  writeU16(l4, 6, seq);
  l4.set([0xde, 0xad, 0xbe, 0xef], 8);
  return ipPacket(source, ip(dst), source.family === 4 ? 1 : 58, l4);
}

/** An ICMP error from `router` to `dst` about `original` (v4 type/code or v6 type/code). */
export function icmpError(router: string, dst: string, type: number, code: number, original: Uint8Array): Uint8Array {
  const source = ip(router);
  const l4 = new Uint8Array(8 + original.length);
  l4[0] = type;
  l4[1] = code;
  l4.set(original, 8);
  return ipPacket(source, ip(dst), source.family === 4 ? 1 : 58, l4);
}

export function rawIp(src: string, dst: string, protocol: number, payload: Uint8Array): Uint8Array {
  return ipPacket(ip(src), ip(dst), protocol, payload);
}

/** A logger that keeps lines in memory, so tests stay quiet and can assert that nothing was logged at ERROR. */
export function recordingLogger(): Logger & { readonly errors: string[]; readonly warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  return {
    target: 'test',
    errors,
    warnings,
    enabled: () => false,
    error: (message) => void errors.push(message),
    warn: (message) => void warnings.push(message),
    info: () => undefined,
    debug: () => undefined,
    trace: () => undefined,
  };
}

/** A p2p control AssignedIps packet from the client. */
export function assignedIps(resource: string, domain: string, proxies: readonly string[]): Uint8Array {
  return makeAssignedIpsPacket({ resource, domain, proxyIps: proxies.map(ip) })!;
}

/** Whether every checksum of `packet` is correct. */
export function checksumsValid(packet: Uint8Array): boolean {
  const view = new IpPacket();
  return view.parse(packet) === undefined && view.checksumsValid();
}

export function recomputeChecksums(packet: Uint8Array): void {
  const view = new IpPacket();
  if (view.parse(packet) === undefined) view.updateChecksums();
}
