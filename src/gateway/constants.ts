import { parseCidr } from '../ip/index.ts';
import type { Cidr } from '../ip/index.ts';

export const IPV4_TUNNEL: Cidr = parseCidr('100.64.0.0/11')!;
export const IPV6_TUNNEL: Cidr = parseCidr('fd00:2021:1111::/107')!;
export const IPV4_PROXY_RANGE: Cidr = parseCidr('100.96.0.0/11')!;
export const IPV6_PROXY_RANGE: Cidr = parseCidr('fd00:2021:1111:8000::/107')!;

/** Both /107 ranges differ only in their last 21 bits, so those bits identify an address within them. */
export const V6_RANGE_HOST_MASK = 0x1fffff;

export const EXPIRY_TICK_MS = 1000;
export const NAT_TTL_TCP_MS = 7200_000;
export const NAT_TTL_UDP_MS = 120_000;
export const NAT_TTL_ICMP_MS = 120_000;

export const DNS_RESOLUTION_TIMEOUT_MS = 10_000;
export const DNS_CACHE_TTL_MS = 30_000;
export const MAX_CONCURRENT_RESOLUTIONS = 1000;
