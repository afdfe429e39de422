/**
 * Raw packet assembly for the attacker: every header field can be set to a value a well-behaved
 * stack would never send (header lengths, total lengths, fragment fields, checksums, extension
 * header chains). `src/ip/make.ts` builds the well-formed packets; this builds everything else.
 */
import { writeIp, type IpAddr } from '../../src/ip/addr.ts';
import { writeU16, writeU32 } from '../../src/ip/bytes.ts';
import { internetChecksum, ipv4HeaderChecksum } from '../../src/ip/checksum.ts';
import { PROTOCOL_ICMPV4, PROTOCOL_ICMPV6, PROTOCOL_TCP, PROTOCOL_UDP } from '../../src/ip/constants.ts';

export interface Ipv4Fields {
  readonly source: IpAddr;
  readonly destination: IpAddr;
  readonly protocol: number;
  readonly payload: Uint8Array;
  readonly identification?: number;
  readonly moreFragments?: boolean;
  readonly dontFragment?: boolean;
  /** In 8-byte units. */
  readonly fragmentOffset?: number;
  readonly options?: Uint8Array;
  /** Overrides the IHL nibble (the options are still written). */
  readonly ihl?: number;
  /** Overrides the total length field. */
  readonly totalLength?: number;
  readonly version?: number;
  readonly ttl?: number;
  /** Leaves a wrong header checksum. */
  readonly badChecksum?: boolean;
}

export function ipv4(fields: Ipv4Fields): Uint8Array {
  const options = fields.options ?? new Uint8Array(0);
  const headerLength = 20 + options.length;
  const packet = new Uint8Array(headerLength + fields.payload.length);
  packet[0] = ((fields.version ?? 4) << 4) | ((fields.ihl ?? headerLength / 4) & 0x0f);
  writeU16(packet, 2, fields.totalLength ?? packet.length);
  writeU16(packet, 4, fields.identification ?? 0);
  const flags = (fields.dontFragment ? 0x4000 : 0) | (fields.moreFragments ? 0x2000 : 0) | ((fields.fragmentOffset ?? 0) & 0x1fff);
  writeU16(packet, 6, flags);
  packet[8] = fields.ttl ?? 64;
  packet[9] = fields.protocol;
  writeIp(packet, 12, fields.source);
  writeIp(packet, 16, fields.destination);
  packet.set(options, 20);
  packet.set(fields.payload, headerLength);
  const checksum = ipv4HeaderChecksum(packet, headerLength);
  writeU16(packet, 10, fields.badChecksum ? checksum ^ 0x5555 : checksum);
  return packet;
}

export interface Ipv6Fields {
  readonly source: IpAddr;
  readonly destination: IpAddr;
  readonly nextHeader: number;
  readonly payload: Uint8Array;
  readonly payloadLength?: number;
  readonly hopLimit?: number;
  readonly version?: number;
}

export function ipv6(fields: Ipv6Fields): Uint8Array {
  const packet = new Uint8Array(40 + fields.payload.length);
  writeU32(packet, 0, ((fields.version ?? 6) << 28) >>> 0);
  writeU16(packet, 4, fields.payloadLength ?? fields.payload.length);
  packet[6] = fields.nextHeader;
  packet[7] = fields.hopLimit ?? 64;
  writeIp(packet, 8, fields.source);
  writeIp(packet, 24, fields.destination);
  packet.set(fields.payload, 40);
  return packet;
}

export interface TcpFields {
  readonly sourcePort: number;
  readonly destinationPort: number;
  readonly flags?: number;
  readonly sequence?: number;
  /** Overrides the data offset nibble (in 32-bit words). */
  readonly dataOffset?: number;
  readonly payload?: Uint8Array;
}

export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;

/** A TCP segment with its checksum over the pseudo-header of `source` → `destination`. */
export function tcp(source: IpAddr, destination: IpAddr, fields: TcpFields): Uint8Array {
  const payload = fields.payload ?? new Uint8Array(0);
  const segment = new Uint8Array(20 + payload.length);
  writeU16(segment, 0, fields.sourcePort);
  writeU16(segment, 2, fields.destinationPort);
  writeU32(segment, 4, fields.sequence ?? 1);
  segment[12] = (fields.dataOffset ?? 5) << 4;
  segment[13] = fields.flags ?? TCP_SYN;
  writeU16(segment, 14, 1024);
  segment.set(payload, 20);
  writeU16(segment, 16, l4Checksum(source, destination, PROTOCOL_TCP, segment));
  return segment;
}

export function udp(source: IpAddr, destination: IpAddr, sourcePort: number, destinationPort: number, payload: Uint8Array, lengthField?: number): Uint8Array {
  const datagram = new Uint8Array(8 + payload.length);
  writeU16(datagram, 0, sourcePort);
  writeU16(datagram, 2, destinationPort);
  writeU16(datagram, 4, lengthField ?? datagram.length);
  datagram.set(payload, 8);
  const checksum = l4Checksum(source, destination, PROTOCOL_UDP, datagram);
  writeU16(datagram, 6, checksum === 0 ? 0xffff : checksum);
  return datagram;
}

/** An ICMPv4 or ICMPv6 message (by `source`'s family) with its checksum. */
export function icmp(source: IpAddr, destination: IpAddr, type: number, code: number, rest: number, body: Uint8Array): Uint8Array {
  const message = new Uint8Array(8 + body.length);
  message[0] = type;
  message[1] = code;
  writeU32(message, 4, rest >>> 0);
  message.set(body, 8);
  writeU16(message, 2, l4Checksum(source, destination, source.family === 4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6, message));
  return message;
}

/** A whole packet: IPv4 or IPv6 header (by family) around a transport message built for it. */
export function ip(source: IpAddr, destination: IpAddr, protocol: number, payload: Uint8Array): Uint8Array {
  return source.family === 4 ? ipv4({ source, destination, protocol, payload }) : ipv6({ source, destination, nextHeader: protocol, payload });
}

/** An IPv6 extension header (hop-by-hop, routing, destination options) padded to 8-byte units. */
export function extensionHeader(nextHeader: number, body: Uint8Array, lengthField?: number): Uint8Array {
  const length = Math.ceil((body.length + 2) / 8) * 8;
  const header = new Uint8Array(length);
  header[0] = nextHeader;
  header[1] = lengthField ?? length / 8 - 1;
  header.set(body, 2);
  // PadN over the rest, so the options parse.
  const padStart = 2 + body.length;
  if (length - padStart >= 2) {
    header[padStart] = 1;
    header[padStart + 1] = length - padStart - 2;
  } else if (length - padStart === 1) {
    header[padStart] = 0;
  }
  return header;
}

export function fragmentHeader(nextHeader: number, offsetUnits: number, more: boolean, identification: number): Uint8Array {
  const header = new Uint8Array(8);
  header[0] = nextHeader;
  writeU16(header, 2, ((offsetUnits & 0x1fff) << 3) | (more ? 1 : 0));
  writeU32(header, 4, identification >>> 0);
  return header;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function l4Checksum(source: IpAddr, destination: IpAddr, protocol: number, message: Uint8Array): number {
  if (protocol === PROTOCOL_ICMPV4) return internetChecksum(message, 0, message.length);
  const pseudo = new Uint8Array(source.family === 4 ? 12 : 40);
  if (source.family === 4) {
    writeIp(pseudo, 0, source);
    writeIp(pseudo, 4, destination);
    pseudo[9] = protocol;
    writeU16(pseudo, 10, message.length);
  } else {
    writeIp(pseudo, 0, source);
    writeIp(pseudo, 16, destination);
    writeU32(pseudo, 32, message.length);
    pseudo[39] = protocol;
  }
  return internetChecksum(concat(pseudo, message), 0, pseudo.length + message.length);
}
