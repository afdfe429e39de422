export * from './constants.ts';
export {
  aeadOpen,
  aeadSeal,
  constantTimeEqual,
  dh,
  hash,
  hmac,
  importPrivateKey,
  importPublicKey,
  kdf1,
  kdf2,
  kdf3,
  mac,
  rawPublicKey,
  xaeadOpen,
  xaeadSeal,
} from './crypto.ts';
export { publicIdentity, staticIdentity, type PublicIdentity, type StaticIdentity } from './keys.ts';
export { messageType, receiverIndex, receiverTunnelIndex, tunnelIndexOf, type MessageType } from './messages.ts';
export { initiationSender, openInitiation, type OpenedInitiation } from './noise.ts';
export { RateLimiter, type HandshakeVerdict } from './rate-limiter.ts';
export { ReplayRings, ReplayWindow } from './replay.ts';
export { SessionIndexAllocator } from './session-index.ts';
export { OpenBatch, SealBatch, TRANSPORT_BATCH_CAPACITY, type OpenOutcome } from './transport-batch.ts';
export {
  AEAD_BAD_KEY,
  AEAD_BAD_RANGE,
  AEAD_FAILED,
  AEAD_JOB_WORDS,
  AEAD_OK,
  AEAD_UNAUTHENTIC,
  NodeCryptoTransportCipher,
  writeAeadJob,
  type TransportCipher,
  type TransportCipherKind,
} from './transport-cipher.ts';
export {
  Tunnel,
  type DecapsulateDrop,
  type DecapsulateOutcome,
  type DecapsulateResult,
  type EncapsulateIntoResult,
  type EncapsulateResult,
  type TunnelConfig,
  type TunnelEvent,
} from './tunnel.ts';
