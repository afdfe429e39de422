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
export { messageType, receiverIndex, tunnelIndexOf, type MessageType } from './messages.ts';
export { initiationSender, openInitiation, type OpenedInitiation } from './noise.ts';
export { RateLimiter, type HandshakeVerdict } from './rate-limiter.ts';
export { ReplayWindow } from './replay.ts';
export { SessionIndexAllocator } from './session-index.ts';
export {
  Tunnel,
  type DecapsulateDrop,
  type DecapsulateOutcome,
  type DecapsulateResult,
  type EncapsulateResult,
  type TunnelConfig,
  type TunnelEvent,
} from './tunnel.ts';
