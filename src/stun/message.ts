// STUN message decoding and encoding (RFC 8489 §5, §14).
//
// Decoding is strict: the header length field must equal the bytes that follow, every
// attribute must fit with its padding, and a known attribute with a bad length or value
// rejects the whole message. Attributes after MESSAGE-INTEGRITY are ignored, except a
// FINGERPRINT, which must be last. Unknown attributes are kept raw.
import { attributeType, decodeAttribute, encodeAttributeValue, inPlaceValueLength, writeValueInPlace } from './attributes.ts';
import type { AttributeOf, StunAttribute, StunAttributeKind } from './attributes.ts';
import {
  ATTRIBUTE_HEADER_LENGTH,
  FINGERPRINT_LENGTH,
  FINGERPRINT_XOR,
  HEADER_LENGTH,
  MAGIC_COOKIE,
  MESSAGE_INTEGRITY_LENGTH,
  StunAttributeType,
  TRANSACTION_ID_LENGTH,
} from './constants.ts';
import type { StunClass } from './constants.ts';
import { crc32 } from './fingerprint.ts';
import { stunHmacSha1, stunHmacSha1Matches } from './hmac-sha1.ts';

export interface StunMessage {
  readonly method: number;
  readonly class: StunClass;
  /** 12 bytes; a view into `bytes`. */
  readonly transactionId: Uint8Array;
  /** Attributes before MESSAGE-INTEGRITY, in wire order. */
  readonly attributes: readonly StunAttribute[];
  /** Offset of the MESSAGE-INTEGRITY attribute header in `bytes`, if present. */
  readonly integrityOffset: number | undefined;
  /** Offset of the FINGERPRINT attribute header in `bytes`, if present. */
  readonly fingerprintOffset: number | undefined;
  /** The whole datagram the message was decoded from. */
  readonly bytes: Uint8Array;
}

export type StunDecodeError =
  | 'tooShort'
  | 'notStun'
  | 'badCookie'
  | 'badLength'
  | 'truncatedAttribute'
  | 'badAttribute'
  | 'fingerprintNotLast';

export interface StunMessageInit {
  readonly method: number;
  readonly class: StunClass;
  readonly transactionId: Uint8Array;
  readonly attributes: readonly StunAttribute[];
}

export interface StunEncodeOptions {
  /** Appends MESSAGE-INTEGRITY keyed with this (see `shortTermKey`, `longTermKey`). */
  readonly integrityKey?: Uint8Array | undefined;
  /** Appends FINGERPRINT. */
  readonly fingerprint?: boolean | undefined;
  /** Padding byte value; RFC 8489 senders use 0, some test vectors use 0x20. */
  readonly padding?: number | undefined;
}

/** Cheap test: could these bytes be a STUN message (size, top bits, magic cookie)? */
export function looksLikeStun(bytes: Uint8Array): boolean {
  return (
    bytes.length >= HEADER_LENGTH &&
    (bytes[0]! & 0xc0) === 0 &&
    bytes[4] === 0x21 &&
    bytes[5] === 0x12 &&
    bytes[6] === 0xa4 &&
    bytes[7] === 0x42
  );
}

/** Decodes a datagram. Never throws: malformed input yields a `StunDecodeError` string. */
export function decodeStunMessage(bytes: Uint8Array): StunMessage | StunDecodeError {
  if (bytes.length < HEADER_LENGTH) return 'tooShort';
  if ((bytes[0]! & 0xc0) !== 0) return 'notStun';
  if (readU32(bytes, 4) !== MAGIC_COOKIE) return 'badCookie';
  const length = (bytes[2]! << 8) | bytes[3]!;
  if (length % 4 !== 0 || length !== bytes.length - HEADER_LENGTH) return 'badLength';
  const type = (bytes[0]! << 8) | bytes[1]!;
  const transactionId = bytes.subarray(8, 8 + TRANSACTION_ID_LENGTH);
  const attributes: StunAttribute[] = [];
  let integrityOffset: number | undefined;
  let fingerprintOffset: number | undefined;
  let offset = HEADER_LENGTH;
  while (offset < bytes.length) {
    if (offset + ATTRIBUTE_HEADER_LENGTH > bytes.length) return 'truncatedAttribute';
    const attrType = (bytes[offset]! << 8) | bytes[offset + 1]!;
    const attrLength = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    const valueStart = offset + ATTRIBUTE_HEADER_LENGTH;
    const next = valueStart + ((attrLength + 3) & ~3);
    if (next > bytes.length) return 'truncatedAttribute';
    if (attrType === StunAttributeType.Fingerprint) {
      if (attrLength !== FINGERPRINT_LENGTH) return 'badAttribute';
      if (next !== bytes.length) return 'fingerprintNotLast';
      fingerprintOffset = offset;
    } else if (integrityOffset !== undefined) {
      // RFC 8489 §14.5: everything between MESSAGE-INTEGRITY and FINGERPRINT is ignored.
    } else if (attrType === StunAttributeType.MessageIntegrity) {
      if (attrLength !== MESSAGE_INTEGRITY_LENGTH) return 'badAttribute';
      integrityOffset = offset;
    } else {
      const attribute = decodeAttribute(attrType, bytes.subarray(valueStart, valueStart + attrLength), transactionId);
      if (attribute === undefined) return 'badAttribute';
      attributes.push(attribute);
    }
    offset = next;
  }
  return {
    method: decodeMethod(type),
    class: decodeClass(type),
    transactionId,
    attributes,
    integrityOffset,
    fingerprintOffset,
    bytes,
  };
}

/** The first attribute of `kind`, if any. */
export function getAttribute<K extends StunAttributeKind>(message: StunMessage, kind: K): AttributeOf<K> | undefined {
  const attributes = message.attributes;
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i]!;
    if (attribute.kind === kind) return attribute as AttributeOf<K>;
  }
  return undefined;
}

/** Every attribute of `kind`, in wire order (e.g. the two XOR-RELAYED-ADDRESSes of a dual-stack allocation). */
export function getAttributes<K extends StunAttributeKind>(message: StunMessage, kind: K): AttributeOf<K>[] {
  const found: AttributeOf<K>[] = [];
  for (const attribute of message.attributes) if (attribute.kind === kind) found.push(attribute as AttributeOf<K>);
  return found;
}

/** Comprehension-required (type < 0x8000) attributes this codec does not understand. */
export function unknownComprehensionRequired(message: StunMessage): number[] {
  const types: number[] = [];
  for (const attribute of message.attributes) {
    if (attribute.kind === 'unknown' && attribute.type < 0x8000) types.push(attribute.type);
  }
  return types;
}

/** True when the message carries MESSAGE-INTEGRITY and it verifies under `key`. */
export function verifyIntegrity(message: StunMessage, key: Uint8Array): boolean {
  const offset = message.integrityOffset;
  if (offset === undefined) return false;
  const lengthField = offset + ATTRIBUTE_HEADER_LENGTH + MESSAGE_INTEGRITY_LENGTH - HEADER_LENGTH;
  return stunHmacSha1Matches(key, message.bytes, offset, lengthField, message.bytes, offset + ATTRIBUTE_HEADER_LENGTH);
}

/** True when the message carries FINGERPRINT and it matches. */
export function verifyFingerprint(message: StunMessage): boolean {
  const offset = message.fingerprintOffset;
  if (offset === undefined) return false;
  const expected = (crc32(message.bytes, 0, offset) ^ FINGERPRINT_XOR) >>> 0;
  return readU32(message.bytes, offset + ATTRIBUTE_HEADER_LENGTH) === expected;
}

/**
 * Encodes a message, appending MESSAGE-INTEGRITY and FINGERPRINT when asked. Throws only
 * for a programmer error: an attribute that cannot be encoded (an address that is not an
 * IP, an error code outside 300..699) or a transaction id that is not 12 bytes.
 */
export function encodeStunMessage(message: StunMessageInit, options: StunEncodeOptions = {}): Uint8Array {
  if (message.transactionId.length !== TRANSACTION_ID_LENGTH) throw new RangeError('transaction id must be 12 bytes');
  const attributes = message.attributes;
  // Values of the rare attributes not written in place (error codes, data, ...), by index.
  let encoded: (Uint8Array | undefined)[] | undefined;
  let length = 0;
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i]!;
    let valueLength = inPlaceValueLength(attribute);
    if (valueLength === undefined) {
      const value = encodeAttributeValue(attribute, message.transactionId);
      if (value === undefined) throw new TypeError(`cannot encode STUN attribute ${attribute.kind}`);
      encoded ??= new Array<Uint8Array | undefined>(attributes.length);
      encoded[i] = value;
      valueLength = value.length;
    }
    if (valueLength > 0xffff) throw new TypeError(`cannot encode STUN attribute ${attribute.kind}`);
    length += ATTRIBUTE_HEADER_LENGTH + ((valueLength + 3) & ~3);
  }
  const integrityKey = options.integrityKey;
  if (integrityKey !== undefined) length += ATTRIBUTE_HEADER_LENGTH + MESSAGE_INTEGRITY_LENGTH;
  if (options.fingerprint === true) length += ATTRIBUTE_HEADER_LENGTH + FINGERPRINT_LENGTH;
  const out = new Uint8Array(HEADER_LENGTH + length);
  const type = encodeMessageType(message.method, message.class);
  out[0] = type >>> 8;
  out[1] = type & 0xff;
  writeU32(out, 4, MAGIC_COOKIE);
  out.set(message.transactionId, 8);
  let offset = HEADER_LENGTH;
  const padding = options.padding ?? 0;
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i]!;
    const value = encoded?.[i];
    const valueLength = value === undefined ? inPlaceValueLength(attribute)! : value.length;
    writeAttributeHeader(out, offset, attributeType(attribute), valueLength);
    if (value !== undefined) out.set(value, offset + ATTRIBUTE_HEADER_LENGTH);
    else if (!writeValueInPlace(attribute, message.transactionId, out, offset + ATTRIBUTE_HEADER_LENGTH)) throw new TypeError(`cannot encode STUN attribute ${attribute.kind}`);
    const end = offset + ATTRIBUTE_HEADER_LENGTH + valueLength;
    offset = offset + ATTRIBUTE_HEADER_LENGTH + ((valueLength + 3) & ~3);
    if (padding !== 0) out.fill(padding, end, offset);
  }
  if (integrityKey !== undefined) {
    const lengthField = offset + ATTRIBUTE_HEADER_LENGTH + MESSAGE_INTEGRITY_LENGTH - HEADER_LENGTH;
    stunHmacSha1(integrityKey, out, offset, lengthField, out, offset + ATTRIBUTE_HEADER_LENGTH);
    writeAttributeHeader(out, offset, StunAttributeType.MessageIntegrity, MESSAGE_INTEGRITY_LENGTH);
    offset += ATTRIBUTE_HEADER_LENGTH + MESSAGE_INTEGRITY_LENGTH;
  }
  if (options.fingerprint === true) {
    writeLength(out, offset + ATTRIBUTE_HEADER_LENGTH + FINGERPRINT_LENGTH - HEADER_LENGTH);
    writeAttributeHeader(out, offset, StunAttributeType.Fingerprint, FINGERPRINT_LENGTH);
    writeU32(out, offset + ATTRIBUTE_HEADER_LENGTH, (crc32(out, 0, offset) ^ FINGERPRINT_XOR) >>> 0);
    offset += ATTRIBUTE_HEADER_LENGTH + FINGERPRINT_LENGTH;
  }
  writeLength(out, offset - HEADER_LENGTH);
  return out;
}

/** A string usable as a Map key for a transaction id (12 chars, one per byte). */
export function transactionIdKey(transactionId: Uint8Array): string {
  let key = '';
  for (let i = 0; i < transactionId.length; i++) key += String.fromCharCode(transactionId[i]!);
  return key;
}

export function encodeMessageType(method: number, cls: StunClass): number {
  const classBits = cls === 'request' ? 0 : cls === 'indication' ? 1 : cls === 'success' ? 2 : 3;
  return (
    (method & 0x000f) |
    ((method & 0x0070) << 1) |
    ((method & 0x0f80) << 2) |
    ((classBits & 1) << 4) |
    ((classBits & 2) << 7)
  );
}

function decodeMethod(type: number): number {
  return (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
}

const CLASSES: readonly StunClass[] = ['request', 'indication', 'success', 'error'];

function decodeClass(type: number): StunClass {
  return CLASSES[((type >> 7) & 2) | ((type >> 4) & 1)]!;
}

function writeAttributeHeader(out: Uint8Array, offset: number, type: number, length: number): void {
  out[offset] = type >>> 8;
  out[offset + 1] = type & 0xff;
  out[offset + 2] = length >>> 8;
  out[offset + 3] = length & 0xff;
}

function writeLength(out: Uint8Array, length: number): void {
  out[2] = length >>> 8;
  out[3] = length & 0xff;
}

function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

function writeU32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value >>> 24;
  out[offset + 1] = (value >>> 16) & 0xff;
  out[offset + 2] = (value >>> 8) & 0xff;
  out[offset + 3] = value & 0xff;
}
