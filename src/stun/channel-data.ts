// TURN ChannelData framing (RFC 8656 §12.4): channel(2) | length(2) | payload(length).
// We never pad, and on receive require the length to cover exactly the rest of the
// datagram, as the reference's demultiplexer and the Firezone relay's fast path do.
import { CHANNEL_DATA_HEADER_LENGTH, CHANNEL_NUMBER_MAX, CHANNEL_NUMBER_MIN } from './constants.ts';

/** Could this datagram be ChannelData? (first byte 0x40..0x4F, the demultiplexer's test) */
export function looksLikeChannelData(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0]! >= 0x40 && bytes[0]! <= 0x4f;
}

/**
 * The channel number of a well-formed ChannelData frame, or -1 if the bytes are not one
 * (too short, channel outside 0x4000..0x7FFF, or length != remaining bytes). The
 * payload is then `bytes.subarray(CHANNEL_DATA_HEADER_LENGTH)`.
 */
export function channelDataChannel(bytes: Uint8Array): number {
  if (bytes.length < CHANNEL_DATA_HEADER_LENGTH) return -1;
  const channel = (bytes[0]! << 8) | bytes[1]!;
  if (channel < CHANNEL_NUMBER_MIN || channel > CHANNEL_NUMBER_MAX) return -1;
  const length = (bytes[2]! << 8) | bytes[3]!;
  if (length !== bytes.length - CHANNEL_DATA_HEADER_LENGTH) return -1;
  return channel;
}

/** Writes the 4-byte header at `offset`; the payload must already follow it. */
export function writeChannelDataHeader(target: Uint8Array, offset: number, channel: number, payloadLength: number): void {
  target[offset] = channel >>> 8;
  target[offset + 1] = channel & 0xff;
  target[offset + 2] = payloadLength >>> 8;
  target[offset + 3] = payloadLength & 0xff;
}

/** A new frame holding a copy of `payload`. Use `writeChannelDataHeader` with headroom to avoid the copy. */
export function encodeChannelData(channel: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(CHANNEL_DATA_HEADER_LENGTH + payload.length);
  writeChannelDataHeader(out, 0, channel, payload.length);
  out.set(payload, CHANNEL_DATA_HEADER_LENGTH);
  return out;
}
