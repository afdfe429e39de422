import {
  COOKIE_OFFSET_RECEIVER,
  COOKIE_REPLY_SIZE,
  INITIATION_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  RESPONSE_OFFSET_RECEIVER,
  RESPONSE_SIZE,
  TRANSPORT_MIN_SIZE,
  TRANSPORT_OFFSET_RECEIVER,
} from './constants.ts';

/** 0 when the bytes are no WireGuard message. */
export type MessageType =
  | 0
  | typeof MESSAGE_INITIATION
  | typeof MESSAGE_RESPONSE
  | typeof MESSAGE_COOKIE_REPLY
  | typeof MESSAGE_TRANSPORT;

/**
 * The WireGuard message type of a datagram, judged by type byte, reserved zero bytes and
 * exact (or minimum, for transport) length only. Nothing is authenticated.
 */
export function messageType(datagram: Uint8Array): MessageType {
  if (datagram.length < 4 || datagram[1] !== 0 || datagram[2] !== 0 || datagram[3] !== 0) return 0;
  switch (datagram[0]) {
    case MESSAGE_INITIATION:
      return datagram.length === INITIATION_SIZE ? MESSAGE_INITIATION : 0;
    case MESSAGE_RESPONSE:
      return datagram.length === RESPONSE_SIZE ? MESSAGE_RESPONSE : 0;
    case MESSAGE_COOKIE_REPLY:
      return datagram.length === COOKIE_REPLY_SIZE ? MESSAGE_COOKIE_REPLY : 0;
    case MESSAGE_TRANSPORT:
      return datagram.length >= TRANSPORT_MIN_SIZE ? MESSAGE_TRANSPORT : 0;
    default:
      return 0;
  }
}

/**
 * The receiver index of a response, cookie reply or transport message (our session index),
 * or undefined for an initiation or a non-WireGuard datagram.
 */
export function receiverIndex(datagram: Uint8Array): number | undefined {
  const type = messageType(datagram);
  const offset =
    type === MESSAGE_RESPONSE
      ? RESPONSE_OFFSET_RECEIVER
      : type === MESSAGE_COOKIE_REPLY
        ? COOKIE_OFFSET_RECEIVER
        : type === MESSAGE_TRANSPORT
          ? TRANSPORT_OFFSET_RECEIVER
          : undefined;
  if (offset === undefined) return undefined;
  return (
    (datagram[offset]! | (datagram[offset + 1]! << 8) | (datagram[offset + 2]! << 16) | (datagram[offset + 3]! << 24)) >>>
    0
  );
}

/**
 * `tunnelIndexOf(receiverIndex(datagram))` read straight from the bytes: the 32-bit index is
 * never formed, because one above 2^31 is a heap number, allocated on every call the compiler
 * does not inline (this runs for every datagram). Undefined where `receiverIndex` is.
 */
export function receiverTunnelIndex(datagram: Uint8Array): number | undefined {
  const type = messageType(datagram);
  const offset =
    type === MESSAGE_TRANSPORT
      ? TRANSPORT_OFFSET_RECEIVER
      : type === MESSAGE_RESPONSE
        ? RESPONSE_OFFSET_RECEIVER
        : type === MESSAGE_COOKIE_REPLY
          ? COOKIE_OFFSET_RECEIVER
          : -1;
  if (offset === -1) return undefined;
  return datagram[offset + 1]! | (datagram[offset + 2]! << 8) | (datagram[offset + 3]! << 16);
}

/** The 24-bit tunnel part of a session index (see `SessionIndexAllocator`). */
export function tunnelIndexOf(sessionIndex: number): number {
  return sessionIndex >>> 8;
}
