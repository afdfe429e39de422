/**
 * Strict textual IP and CIDR checks for portal payloads, matching what Rust's `Ipv4Addr`,
 * `Ipv6Addr` and `ip_network::IpNetwork` accept: no IPv4 leading zeros, no IPv6 zone ids, and a
 * network must have its prefix and no host bits set.
 */
import { isIPv4, isIPv6 } from 'node:net';

export function isIpv4Text(text: string): boolean {
  return isIPv4(text);
}

export function isIpv6Text(text: string): boolean {
  return !text.includes('%') && isIPv6(text);
}

export function isIpText(text: string): boolean {
  return isIpv4Text(text) || isIpv6Text(text);
}

/** `<address>/<prefix>` with a prefix in range and all host bits zero. */
export function isCanonicalCidr(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const address = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return false;
  const prefix = Number(prefixText);
  let bytes: Uint8Array | undefined;
  if (isIpv4Text(address)) {
    if (prefix > 32) return false;
    bytes = Uint8Array.from(address.split('.'), Number);
  } else if (isIpv6Text(address)) {
    if (prefix > 128) return false;
    bytes = ipv6Bytes(address);
  }
  if (bytes === undefined) return false;
  return hostBitsAreZero(bytes, prefix);
}

function hostBitsAreZero(bytes: Uint8Array, prefix: number): boolean {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

/** Assumes `isIpv6Text(text)`. */
function ipv6Bytes(text: string): Uint8Array {
  let words: number[] = [];
  const parseGroups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const group of part.split(':')) {
      if (group.includes('.')) {
        const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(group, 16));
      }
    }
    return out;
  };
  const gap = text.indexOf('::');
  if (gap < 0) {
    words = parseGroups(text);
  } else {
    const head = parseGroups(text.slice(0, gap));
    const tail = parseGroups(text.slice(gap + 2));
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = (words[i]! >> 8) & 0xff;
    bytes[2 * i + 1] = words[i]! & 0xff;
  }
  return bytes;
}
