// Noise_IKpsk2 as WireGuard uses it (whitepaper §5.4), message by message. Each Create has its
// Consume; a rejected message is `undefined`, never an exception. MACs are added by the caller.
import type { KeyObject } from 'node:crypto';
import {
  INITIATION_OFFSET_EPHEMERAL,
  INITIATION_OFFSET_STATIC,
  INITIATION_OFFSET_TIMESTAMP,
  INITIATION_SIZE,
  KEY_SIZE,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  OFFSET_SENDER,
  RESPONSE_OFFSET_EMPTY,
  RESPONSE_OFFSET_EPHEMERAL,
  RESPONSE_OFFSET_RECEIVER,
  RESPONSE_SIZE,
  TIMESTAMP_SIZE,
  AEAD_TAG_SIZE,
  INITIATION_OFFSET_MAC1,
} from './constants.ts';
import { aeadOpen, aeadSeal, dh, hash, importPrivateKey, importPublicKey, kdf1, kdf2, kdf3, rawPublicKey } from './crypto.ts';
import { initialChainKey, type PublicIdentity, type StaticIdentity } from './keys.ts';

const ZERO_NONCE = new Uint8Array(12);
const EMPTY = new Uint8Array(0);

/** What the initiator keeps between sending an initiation and receiving the response. */
export interface InitiationState {
  readonly localIndex: number;
  readonly chainKey: Uint8Array;
  readonly hash: Uint8Array;
  readonly ephemeral: KeyObject;
}

/** Transport keys of a completed handshake, from our side's point of view. */
export interface SessionKeys {
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
}

/**
 * Writes an initiation (without MACs) into a new 148-byte message.
 * `staticStatic` is DH(our static, their static), computed once per peer.
 */
export function createInitiation(
  local: StaticIdentity,
  remote: PublicIdentity,
  staticStatic: Uint8Array,
  localIndex: number,
  ephemeralPrivate: Uint8Array,
  timestamp: Uint8Array,
): { message: Uint8Array; state: InitiationState } | undefined {
  const message = new Uint8Array(INITIATION_SIZE);
  const view = new DataView(message.buffer);
  view.setUint32(0, MESSAGE_INITIATION, true);
  view.setUint32(OFFSET_SENDER, localIndex, true);

  const ephemeral = importPrivateKey(ephemeralPrivate);
  const ephemeralPublic = rawPublicKey(ephemeral);
  message.set(ephemeralPublic, INITIATION_OFFSET_EPHEMERAL);
  let chainKey = kdf1(initialChainKey(), ephemeralPublic);
  let h = hash(remote.initialHash, ephemeralPublic);

  const es = dh(ephemeral, importPublicKey(remote.publicKey));
  if (es === undefined) return undefined;
  let key: Uint8Array;
  [chainKey, key] = kdf2(chainKey, es);
  aeadSeal(key, ZERO_NONCE, local.publicKey, h, message, INITIATION_OFFSET_STATIC);
  h = hash(h, message.subarray(INITIATION_OFFSET_STATIC, INITIATION_OFFSET_TIMESTAMP));

  [chainKey, key] = kdf2(chainKey, staticStatic);
  aeadSeal(key, ZERO_NONCE, timestamp, h, message, INITIATION_OFFSET_TIMESTAMP);
  h = hash(h, message.subarray(INITIATION_OFFSET_TIMESTAMP, INITIATION_OFFSET_MAC1));

  return { message, state: { localIndex, chainKey, hash: h, ephemeral } };
}

/** The first half of consuming an initiation: who sent it. Enough to pick the right tunnel. */
export interface OpenedInitiation {
  readonly peerStatic: Uint8Array;
  readonly peerIndex: number;
  readonly peerEphemeral: KeyObject;
  readonly chainKey: Uint8Array;
  readonly hash: Uint8Array;
  /** The timestamp ciphertext, still sealed: only the tunnel holding the peer's key opens it. */
  readonly sealedTimestamp: Uint8Array;
}

/**
 * Decrypts the initiator's static public key with our static private key. Returns undefined
 * for anything that is not a well-formed initiation addressed to us. MAC1 is not checked here.
 */
export function openInitiation(local: StaticIdentity, message: Uint8Array): OpenedInitiation | undefined {
  if (message.length !== INITIATION_SIZE || message[0] !== MESSAGE_INITIATION) return undefined;
  if (message[1] !== 0 || message[2] !== 0 || message[3] !== 0) return undefined;
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const peerIndex = view.getUint32(OFFSET_SENDER, true);

  const ephemeralPublic = message.subarray(INITIATION_OFFSET_EPHEMERAL, INITIATION_OFFSET_STATIC);
  const peerEphemeral = importPublicKey(ephemeralPublic);
  let chainKey = kdf1(initialChainKey(), ephemeralPublic);
  let h = hash(local.initialHash, ephemeralPublic);

  const es = dh(local.privateKey, peerEphemeral);
  if (es === undefined) return undefined;
  let key: Uint8Array;
  [chainKey, key] = kdf2(chainKey, es);
  const sealedStatic = message.subarray(INITIATION_OFFSET_STATIC, INITIATION_OFFSET_TIMESTAMP);
  const peerStatic = aeadOpen(key, ZERO_NONCE, sealedStatic, h);
  if (peerStatic === undefined || peerStatic.length !== KEY_SIZE) return undefined;
  h = hash(h, sealedStatic);

  return {
    peerStatic: Uint8Array.from(peerStatic),
    peerIndex,
    peerEphemeral,
    chainKey,
    hash: h,
    sealedTimestamp: message.subarray(INITIATION_OFFSET_TIMESTAMP, INITIATION_OFFSET_MAC1),
  };
}

/** The second half: authenticates the initiator's static key and yields the timestamp. */
export function finishInitiation(
  opened: OpenedInitiation,
  staticStatic: Uint8Array,
): { timestamp: Uint8Array; chainKey: Uint8Array; hash: Uint8Array } | undefined {
  const [chainKey, key] = kdf2(opened.chainKey, staticStatic);
  const timestamp = aeadOpen(key, ZERO_NONCE, opened.sealedTimestamp, opened.hash);
  if (timestamp === undefined || timestamp.length !== TIMESTAMP_SIZE) return undefined;
  return { timestamp: Uint8Array.from(timestamp), chainKey, hash: hash(opened.hash, opened.sealedTimestamp) };
}

/** Writes a response (without MACs) to an authenticated initiation and derives the responder's keys. */
export function createResponse(
  initiator: PublicIdentity,
  accepted: { peerIndex: number; peerEphemeral: KeyObject; chainKey: Uint8Array; hash: Uint8Array },
  localIndex: number,
  ephemeralPrivate: Uint8Array,
  presharedKey: Uint8Array,
): { message: Uint8Array; keys: SessionKeys } | undefined {
  const message = new Uint8Array(RESPONSE_SIZE);
  const view = new DataView(message.buffer);
  view.setUint32(0, MESSAGE_RESPONSE, true);
  view.setUint32(OFFSET_SENDER, localIndex, true);
  view.setUint32(RESPONSE_OFFSET_RECEIVER, accepted.peerIndex, true);

  const ephemeral = importPrivateKey(ephemeralPrivate);
  const ephemeralPublic = rawPublicKey(ephemeral);
  message.set(ephemeralPublic, RESPONSE_OFFSET_EPHEMERAL);
  let chainKey = kdf1(accepted.chainKey, ephemeralPublic);
  let h = hash(accepted.hash, ephemeralPublic);

  const ee = dh(ephemeral, accepted.peerEphemeral);
  const se = dh(ephemeral, importPublicKey(initiator.publicKey));
  if (ee === undefined || se === undefined) return undefined;
  chainKey = kdf1(chainKey, ee);
  chainKey = kdf1(chainKey, se);
  const [nextChainKey, tau, key] = kdf3(chainKey, presharedKey);
  h = hash(h, tau);
  aeadSeal(key, ZERO_NONCE, EMPTY, h, message, RESPONSE_OFFSET_EMPTY);

  const [initiatorSend, responderSend] = kdf2(nextChainKey, EMPTY);
  return {
    message,
    keys: { localIndex, remoteIndex: accepted.peerIndex, sendKey: responderSend, receiveKey: initiatorSend },
  };
}

/** Reads the receiver index of a response without authenticating anything. */
export function responseReceiverIndex(message: Uint8Array): number {
  return new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(RESPONSE_OFFSET_RECEIVER, true);
}

/** Authenticates a response to our initiation and derives the initiator's keys. */
export function consumeResponse(
  local: StaticIdentity,
  state: InitiationState,
  message: Uint8Array,
  presharedKey: Uint8Array,
): SessionKeys | undefined {
  if (message.length !== RESPONSE_SIZE || message[0] !== MESSAGE_RESPONSE) return undefined;
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  if (view.getUint32(RESPONSE_OFFSET_RECEIVER, true) !== state.localIndex) return undefined;
  const remoteIndex = view.getUint32(OFFSET_SENDER, true);

  const ephemeralPublic = message.subarray(RESPONSE_OFFSET_EPHEMERAL, RESPONSE_OFFSET_EMPTY);
  const peerEphemeral = importPublicKey(ephemeralPublic);
  let chainKey = kdf1(state.chainKey, ephemeralPublic);
  let h = hash(state.hash, ephemeralPublic);

  const ee = dh(state.ephemeral, peerEphemeral);
  const se = dh(local.privateKey, peerEphemeral);
  if (ee === undefined || se === undefined) return undefined;
  chainKey = kdf1(chainKey, ee);
  chainKey = kdf1(chainKey, se);
  const [nextChainKey, tau, key] = kdf3(chainKey, presharedKey);
  h = hash(h, tau);
  const sealedEmpty = message.subarray(RESPONSE_OFFSET_EMPTY, RESPONSE_OFFSET_EMPTY + AEAD_TAG_SIZE);
  if (aeadOpen(key, ZERO_NONCE, sealedEmpty, h) === undefined) return undefined;

  const [initiatorSend, responderSend] = kdf2(nextChainKey, EMPTY);
  return { localIndex: state.localIndex, remoteIndex, sendKey: initiatorSend, receiveKey: responderSend };
}

/**
 * The static public key of whoever sent this initiation to us, so a node can pick the tunnel
 * for it; undefined when it is not a valid initiation for our key. MAC1 is not checked here.
 */
export function initiationSender(local: StaticIdentity, message: Uint8Array): Uint8Array | undefined {
  return openInitiation(local, message)?.peerStatic;
}
