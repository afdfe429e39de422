// STUN (RFC 8489), TURN (RFC 8656) and ICE (RFC 8445) wire constants.

export const HEADER_LENGTH = 20;
export const MAGIC_COOKIE = 0x2112a442;
export const TRANSACTION_ID_LENGTH = 12;
export const ATTRIBUTE_HEADER_LENGTH = 4;
export const MESSAGE_INTEGRITY_LENGTH = 20;
export const FINGERPRINT_LENGTH = 4;
export const FINGERPRINT_XOR = 0x5354554e;

export const StunMethod = {
  Binding: 0x001,
  Allocate: 0x003,
  Refresh: 0x004,
  Send: 0x006,
  Data: 0x007,
  CreatePermission: 0x008,
  ChannelBind: 0x009,
} as const;

export type StunClass = 'request' | 'indication' | 'success' | 'error';

export const StunAttributeType = {
  MappedAddress: 0x0001,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  UnknownAttributes: 0x000a,
  ChannelNumber: 0x000c,
  Lifetime: 0x000d,
  XorPeerAddress: 0x0012,
  Data: 0x0013,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorRelayedAddress: 0x0016,
  RequestedAddressFamily: 0x0017,
  RequestedTransport: 0x0019,
  XorMappedAddress: 0x0020,
  Priority: 0x0024,
  UseCandidate: 0x0025,
  AdditionalAddressFamily: 0x8000,
  Software: 0x8022,
  Fingerprint: 0x8028,
  IceControlled: 0x8029,
  IceControlling: 0x802a,
} as const;

export const StunErrorCode = {
  TryAlternate: 300,
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  UnknownAttribute: 420,
  AllocationMismatch: 437,
  StaleNonce: 438,
  AddressFamilyNotSupported: 440,
  WrongCredentials: 441,
  UnsupportedTransportProtocol: 442,
  PeerAddressFamilyMismatch: 443,
  AllocationQuotaReached: 486,
  RoleConflict: 487,
  ServerError: 500,
  InsufficientCapacity: 508,
} as const;

/** IANA protocol number carried in REQUESTED-TRANSPORT. */
export const TRANSPORT_UDP = 17;

/** Address family codes in (XOR-)MAPPED-ADDRESS and ADDITIONAL-ADDRESS-FAMILY. */
export const FAMILY_IPV4 = 0x01;
export const FAMILY_IPV6 = 0x02;

/** RFC 8489 §14: fewer than 128 characters. */
export const MAX_TEXT_CHARACTERS = 127;
/** RFC 8489 §14.3. */
export const MAX_USERNAME_BYTES = 513;

export const CHANNEL_DATA_HEADER_LENGTH = 4;
/** Range a ChannelData frame's first two bytes may carry (RFC 8656 §12). */
export const CHANNEL_NUMBER_MIN = 0x4000;
export const CHANNEL_NUMBER_MAX = 0x7fff;
