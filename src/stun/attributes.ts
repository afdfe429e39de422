// Typed STUN attributes: decoding one attribute value, and its encoded size and bytes.
import type { SocketAddr } from '../util/socket-addr.ts';
import { formatIpv4, formatIpv6, writeIpAddress } from './address.ts';
import {
  FAMILY_IPV4,
  FAMILY_IPV6,
  MAGIC_COOKIE,
  MAX_TEXT_CHARACTERS,
  MAX_USERNAME_BYTES,
  StunAttributeType as T,
} from './constants.ts';

export type AddressAttributeKind = 'xorMappedAddress' | 'xorPeerAddress' | 'xorRelayedAddress' | 'mappedAddress';
export type TextAttributeKind = 'username' | 'realm' | 'nonce' | 'software';

/**
 * One attribute. MESSAGE-INTEGRITY and FINGERPRINT are not attributes here: the
 * codec places and checks them itself (see `StunMessage`). Attributes the codec does
 * not know are kept as `unknown` with their raw value, so re-encoding is lossless.
 */
export type StunAttribute =
  | { readonly kind: AddressAttributeKind; readonly address: SocketAddr }
  | { readonly kind: TextAttributeKind; readonly value: string }
  | { readonly kind: 'errorCode'; readonly code: number; readonly reason: string }
  | { readonly kind: 'lifetime'; readonly seconds: number }
  | { readonly kind: 'requestedTransport'; readonly protocol: number }
  | { readonly kind: 'additionalAddressFamily'; readonly family: 4 | 6 }
  | { readonly kind: 'requestedAddressFamily'; readonly family: 4 | 6 }
  | { readonly kind: 'channelNumber'; readonly channel: number }
  | { readonly kind: 'data'; readonly data: Uint8Array }
  | { readonly kind: 'priority'; readonly priority: number }
  | { readonly kind: 'useCandidate' }
  | { readonly kind: 'iceControlling'; readonly tieBreaker: bigint }
  | { readonly kind: 'iceControlled'; readonly tieBreaker: bigint }
  | { readonly kind: 'unknownAttributes'; readonly types: readonly number[] }
  | { readonly kind: 'unknown'; readonly type: number; readonly value: Uint8Array };

export type StunAttributeKind = StunAttribute['kind'];
export type AttributeOf<K extends StunAttributeKind> = MemberWithKind<StunAttribute, K>;
type MemberWithKind<A, K> = A extends { readonly kind: infer AK } ? (K extends AK ? A : never) : never;

const textDecoder = new TextDecoder('utf-8', { fatal: false });
const textEncoder = new TextEncoder();

/**
 * Decodes the value of attribute `type` (`value` is a view into the message). Returns
 * undefined when a known attribute has an invalid length or content.
 */
export function decodeAttribute(type: number, value: Uint8Array, transactionId: Uint8Array): StunAttribute | undefined {
  switch (type) {
    case T.XorMappedAddress:
      return decodeAddress('xorMappedAddress', value, transactionId);
    case T.XorPeerAddress:
      return decodeAddress('xorPeerAddress', value, transactionId);
    case T.XorRelayedAddress:
      return decodeAddress('xorRelayedAddress', value, transactionId);
    case T.MappedAddress:
      return decodeAddress('mappedAddress', value, undefined);
    case T.Username:
      return value.length > MAX_USERNAME_BYTES ? undefined : { kind: 'username', value: textDecoder.decode(value) };
    case T.Realm:
      return decodeText('realm', value);
    case T.Nonce:
      return decodeText('nonce', value);
    case T.Software:
      return decodeText('software', value);
    case T.ErrorCode:
      return decodeErrorCode(value);
    case T.Lifetime:
      return value.length === 4 ? { kind: 'lifetime', seconds: readU32(value, 0) } : undefined;
    case T.RequestedTransport:
      return value.length === 4 ? { kind: 'requestedTransport', protocol: value[0]! } : undefined;
    case T.AdditionalAddressFamily:
      return decodeFamily('additionalAddressFamily', value);
    case T.RequestedAddressFamily:
      return decodeFamily('requestedAddressFamily', value);
    case T.ChannelNumber:
      return decodeChannelNumber(value);
    case T.Data:
      return { kind: 'data', data: value };
    case T.Priority:
      return value.length === 4 ? { kind: 'priority', priority: readU32(value, 0) } : undefined;
    case T.UseCandidate:
      return value.length === 0 ? { kind: 'useCandidate' } : undefined;
    case T.IceControlling:
      return value.length === 8 ? { kind: 'iceControlling', tieBreaker: readU64(value) } : undefined;
    case T.IceControlled:
      return value.length === 8 ? { kind: 'iceControlled', tieBreaker: readU64(value) } : undefined;
    case T.UnknownAttributes:
      return decodeUnknownAttributes(value);
    default:
      return { kind: 'unknown', type, value };
  }
}

export function attributeType(attribute: StunAttribute): number {
  switch (attribute.kind) {
    case 'xorMappedAddress':
      return T.XorMappedAddress;
    case 'xorPeerAddress':
      return T.XorPeerAddress;
    case 'xorRelayedAddress':
      return T.XorRelayedAddress;
    case 'mappedAddress':
      return T.MappedAddress;
    case 'username':
      return T.Username;
    case 'realm':
      return T.Realm;
    case 'nonce':
      return T.Nonce;
    case 'software':
      return T.Software;
    case 'errorCode':
      return T.ErrorCode;
    case 'lifetime':
      return T.Lifetime;
    case 'requestedTransport':
      return T.RequestedTransport;
    case 'additionalAddressFamily':
      return T.AdditionalAddressFamily;
    case 'requestedAddressFamily':
      return T.RequestedAddressFamily;
    case 'channelNumber':
      return T.ChannelNumber;
    case 'data':
      return T.Data;
    case 'priority':
      return T.Priority;
    case 'useCandidate':
      return T.UseCandidate;
    case 'iceControlling':
      return T.IceControlling;
    case 'iceControlled':
      return T.IceControlled;
    case 'unknownAttributes':
      return T.UnknownAttributes;
    case 'unknown':
      return attribute.type;
  }
}

/**
 * The encoded value of an attribute (without header or padding). Returns undefined for an
 * attribute that cannot be encoded (an address that is not an IP, an out-of-range number).
 */
export function encodeAttributeValue(attribute: StunAttribute, transactionId: Uint8Array): Uint8Array | undefined {
  switch (attribute.kind) {
    case 'xorMappedAddress':
    case 'xorPeerAddress':
    case 'xorRelayedAddress':
      return encodeAddress(attribute.address, transactionId);
    case 'mappedAddress':
      return encodeAddress(attribute.address, undefined);
    case 'username':
    case 'realm':
    case 'nonce':
    case 'software':
      return textEncoder.encode(attribute.value);
    case 'errorCode': {
      const reason = textEncoder.encode(attribute.reason);
      const out = new Uint8Array(4 + reason.length);
      if (attribute.code < 300 || attribute.code > 699) return undefined;
      out[2] = Math.floor(attribute.code / 100);
      out[3] = attribute.code % 100;
      out.set(reason, 4);
      return out;
    }
    case 'lifetime':
      return u32(attribute.seconds);
    case 'priority':
      return u32(attribute.priority);
    case 'requestedTransport':
      return new Uint8Array([attribute.protocol & 0xff, 0, 0, 0]);
    case 'additionalAddressFamily':
    case 'requestedAddressFamily':
      return new Uint8Array([attribute.family === 4 ? FAMILY_IPV4 : FAMILY_IPV6, 0, 0, 0]);
    case 'channelNumber':
      return new Uint8Array([attribute.channel >>> 8, attribute.channel & 0xff, 0, 0]);
    case 'data':
      return attribute.data;
    case 'useCandidate':
      return new Uint8Array(0);
    case 'iceControlling':
    case 'iceControlled': {
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, attribute.tieBreaker));
      return out;
    }
    case 'unknownAttributes': {
      const out = new Uint8Array(2 * attribute.types.length);
      for (let i = 0; i < attribute.types.length; i++) {
        out[2 * i] = attribute.types[i]! >>> 8;
        out[2 * i + 1] = attribute.types[i]! & 0xff;
      }
      return out;
    }
    case 'unknown':
      return attribute.value;
  }
}

/**
 * The value length of an attribute the encoder writes in place (the ones every ICE check and
 * answer carries), or undefined for the others, which take `encodeAttributeValue`.
 */
export function inPlaceValueLength(attribute: StunAttribute): number | undefined {
  switch (attribute.kind) {
    case 'username':
    case 'realm':
    case 'nonce':
    case 'software':
      return asciiLength(attribute.value);
    case 'priority':
    case 'lifetime':
      return 4;
    case 'iceControlling':
    case 'iceControlled':
      return 8;
    case 'useCandidate':
      return 0;
    case 'xorMappedAddress':
    case 'xorPeerAddress':
    case 'xorRelayedAddress':
    case 'mappedAddress':
      return attribute.address.family === 4 ? 8 : 20;
    default:
      return undefined;
  }
}

/**
 * Writes the value of an attribute `inPlaceValueLength` sized at `out[at]`. False when it cannot
 * be encoded (an address that is not an IP, a port out of range).
 */
export function writeValueInPlace(attribute: StunAttribute, transactionId: Uint8Array, out: Uint8Array, at: number): boolean {
  switch (attribute.kind) {
    case 'username':
    case 'realm':
    case 'nonce':
    case 'software': {
      const text = attribute.value;
      for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
      return true;
    }
    case 'priority':
      writeU32At(out, at, attribute.priority);
      return true;
    case 'lifetime':
      writeU32At(out, at, attribute.seconds);
      return true;
    case 'iceControlling':
    case 'iceControlled': {
      const tieBreaker = BigInt.asUintN(64, attribute.tieBreaker);
      writeU32At(out, at, Number(tieBreaker >> 32n));
      writeU32At(out, at + 4, Number(tieBreaker & 0xffffffffn));
      return true;
    }
    case 'useCandidate':
      return true;
    case 'xorMappedAddress':
    case 'xorPeerAddress':
    case 'xorRelayedAddress':
      return writeAddress(attribute.address, transactionId, out, at);
    case 'mappedAddress':
      return writeAddress(attribute.address, undefined, out, at);
    default:
      return false;
  }
}

/** The length of an all-ASCII string (its UTF-8 length), or undefined if any character is not ASCII. */
function asciiLength(text: string): number | undefined {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return undefined;
  return text.length;
}

function writeU32At(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}

function decodeAddress(
  kind: AddressAttributeKind,
  value: Uint8Array,
  transactionId: Uint8Array | undefined,
): StunAttribute | undefined {
  if (value.length < 4 || value[0] !== 0) return undefined;
  const family = value[1];
  const xor = transactionId !== undefined;
  const port = ((value[2]! << 8) | value[3]!) ^ (xor ? MAGIC_COOKIE >>> 16 : 0);
  if (family === FAMILY_IPV4) {
    if (value.length !== 8) return undefined;
    const bytes = new Uint8Array(4);
    for (let i = 0; i < 4; i++) bytes[i] = value[4 + i]! ^ (xor ? cookieByte(i) : 0);
    return { kind, address: { address: formatIpv4(bytes, 0), port, family: 4 } };
  }
  if (family === FAMILY_IPV6) {
    if (value.length !== 20) return undefined;
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i++) bytes[i] = value[4 + i]! ^ (xor ? xorPadByte(i, transactionId) : 0);
    return { kind, address: { address: formatIpv6(bytes, 0), port, family: 6 } };
  }
  return undefined;
}

function encodeAddress(address: SocketAddr, transactionId: Uint8Array | undefined): Uint8Array | undefined {
  const out = new Uint8Array(address.family === 4 ? 8 : 20);
  return writeAddress(address, transactionId, out, 0) ? out : undefined;
}

function writeAddress(address: SocketAddr, transactionId: Uint8Array | undefined, out: Uint8Array, at: number): boolean {
  const length = address.family === 4 ? 4 : 16;
  if (!writeIpAddress(address.address, address.family, out, at + 4)) return false;
  if (!Number.isInteger(address.port) || address.port < 0 || address.port > 0xffff) return false;
  const xor = transactionId !== undefined;
  const port = address.port ^ (xor ? MAGIC_COOKIE >>> 16 : 0);
  out[at] = 0;
  out[at + 1] = address.family === 4 ? FAMILY_IPV4 : FAMILY_IPV6;
  out[at + 2] = port >>> 8;
  out[at + 3] = port & 0xff;
  if (transactionId !== undefined) for (let i = 0; i < length; i++) out[at + 4 + i]! ^= xorPadByte(i, transactionId);
  return true;
}

function cookieByte(i: number): number {
  return (MAGIC_COOKIE >>> (24 - 8 * i)) & 0xff;
}

function xorPadByte(i: number, transactionId: Uint8Array): number {
  return i < 4 ? cookieByte(i) : transactionId[i - 4]!;
}

function decodeText(kind: 'realm' | 'nonce' | 'software', value: Uint8Array): StunAttribute | undefined {
  // Each character takes at most 6 bytes in the RFC's (pre-RFC 3629) UTF-8 arithmetic.
  if (value.length > MAX_TEXT_CHARACTERS * 6) return undefined;
  const text = textDecoder.decode(value);
  if (text.length > MAX_TEXT_CHARACTERS && [...text].length > MAX_TEXT_CHARACTERS) return undefined;
  return { kind, value: text };
}

function decodeErrorCode(value: Uint8Array): StunAttribute | undefined {
  if (value.length < 4) return undefined;
  const codeClass = value[2]! & 0x07;
  const number = value[3]!;
  if (codeClass < 3 || codeClass > 6 || number > 99) return undefined;
  return { kind: 'errorCode', code: codeClass * 100 + number, reason: textDecoder.decode(value.subarray(4)) };
}

function decodeFamily(kind: 'additionalAddressFamily' | 'requestedAddressFamily', value: Uint8Array): StunAttribute | undefined {
  if (value.length !== 4) return undefined;
  if (value[0] === FAMILY_IPV4) return { kind, family: 4 };
  if (value[0] === FAMILY_IPV6) return { kind, family: 6 };
  return undefined;
}

function decodeChannelNumber(value: Uint8Array): StunAttribute | undefined {
  if (value.length !== 4) return undefined;
  const channel = (value[0]! << 8) | value[1]!;
  if (channel < 0x4000 || channel > 0x7fff) return undefined;
  return { kind: 'channelNumber', channel };
}

function decodeUnknownAttributes(value: Uint8Array): StunAttribute | undefined {
  if (value.length % 2 !== 0) return undefined;
  const types: number[] = [];
  for (let i = 0; i < value.length; i += 2) types.push((value[i]! << 8) | value[i + 1]!);
  return { kind: 'unknownAttributes', types };
}

function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

function readU64(bytes: Uint8Array): bigint {
  return (BigInt(readU32(bytes, 0)) << 32n) | BigInt(readU32(bytes, 4));
}

function u32(value: number): Uint8Array {
  return new Uint8Array([value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff]);
}
