/**
 * IP addresses without strings on the hot path.
 *
 * - IPv4 is a uint32 `number` (always `>>> 0`, so it is non-negative and usable as a Map key).
 * - IPv6 is 16 bytes in network order (a `Uint8Array`); hot-path code reads it straight out of the packet
 *   (`bytes` + offset) and never materialises it.
 * - `IpAddr` is the control-plane union of both. Text conversions follow Rust's `Display` (which the portal
 *   and the p2p control protocol use): RFC 5952 compressed lowercase IPv6, IPv4-mapped as `::ffff:a.b.c.d`.
 *   Parsing accepts what Rust's `FromStr` accepts: no zone ids, no leading zeros in IPv4 octets.
 */
import { bytesEqual, readU32, writeU32 } from './bytes.ts';

export interface Ipv4Addr {
  readonly family: 4;
  /** uint32; 10.0.0.1 is 0x0a000001. */
  readonly value: number;
}

export interface Ipv6Addr {
  readonly family: 6;
  /** Exactly 16 bytes; never mutated after construction. */
  readonly bytes: Uint8Array;
}

export type IpAddr = Ipv4Addr | Ipv6Addr;

export function ipv4(value: number): Ipv4Addr {
  return { family: 4, value: value >>> 0 };
}

/** Copies `bytes[offset, offset + 16)` into a new address. */
export function ipv6(bytes: Uint8Array, offset = 0): Ipv6Addr {
  return { family: 6, bytes: bytes.slice(offset, offset + 16) };
}

export function parseIp(text: string): IpAddr | undefined {
  if (text.includes(':')) {
    const bytes = parseIpv6(text);
    return bytes === undefined ? undefined : { family: 6, bytes };
  }
  const value = parseIpv4(text);
  return value === undefined ? undefined : { family: 4, value };
}

export function formatIp(addr: IpAddr): string {
  return addr.family === 4 ? formatIpv4(addr.value) : formatIpv6(addr.bytes);
}

/** A string Map key for control-plane tables (the canonical display form). */
export const ipKey = formatIp;

export function ipEquals(a: IpAddr, b: IpAddr): boolean {
  if (a.family === 4) return b.family === 4 && a.value === b.value;
  return b.family === 6 && bytesEqual(a.bytes, 0, b.bytes, 0, 16);
}

/** Whether the address stored at `bytes[offset]` equals `addr` (the family is the caller's concern). */
export function ipEqualsAt(bytes: Uint8Array, offset: number, addr: IpAddr): boolean {
  if (addr.family === 4) return readU32(bytes, offset) === addr.value;
  return bytesEqual(bytes, offset, addr.bytes, 0, 16);
}

/** Total order: every IPv4 before every IPv6, then numeric (Rust's `Ord` for `IpAddr`). */
export function compareIp(a: IpAddr, b: IpAddr): number {
  if (a.family !== b.family) return a.family - b.family;
  if (a.family === 4) return a.value - (b as Ipv4Addr).value;
  const other = (b as Ipv6Addr).bytes;
  for (let i = 0; i < 16; i++) {
    const d = a.bytes[i]! - other[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** Writes the address at `out[offset]` (4 or 16 bytes). */
export function writeIp(out: Uint8Array, offset: number, addr: IpAddr): void {
  if (addr.family === 4) writeU32(out, offset, addr.value);
  else out.set(addr.bytes, offset);
}

export function isUnspecifiedV6(bytes: Uint8Array, offset = 0): boolean {
  for (let i = 0; i < 16; i++) if (bytes[offset + i] !== 0) return false;
  return true;
}

/** Dotted quad to uint32. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!IPV4_OCTET.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`;
}

/** RFC 4291 text (with `::` and a trailing dotted quad) to 16 bytes. */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = parseGroups(halves[0]!, halves.length === 1);
  if (head === undefined) return undefined;
  let tail: number[] = [];
  if (halves.length === 2) {
    const parsed = parseGroups(halves[1]!, true);
    if (parsed === undefined) return undefined;
    tail = parsed;
    if (head.length + tail.length > 7) return undefined;
  } else if (head.length !== 8) {
    return undefined;
  }
  const bytes = new Uint8Array(16);
  for (let i = 0; i < head.length; i++) {
    bytes[2 * i] = head[i]! >>> 8;
    bytes[2 * i + 1] = head[i]! & 0xff;
  }
  const tailStart = 8 - tail.length;
  for (let i = 0; i < tail.length; i++) {
    bytes[2 * (tailStart + i)] = tail[i]! >>> 8;
    bytes[2 * (tailStart + i) + 1] = tail[i]! & 0xff;
  }
  return bytes;
}

/** RFC 5952 text of the 16 bytes at `offset`, as Rust's `Ipv6Addr` displays it. */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!);
  if (words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff) {
    return `::ffff:${formatIpv4(readU32(bytes, offset + 12))}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    words
      .slice(from, to)
      .map((w) => w.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Colon-separated groups; the last may be a dotted quad (two groups) when `mayEndWithIpv4`. */
function parseGroups(text: string, mayEndWithIpv4: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const words: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (mayEndWithIpv4 && i === parts.length - 1 && part.includes('.')) {
      const v4 = parseIpv4(part);
      if (v4 === undefined) return undefined;
      words.push(v4 >>> 16, v4 & 0xffff);
      continue;
    }
    if (!HEX_GROUP.test(part)) return undefined;
    words.push(parseInt(part, 16));
  }
  return words.length > 8 ? undefined : words;
}
