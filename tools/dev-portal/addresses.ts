// Tunnel address allocation as the portal does it: a random free address in 100.64.0.0/11 and in
// fd00:2021:1111::/107, kept for the lifetime of the gateway or client record.
import type { RandomSource } from '../../src/util/random.ts';

const IPV4_TUNNEL_BASE = 0x64400000; // 100.64.0.0
const TUNNEL_HOST_BITS = 21; // both ranges are /11 and /107
const HOST_MASK = (1 << TUNNEL_HOST_BITS) - 1;

export interface TunnelAddresses {
  readonly ipv4: string;
  readonly ipv6: string;
}

/** Picks addresses not in `used` (textual, canonical); skips the all-zero and all-ones host parts. */
export function allocateTunnelAddresses(random: RandomSource, used: ReadonlySet<string>): TunnelAddresses {
  return { ipv4: pickFree(random, used, tunnelIpv4), ipv6: pickFree(random, used, tunnelIpv6) };
}

export function tunnelIpv4(host: number): string {
  const value = (IPV4_TUNNEL_BASE | (host & HOST_MASK)) >>> 0;
  return `${value >>> 24}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`;
}

export function tunnelIpv6(host: number): string {
  const high = (host & HOST_MASK) >>> 16;
  const low = host & 0xffff;
  return high === 0 ? `fd00:2021:1111::${low.toString(16)}` : `fd00:2021:1111::${high.toString(16)}:${low.toString(16)}`;
}

function pickFree(random: RandomSource, used: ReadonlySet<string>, format: (host: number) => string): string {
  for (;;) {
    const host = random.u32() & HOST_MASK;
    if (host === 0 || host === HOST_MASK) continue;
    const address = format(host);
    if (!used.has(address)) return address;
  }
}
