/**
 * Strict textual IP and CIDR checks for portal payloads, matching what Rust's `Ipv4Addr`,
 * `Ipv6Addr` and `ip_network::IpNetwork` accept: no IPv4 leading zeros, no IPv6 zone ids, and a
 * network must have its prefix and no host bits set.
 */
import { ipEquals, maskAddress, maxPrefixLength, parseIp, parseIpv4, parseIpv6 } from '../ip/index.ts';

export function isIpv4Text(text: string): boolean {
  return parseIpv4(text) !== undefined;
}

export function isIpv6Text(text: string): boolean {
  return parseIpv6(text) !== undefined;
}

export function isIpText(text: string): boolean {
  return parseIp(text) !== undefined;
}

/** `<address>/<prefix>` with a prefix in range and all host bits zero. */
export function isCanonicalCidr(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const address = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,3}$/.test(prefixText)) return false;
  const prefix = Number(prefixText);
  return prefix <= maxPrefixLength(address) && ipEquals(maskAddress(address, prefix), address);
}
