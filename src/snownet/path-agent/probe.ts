// Path probes: ICMPv6 echo carried inside WireGuard between two fixed addresses of the RFC 6666
// discard prefix 100::/64, so a probe can never be mistaken for traffic to or from a real host.
// Both directions use source PROBE_SRC and destination PROBE_DST; the payload is empty; the
// identifier names the pair the probe was sent on and the sequence number counts up per pair.
import { ipv6, type Ipv6Addr } from '../../ip/addr.ts';
import {
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  IPV6_HEADER_LENGTH,
  IPV6_OFFSET_DESTINATION,
  IPV6_OFFSET_NEXT_HEADER,
  IPV6_OFFSET_SOURCE,
  PROTOCOL_ICMPV6,
} from '../../ip/constants.ts';
import { makeIcmpEchoReply, makeIcmpEchoRequest } from '../../ip/make.ts';

/** 100::dead:1ce:1 */
export const PROBE_SRC: Ipv6Addr = ipv6(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0x01, 0xce, 0, 1));
/** 100::dead:1ce:2 */
export const PROBE_DST: Ipv6Addr = ipv6(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0x01, 0xce, 0, 2));

export type ProbeKind = 'request' | 'reply';

export interface Probe {
  readonly kind: ProbeKind;
  readonly id: number;
  readonly seq: number;
}

const NO_PAYLOAD = new Uint8Array(0);
/** IPv6 header plus the ICMPv6 echo header (type, code, checksum, identifier, sequence). */
const ECHO_LENGTH = IPV6_HEADER_LENGTH + 8;

export function makeProbeRequest(id: number, seq: number): Uint8Array {
  return makeIcmpEchoRequest(PROBE_SRC, PROBE_DST, id, seq, NO_PAYLOAD);
}

export function makeProbeReply(id: number, seq: number): Uint8Array {
  return makeIcmpEchoReply(PROBE_SRC, PROBE_DST, id, seq, NO_PAYLOAD);
}

/**
 * Whether a decrypted packet is a probe: IPv6 from PROBE_SRC to PROBE_DST carrying an ICMPv6 echo
 * request or reply (the checksum is not verified; WireGuard already authenticated the packet).
 * Cheap enough for every decrypted packet: the first byte rules out IPv4 at once.
 */
export function parseProbe(packet: Uint8Array): Probe | undefined {
  if (packet.length < ECHO_LENGTH || packet[0]! >> 4 !== 6 || packet[IPV6_OFFSET_NEXT_HEADER] !== PROTOCOL_ICMPV6) return undefined;
  if (!matches(packet, IPV6_OFFSET_SOURCE, PROBE_SRC.bytes) || !matches(packet, IPV6_OFFSET_DESTINATION, PROBE_DST.bytes)) return undefined;
  const type = packet[IPV6_HEADER_LENGTH];
  if ((type !== ICMPV6_ECHO_REQUEST && type !== ICMPV6_ECHO_REPLY) || packet[IPV6_HEADER_LENGTH + 1] !== 0) return undefined;
  return {
    kind: type === ICMPV6_ECHO_REQUEST ? 'request' : 'reply',
    id: (packet[IPV6_HEADER_LENGTH + 4]! << 8) | packet[IPV6_HEADER_LENGTH + 5]!,
    seq: (packet[IPV6_HEADER_LENGTH + 6]! << 8) | packet[IPV6_HEADER_LENGTH + 7]!,
  };
}

function matches(packet: Uint8Array, offset: number, address: Uint8Array): boolean {
  for (let i = 15; i >= 0; i--) if (packet[offset + i] !== address[i]) return false;
  return true;
}
