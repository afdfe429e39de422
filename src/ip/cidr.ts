import { formatIp, ipEquals, parseIp } from './addr.ts';
import { readU32 } from './bytes.ts';
import type { IpAddr } from './addr.ts';

/** An IP network: `address` is the network address (host bits zero). */
export interface Cidr {
  readonly address: IpAddr;
  readonly prefixLength: number;
}

export type CidrParseOptions = {
  /** Zero set host bits (`10.0.0.1/8` → `10.0.0.0/8`) instead of refusing them. */
  readonly truncate?: boolean;
};

/** Parses `a.b.c.d/n` or `x::y/n`; refuses host bits unless `truncate`. A bare address is not a CIDR. */
export function parseCidr(text: string, options: CidrParseOptions = {}): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIp(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (address === undefined || !/^(0|[1-9]\d{0,2})$/.test(lengthText)) return undefined;
  const prefixLength = Number(lengthText);
  if (prefixLength > maxPrefixLength(address)) return undefined;
  const network = maskAddress(address, prefixLength);
  if (!options.truncate && !ipEquals(network, address)) return undefined;
  return { address: network, prefixLength };
}

/** The host route of one address: /32 or /128. */
export function hostCidr(address: IpAddr): Cidr {
  return { address, prefixLength: maxPrefixLength(address) };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.address)}/${cidr.prefixLength}`;
}

export function maxPrefixLength(address: IpAddr): 32 | 128 {
  return address.family === 4 ? 32 : 128;
}

/** The netmask of a /`prefixLength` IPv4 network as a uint32. */
export function maskV4(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

export function maskAddress(address: IpAddr, prefixLength: number): IpAddr {
  if (address.family === 4) return { family: 4, value: (address.value & maskV4(prefixLength)) >>> 0 };
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[i] = address.bytes[i]! & byteMask(prefixLength, i);
  return { family: 6, bytes };
}

export function cidrContains(cidr: Cidr, address: IpAddr): boolean {
  if (address.family === 4) return cidrContainsV4(cidr, address.value);
  return cidrContainsV6(cidr, address.bytes, 0);
}

export function cidrContainsV4(cidr: Cidr, address: number): boolean {
  return cidr.address.family === 4 && ((address & maskV4(cidr.prefixLength)) >>> 0) === cidr.address.value;
}

/** Whether the 16 bytes at `bytes[offset]` lie in `cidr`; reads straight from a packet. */
export function cidrContainsV6(cidr: Cidr, bytes: Uint8Array, offset: number): boolean {
  if (cidr.address.family !== 6) return false;
  const network = cidr.address.bytes;
  for (let word = 0; word < 4; word++) {
    const bits = cidr.prefixLength - 32 * word;
    if (bits <= 0) return true;
    const mask = bits >= 32 ? 0xffffffff : maskV4(bits);
    if (((readU32(bytes, offset + 4 * word) & mask) >>> 0) !== readU32(network, 4 * word)) return false;
  }
  return true;
}

/** Whether `outer` covers all of `inner` (same family, shorter or equal prefix, contains its network). */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.prefixLength <= inner.prefixLength && cidrContains(outer, inner.address);
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.prefixLength === b.prefixLength && ipEquals(a.address, b.address);
}

function byteMask(prefixLength: number, byteIndex: number): number {
  const bits = prefixLength - 8 * byteIndex;
  if (bits >= 8) return 0xff;
  if (bits <= 0) return 0;
  return (0xff << (8 - bits)) & 0xff;
}
