/**
 * The simulation's packets: built with src/ip, read back by hand. Each carries a tag in the IPv4 identification or
 * the IPv6 flow label (so ICMP errors quote it) and in its payload.
 */
import {
  makeIcmpEchoReply,
  makeIcmpEchoRequest,
  makeTcpPacket,
  makeUdpPacket,
  parseIp,
  sealIpv4Header,
  type IpAddr,
} from '../../src/ip/index.ts';
import type { Protocol } from './model.ts';

export function makePacket(source: string, destination: string, protocol: Protocol, sourcePort: number, destinationPort: number, tag: number, reply = false): Uint8Array {
  const src = parseIp(source)!;
  const dst = parseIp(destination)!;
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setUint32(0, tag);
  let packet: Uint8Array;
  switch (protocol) {
    case 'tcp':
      packet = makeTcpPacket(src, dst, sourcePort, destinationPort, { flags: reply ? 0x12 : 0x02 }, payload);
      break;
    case 'udp':
      packet = makeUdpPacket(src, dst, sourcePort, destinationPort, payload);
      break;
    case 'icmp':
      packet = reply ? makeIcmpEchoReply(src, dst, tag, 1, payload) : makeIcmpEchoRequest(src, dst, tag, 1, payload);
      break;
  }
  writeTag(packet, tag);
  return packet;
}

/** The tag rides in the IPv4 identification or the IPv6 flow label, so ICMP errors quote it. */
function writeTag(packet: Uint8Array, tag: number): void {
  if (packet[0]! >> 4 === 4) {
    packet[4] = tag >> 8;
    packet[5] = tag & 0xff;
    sealIpv4Header(packet, 4);
    return;
  }
  packet[1] = (packet[1]! & 0xf0) | ((tag >> 16) & 0x0f);
  packet[2] = (tag >> 8) & 0xff;
  packet[3] = tag & 0xff;
}

export function readTag(packet: Uint8Array, offset = 0): number {
  if (packet.length < offset + 8) return -1;
  if (packet[offset]! >> 4 === 4) return (packet[offset + 4]! << 8) | packet[offset + 5]!;
  return ((packet[offset + 1]! & 0x0f) << 16) | (packet[offset + 2]! << 8) | packet[offset + 3]!;
}

export interface UnreachableInfo {
  readonly type: number;
  readonly code: number;
  readonly tag: number;
  quotesOriginal(original: Uint8Array): boolean;
}

/** An ICMP/ICMPv6 destination unreachable, read by hand (independently of src/ip). */
export function unreachableInfo(packet: Uint8Array): UnreachableInfo | undefined {
  const v4 = packet[0]! >> 4 === 4;
  const l4 = v4 ? (packet[0]! & 0x0f) * 4 : 40;
  const protocol = v4 ? packet[9] : packet[6];
  if (protocol !== (v4 ? 1 : 58) || packet[l4] !== (v4 ? 3 : 1)) return undefined;
  const quoted = packet.subarray(l4 + 8);
  return {
    type: packet[l4]!,
    code: packet[l4 + 1]!,
    tag: readTag(quoted),
    quotesOriginal: (original) => quoted.length >= Math.min(original.length, 28) && equalBytes(quoted, original.subarray(0, quoted.length)),
  };
}

/** The resources: UDP and TCP echo with the ports swapped, ICMP echo requests answered. */
export function answer(packet: Uint8Array): Uint8Array | undefined {
  const v4 = packet[0]! >> 4 === 4;
  const l4 = v4 ? (packet[0]! & 0x0f) * 4 : 40;
  const protocol = v4 ? packet[9]! : packet[6]!;
  const src = addressAt(packet, v4 ? 12 : 8, v4);
  const dst = addressAt(packet, v4 ? 16 : 24, v4);
  const tag = readTag(packet);
  const payload = packet.subarray(protocol === 6 ? l4 + 20 : l4 + 8);
  const sourcePort = (packet[l4]! << 8) | packet[l4 + 1]!;
  const destinationPort = (packet[l4 + 2]! << 8) | packet[l4 + 3]!;
  let reply: Uint8Array;
  if (protocol === 17) reply = makeUdpPacket(dst, src, destinationPort, sourcePort, payload);
  else if (protocol === 6) reply = makeTcpPacket(dst, src, destinationPort, sourcePort, { flags: 0x12 }, payload);
  else if (protocol === (v4 ? 1 : 58) && packet[l4] === (v4 ? 8 : 128)) reply = makeIcmpEchoReply(dst, src, (packet[l4 + 4]! << 8) | packet[l4 + 5]!, 1, payload);
  else return undefined;
  writeTag(reply, tag);
  return reply;
}

function addressAt(packet: Uint8Array, offset: number, v4: boolean): IpAddr {
  if (v4) return { family: 4, value: ((packet[offset]! << 24) | (packet[offset + 1]! << 16) | (packet[offset + 2]! << 8) | packet[offset + 3]!) >>> 0 };
  return { family: 6, bytes: packet.slice(offset, offset + 16) };
}

/** The packet at the TUN device is `sent` with the destination `real`: same protocol, destination port and payload. */
export function sameTranslation(packet: Uint8Array, sent: Uint8Array, real: string): boolean {
  const v4 = packet[0]! >> 4 === 4;
  const realAddr = parseIp(real)!;
  const dst = addressAt(packet, v4 ? 16 : 24, v4);
  if (dst.family !== realAddr.family) return false;
  if (dst.family === 4 ? dst.value !== (realAddr as { value: number }).value : !equalBytes(dst.bytes, (realAddr as { bytes: Uint8Array }).bytes)) return false;
  const l4 = v4 ? (packet[0]! & 0x0f) * 4 : 40;
  const protocol = v4 ? packet[9] : packet[6];
  if (protocol !== (sent[0]! >> 4 === 4 ? sent[9] : sent[6])) return false;
  if (protocol !== 1 && protocol !== 58 && (packet[l4 + 2] !== sent[l4 + 2] || packet[l4 + 3] !== sent[l4 + 3])) return false;
  return equalBytes(packet.subarray(packet.length - 8), sent.subarray(sent.length - 8));
}

/** `reply` goes from `sent`'s destination and port back to its source and port. */
export function isAnswerTo(reply: Uint8Array, sent: Uint8Array): boolean {
  const v4 = sent[0]! >> 4 === 4;
  if (reply[0]! >> 4 !== sent[0]! >> 4) return false;
  const length = v4 ? 4 : 16;
  const [src, dst] = v4 ? [12, 16] : [8, 24];
  if (!equalBytes(reply.subarray(src, src + length), sent.subarray(dst, dst + length))) return false;
  if (!equalBytes(reply.subarray(dst, dst + length), sent.subarray(src, src + length))) return false;
  const l4 = v4 ? (sent[0]! & 0x0f) * 4 : 40;
  const protocol = v4 ? sent[9] : sent[6];
  if (protocol === 1 || protocol === 58) return reply[l4 + 4] === sent[l4 + 4] && reply[l4 + 5] === sent[l4 + 5];
  return reply[l4] === sent[l4 + 2] && reply[l4 + 1] === sent[l4 + 3] && reply[l4 + 2] === sent[l4] && reply[l4 + 3] === sent[l4 + 1];
}

/** IPv6, next header 0xFF, from :: to ::, with the 8-byte control header. */
export function isP2pControl(packet: Uint8Array): boolean {
  if (packet.length < 48 || packet[0]! >> 4 !== 6 || packet[6] !== 0xff) return false;
  for (let i = 8; i < 40; i++) if (packet[i] !== 0) return false;
  return true;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
