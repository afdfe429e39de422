// The STUN address attributes' view of IP text: IPv6 is printed the way Node reports a socket's
// `rinfo.address` (inet_ntop), so addresses decoded from STUN compare equal to addresses sockets report.
import { formatIpv4 as formatIpv4Value, formatIpv6InetNtop, readU32 } from '../ip/index.ts';

export { writeIpText as writeIpAddress } from '../ip/index.ts';

export function formatIpv4(bytes: Uint8Array, offset: number): string {
  return formatIpv4Value(readU32(bytes, offset));
}

export function formatIpv6(bytes: Uint8Array, offset: number): string {
  return formatIpv6InetNtop(bytes, offset);
}
