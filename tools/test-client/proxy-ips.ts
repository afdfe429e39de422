/**
 * Proxy IPs for DNS resources, handed out the way Firezone clients do (gateway-core §1.1):
 * 4 IPv4 from 100.96.0.1 upward and 4 IPv6 from fd00:2021:1111:8000:: upward per
 * (resource, domain). Asking again for the same pair returns the same addresses.
 */
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from '../../src/ip/addr.ts';

export const PROXY_IPS_PER_FAMILY = 4;
const V4_FIRST = parseIpv4('100.96.0.1')!;
const V4_LAST = parseIpv4('100.127.255.255')!;
const V6_BASE = parseIpv6('fd00:2021:1111:8000::')!;
/** fd00:2021:1111:8000::/107 leaves 21 host bits. */
const V6_COUNT = 1 << 21;

export interface ProxyIps {
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
}

export class ProxyIpAllocator {
  private readonly assigned = new Map<string, ProxyIps>();
  private nextV4 = V4_FIRST;
  private nextV6 = 0;

  /** Undefined once a range is exhausted. */
  allocate(resourceId: string, domain: string): ProxyIps | undefined {
    const key = `${resourceId}/${domain.toLowerCase()}`;
    const existing = this.assigned.get(key);
    if (existing !== undefined) return existing;
    if (this.nextV4 + PROXY_IPS_PER_FAMILY - 1 > V4_LAST || this.nextV6 + PROXY_IPS_PER_FAMILY > V6_COUNT) return undefined;
    const ipv4: string[] = [];
    const ipv6: string[] = [];
    for (let i = 0; i < PROXY_IPS_PER_FAMILY; i++) {
      ipv4.push(formatIpv4(this.nextV4++));
      ipv6.push(formatIpv6(v6At(this.nextV6++)));
    }
    const ips = { ipv4, ipv6 };
    this.assigned.set(key, ips);
    return ips;
  }

  lookup(resourceId: string, domain: string): ProxyIps | undefined {
    return this.assigned.get(`${resourceId}/${domain.toLowerCase()}`);
  }
}

function v6At(index: number): Uint8Array {
  const bytes = V6_BASE.slice();
  bytes[13] = bytes[13]! | ((index >>> 16) & 0x1f);
  bytes[14] = (index >>> 8) & 0xff;
  bytes[15] = index & 0xff;
  return bytes;
}
