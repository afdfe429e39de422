// The fields of one inner packet that a flow needs, read into plain numbers so the per-packet path of the
// tracker allocates nothing: protocol, both addresses as four 32-bit words (IPv4 in the first), both ports,
// the TCP flags and the transport payload length (the reference counts "bytes" as layer-4 payload).

import { PROTOCOL_TCP, PROTOCOL_UDP, TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, TCP_OFFSET_DATA_OFFSET, TCP_OFFSET_FLAGS, UDP_HEADER_LENGTH, readU16, readU32 } from '../ip/index.ts';
import type { IpPacket } from '../ip/index.ts';

export class PacketTuple {
  /** PROTOCOL_TCP or PROTOCOL_UDP; 0 when the last `load` found neither. */
  protocol = 0;
  family: 4 | 6 = 4;
  src0 = 0;
  src1 = 0;
  src2 = 0;
  src3 = 0;
  dst0 = 0;
  dst1 = 0;
  dst2 = 0;
  dst3 = 0;
  srcPort = 0;
  dstPort = 0;
  syn = false;
  ack = false;
  fin = false;
  rst = false;
  payloadLength = 0;

  /** Reads a parsed packet; false (and `protocol` 0) for anything but complete TCP and UDP headers. */
  load(packet: IpPacket): boolean {
    const transport = packet.transport;
    const bytes = packet.bytes;
    const l4 = packet.l4Offset;
    const available = packet.l4End - l4;
    let header: number;
    if (transport === 'tcp') {
      if (available < 20) return this.clear();
      header = (bytes[l4 + TCP_OFFSET_DATA_OFFSET]! >>> 4) * 4;
      if (header < 20 || header > available) return this.clear();
      const flags = bytes[l4 + TCP_OFFSET_FLAGS]!;
      this.protocol = PROTOCOL_TCP;
      this.syn = (flags & TCP_FLAG_SYN) !== 0;
      this.ack = (flags & TCP_FLAG_ACK) !== 0;
      this.fin = (flags & TCP_FLAG_FIN) !== 0;
      this.rst = (flags & TCP_FLAG_RST) !== 0;
    } else if (transport === 'udp') {
      if (available < UDP_HEADER_LENGTH) return this.clear();
      header = UDP_HEADER_LENGTH;
      this.protocol = PROTOCOL_UDP;
      this.syn = this.ack = this.fin = this.rst = false;
    } else {
      return this.clear();
    }
    this.payloadLength = available - header;
    this.srcPort = readU16(bytes, l4);
    this.dstPort = readU16(bytes, l4 + 2);
    const src = packet.sourceOffset;
    const dst = packet.destinationOffset;
    if (packet.version === 4) {
      this.family = 4;
      this.src0 = readU32(bytes, src);
      this.dst0 = readU32(bytes, dst);
      this.src1 = this.src2 = this.src3 = this.dst1 = this.dst2 = this.dst3 = 0;
    } else {
      this.family = 6;
      this.src0 = readU32(bytes, src);
      this.src1 = readU32(bytes, src + 4);
      this.src2 = readU32(bytes, src + 8);
      this.src3 = readU32(bytes, src + 12);
      this.dst0 = readU32(bytes, dst);
      this.dst1 = readU32(bytes, dst + 4);
      this.dst2 = readU32(bytes, dst + 8);
      this.dst3 = readU32(bytes, dst + 12);
    }
    return true;
  }

  /** Swaps source and destination (a reply read in its natural orientation, turned to the flow's). */
  flip(): void {
    let t = this.src0;
    this.src0 = this.dst0;
    this.dst0 = t;
    t = this.src1;
    this.src1 = this.dst1;
    this.dst1 = t;
    t = this.src2;
    this.src2 = this.dst2;
    this.dst2 = t;
    t = this.src3;
    this.src3 = this.dst3;
    this.dst3 = t;
    t = this.srcPort;
    this.srcPort = this.dstPort;
    this.dstPort = t;
  }

  private clear(): false {
    this.protocol = 0;
    return false;
  }
}
