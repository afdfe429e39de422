import { parseCidr } from '../ip/index.ts';
import type { Cidr } from '../ip/index.ts';

export const IPV4_TUNNEL: Cidr = parseCidr('100.64.0.0/11')!;
export const IPV6_TUNNEL: Cidr = parseCidr('fd00:2021:1111::/107')!;
export const IPV4_PROXY_RANGE: Cidr = parseCidr('100.96.0.0/11')!;
export const IPV6_PROXY_RANGE: Cidr = parseCidr('fd00:2021:1111:8000::/107')!;

/** Within one /107 only the last 21 bits vary, so they identify an address of it. */
export const V6_RANGE_HOST_MASK = 0x1fffff;

/** The gateway's DNS forwarder on its tunnel addresses (UDP and TCP). */
export const TUN_DNS_PORT = 53535;

// NAT session lifetimes (1.6.0 nat_table.rs): TCP 2 h 4 min (RFC 5382's floor), UDP and ICMP 2 min after the
// last packet; 60 s after the last outgoing packet while nothing came back; 5 s after the last packet once both
// sides sent FIN; at once after a RST.
export const NAT_TTL_TCP_MS = (2 * 60 + 4) * 60_000;
export const NAT_TTL_UDP_MS = 120_000;
export const NAT_TTL_ICMP_MS = 120_000;
export const NAT_UNCONFIRMED_TTL_MS = 60_000;
export const NAT_FIN_LINGER_MS = 5_000;
/** Ended sessions are freed on this grid (their end is exact: a lookup checks it). */
export const NAT_SWEEP_GRANULARITY_MS = 1_000;

export const DNS_RESOLUTION_TIMEOUT_MS = 10_000;
export const DNS_CACHE_TTL_MS = 30_000;

// Bounds on what one client can make the gateway hold or do (implementation limits, not the reference's).
/** Concurrent NAT sessions per client: new ones beyond are dropped until some end. */
export const MAX_NAT_SESSIONS_PER_CLIENT = 4096;
/** Remembered outside tuples of ended sessions per client (the oldest are forgotten first). */
export const MAX_EXPIRED_NAT_TUPLES_PER_CLIENT = 4096;
/** DNS-resource domains with translations per client; a new one beyond replaces the least recently used. */
export const MAX_NAT_DOMAINS_PER_CLIENT = 512;
/** Proxy IPs taken per domain and family: the reference's client assigns 4 IPv4 and 4 IPv6. */
export const MAX_PROXY_IPS_PER_FAMILY = 4;
/** p2p control packets per client: a bucket of this many, refilled at P2P_CONTROL_RATE_PER_S. */
export const P2P_CONTROL_BURST = 256;
export const P2P_CONTROL_RATE_PER_S = 32;
/** Name resolutions waited on per client and in total; an AssignedIps beyond is answered Inactive at once. */
export const MAX_RESOLUTIONS_PER_CLIENT = 32;
export const MAX_CONCURRENT_RESOLUTIONS = 1000;
/** Resolved names kept for DNS_CACHE_TTL_MS. */
export const MAX_CACHED_RESOLUTIONS = 10_000;
