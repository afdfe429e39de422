/**
 * ICMP errors arriving from the network for a DNS-resource NAT session (gateway-core spec §4.3):
 * classify the message, parse the packet it quotes (leniently: quotes are usually truncated), and build the
 * translated error for the client (source = proxy IP, quoted destination and source port / echo id restored).
 */
import { writeIp } from './addr.ts';
import { copyBytes, readU32, writeU16, writeU32 } from './bytes.ts';
import type { IpAddr } from './addr.ts';
import {
  ICMP_ERROR_TTL,
  ICMP_HEADER_LENGTH,
  ICMP_OFFSET_CHECKSUM,
  ICMP_OFFSET_IDENTIFIER,
  ICMPV4_DESTINATION_UNREACHABLE,
  ICMPV4_TIME_EXCEEDED,
  ICMPV6_DESTINATION_UNREACHABLE,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_TIME_EXCEEDED,
  IPV4_MIN_HEADER_LENGTH,
  IPV4_OFFSET_DESTINATION,
  IPV6_HEADER_LENGTH,
  IPV6_OFFSET_DESTINATION,
  L4_OFFSET_SOURCE_PORT,
  PROTOCOL_ICMPV4,
  PROTOCOL_ICMPV6,
} from './constants.ts';
import { sealIpv4Header, transportChecksum, writeIpHeaderFields } from './make.ts';
import type { IpPacket } from './packet.ts';

/**
 * - `notAnError`: not ICMP, or an echo request/reply;
 * - `error`: ICMPv4 destination unreachable (codes 0-15) or time exceeded (0-1); ICMPv6 destination unreachable
 *   (0-6), packet too big (0) or time exceeded (0-1);
 * - `unsupported`: any other ICMP message (the reference drops these on the resource→client path).
 */
export type IcmpErrorKind = 'notAnError' | 'error' | 'unsupported';

export function icmpErrorKind(packet: IpPacket): IcmpErrorKind {
  if (packet.transport !== 'icmpv4' && packet.transport !== 'icmpv6') return 'notAnError';
  if (packet.isIcmpEcho) return 'notAnError';
  const type = packet.icmpType;
  const code = packet.icmpCode;
  if (packet.transport === 'icmpv4') {
    if (type === ICMPV4_DESTINATION_UNREACHABLE && code <= 15) return 'error';
    if (type === ICMPV4_TIME_EXCEEDED && code <= 1) return 'error';
    return 'unsupported';
  }
  if (type === ICMPV6_DESTINATION_UNREACHABLE && code <= 6) return 'error';
  if (type === ICMPV6_PACKET_TOO_BIG && code === 0) return 'error';
  if (type === ICMPV6_TIME_EXCEEDED && code <= 1) return 'error';
  return 'unsupported';
}

export type IcmpQuoteError =
  | 'notAnIcmpError'
  | 'unsupportedIcmpType'
  | 'badQuotedHeader'
  | 'quotedVersionMismatch'
  | 'unsupportedQuotedProtocol'
  | 'quotedIcmpNotEchoRequest';

/**
 * Parses the packet quoted by the ICMP error `error` into the view `quote`. On success `quote.transport` is
 * tcp, udp, icmpv4 or icmpv6 (an echo request), and `quote.sourceValue` / `quote.destination*` give the
 * session it belongs to: the NAT's outside (protocol, source port or echo id, destination IP).
 */
export function parseIcmpErrorQuote(error: IpPacket, quote: IpPacket): IcmpQuoteError | undefined {
  const kind = icmpErrorKind(error);
  if (kind === 'notAnError') return 'notAnIcmpError';
  if (kind === 'unsupported') return 'unsupportedIcmpType';
  const quoted = error.bytes.subarray(error.l4Offset + ICMP_HEADER_LENGTH, error.l4End);
  if (quote.parseLenient(quoted) !== undefined) return 'badQuotedHeader';
  if (quote.version !== error.version) return 'quotedVersionMismatch';
  switch (quote.transport) {
    case 'tcp':
    case 'udp':
      return undefined;
    case 'icmpv4':
    case 'icmpv6':
      return quote.isIcmpEchoRequest ? undefined : 'quotedIcmpNotEchoRequest';
    case 'unsupported':
      return 'unsupportedQuotedProtocol';
  }
}

/**
 * The ICMP error to send to the client for `error` (quoting `quote`, as parsed by `parseIcmpErrorQuote`):
 * from `proxy` to the error's destination, TTL 20, same type and code (and MTU); the quote is copied whole
 * with its destination set to `proxy` and its source port / echo id set to `insideValue`. The quote's own
 * checksums are left as they were, as the reference does. Undefined when `proxy` is of the other family.
 */
export function makeTranslatedIcmpError(
  error: IpPacket,
  quote: IpPacket,
  proxy: IpAddr,
  insideValue: number,
): Uint8Array | undefined {
  if (proxy.family !== error.version || proxy.family !== quote.version) return undefined;
  const headerLength = error.version === 4 ? IPV4_MIN_HEADER_LENGTH : IPV6_HEADER_LENGTH;
  const quoted = quote.bytes;
  const packet = new Uint8Array(headerLength + ICMP_HEADER_LENGTH + quoted.length);
  const protocol = error.version === 4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6;
  writeIpHeaderFields(packet, error.version, protocol, ICMP_ERROR_TTL);
  writeIp(packet, error.sourceOffset, proxy);
  copyBytes(error.bytes, error.destinationOffset, packet, error.destinationOffset, error.addressLength);
  sealIpv4Header(packet, error.version);

  const l4 = headerLength;
  packet[l4] = error.icmpType;
  packet[l4 + 1] = error.icmpCode;
  writeU32(packet, l4 + 4, preservedRestOfHeader(error));

  const quoteStart = l4 + ICMP_HEADER_LENGTH;
  packet.set(quoted, quoteStart);
  writeIp(packet, quoteStart + (quote.version === 4 ? IPV4_OFFSET_DESTINATION : IPV6_OFFSET_DESTINATION), proxy);
  const valueOffset = quote.transport === 'tcp' || quote.transport === 'udp' ? L4_OFFSET_SOURCE_PORT : ICMP_OFFSET_IDENTIFIER;
  writeU16(packet, quoteStart + quote.l4Offset + valueOffset, insideValue);

  writeU16(packet, l4 + ICMP_OFFSET_CHECKSUM, transportChecksum(packet, error.version, protocol, l4));
  return packet;
}

/** The MTU of "fragmentation needed" / "packet too big"; every other error's second word is rebuilt as zero. */
function preservedRestOfHeader(error: IpPacket): number {
  const rest = readU32(error.bytes, error.l4Offset + 4);
  if (error.transport === 'icmpv4') {
    return error.icmpType === ICMPV4_DESTINATION_UNREACHABLE && error.icmpCode === 4 ? rest & 0xffff : 0;
  }
  return error.icmpType === ICMPV6_PACKET_TOO_BIG ? rest : 0;
}
