/**
 * Builders for the packets the gateway emits and the packets tests feed it. Byte-exact to the reference's
 * `make` module (etherparse defaults): IPv4 id 0, DF set, DSCP/ECN 0, no options; IPv6 traffic class and flow
 * label 0; TTL / hop limit 64 for ordinary packets and 20 for ICMP errors. All checksums are computed.
 *
 * A family mismatch between source and destination or an output over 1280 bytes is a caller error and throws.
 */
import { writeIp } from './addr.ts';
import { copyBytes, writeU16, writeU32 } from './bytes.ts';
import type { IpAddr } from './addr.ts';
import { internetChecksum, ipv4HeaderChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from './checksum.ts';
import {
  DEFAULT_TTL,
  ICMP_ERROR_TTL,
  ICMP_HEADER_LENGTH,
  ICMP_OFFSET_CHECKSUM,
  ICMPV4_CODE_FILTER_PROHIBITED,
  ICMPV4_CODE_NETWORK_UNREACHABLE,
  ICMPV4_DESTINATION_UNREACHABLE,
  ICMPV4_ECHO_REPLY,
  ICMPV4_ECHO_REQUEST,
  ICMPV6_CODE_ADDRESS_UNREACHABLE,
  ICMPV6_CODE_ADMINISTRATIVELY_PROHIBITED,
  ICMPV6_DESTINATION_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_ERROR_MAX_PAYLOAD,
  IPV4_FLAG_DONT_FRAGMENT,
  IPV4_MIN_HEADER_LENGTH,
  IPV4_OFFSET_CHECKSUM,
  IPV4_OFFSET_DESTINATION,
  IPV4_OFFSET_FLAGS,
  IPV4_OFFSET_IDENTIFICATION,
  IPV4_OFFSET_PROTOCOL,
  IPV4_OFFSET_SOURCE,
  IPV4_OFFSET_TOTAL_LENGTH,
  IPV4_OFFSET_TTL,
  IPV6_HEADER_LENGTH,
  IPV6_OFFSET_DESTINATION,
  IPV6_OFFSET_HOP_LIMIT,
  IPV6_OFFSET_NEXT_HEADER,
  IPV6_OFFSET_PAYLOAD_LENGTH,
  IPV6_OFFSET_SOURCE,
  MAX_IP_SIZE,
  PROTOCOL_ICMPV4,
  PROTOCOL_ICMPV6,
  PROTOCOL_TCP,
  PROTOCOL_UDP,
  TCP_MIN_HEADER_LENGTH,
  TCP_OFFSET_CHECKSUM,
  UDP_HEADER_LENGTH,
  UDP_OFFSET_CHECKSUM,
} from './constants.ts';
import type { IpPacket } from './packet.ts';

export interface TcpOptions {
  readonly flags?: number;
  readonly sequence?: number;
  readonly acknowledgement?: number;
  readonly window?: number;
}

export function makeUdpPacket(
  source: IpAddr,
  destination: IpAddr,
  sourcePort: number,
  destinationPort: number,
  payload: Uint8Array,
): Uint8Array {
  const l4Length = UDP_HEADER_LENGTH + payload.length;
  const { packet, l4 } = allocate(source, destination, PROTOCOL_UDP, l4Length, DEFAULT_TTL);
  writeU16(packet, l4, sourcePort);
  writeU16(packet, l4 + 2, destinationPort);
  writeU16(packet, l4 + 4, l4Length);
  packet.set(payload, l4 + UDP_HEADER_LENGTH);
  let checksum = transportChecksum(packet, source.family, PROTOCOL_UDP, l4);
  if (checksum === 0) checksum = 0xffff;
  writeU16(packet, l4 + UDP_OFFSET_CHECKSUM, checksum);
  return packet;
}

/** A TCP segment without options; defaults as the reference's `make::tcp_packet`: seq 0, window 128. */
export function makeTcpPacket(
  source: IpAddr,
  destination: IpAddr,
  sourcePort: number,
  destinationPort: number,
  options: TcpOptions,
  payload: Uint8Array,
): Uint8Array {
  const l4Length = TCP_MIN_HEADER_LENGTH + payload.length;
  const { packet, l4 } = allocate(source, destination, PROTOCOL_TCP, l4Length, DEFAULT_TTL);
  writeU16(packet, l4, sourcePort);
  writeU16(packet, l4 + 2, destinationPort);
  writeU32(packet, l4 + 4, options.sequence ?? 0);
  writeU32(packet, l4 + 8, options.acknowledgement ?? 0);
  packet[l4 + 12] = (TCP_MIN_HEADER_LENGTH / 4) << 4;
  packet[l4 + 13] = options.flags ?? 0;
  writeU16(packet, l4 + 14, options.window ?? 128);
  packet.set(payload, l4 + TCP_MIN_HEADER_LENGTH);
  writeU16(packet, l4 + TCP_OFFSET_CHECKSUM, transportChecksum(packet, source.family, PROTOCOL_TCP, l4));
  return packet;
}

export function makeIcmpEchoRequest(
  source: IpAddr,
  destination: IpAddr,
  identifier: number,
  sequence: number,
  payload: Uint8Array,
): Uint8Array {
  const type = source.family === 4 ? ICMPV4_ECHO_REQUEST : ICMPV6_ECHO_REQUEST;
  return makeIcmpEcho(source, destination, type, identifier, sequence, payload);
}

export function makeIcmpEchoReply(
  source: IpAddr,
  destination: IpAddr,
  identifier: number,
  sequence: number,
  payload: Uint8Array,
): Uint8Array {
  const type = source.family === 4 ? ICMPV4_ECHO_REPLY : ICMPV6_ECHO_REPLY;
  return makeIcmpEcho(source, destination, type, identifier, sequence, payload);
}

/**
 * Why the gateway refuses a client's packet:
 * - `prohibited`: denied by the filters (ICMPv4 3/13, ICMPv6 1/1);
 * - `unreachable`: a DNS proxy IP with no translation of its family (ICMPv4 3/0, ICMPv6 1/3).
 */
export type UnreachableReason = 'prohibited' | 'unreachable';

/**
 * The ICMP destination-unreachable reply to `original` (a parsed packet): from its destination to its source,
 * TTL 20. It quotes the IPv4 header + 8 bytes (IPv4), or up to 1232 bytes (IPv6), of the packet as received.
 */
export function makeIcmpDestinationUnreachable(original: IpPacket, reason: UnreachableReason): Uint8Array {
  const bytes = original.bytes;
  if (original.version === 4) {
    const quoteLength = Math.min(bytes.length, original.headerLength + 8);
    const code = reason === 'prohibited' ? ICMPV4_CODE_FILTER_PROHIBITED : ICMPV4_CODE_NETWORK_UNREACHABLE;
    return makeIcmpError(original, ICMPV4_DESTINATION_UNREACHABLE, code, 0, bytes.subarray(0, quoteLength));
  }
  const quoteLength = Math.min(bytes.length, ICMPV6_ERROR_MAX_PAYLOAD);
  const code = reason === 'prohibited' ? ICMPV6_CODE_ADMINISTRATIVELY_PROHIBITED : ICMPV6_CODE_ADDRESS_UNREACHABLE;
  return makeIcmpError(original, ICMPV6_DESTINATION_UNREACHABLE, code, 0, bytes.subarray(0, quoteLength));
}

export interface IcmpErrorOptions {
  readonly type: number;
  readonly code: number;
  /** The 32-bit field after the checksum: an MTU for "fragmentation needed" / "packet too big", else 0. */
  readonly rest?: number;
  /** Sender of the error, e.g. a router; `original`'s destination by default. Must be of its family. */
  readonly source?: IpAddr;
  /** Bytes of `original` to quote; by default the IPv4 header + 8 bytes, or up to 1232 bytes of IPv6. */
  readonly quoteLength?: number;
}

/**
 * Any ICMP error about `original`, sent to its source with TTL 20: what a router or host on the resource side
 * would send (for tests and simulations). Throws if `source` is of the other family.
 */
export function makeIcmpErrorReply(original: IpPacket, options: IcmpErrorOptions): Uint8Array {
  if (options.source !== undefined && options.source.family !== original.version) {
    throw new TypeError('ICMP error source of the other IP version');
  }
  const defaultLength = original.version === 4 ? original.headerLength + 8 : ICMPV6_ERROR_MAX_PAYLOAD;
  const quoteLength = Math.min(original.bytes.length, options.quoteLength ?? defaultLength, ICMPV6_ERROR_MAX_PAYLOAD);
  const quote = original.bytes.subarray(0, quoteLength);
  return makeIcmpError(original, options.type, options.code, options.rest ?? 0, quote, options.source);
}

/**
 * Writes a 20-byte IPv4 or a 40-byte IPv6 header at offset 0 of `packet` (whose length is the whole packet),
 * with its checksum. Returns the header length.
 */
export function writeIpHeader(
  packet: Uint8Array,
  source: IpAddr,
  destination: IpAddr,
  protocol: number,
  ttl: number,
): number {
  if (source.family !== destination.family) throw new TypeError('source and destination differ in IP version');
  const headerLength = writeIpHeaderFields(packet, source.family, protocol, ttl);
  writeIp(packet, source.family === 4 ? IPV4_OFFSET_SOURCE : IPV6_OFFSET_SOURCE, source);
  writeIp(packet, source.family === 4 ? IPV4_OFFSET_DESTINATION : IPV6_OFFSET_DESTINATION, destination);
  sealIpv4Header(packet, source.family);
  return headerLength;
}

/**
 * Writes every header field but the addresses and the IPv4 checksum (for callers that copy addresses from
 * another packet; `sealIpv4Header` afterwards). Returns the header length.
 */
export function writeIpHeaderFields(packet: Uint8Array, version: 4 | 6, protocol: number, ttl: number): number {
  if (version === 4) {
    packet[0] = 0x45;
    packet[1] = 0;
    writeU16(packet, IPV4_OFFSET_TOTAL_LENGTH, packet.length);
    writeU16(packet, IPV4_OFFSET_IDENTIFICATION, 0);
    packet[IPV4_OFFSET_FLAGS] = IPV4_FLAG_DONT_FRAGMENT;
    packet[IPV4_OFFSET_FLAGS + 1] = 0;
    packet[IPV4_OFFSET_TTL] = ttl;
    packet[IPV4_OFFSET_PROTOCOL] = protocol;
    return IPV4_MIN_HEADER_LENGTH;
  }
  writeU32(packet, 0, 0x60000000);
  writeU16(packet, IPV6_OFFSET_PAYLOAD_LENGTH, packet.length - IPV6_HEADER_LENGTH);
  packet[IPV6_OFFSET_NEXT_HEADER] = protocol;
  packet[IPV6_OFFSET_HOP_LIMIT] = ttl;
  return IPV6_HEADER_LENGTH;
}

/** Computes the header checksum of a 20-byte IPv4 header at offset 0; nothing to do for IPv6. */
export function sealIpv4Header(packet: Uint8Array, version: 4 | 6): void {
  if (version !== 4) return;
  writeU16(packet, IPV4_OFFSET_CHECKSUM, 0);
  writeU16(packet, IPV4_OFFSET_CHECKSUM, ipv4HeaderChecksum(packet, IPV4_MIN_HEADER_LENGTH));
}

/** Checksum of the transport data `packet[l4..]` (TCP, UDP, ICMPv4 or ICMPv6), its checksum field zero. */
export function transportChecksum(packet: Uint8Array, family: 4 | 6, protocol: number, l4: number): number {
  const length = packet.length - l4;
  let pseudo = 0;
  if (protocol !== PROTOCOL_ICMPV4) {
    pseudo = family === 4 ? pseudoHeaderSumV4(packet, protocol, length) : pseudoHeaderSumV6(packet, protocol, length);
  }
  return internetChecksum(packet, l4, packet.length, pseudo);
}

/**
 * An ICMP error from `source` (by default `original`'s destination) to `original`'s source, TTL 20, quoting
 * `quote`. `rest` is the 32-bit field after the checksum (zero, or an MTU).
 */
function makeIcmpError(
  original: IpPacket,
  type: number,
  code: number,
  rest: number,
  quote: Uint8Array,
  source?: IpAddr,
): Uint8Array {
  const version = original.version;
  const protocol = version === 4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6;
  const headerLength = version === 4 ? IPV4_MIN_HEADER_LENGTH : IPV6_HEADER_LENGTH;
  const packet = new Uint8Array(headerLength + ICMP_HEADER_LENGTH + quote.length);
  const l4 = writeIpHeaderFields(packet, version, protocol, ICMP_ERROR_TTL);
  const addressLength = original.addressLength;
  if (source === undefined) copyBytes(original.bytes, original.destinationOffset, packet, original.sourceOffset, addressLength);
  else writeIp(packet, original.sourceOffset, source);
  copyBytes(original.bytes, original.sourceOffset, packet, original.destinationOffset, addressLength);
  sealIpv4Header(packet, version);
  packet[l4] = type;
  packet[l4 + 1] = code;
  writeU32(packet, l4 + 4, rest);
  packet.set(quote, l4 + ICMP_HEADER_LENGTH);
  writeU16(packet, l4 + ICMP_OFFSET_CHECKSUM, transportChecksum(packet, version, protocol, l4));
  return packet;
}

function makeIcmpEcho(
  source: IpAddr,
  destination: IpAddr,
  type: number,
  identifier: number,
  sequence: number,
  payload: Uint8Array,
): Uint8Array {
  const protocol = source.family === 4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6;
  const { packet, l4 } = allocate(source, destination, protocol, ICMP_HEADER_LENGTH + payload.length, DEFAULT_TTL);
  packet[l4] = type;
  packet[l4 + 1] = 0;
  writeU16(packet, l4 + 4, identifier);
  writeU16(packet, l4 + 6, sequence);
  packet.set(payload, l4 + ICMP_HEADER_LENGTH);
  writeU16(packet, l4 + ICMP_OFFSET_CHECKSUM, transportChecksum(packet, source.family, protocol, l4));
  return packet;
}

function allocate(
  source: IpAddr,
  destination: IpAddr,
  protocol: number,
  l4Length: number,
  ttl: number,
): { packet: Uint8Array; l4: number } {
  const headerLength = source.family === 4 ? IPV4_MIN_HEADER_LENGTH : IPV6_HEADER_LENGTH;
  const length = headerLength + l4Length;
  if (length > MAX_IP_SIZE) throw new RangeError(`packet of ${length} bytes exceeds ${MAX_IP_SIZE}`);
  const packet = new Uint8Array(length);
  const l4 = writeIpHeader(packet, source, destination, protocol, ttl);
  return { packet, l4 };
}
