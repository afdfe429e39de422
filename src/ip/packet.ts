/**
 * A zero-copy, reusable view over one IPv4 or IPv6 packet.
 *
 * `parse(bytes)` validates the IP header the way the reference's packet library does (version, header length,
 * total/payload length within the buffer; no checksum validation) and classifies the transport:
 * - IPv4 options are skipped via IHL; IPv6 extension headers are not walked, so the fixed header's next-header
 *   decides the protocol (a packet with extension headers is `unsupported`);
 * - TCP needs a sane data offset, UDP a length field in [8, IP payload], ICMP a full 8-byte header. A transport
 *   header that fails these checks leaves the packet `unsupported`, not invalid;
 * - fragments are refused (`fragmented`): IPv4 with MF set or a non-zero offset, IPv6 with a Fragment header
 *   whose offset is non-zero or whose M flag is set (an atomic fragment passes), as the 1.6.0 reference does.
 *   A quoted packet (`parseLenient`) may be a fragment.
 *
 * Setters rewrite fields in place and update every affected checksum incrementally (RFC 1624), so a NAT
 * rewrite costs a few word operations instead of a pass over the payload. `updateChecksums()` recomputes them
 * all from scratch the way the reference does after NAT (it also gives an IPv4 UDP packet without checksum a
 * real one). An IPv4 UDP checksum of zero means "none" and the incremental setters keep it zero.
 *
 * One view can be reused for many packets (`parse` resets it), so the hot path allocates nothing.
 */
import { formatIpv4, formatIpv6, ipEqualsAt } from './addr.ts';
import { readU16, readU32, writeU16, writeU32 } from './bytes.ts';
import type { IpAddr } from './addr.ts';
import {
  finishChecksum,
  internetChecksum,
  ipv4HeaderChecksum,
  pseudoHeaderSumV4,
  pseudoHeaderSumV6,
  sumWords,
  updateChecksum16,
  updateChecksum32,
  updateChecksumBytes,
} from './checksum.ts';
import {
  ICMP_HEADER_LENGTH,
  ICMP_OFFSET_CHECKSUM,
  ICMP_OFFSET_CODE,
  ICMP_OFFSET_IDENTIFIER,
  ICMP_OFFSET_SEQUENCE,
  ICMP_OFFSET_TYPE,
  ICMPV4_ECHO_REPLY,
  ICMPV4_ECHO_REQUEST,
  ICMPV4_TIMESTAMP,
  ICMPV4_TIMESTAMP_LENGTH,
  ICMPV4_TIMESTAMP_REPLY,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  IPV4_MIN_HEADER_LENGTH,
  IPV4_OFFSET_CHECKSUM,
  IPV4_OFFSET_DESTINATION,
  IPV4_OFFSET_FLAGS,
  IPV4_OFFSET_PROTOCOL,
  IPV4_OFFSET_SOURCE,
  IPV4_OFFSET_TOS,
  IPV4_OFFSET_TOTAL_LENGTH,
  IPV4_OFFSET_TTL,
  IPV6_HEADER_LENGTH,
  IPV6_OFFSET_DESTINATION,
  IPV6_OFFSET_HOP_LIMIT,
  IPV6_OFFSET_NEXT_HEADER,
  IPV6_OFFSET_PAYLOAD_LENGTH,
  IPV6_OFFSET_SOURCE,
  L4_OFFSET_DESTINATION_PORT,
  L4_OFFSET_SOURCE_PORT,
  MAX_IP_SIZE,
  PROTOCOL_AUTHENTICATION,
  PROTOCOL_ICMPV4,
  PROTOCOL_ICMPV6,
  PROTOCOL_IPV6_DESTINATION_OPTIONS,
  PROTOCOL_IPV6_FRAGMENT,
  PROTOCOL_IPV6_HOP_BY_HOP,
  PROTOCOL_IPV6_ROUTING,
  PROTOCOL_TCP,
  PROTOCOL_UDP,
  TCP_FLAG_RST,
  TCP_MIN_HEADER_LENGTH,
  TCP_OFFSET_CHECKSUM,
  TCP_OFFSET_DATA_OFFSET,
  TCP_OFFSET_FLAGS,
  UDP_HEADER_LENGTH,
  UDP_OFFSET_CHECKSUM,
  UDP_OFFSET_LENGTH,
} from './constants.ts';
import type { Ecn } from './constants.ts';

export type Transport = 'tcp' | 'udp' | 'icmpv4' | 'icmpv6' | 'unsupported';

export type IpParseError =
  | 'empty'
  | 'tooLarge'
  | 'badVersion'
  | 'truncatedHeader'
  | 'badHeaderLength'
  | 'badTotalLength'
  | 'badPayloadLength'
  | 'badExtensionHeader'
  /** A fragment of a larger packet (IPv4 MF or an offset; an IPv6 Fragment header other than an atomic one). */
  | 'fragmented';

const EMPTY = new Uint8Array(0);

export class IpPacket {
  /** The buffer as given to `parse` (bytes past the IP total length are kept, as the reference forwards them). */
  bytes: Uint8Array = EMPTY;
  version: 4 | 6 = 4;
  /** Length of the IP header: IHL × 4, or 40. */
  headerLength = 0;
  /** IPv4 protocol or IPv6 (fixed header) next header. */
  protocol = 0;
  transport: Transport = 'unsupported';
  /** Start of the transport header (= headerLength). */
  l4Offset = 0;
  /** End of the transport data: the IP payload end, or for UDP the end its length field gives. */
  l4End = 0;
  /** End of the IP payload per the header's length field (a lenient parse clamps it to the buffer). */
  ipEnd = 0;

  /** Parses a packet as received (≤ 1280 bytes). Returns an error and leaves the view empty when invalid. */
  parse(bytes: Uint8Array): IpParseError | undefined {
    if (bytes.length > MAX_IP_SIZE) return this.fail('tooLarge');
    return this.load(bytes, false);
  }

  /**
   * Parses the original packet quoted in an ICMP error: the IP header must be complete but the payload may be
   * truncated (total length beyond the buffer is allowed). TCP/UDP need 4 bytes (the ports), ICMP 8.
   */
  parseLenient(bytes: Uint8Array): IpParseError | undefined {
    return this.load(bytes, true);
  }

  get sourceOffset(): number {
    return this.version === 4 ? IPV4_OFFSET_SOURCE : IPV6_OFFSET_SOURCE;
  }

  get destinationOffset(): number {
    return this.version === 4 ? IPV4_OFFSET_DESTINATION : IPV6_OFFSET_DESTINATION;
  }

  get addressLength(): 4 | 16 {
    return this.version === 4 ? 4 : 16;
  }

  /** The IPv4 source as a uint32 (IPv4 packets only). */
  get sourceV4(): number {
    return readU32(this.bytes, IPV4_OFFSET_SOURCE);
  }

  get destinationV4(): number {
    return readU32(this.bytes, IPV4_OFFSET_DESTINATION);
  }

  /** Allocates; for the control path and logs. */
  source(): IpAddr {
    return this.address(this.sourceOffset);
  }

  destination(): IpAddr {
    return this.address(this.destinationOffset);
  }

  sourceEquals(address: IpAddr): boolean {
    return this.addressEquals(this.sourceOffset, address);
  }

  destinationEquals(address: IpAddr): boolean {
    return this.addressEquals(this.destinationOffset, address);
  }

  /** TTL (IPv4) or hop limit (IPv6). */
  get ttl(): number {
    return this.bytes[this.version === 4 ? IPV4_OFFSET_TTL : IPV6_OFFSET_HOP_LIMIT]!;
  }

  setTtl(ttl: number): void {
    if (this.version === 6) {
      this.bytes[IPV6_OFFSET_HOP_LIMIT] = ttl;
      return;
    }
    const old = readU16(this.bytes, IPV4_OFFSET_TTL);
    this.bytes[IPV4_OFFSET_TTL] = ttl;
    this.updateIpv4HeaderChecksum16(old, readU16(this.bytes, IPV4_OFFSET_TTL));
  }

  get ecn(): Ecn {
    const b = this.version === 4 ? this.bytes[IPV4_OFFSET_TOS]! : this.bytes[1]! >>> 4;
    return (b & 0b11) as Ecn;
  }

  setEcn(ecn: Ecn): void {
    if (this.version === 6) {
      this.bytes[1] = (this.bytes[1]! & 0xcf) | (ecn << 4);
      return;
    }
    const old = readU16(this.bytes, 0);
    this.bytes[IPV4_OFFSET_TOS] = (this.bytes[IPV4_OFFSET_TOS]! & 0xfc) | ecn;
    this.updateIpv4HeaderChecksum16(old, readU16(this.bytes, 0));
  }

  /**
   * Merges the ECN of the outer (transport) datagram into this packet: only an ECN-capable packet
   * (ECT(0)/ECT(1)) is marked CE, and only when the outer datagram carried CE; ECN is never cleared.
   */
  applyOuterEcn(outer: Ecn): void {
    const inner = this.ecn;
    if (outer === 0b11 && (inner === 0b01 || inner === 0b10)) this.setEcn(0b11);
  }

  /** Rewrites the IPv4 source, updating the header and TCP/UDP checksums (IPv4 packets only). */
  setSourceV4(address: number): void {
    this.setAddressV4(IPV4_OFFSET_SOURCE, address);
  }

  setDestinationV4(address: number): void {
    this.setAddressV4(IPV4_OFFSET_DESTINATION, address);
  }

  /** Rewrites the IPv6 source from `bytes[offset..offset+16]`, updating the TCP/UDP/ICMPv6 checksum. */
  setSourceV6(bytes: Uint8Array, offset = 0): void {
    this.setAddressV6(IPV6_OFFSET_SOURCE, bytes, offset);
  }

  setDestinationV6(bytes: Uint8Array, offset = 0): void {
    this.setAddressV6(IPV6_OFFSET_DESTINATION, bytes, offset);
  }

  /** Family-checked address rewrite; returns false (and changes nothing) on a family mismatch. */
  setSource(address: IpAddr): boolean {
    if (address.family !== this.version) return false;
    if (address.family === 4) this.setSourceV4(address.value);
    else this.setSourceV6(address.bytes);
    return true;
  }

  setDestination(address: IpAddr): boolean {
    if (address.family !== this.version) return false;
    if (address.family === 4) this.setDestinationV4(address.value);
    else this.setDestinationV6(address.bytes);
    return true;
  }

  /** TCP/UDP source port; -1 for other transports. */
  get sourcePort(): number {
    return this.isTcpOrUdp() ? readU16(this.bytes, this.l4Offset + L4_OFFSET_SOURCE_PORT) : -1;
  }

  get destinationPort(): number {
    return this.isTcpOrUdp() ? readU16(this.bytes, this.l4Offset + L4_OFFSET_DESTINATION_PORT) : -1;
  }

  setSourcePort(port: number): void {
    if (this.isTcpOrUdp()) this.setL4Word(L4_OFFSET_SOURCE_PORT, port);
  }

  setDestinationPort(port: number): void {
    if (this.isTcpOrUdp()) this.setL4Word(L4_OFFSET_DESTINATION_PORT, port);
  }

  get tcpFlags(): number {
    return this.transport === 'tcp' ? this.bytes[this.l4Offset + TCP_OFFSET_FLAGS]! : 0;
  }

  get isTcpRst(): boolean {
    return (this.tcpFlags & TCP_FLAG_RST) !== 0;
  }

  /** ICMP type; -1 when the packet is not ICMP of its own family. */
  get icmpType(): number {
    return this.isIcmp() ? this.bytes[this.l4Offset + ICMP_OFFSET_TYPE]! : -1;
  }

  get icmpCode(): number {
    return this.isIcmp() ? this.bytes[this.l4Offset + ICMP_OFFSET_CODE]! : -1;
  }

  /** Rewrites the ICMP type and code (one 16-bit word), updating the ICMP checksum. */
  setIcmpTypeAndCode(type: number, code: number): void {
    if (this.isIcmp()) this.setL4Word(ICMP_OFFSET_TYPE, ((type & 0xff) << 8) | (code & 0xff));
  }

  /** Echo request or reply (code 0) of the packet's own ICMP family. */
  get isIcmpEcho(): boolean {
    if (!this.isIcmp()) return false;
    const type = this.bytes[this.l4Offset]!;
    if (this.bytes[this.l4Offset + ICMP_OFFSET_CODE] !== 0) return false;
    return this.transport === 'icmpv4'
      ? type === ICMPV4_ECHO_REQUEST || type === ICMPV4_ECHO_REPLY
      : type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY;
  }

  get isIcmpEchoRequest(): boolean {
    if (!this.isIcmpEcho) return false;
    const type = this.bytes[this.l4Offset];
    return type === ICMPV4_ECHO_REQUEST || type === ICMPV6_ECHO_REQUEST;
  }

  /** Echo identifier (echo packets only; -1 otherwise). */
  get icmpIdentifier(): number {
    return this.isIcmpEcho ? readU16(this.bytes, this.l4Offset + ICMP_OFFSET_IDENTIFIER) : -1;
  }

  get icmpSequence(): number {
    return this.isIcmpEcho ? readU16(this.bytes, this.l4Offset + ICMP_OFFSET_SEQUENCE) : -1;
  }

  setIcmpIdentifier(identifier: number): void {
    if (this.isIcmpEcho) this.setL4Word(ICMP_OFFSET_IDENTIFIER, identifier);
  }

  setIcmpSequence(sequence: number): void {
    if (this.isIcmpEcho) this.setL4Word(ICMP_OFFSET_SEQUENCE, sequence);
  }

  /**
   * The NAT / filter key of the sender side: TCP/UDP source port or ICMP echo identifier; -1 when the packet
   * has neither (unsupported protocol or a non-echo ICMP message).
   */
  get sourceValue(): number {
    if (this.isTcpOrUdp()) return readU16(this.bytes, this.l4Offset + L4_OFFSET_SOURCE_PORT);
    return this.icmpIdentifier;
  }

  /** TCP/UDP destination port or ICMP echo identifier; -1 otherwise. */
  get destinationValue(): number {
    if (this.isTcpOrUdp()) return readU16(this.bytes, this.l4Offset + L4_OFFSET_DESTINATION_PORT);
    return this.icmpIdentifier;
  }

  setSourceValue(value: number): void {
    if (this.isTcpOrUdp()) this.setL4Word(L4_OFFSET_SOURCE_PORT, value);
    else this.setIcmpIdentifier(value);
  }

  setDestinationValue(value: number): void {
    if (this.isTcpOrUdp()) this.setL4Word(L4_OFFSET_DESTINATION_PORT, value);
    else this.setIcmpIdentifier(value);
  }

  /** The transport header and data (a view). */
  l4(): Uint8Array {
    return this.bytes.subarray(this.l4Offset, this.l4End);
  }

  /** The IP payload per the header's length field (a view). */
  ipPayload(): Uint8Array {
    return this.bytes.subarray(this.headerLength, Math.min(this.ipEnd, this.bytes.length));
  }

  /** The data after the TCP/UDP/ICMP header (a view); the IP payload for unsupported transports. */
  payload(): Uint8Array {
    return this.bytes.subarray(this.l4Offset + this.l4HeaderLength(), this.l4End);
  }

  /**
   * An IPv4 UDP datagram sent without a checksum (0). Incremental setters keep it that way; the reference
   * gives it a real checksum after NAT, so call `updateChecksums()` when this is true to match it.
   */
  get udpChecksumMissing(): boolean {
    return this.transport === 'udp' && this.version === 4 && readU16(this.bytes, this.l4Offset + UDP_OFFSET_CHECKSUM) === 0;
  }

  /** Recomputes every checksum from scratch (transport first, then the IPv4 header). */
  updateChecksums(): void {
    const offset = this.transportChecksumOffset();
    if (offset >= 0) {
      writeU16(this.bytes, offset, 0);
      let checksum = internetChecksum(this.bytes, this.l4Offset, this.l4End, this.pseudoHeaderSum());
      if (checksum === 0 && this.transport === 'udp') checksum = 0xffff;
      writeU16(this.bytes, offset, checksum);
    }
    if (this.version === 4) writeU16(this.bytes, IPV4_OFFSET_CHECKSUM, ipv4HeaderChecksum(this.bytes, this.headerLength));
  }

  /** Whether the IPv4 header checksum and the transport checksum (if any) are correct. */
  checksumsValid(): boolean {
    if (this.version === 4 && finishChecksum(sumWords(this.bytes, 0, this.headerLength)) !== 0) return false;
    const offset = this.transportChecksumOffset();
    if (offset < 0) return true;
    if (this.transport === 'udp' && this.version === 4 && readU16(this.bytes, offset) === 0) return true;
    return finishChecksum(sumWords(this.bytes, this.l4Offset, this.l4End, this.pseudoHeaderSum())) === 0;
  }

  toString(): string {
    const format = (offset: number): string =>
      this.version === 4 ? formatIpv4(readU32(this.bytes, offset)) : formatIpv6(this.bytes, offset);
    return `IPv${this.version} ${format(this.sourceOffset)} -> ${format(this.destinationOffset)} ${this.transport} (${this.bytes.length} bytes)`;
  }

  private load(bytes: Uint8Array, lenient: boolean): IpParseError | undefined {
    if (bytes.length === 0) return this.fail('empty');
    const version = bytes[0]! >>> 4;
    if (version === 4) return this.loadV4(bytes, lenient);
    if (version === 6) return this.loadV6(bytes, lenient);
    return this.fail('badVersion');
  }

  private loadV4(bytes: Uint8Array, lenient: boolean): IpParseError | undefined {
    if (bytes.length < IPV4_MIN_HEADER_LENGTH) return this.fail('truncatedHeader');
    const headerLength = (bytes[0]! & 0x0f) * 4;
    if (headerLength < IPV4_MIN_HEADER_LENGTH) return this.fail('badHeaderLength');
    if (headerLength > bytes.length) return this.fail('truncatedHeader');
    const totalLength = readU16(bytes, IPV4_OFFSET_TOTAL_LENGTH);
    let ipEnd = totalLength;
    if (lenient) {
      if (totalLength < headerLength || totalLength > bytes.length) ipEnd = bytes.length;
    } else {
      if (totalLength < headerLength) return this.fail('badTotalLength');
      if (totalLength > bytes.length) return this.fail('badTotalLength');
      if ((readU16(bytes, IPV4_OFFSET_FLAGS) & IPV4_FRAGMENT_BITS) !== 0) return this.fail('fragmented');
      const protocol = bytes[IPV4_OFFSET_PROTOCOL]!;
      if (protocol === PROTOCOL_AUTHENTICATION && authenticationHeaderLength(bytes, headerLength, ipEnd) < 0) {
        return this.fail('badExtensionHeader');
      }
    }
    this.set(bytes, 4, headerLength, bytes[IPV4_OFFSET_PROTOCOL]!, ipEnd, lenient);
    return undefined;
  }

  private loadV6(bytes: Uint8Array, lenient: boolean): IpParseError | undefined {
    if (bytes.length < IPV6_HEADER_LENGTH) return this.fail('truncatedHeader');
    const payloadLength = readU16(bytes, IPV6_OFFSET_PAYLOAD_LENGTH);
    let ipEnd = IPV6_HEADER_LENGTH + payloadLength;
    if (ipEnd > bytes.length) {
      if (!lenient) return this.fail('badPayloadLength');
      ipEnd = bytes.length;
    }
    // A quoted packet with payload length 0 (jumbogram or unset) extends to the end of the quote, as etherparse's
    // lax parser has it.
    if (lenient && payloadLength === 0) ipEnd = bytes.length;
    // etherparse refuses malformed extension headers; the reference then drops the packet. Their content is not
    // used otherwise: the fixed header's next header decides the transport.
    if (!lenient) {
      const chain = ipv6ExtensionHeaders(bytes, payloadLength === 0 ? bytes.length : ipEnd);
      if (chain === ExtensionChain.Malformed) return this.fail('badExtensionHeader');
      if (chain === ExtensionChain.Fragmenting) return this.fail('fragmented');
    }
    this.set(bytes, 6, IPV6_HEADER_LENGTH, bytes[IPV6_OFFSET_NEXT_HEADER]!, ipEnd, lenient);
    return undefined;
  }

  private set(bytes: Uint8Array, version: 4 | 6, headerLength: number, protocol: number, ipEnd: number, lenient: boolean): void {
    this.bytes = bytes;
    this.version = version;
    this.headerLength = headerLength;
    this.protocol = protocol;
    this.l4Offset = headerLength;
    this.ipEnd = ipEnd;
    this.l4End = ipEnd;
    this.transport = lenient ? this.classifyLenient() : this.classify();
  }

  private classify(): Transport {
    const available = this.ipEnd - this.l4Offset;
    switch (this.protocol) {
      case PROTOCOL_TCP: {
        if (available < TCP_MIN_HEADER_LENGTH) return 'unsupported';
        const dataOffset = (this.bytes[this.l4Offset + TCP_OFFSET_DATA_OFFSET]! >>> 4) * 4;
        return dataOffset >= TCP_MIN_HEADER_LENGTH && dataOffset <= available ? 'tcp' : 'unsupported';
      }
      case PROTOCOL_UDP: {
        if (available < UDP_HEADER_LENGTH) return 'unsupported';
        const udpLength = readU16(this.bytes, this.l4Offset + UDP_OFFSET_LENGTH);
        // A length of 0 (jumbogram, or unset) means "up to the end of the IP payload", as in etherparse.
        if (udpLength === 0) return 'udp';
        if (udpLength < UDP_HEADER_LENGTH || udpLength > available) return 'unsupported';
        this.l4End = this.l4Offset + udpLength;
        return 'udp';
      }
      case PROTOCOL_ICMPV4: {
        if (this.version !== 4 || available < ICMP_HEADER_LENGTH) return 'unsupported';
        // etherparse refuses a timestamp (reply) message of any other length than 20 bytes.
        const type = this.bytes[this.l4Offset]!;
        const isTimestamp = (type === ICMPV4_TIMESTAMP || type === ICMPV4_TIMESTAMP_REPLY) && this.bytes[this.l4Offset + 1] === 0;
        return isTimestamp && available !== ICMPV4_TIMESTAMP_LENGTH ? 'unsupported' : 'icmpv4';
      }
      case PROTOCOL_ICMPV6:
        return this.version === 6 && available >= ICMP_HEADER_LENGTH ? 'icmpv6' : 'unsupported';
      default:
        return 'unsupported';
    }
  }

  private classifyLenient(): Transport {
    const available = this.ipEnd - this.l4Offset;
    switch (this.protocol) {
      case PROTOCOL_TCP:
        return available >= 4 ? 'tcp' : 'unsupported';
      case PROTOCOL_UDP:
        return available >= 4 ? 'udp' : 'unsupported';
      case PROTOCOL_ICMPV4:
        return available >= ICMP_HEADER_LENGTH ? 'icmpv4' : 'unsupported';
      case PROTOCOL_ICMPV6:
        return available >= ICMP_HEADER_LENGTH ? 'icmpv6' : 'unsupported';
      default:
        return 'unsupported';
    }
  }

  private fail(error: IpParseError): IpParseError {
    this.bytes = EMPTY;
    this.headerLength = 0;
    this.protocol = 0;
    this.transport = 'unsupported';
    this.l4Offset = 0;
    this.l4End = 0;
    this.ipEnd = 0;
    return error;
  }

  private isTcpOrUdp(): boolean {
    return this.transport === 'tcp' || this.transport === 'udp';
  }

  private isIcmp(): boolean {
    return this.transport === 'icmpv4' || this.transport === 'icmpv6';
  }

  private l4HeaderLength(): number {
    switch (this.transport) {
      case 'tcp': {
        const available = this.l4End - this.l4Offset;
        if (available < TCP_MIN_HEADER_LENGTH) return available;
        return Math.min(available, (this.bytes[this.l4Offset + TCP_OFFSET_DATA_OFFSET]! >>> 4) * 4);
      }
      case 'udp':
        return Math.min(UDP_HEADER_LENGTH, this.l4End - this.l4Offset);
      case 'icmpv4':
      case 'icmpv6':
        return Math.min(ICMP_HEADER_LENGTH, this.l4End - this.l4Offset);
      case 'unsupported':
        return 0;
    }
  }

  /** Offset of the transport checksum field, or -1 when there is none to maintain in this buffer. */
  private transportChecksumOffset(): number {
    const end = this.l4Offset;
    switch (this.transport) {
      case 'tcp':
        return end + TCP_OFFSET_CHECKSUM + 2 <= this.bytes.length ? end + TCP_OFFSET_CHECKSUM : -1;
      case 'udp':
        return end + UDP_OFFSET_CHECKSUM + 2 <= this.bytes.length ? end + UDP_OFFSET_CHECKSUM : -1;
      case 'icmpv4':
      case 'icmpv6':
        return end + ICMP_OFFSET_CHECKSUM;
      case 'unsupported':
        return -1;
    }
  }

  private pseudoHeaderSum(): number {
    const l4Length = this.l4End - this.l4Offset;
    switch (this.transport) {
      case 'tcp':
      case 'udp': {
        // UDP's pseudo-header carries its own length field (which differs only when that field is 0).
        const length = this.transport === 'udp' ? readU16(this.bytes, this.l4Offset + UDP_OFFSET_LENGTH) : l4Length;
        return this.version === 4
          ? pseudoHeaderSumV4(this.bytes, this.protocol, length)
          : pseudoHeaderSumV6(this.bytes, this.protocol, length);
      }
      case 'icmpv6':
        return pseudoHeaderSumV6(this.bytes, PROTOCOL_ICMPV6, l4Length);
      case 'icmpv4':
      case 'unsupported':
        return 0;
    }
  }

  private updateIpv4HeaderChecksum16(oldWord: number, newWord: number): void {
    const checksum = readU16(this.bytes, IPV4_OFFSET_CHECKSUM);
    writeU16(this.bytes, IPV4_OFFSET_CHECKSUM, updateChecksum16(checksum, oldWord, newWord));
  }

  private setAddressV4(offset: number, address: number): void {
    const old = readU32(this.bytes, offset);
    writeU32(this.bytes, offset, address);
    const ipChecksum = readU16(this.bytes, IPV4_OFFSET_CHECKSUM);
    writeU16(this.bytes, IPV4_OFFSET_CHECKSUM, updateChecksum32(ipChecksum, old, address));
    if (!this.isTcpOrUdp()) return;
    const checksumOffset = this.transportChecksumOffset();
    if (checksumOffset < 0) return;
    const checksum = readU16(this.bytes, checksumOffset);
    if (this.transport === 'udp' && checksum === 0) return;
    writeU16(this.bytes, checksumOffset, this.fixUdpZero(updateChecksum32(checksum, old, address)));
  }

  private setAddressV6(offset: number, source: Uint8Array, sourceOffset: number): void {
    const checksumOffset = this.transport === 'unsupported' || this.transport === 'icmpv4' ? -1 : this.transportChecksumOffset();
    if (checksumOffset >= 0) {
      const checksum = readU16(this.bytes, checksumOffset);
      const updated = updateChecksumBytes(checksum, this.bytes, offset, source, sourceOffset, 16);
      writeU16(this.bytes, checksumOffset, this.fixUdpZero(updated));
    }
    if (source === this.bytes && sourceOffset === offset) return;
    for (let i = 0; i < 16; i++) this.bytes[offset + i] = source[sourceOffset + i]!;
  }

  private setL4Word(fieldOffset: number, value: number): void {
    const offset = this.l4Offset + fieldOffset;
    const old = readU16(this.bytes, offset);
    writeU16(this.bytes, offset, value);
    const checksumOffset = this.transportChecksumOffset();
    if (checksumOffset < 0) return;
    const checksum = readU16(this.bytes, checksumOffset);
    if (this.transport === 'udp' && this.version === 4 && checksum === 0) return;
    writeU16(this.bytes, checksumOffset, this.fixUdpZero(updateChecksum16(checksum, old, value)));
  }

  /** UDP transmits a computed checksum of 0 as 0xffff (0 means "no checksum"). */
  private fixUdpZero(checksum: number): number {
    return checksum === 0 && this.transport === 'udp' ? 0xffff : checksum;
  }

  private address(offset: number): IpAddr {
    if (this.version === 4) return { family: 4, value: readU32(this.bytes, offset) };
    return { family: 6, bytes: this.bytes.slice(offset, offset + 16) };
  }

  private addressEquals(offset: number, address: IpAddr): boolean {
    if (address.family !== this.version) return false;
    return ipEqualsAt(this.bytes, offset, address);
  }
}

/** Parses into a fresh view; the allocating convenience over `new IpPacket().parse(bytes)`. */
export function parseIpPacket(bytes: Uint8Array): IpPacket | IpParseError {
  const packet = new IpPacket();
  const error = packet.parse(bytes);
  return error === undefined ? packet : error;
}

const enum ExtensionChain {
  Valid,
  Malformed,
  /** A Fragment header with a non-zero offset or the M flag: a piece of a larger packet. */
  Fragmenting,
}

/** IPv4 "more fragments" flag and fragment offset, within the flags/offset word. */
const IPV4_FRAGMENT_BITS = 0x3fff;
/** IPv6 Fragment header: offset (13 bits) and M flag, within the word at byte 2. */
const IPV6_FRAGMENT_OFFSET_AND_MORE = 0xfff9;

/**
 * Walks the IPv6 extension headers etherparse knows (hop-by-hop first only, destination options, routing,
 * fragment, authentication) within `bytes[40, end)`: each must fit, and a Fragment header must be atomic
 * (offset 0, M clear), as 1.6.0 drops fragments.
 */
function ipv6ExtensionHeaders(bytes: Uint8Array, end: number): ExtensionChain {
  let next = bytes[IPV6_OFFSET_NEXT_HEADER]!;
  let offset = IPV6_HEADER_LENGTH;
  let fragmenting = false;
  if (next === PROTOCOL_IPV6_HOP_BY_HOP) {
    const length = rawExtensionHeaderLength(bytes, offset, end);
    if (length < 0) return ExtensionChain.Malformed;
    next = bytes[offset]!;
    offset += length;
  }
  for (;;) {
    let length: number;
    switch (next) {
      case PROTOCOL_IPV6_HOP_BY_HOP:
        return ExtensionChain.Malformed;
      case PROTOCOL_IPV6_DESTINATION_OPTIONS:
      case PROTOCOL_IPV6_ROUTING:
        length = rawExtensionHeaderLength(bytes, offset, end);
        break;
      case PROTOCOL_IPV6_FRAGMENT:
        length = end - offset >= 8 ? 8 : -1;
        if (length > 0 && (readU16(bytes, offset + 2) & IPV6_FRAGMENT_OFFSET_AND_MORE) !== 0) fragmenting = true;
        break;
      case PROTOCOL_AUTHENTICATION:
        length = authenticationHeaderLength(bytes, offset, end);
        break;
      default:
        return fragmenting ? ExtensionChain.Fragmenting : ExtensionChain.Valid;
    }
    if (length < 0) return ExtensionChain.Malformed;
    next = bytes[offset]!;
    offset += length;
  }
}

/** Length of the generic extension header at `offset` ((length field + 1) × 8), or -1 if it does not fit. */
function rawExtensionHeaderLength(bytes: Uint8Array, offset: number, end: number): number {
  if (end - offset < 8) return -1;
  const length = (bytes[offset + 1]! + 1) * 8;
  return end - offset >= length ? length : -1;
}

/** Length of the authentication header at `offset` ((payload length + 2) × 4, RFC 4302), or -1 if invalid. */
function authenticationHeaderLength(bytes: Uint8Array, offset: number, end: number): number {
  if (end - offset < 12) return -1;
  const payloadLength = bytes[offset + 1]!;
  if (payloadLength === 0) return -1;
  const length = (payloadLength + 2) * 4;
  return end - offset >= length ? length : -1;
}
