/**
 * IP addresses without strings on the hot path, and the project's one home for IP address text.
 *
 * - IPv4 is a uint32 `number` (always `>>> 0`, so it is non-negative and usable as a Map key).
 * - IPv6 is 16 bytes in network order (a `Uint8Array`); hot-path code reads it straight out of the packet
 *   (`bytes` + offset) and never materialises it.
 * - `IpAddr` is the control-plane union of both.
 * - Parsing accepts what Rust's `FromStr` accepts (and what libuv's `inet_pton` accepts, zones aside): no zone
 *   ids, no leading zeros in IPv4 octets, a dotted quad only as the last two groups.
 * - IPv6 text has two forms, which differ only on IPv4-compatible addresses (`::a.b.c.d`, seventh group not
 *   zero): `formatIpv6` is Rust's `Display` (the portal and the p2p control protocol), which prints them in hex
 *   (`::102:304`); `formatIpv6InetNtop` is glibc's and libuv's `inet_ntop`, which Node reports as a socket's
 *   `rinfo.address` and which keeps the dotted quad (`::1.2.3.4`). Both compress the first longest run of two
 *   or more zero groups and print IPv4-mapped addresses as `::ffff:a.b.c.d`.
 */
import { bytesEqual, readU16, readU32, writeU32 } from './bytes.ts';

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
  const bytes = new Uint8Array(16);
  return parseIpv6Into(text, bytes, 0) ? bytes : undefined;
}

/** `parseIpv6` writing into `target[offset, offset + 16)`; leaves `target` untouched when it returns false. */
export function parseIpv6Into(text: string, target: Uint8Array, offset: number): boolean {
  if (text.length < 2 || text.length > 45) return false;
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const head = parseGroups(halves[0]!, halves.length === 1);
  if (head === undefined) return false;
  let tail: number[] = [];
  if (halves.length === 2) {
    const parsed = parseGroups(halves[1]!, true);
    if (parsed === undefined) return false;
    tail = parsed;
    if (head.length + tail.length > 7) return false;
  } else if (head.length !== 8) {
    return false;
  }
  const tailStart = 8 - tail.length;
  for (let i = 0; i < 8; i++) {
    const word = i < head.length ? head[i]! : i >= tailStart ? tail[i - tailStart]! : 0;
    target[offset + 2 * i] = word >>> 8;
    target[offset + 2 * i + 1] = word & 0xff;
  }
  return true;
}

/** RFC 5952 text of the 16 bytes at `offset`, as Rust's `Ipv6Addr` displays it. */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  return formatIpv6Text(bytes, offset, false);
}

/**
 * The 16 bytes at `offset` as `inet_ntop` prints them, i.e. as Node reports a socket's address. Use it for
 * text that is compared with `rinfo.address`; it differs from `formatIpv6` only on IPv4-compatible addresses.
 */
export function formatIpv6InetNtop(bytes: Uint8Array, offset = 0): string {
  return formatIpv6Text(bytes, offset, true);
}

/**
 * Writes the 4 or 16 bytes of `text`, an address of `family`, at `target[offset]`; returns false (writing
 * nothing) if it is not one. An IPv6 zone (`fe80::1%eth0`, as Node reports link-local peers) is ignored.
 */
export function writeIpText(text: string, family: 4 | 6, target: Uint8Array, offset: number): boolean {
  if (family === 6) {
    const zone = text.indexOf('%');
    return parseIpv6Into(zone < 0 ? text : text.slice(0, zone), target, offset);
  }
  const value = parseIpv4(text);
  if (value === undefined) return false;
  writeU32(target, offset, value);
  return true;
}

/**
 * An IP literal (no brackets, no zone) in the form a socket reports it (`formatIpv6InetNtop` for IPv6), so
 * that addresses learnt as text compare equal to `rinfo.address`; undefined if `text` is not an IP literal.
 */
export function canonicalSocketIp(text: string): { address: string; family: 4 | 6 } | undefined {
  const ip = parseIp(text);
  if (ip === undefined) return undefined;
  if (ip.family === 4) return { address: formatIpv4(ip.value), family: 4 };
  return { address: formatIpv6InetNtop(ip.bytes), family: 6 };
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

function formatIpv6Text(bytes: Uint8Array, offset: number, keepIpv4Compatible: boolean): string {
  let zerosStart = -1;
  let zerosLength = 1;
  let runStart = 0;
  for (let i = 0; i < 8; i++) {
    if (readU16(bytes, offset + 2 * i) !== 0) {
      runStart = i + 1;
    } else if (i + 1 - runStart > zerosLength) {
      zerosStart = runStart;
      zerosLength = i + 1 - runStart;
    }
  }
  if (zerosStart === 0) {
    if (zerosLength === 5 && readU16(bytes, offset + 10) === 0xffff) return `::ffff:${formatIpv4(readU32(bytes, offset + 12))}`;
    if (zerosLength === 6 && keepIpv4Compatible) return `::${formatIpv4(readU32(bytes, offset + 12))}`;
  }
  if (zerosStart < 0) return hexGroups(bytes, offset, 0, 8);
  return `${hexGroups(bytes, offset, 0, zerosStart)}::${hexGroups(bytes, offset, zerosStart + zerosLength, 8)}`;
}

function hexGroups(bytes: Uint8Array, offset: number, from: number, to: number): string {
  let text = '';
  for (let i = from; i < to; i++) text += (i === from ? '' : ':') + readU16(bytes, offset + 2 * i).toString(16);
  return text;
}
