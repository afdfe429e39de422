// The address classes the packet rules test, read in place from a packet (IPv4 as a uint32, IPv6 as 16 bytes
// at an offset), without allocating.
//
// - tunnel ranges: where clients and gateways live (100.64.0.0/11, fd00:2021:1111::/107);
// - proxy ranges: DNS-resource proxy IPs clients make up (100.96.0.0/11, fd00:2021:1111:8000::/107);
// - what an Internet-resource client may not reach behind the gateway (1.6.0 `internet_resource_rejects`):
//   IPv4 private, loopback, link-local, CGNAT, multicast and 240/4 (broadcast included); IPv6 loopback,
//   IPv4-mapped, unique-local, link-local and multicast.

import { readU32 } from '../ip/index.ts';

/** fd00:2021:1111::/107 and fd00:2021:1111:8000::/107 differ only in their fourth group. */
const V6_PREFIX_W0 = 0xfd00_2021;
const V6_TUNNEL_W1 = 0x1111_0000;
const V6_PROXY_W1 = 0x1111_8000;
/** The top 11 bits of the last word belong to a /107 prefix. */
const V6_RANGE_W3_MASK = 0xffe0_0000;

export function isTunnelV4(address: number): boolean {
  return address >>> 21 === 0x64400000 >>> 21;
}

export function isTunnelV6(bytes: Uint8Array, offset: number): boolean {
  return inV6Range(bytes, offset, V6_TUNNEL_W1);
}

export function isProxyV4(address: number): boolean {
  return address >>> 21 === 0x64600000 >>> 21;
}

export function isProxyV6(bytes: Uint8Array, offset: number): boolean {
  return inV6Range(bytes, offset, V6_PROXY_W1);
}

export function isMulticastV4(address: number): boolean {
  return address >>> 28 === 0xe;
}

export function isMulticastV6(bytes: Uint8Array, offset: number): boolean {
  return bytes[offset] === 0xff;
}

/** An IPv4 destination the Internet resource does not cover. */
export function internetResourceRejectsV4(address: number): boolean {
  const a = address >>> 24;
  const b = (address >>> 16) & 0xff;
  if (a === 10 || a === 127 || a >= 224) return true;
  if (a === 172) return b >= 16 && b <= 31;
  if (a === 192) return b === 168;
  if (a === 169) return b === 254;
  if (a === 100) return b >= 64 && b <= 127;
  return false;
}

/** An IPv6 destination the Internet resource does not cover. */
export function internetResourceRejectsV6(bytes: Uint8Array, offset: number): boolean {
  const first = bytes[offset]!;
  if (first === 0xff) return true;
  if ((first & 0xfe) === 0xfc) return true;
  if (first === 0xfe && (bytes[offset + 1]! & 0xc0) === 0x80) return true;
  const w0 = readU32(bytes, offset);
  const w1 = readU32(bytes, offset + 4);
  const w2 = readU32(bytes, offset + 8);
  if (w0 !== 0 || w1 !== 0) return false;
  if (w2 === 0x0000_ffff) return true;
  return w2 === 0 && readU32(bytes, offset + 12) === 1;
}

function inV6Range(bytes: Uint8Array, offset: number, w1: number): boolean {
  return (
    readU32(bytes, offset) === V6_PREFIX_W0 &&
    readU32(bytes, offset + 4) === w1 &&
    readU32(bytes, offset + 8) === 0 &&
    (readU32(bytes, offset + 12) & V6_RANGE_W3_MASK) >>> 0 === 0
  );
}
