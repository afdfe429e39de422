// A sans-IO TURN client (RFC 8656): one allocation on one relay.
//
// Sequence: BINDING to every relay address; the first answer picks the socket all later
// traffic uses and every answer yields a server-reflexive candidate. Then ALLOCATE
// (UDP, IPv4 + ADDITIONAL-ADDRESS-FAMILY IPv6) with long-term credentials: a 401 or 438
// supplies REALM and NONCE and the request is re-signed under a new transaction id.
// REFRESH at half the lifetime, BINDING keepalive every 25 s, ChannelBind on demand and
// re-bind before expiry. A request unanswered for 8 s on the chosen socket's family
// means the relay is gone: every candidate is invalidated and the allocation can be freed.
//
// Deviations from the reference (snownet allocation.rs), on purpose:
// - Error responses without MESSAGE-INTEGRITY are accepted when they answer an outstanding
//   transaction and come from the exact address the request went to. Standard servers
//   (coturn) send their 401/438 challenges unsigned (RFC 8489 §9.2.4), and the reference's
//   signed-only rule makes them unusable. The cost: an on-path attacker who sees our
//   transaction ids can forge a 401 (which ends the allocation) or a 438; an on-path
//   attacker can as easily drop our packets, so no new capability is granted. A signed
//   error whose MESSAGE-INTEGRITY fails is still ignored, and success responses to
//   anything but BINDING must always verify.
// - The REALM of a 401/438 is adopted (the reference refuses one different from its own):
//   coturn uses its own realm. The Firezone relay always says "firezone", so nothing changes there.
// - A REFRESH failing with an unhandled error is retried 5 s later rather than at once.
// - When the relay is deemed unreachable, its server-reflexive candidates are invalidated
//   too, not only the relay candidates.
// - Optional Send indications with CreatePermission (`sendIndications`), for standard TURN
//   servers; the Firezone relay forwards only channel data, so the default is off.
import { DeadlineQueue } from '../util/deadline-queue.ts';
import type { RandomSource } from '../util/random.ts';
import { RingQueue } from '../util/ring-queue.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import { sameSocketAddr, socketAddrKey as peerText } from '../util/socket-addr.ts';
import type { Transmit } from '../util/transmit.ts';
import { createLogger, Level } from '../log/index.ts';
import {
  CHANNEL_DATA_HEADER_LENGTH,
  channelDataChannel,
  decodeStunMessage,
  encodeStunMessage,
  getAttribute,
  getAttributes,
  longTermKey,
  StunAttributeType,
  StunErrorCode,
  StunMethod,
  transactionIdKey,
  TRANSPORT_UDP,
  verifyIntegrity,
  writeChannelDataHeader,
} from '../stun/index.ts';
import type { StunAttribute, StunMessage } from '../stun/index.ts';
import { advanceBackoff, backoffExpired, newBackoff } from './backoff.ts';
import type { Backoff } from './backoff.ts';
import type { LocalCandidate } from './candidate.ts';
import { sameCandidate } from './candidate.ts';
import { ChannelBindings } from './channel-bindings.ts';
import type { Channel } from './channel-bindings.ts';
import {
  BINDING_INTERVAL,
  CHANNEL_REFRESH_AFTER,
  DEFAULT_REALM,
  MAX_BUFFERED_CHANNEL_BINDS,
  PERMISSION_LIFETIME,
  PERMISSION_REFRESH_AFTER,
  REFRESH_RETRY_AFTER_ERROR,
  REQUEST_TIMEOUT,
} from './constants.ts';

const logger = createLogger('turn');

/** The relay's addresses; at least one must be set. */
export interface RelaySocket {
  readonly v4?: SocketAddr | undefined;
  readonly v6?: SocketAddr | undefined;
}

export interface AllocationConfig {
  readonly server: RelaySocket;
  readonly username: string;
  readonly password: string;
  /** REALM of the first, nonce-less request; default "firezone". Replaced by the server's. */
  readonly realm?: string | undefined;
  /** SOFTWARE on every request, e.g. `snownet; session=<hex>`. */
  readonly software: string;
  readonly rng: RandomSource;
  /**
   * Without a bound channel, send to a peer with a Send indication once a permission for
   * its IP exists (creating it on first use). Off: drop and bind a channel, as the reference.
   */
  readonly sendIndications?: boolean | undefined;
  /**
   * Send the first, nonce-less request without USERNAME, REALM and MESSAGE-INTEGRITY
   * (RFC 8489 §9.2.3.1) and take the realm from the server's 401. For standard servers whose
   * realm we do not know: coturn answers a signed request with a foreign realm with 437/441.
   * Off: sign it under `realm`, as the reference does.
   */
  readonly learnRealm?: boolean | undefined;
}

export type AllocationEvent =
  | { readonly kind: 'candidateAdded'; readonly candidate: LocalCandidate }
  | { readonly kind: 'candidateInvalidated'; readonly candidate: LocalCandidate };

export type FreeReason = 'noResponseReceived' | 'authenticationError' | 'protocolFailure' | 'deleted';

/** Data from a peer through the relay. `relayed` is our relay address of the peer's family. */
export interface PeerDatagram {
  readonly peer: SocketAddr;
  readonly payload: Uint8Array;
  readonly relayed: SocketAddr;
}

/**
 * What `handleInput` did with a datagram: not from this relay (or not STUN/ChannelData),
 * consumed (control traffic, or dropped), or data from a peer.
 */
export type RelayInput = 'notForUs' | 'consumed' | PeerDatagram;

type RequestKind =
  | 'binding'
  | 'allocate'
  | 'refresh'
  | 'delete'
  | 'deleteThenAllocate'
  | 'channelBind'
  | 'createPermission';

interface PendingRequest {
  readonly kind: RequestKind;
  readonly destination: SocketAddr;
  readonly backoff: Backoff;
  transactionId: Uint8Array;
  bytes: Uint8Array;
  hadNonce: boolean;
  readonly channel: Channel | undefined;
  readonly peer: SocketAddr | undefined;
}

interface Credentials {
  readonly username: string;
  readonly password: string;
  realm: string;
  nonce: string | undefined;
  key: Uint8Array;
}

interface Relayed {
  readonly v4: LocalCandidate | undefined;
  readonly v6: LocalCandidate | undefined;
  receivedAt: number;
  lifetime: number;
  refreshAt: number;
}

interface Permission {
  readonly peer: SocketAddr;
  confirmedAt: number | undefined;
  requestedAt: number;
  requestInFlight: boolean;
}

interface MutablePeerDatagram {
  peer: SocketAddr;
  payload: Uint8Array;
  relayed: SocketAddr;
}

export class Allocation {
  readonly server: RelaySocket;
  private readonly software: string;
  private readonly rng: RandomSource;
  private readonly sendIndications: boolean;
  private learnRealm: boolean;
  /** Set once the relay rejected REQUESTED-TRANSPORT / ADDITIONAL-ADDRESS-FAMILY on REFRESH (coturn does). */
  private refreshWithoutAllocateAttributes = false;
  private credentials: Credentials | undefined;
  private active: SocketAddr | undefined;
  private nextKeepaliveAt = 0;
  private srflxV4: LocalCandidate | undefined;
  private srflxV6: LocalCandidate | undefined;
  private relayed: Relayed | undefined;
  private failure: FreeReason | undefined;
  /** Outstanding requests by transaction key, and by the instant each is due for retransmission. */
  private readonly pending = new Map<string, PendingRequest>();
  private readonly retransmissions = new DeadlineQueue<PendingRequest>();
  private readonly inFlightByKind = new Map<RequestKind, number>();
  private readonly channels = new ChannelBindings();
  private bufferedChannelBinds: SocketAddr[] = [];
  private readonly permissions = new Map<string, Permission>();
  private readonly permissionRefreshes = new DeadlineQueue<Permission>();
  private readonly transmits = new RingQueue<Transmit>();
  private readonly events = new RingQueue<AllocationEvent>();
  private readonly output: MutablePeerDatagram;

  constructor(config: AllocationConfig, now: number) {
    if (config.server.v4 === undefined && config.server.v6 === undefined) throw new TypeError('relay has no address');
    this.server = config.server;
    this.software = config.software;
    this.rng = config.rng;
    this.sendIndications = config.sendIndications ?? false;
    this.learnRealm = config.learnRealm ?? false;
    const realm = config.realm ?? DEFAULT_REALM;
    this.credentials = {
      username: config.username,
      password: config.password,
      realm,
      nonce: undefined,
      key: longTermKey(config.username, realm, config.password),
    };
    const placeholder = (config.server.v4 ?? config.server.v6)!;
    this.output = { peer: placeholder, payload: new Uint8Array(0), relayed: placeholder };
    this.sendBindingRequests(now);
  }

  /**
   * Offers a datagram received from `from` on local address `to`. The returned
   * `PeerDatagram` is reused: it is valid until the next call, and `payload` is a view
   * into `packet`.
   */
  handleInput(packet: Uint8Array, from: SocketAddr, to: SocketAddr, now: number): RelayInput {
    if (!this.isServer(from) || packet.length === 0) return 'notForUs';
    const first = packet[0]!;
    if (first >= 0x40 && first <= 0x4f) return this.handleChannelData(packet, now);
    if (first > 0x03) return 'notForUs';
    const message = decodeStunMessage(packet);
    if (typeof message === 'string') return 'consumed';
    switch (message.class) {
      case 'indication':
        return message.method === StunMethod.Data ? this.handleDataIndication(message, now) : 'consumed';
      case 'request':
        return 'consumed';
      case 'success':
      case 'error':
        this.handleResponse(message, from, to, now);
        return 'consumed';
    }
  }

  handleTimeout(now: number): void {
    const relayed = this.relayed;
    if (relayed !== undefined && now >= relayed.receivedAt + relayed.lifetime) {
      logger.info('Allocation expired');
      this.invalidate();
    }
    if (this.relayed !== undefined && this.active !== undefined && now >= this.nextKeepaliveAt) {
      this.nextKeepaliveAt = now + BINDING_INTERVAL;
      this.send('binding', this.active, now);
    }
    this.handleRequestTimeouts(now);
    const current = this.relayed;
    if (current !== undefined && now >= current.refreshAt && !this.inFlight('refresh')) {
      if (!this.send('refresh', undefined, now)) current.refreshAt = now + REFRESH_RETRY_AFTER_ERROR;
    }
    for (let channel = this.channels.popRefreshDue(now); channel !== undefined; channel = this.channels.popRefreshDue(now)) {
      if (channel.bindInFlight) continue;
      this.send('channelBind', undefined, now, newBackoff(now), channel);
    }
    for (let permission = this.permissionRefreshes.popDue(now); permission !== undefined; permission = this.permissionRefreshes.popDue(now)) {
      if (permission.requestInFlight || this.permissions.get(permission.peer.address) !== permission) continue;
      this.send('createPermission', undefined, now, newBackoff(now), undefined, permission.peer);
    }
  }

  pollTransmit(): Transmit | undefined {
    return this.transmits.shift();
  }

  pollEvent(): AllocationEvent | undefined {
    return this.events.shift();
  }

  pollTimeout(): number | undefined {
    let earliest = this.retransmissions.peekTime();
    const relayed = this.relayed;
    if (relayed !== undefined) {
      earliest = Math.min(earliest, relayed.receivedAt + relayed.lifetime);
      if (this.active !== undefined) {
        earliest = Math.min(earliest, this.nextKeepaliveAt, this.channels.nextRefreshAt(), this.permissionRefreshes.peekTime());
        if (this.credentials !== undefined && !this.inFlight('refresh')) earliest = Math.min(earliest, relayed.refreshAt);
      }
    }
    return earliest === Infinity ? undefined : earliest;
  }

  /**
   * Binds a channel to `peer` unless one is usable or in flight. Before the allocation
   * exists the request is buffered; peers of a family we have no relay address for are skipped.
   */
  bindChannel(peer: SocketAddr, now: number): void {
    if (this.failure !== undefined || this.isSuspended()) return;
    if (this.channels.usableChannelTo(peer, now) !== undefined) return;
    if (this.channelBindToPeerInFlight(peer)) return;
    if (this.relayed === undefined) {
      if (this.bufferedChannelBinds.length >= MAX_BUFFERED_CHANNEL_BINDS) this.bufferedChannelBinds.shift();
      this.bufferedChannelBinds.push(peer);
      return;
    }
    if (this.relayedAddressFor(peer) === undefined) return;
    const channel = this.channels.reserve(peer, now);
    if (channel === undefined) {
      logger.warn('No free channel number', { peer: peerText(peer) });
      return;
    }
    this.send('channelBind', undefined, now, newBackoff(now), channel);
  }

  /** Installs a permission for `peer`'s IP (needed for Send indications on standard servers). */
  createPermission(peer: SocketAddr, now: number): void {
    if (this.failure !== undefined || this.relayed === undefined || this.relayedAddressFor(peer) === undefined) return;
    const key = peer.address;
    if (this.permissions.has(key)) return;
    this.permissions.set(key, { peer, confirmedAt: undefined, requestedAt: now, requestInFlight: false });
    this.send('createPermission', undefined, now, newBackoff(now), undefined, peer);
  }

  /** The bound, usable channel number to `peer`, or undefined (for in-place framing by the caller). */
  channelTo(peer: SocketAddr, now: number): number | undefined {
    return this.channels.usableChannelTo(peer, now)?.number;
  }

  /** The relay socket all allocation traffic and channel data go to, once chosen. */
  activeSocket(): SocketAddr | undefined {
    return this.active;
  }

  /**
   * Frames `payload` for `peer`: ChannelData on a bound channel, else a Send indication
   * when enabled and permitted. Otherwise undefined: the datagram is dropped and a channel
   * bind (or permission) is started, as the reference does.
   */
  encodeToPeer(peer: SocketAddr, payload: Uint8Array, now: number): Transmit | undefined {
    const active = this.active;
    if (active === undefined) return undefined;
    const channel = this.channels.usableChannelTo(peer, now);
    if (channel !== undefined) {
      const frame = new Uint8Array(CHANNEL_DATA_HEADER_LENGTH + payload.length);
      writeChannelDataHeader(frame, 0, channel.number, payload.length);
      frame.set(payload, CHANNEL_DATA_HEADER_LENGTH);
      return { source: undefined, destination: active, payload: frame };
    }
    if (!this.sendIndications) {
      this.bindChannel(peer, now);
      return undefined;
    }
    const permission = this.permissions.get(peer.address);
    if (permission === undefined || permission.confirmedAt === undefined || now - permission.confirmedAt >= PERMISSION_LIFETIME) {
      this.createPermission(peer, now);
      return undefined;
    }
    const indication = encodeStunMessage({
      method: StunMethod.Send,
      class: 'indication',
      transactionId: this.newTransactionId(),
      attributes: [
        { kind: 'xorPeerAddress', address: peer },
        { kind: 'data', data: payload },
      ],
    });
    return { source: undefined, destination: active, payload: indication };
  }

  /**
   * Zero-copy variant of `encodeToPeer` for ChannelData only: `frame` holds the payload
   * after CHANNEL_DATA_HEADER_LENGTH bytes of headroom, and the header is written into that
   * headroom. Undefined (and a channel bind started) when no channel is usable.
   */
  frameForPeer(peer: SocketAddr, frame: Uint8Array, now: number): Transmit | undefined {
    const active = this.active;
    if (active === undefined) return undefined;
    const channel = this.channels.usableChannelTo(peer, now);
    if (channel === undefined) {
      this.bindChannel(peer, now);
      return undefined;
    }
    writeChannelDataHeader(frame, 0, channel.number, frame.length - CHANNEL_DATA_HEADER_LENGTH);
    return { source: undefined, destination: active, payload: frame };
  }

  /**
   * Re-validates the allocation (the relay was listed again): a single-shot REFRESH, or a
   * new socket selection if the allocation had given up.
   */
  refresh(now: number): void {
    if (this.relayed === undefined && this.inFlight('allocate')) return;
    if (this.isSuspended()) {
      this.active = undefined;
      this.sendBindingRequests(now);
      return;
    }
    this.send('refresh', undefined, now, newBackoff(now, REQUEST_TIMEOUT, REQUEST_TIMEOUT));
  }

  /** Deletes the allocation on the relay (REFRESH with LIFETIME 0) and withdraws every candidate. */
  delete(now: number): void {
    const allocated = this.relayed !== undefined && this.active !== undefined;
    this.invalidate();
    this.invalidateServerReflexive();
    this.bufferedChannelBinds = [];
    this.failure ??= 'deleted';
    if (allocated) this.send('delete', undefined, now);
  }

  /** Why this allocation should be dropped, once it has nothing left to do. */
  canBeFreed(): FreeReason | undefined {
    const pendingWork = this.events.length > 0 || this.transmits.length > 0 || this.pending.size > 0;
    if (pendingWork) return undefined;
    if (this.failure !== undefined) return this.failure;
    if (this.credentials === undefined) return 'authenticationError';
    if (this.active === undefined) return 'noResponseReceived';
    return undefined;
  }

  /** Current srflx and relay candidates. */
  candidates(): LocalCandidate[] {
    const all: LocalCandidate[] = [];
    for (const candidate of [this.srflxV4, this.srflxV6, this.relayed?.v4, this.relayed?.v6]) {
      if (candidate !== undefined) all.push(candidate);
    }
    return all;
  }

  matchesCredentials(username: string, password: string): boolean {
    return this.credentials?.username === username && this.credentials.password === password;
  }

  private handleChannelData(packet: Uint8Array, now: number): RelayInput {
    const number = channelDataChannel(packet);
    if (number < 0) return 'notForUs';
    const channel = this.channels.received(number, now);
    if (channel === undefined) return 'consumed';
    const relayed = this.relayedAddressFor(channel.peer);
    if (relayed === undefined) return 'consumed';
    const output = this.output;
    output.peer = channel.peer;
    output.payload = packet.subarray(CHANNEL_DATA_HEADER_LENGTH);
    output.relayed = relayed;
    return output;
  }

  private handleDataIndication(message: StunMessage, now: number): RelayInput {
    const peer = getAttribute(message, 'xorPeerAddress')?.address;
    const data = getAttribute(message, 'data')?.data;
    if (peer === undefined || data === undefined) return 'consumed';
    if (!this.permissions.has(peer.address) && this.channels.usableChannelTo(peer, now) === undefined) return 'consumed';
    const relayed = this.relayedAddressFor(peer);
    if (relayed === undefined) return 'consumed';
    const output = this.output;
    output.peer = peer;
    output.payload = data;
    output.relayed = relayed;
    return output;
  }

  private handleResponse(message: StunMessage, from: SocketAddr, to: SocketAddr, now: number): void {
    const key = transactionIdKey(message.transactionId);
    const request = this.pending.get(key);
    if (request === undefined || !sameSocketAddr(request.destination, from)) return;
    if (!this.isAuthentic(message, request)) {
      logger.warn('Ignoring TURN response with invalid MESSAGE-INTEGRITY', { kind: request.kind });
      return;
    }
    this.untrack(key, request);
    if (logger.enabled(Level.Debug)) {
      logger.debug('TURN response', { kind: request.kind, class: message.class, rtt: now - request.backoff.startedAt });
    }
    if (message.class === 'error') this.handleErrorResponse(message, request, now);
    else this.handleSuccessResponse(message, request, to, now);
  }

  private isAuthentic(message: StunMessage, request: PendingRequest): boolean {
    if (request.kind === 'binding') return true;
    if (message.class === 'error' && message.integrityOffset === undefined) return true;
    const credentials = this.credentials;
    return credentials !== undefined && verifyIntegrity(message, credentials.key);
  }

  private handleErrorResponse(message: StunMessage, request: PendingRequest, now: number): void {
    const error = getAttribute(message, 'errorCode');
    const code = error?.code ?? 0;
    if (request.kind === 'binding') return;
    if (!request.hadNonce && !this.learnRealm && (code === StunErrorCode.BadRequest || code === StunErrorCode.WrongCredentials)) {
      // A standard server (coturn) refuses the reference's signed first request that has no
      // nonce; fall back to RFC 8489's unsigned first request to learn its realm and nonce.
      logger.debug('Relay refused a signed request without a nonce; retrying unsigned', { kind: request.kind, code });
      this.learnRealm = true;
      this.send(request.kind, undefined, now, newBackoff(now), request.channel, request.peer);
      return;
    }
    if (code === StunErrorCode.Unauthorized && request.hadNonce) {
      logger.warn('Invalid TURN credentials, giving up on relay', { kind: request.kind });
      this.credentials = undefined;
      this.invalidate();
      return;
    }
    if (code === StunErrorCode.Unauthorized || code === StunErrorCode.StaleNonce) {
      const credentials = this.credentials;
      if (credentials === undefined) return;
      const nonce = getAttribute(message, 'nonce')?.value;
      if (nonce !== undefined) credentials.nonce = nonce;
      const realm = getAttribute(message, 'realm')?.value;
      if (realm !== undefined && realm !== credentials.realm) {
        logger.debug('Adopting realm offered by relay', { realm });
        credentials.realm = realm;
        credentials.key = longTermKey(credentials.username, realm, credentials.password);
      }
      this.send(request.kind, undefined, now, newBackoff(now), request.channel, request.peer);
      return;
    }
    if (code === StunErrorCode.AllocationMismatch) {
      this.invalidate();
      if (request.kind === 'allocate') this.send('deleteThenAllocate', undefined, now);
      if (request.kind === 'refresh') this.send('allocate', undefined, now);
      if (request.kind === 'channelBind') {
        this.send('allocate', undefined, now);
        if (request.channel !== undefined) this.bufferedChannelBinds.push(request.channel.peer);
      }
      return;
    }
    if (code === StunErrorCode.UnknownAttribute) {
      const unknown = getAttribute(message, 'unknownAttributes')?.types ?? [];
      if (isRefreshKind(request.kind) && !this.refreshWithoutAllocateAttributes && unknown.length > 0 && unknown.every(isAllocateOnlyAttribute)) {
        this.refreshWithoutAllocateAttributes = true;
        this.send(request.kind, undefined, now, newBackoff(now), request.channel, request.peer);
        return;
      }
      logger.warn('Relay did not understand our request', { kind: request.kind, unknown });
      this.failure = 'protocolFailure';
      this.invalidate();
      return;
    }
    logger.warn('TURN request failed', { kind: request.kind, code, reason: error?.reason });
    switch (request.kind) {
      case 'allocate':
        this.bufferedChannelBinds = [];
        return;
      case 'channelBind':
        if (request.channel === undefined) return;
        if (!request.channel.bound) this.channels.remove(request.channel.number);
        else this.channels.retryRefreshAt(request.channel, now + REFRESH_RETRY_AFTER_ERROR);
        return;
      case 'createPermission':
        if (request.peer !== undefined) this.forgetPermission(request.peer.address);
        return;
      case 'refresh':
        if (this.relayed !== undefined) this.relayed.refreshAt = now + REFRESH_RETRY_AFTER_ERROR;
        return;
      case 'delete':
      case 'deleteThenAllocate':
        return;
    }
  }

  private handleSuccessResponse(message: StunMessage, request: PendingRequest, to: SocketAddr, now: number): void {
    switch (request.kind) {
      case 'binding':
        return this.handleBindingSuccess(message, request.destination, to, now);
      case 'allocate':
        return this.handleAllocateSuccess(message, to, now);
      case 'refresh':
      case 'deleteThenAllocate': {
        const lifetime = getAttribute(message, 'lifetime')?.seconds;
        if (lifetime === undefined) return;
        if (lifetime === 0) {
          this.send('allocate', undefined, now);
          return;
        }
        const relayed = this.relayed;
        if (relayed === undefined) return;
        relayed.receivedAt = now;
        relayed.lifetime = lifetime * 1000;
        relayed.refreshAt = now + relayed.lifetime / 2;
        return;
      }
      case 'delete':
        return;
      case 'channelBind':
        if (request.channel !== undefined) this.channels.confirm(request.channel.number, now);
        return;
      case 'createPermission': {
        const permission = request.peer === undefined ? undefined : this.permissions.get(request.peer.address);
        if (permission === undefined) return;
        permission.confirmedAt = now;
        this.permissionRefreshes.set(permission, now + PERMISSION_REFRESH_AFTER);
        return;
      }
    }
  }

  private handleBindingSuccess(message: StunMessage, destination: SocketAddr, to: SocketAddr, now: number): void {
    const mapped = getAttribute(message, 'xorMappedAddress')?.address;
    if (mapped !== undefined) {
      const candidate: LocalCandidate = { kind: 'srflx', address: mapped, base: to };
      if (destination.family === 4) this.srflxV4 = this.updateCandidate(this.srflxV4, candidate);
      else this.srflxV6 = this.updateCandidate(this.srflxV6, candidate);
    }
    if (this.active !== undefined) return;
    this.active = destination;
    this.nextKeepaliveAt = now + BINDING_INTERVAL;
    logger.debug('Selected relay socket', { relay: peerText(destination) });
    this.send(this.relayed === undefined ? 'allocate' : 'refresh', undefined, now);
  }

  private handleAllocateSuccess(message: StunMessage, to: SocketAddr, now: number): void {
    const lifetime = getAttribute(message, 'lifetime')?.seconds;
    if (lifetime === undefined) return;
    let v4: LocalCandidate | undefined;
    let v6: LocalCandidate | undefined;
    for (const { address } of getAttributes(message, 'xorRelayedAddress')) {
      if (address.family === 4) v4 ??= { kind: 'relay', address, base: to };
      else v6 ??= { kind: 'relay', address, base: to };
    }
    if (v4 === undefined && v6 === undefined) return;
    const previous = this.relayed;
    const lifetimeMs = lifetime * 1000;
    this.relayed = {
      v4: this.updateCandidate(previous?.v4, v4),
      v6: this.updateCandidate(previous?.v6, v6),
      receivedAt: now,
      lifetime: lifetimeMs,
      refreshAt: now + lifetimeMs / 2,
    };
    logger.info('Allocation created', {
      relayV4: v4 && peerText(v4.address),
      relayV6: v6 && peerText(v6.address),
      lifetime,
    });
    const buffered = this.bufferedChannelBinds;
    this.bufferedChannelBinds = [];
    for (const peer of buffered) this.bindChannel(peer, now);
  }

  /** Emits New (then Invalid for the old one, as the reference) when `next` differs; returns the current one. */
  private updateCandidate(
    current: LocalCandidate | undefined,
    next: LocalCandidate | undefined,
  ): LocalCandidate | undefined {
    if (next === undefined) return current;
    if (current !== undefined && sameCandidate(current, next)) return current;
    this.events.push({ kind: 'candidateAdded', candidate: next });
    if (current !== undefined) this.events.push({ kind: 'candidateInvalidated', candidate: current });
    return next;
  }

  private handleRequestTimeouts(now: number): void {
    for (let request = this.retransmissions.popDue(now); request !== undefined; request = this.retransmissions.popDue(now)) {
      const key = transactionIdKey(request.transactionId);
      if (this.pending.get(key) !== request) continue;
      if (!backoffExpired(request.backoff, now)) {
        advanceBackoff(request.backoff, now);
        this.retransmit(request, key);
        continue;
      }
      this.untrack(key, request);
      logger.debug('TURN request timed out', { kind: request.kind, relay: peerText(request.destination) });
      if (this.active !== undefined && this.active.family === request.destination.family) {
        logger.info('Relay stopped answering, invalidating allocation', { relay: peerText(this.active) });
        this.active = undefined;
        this.invalidate();
        this.invalidateServerReflexive();
      }
    }
  }

  private retransmit(request: PendingRequest, key: string): void {
    if (request.kind === 'binding') {
      this.retransmissions.set(request, request.backoff.nextAt);
      this.transmits.push({ source: undefined, destination: request.destination, payload: request.bytes });
      return;
    }
    const credentials = this.credentials;
    this.untrack(key, request);
    if (credentials === undefined) return;
    request.transactionId = this.newTransactionId();
    request.hadNonce = credentials.nonce !== undefined;
    request.bytes = this.encodeRequest(request.kind, request.transactionId, credentials, request.channel, request.peer);
    this.track(request);
    this.transmits.push({ source: undefined, destination: request.destination, payload: request.bytes });
  }

  /** Records an outstanding request in every index. */
  private track(request: PendingRequest): void {
    this.pending.set(transactionIdKey(request.transactionId), request);
    this.retransmissions.set(request, request.backoff.nextAt);
    this.inFlightByKind.set(request.kind, (this.inFlightByKind.get(request.kind) ?? 0) + 1);
    if (request.channel !== undefined) request.channel.bindInFlight = true;
    if (request.kind === 'createPermission' && request.peer !== undefined) {
      const permission = this.permissions.get(request.peer.address);
      if (permission !== undefined) permission.requestInFlight = true;
    }
  }

  private untrack(key: string, request: PendingRequest): void {
    if (!this.pending.delete(key)) return;
    this.retransmissions.delete(request);
    this.inFlightByKind.set(request.kind, (this.inFlightByKind.get(request.kind) ?? 1) - 1);
    if (request.channel !== undefined) request.channel.bindInFlight = false;
    if (request.kind === 'createPermission' && request.peer !== undefined) {
      const permission = this.permissions.get(request.peer.address);
      if (permission !== undefined) permission.requestInFlight = false;
    }
  }

  private forgetPermission(address: string): void {
    const permission = this.permissions.get(address);
    if (permission === undefined) return;
    this.permissions.delete(address);
    this.permissionRefreshes.delete(permission);
  }

  /**
   * Sends a new request. Authenticated requests go to the active socket (`destination`
   * undefined) and need credentials; returns false when it cannot be sent.
   */
  private send(
    kind: RequestKind,
    destination: SocketAddr | undefined,
    now: number,
    backoff: Backoff = newBackoff(now),
    channel?: Channel,
    peer?: SocketAddr,
  ): boolean {
    const transactionId = this.newTransactionId();
    let bytes: Uint8Array;
    let hadNonce = false;
    let target = destination;
    if (kind === 'binding') {
      if (target === undefined) return false;
      bytes = encodeStunMessage({
        method: StunMethod.Binding,
        class: 'request',
        transactionId,
        attributes: [{ kind: 'software', value: this.software }],
      });
    } else {
      const credentials = this.credentials;
      target = this.active;
      if (credentials === undefined || target === undefined) return false;
      hadNonce = credentials.nonce !== undefined;
      bytes = this.encodeRequest(kind, transactionId, credentials, channel, peer);
    }
    const request: PendingRequest = { kind, destination: target, backoff, transactionId, bytes, hadNonce, channel, peer };
    this.track(request);
    this.transmits.push({ source: undefined, destination: target, payload: bytes });
    return true;
  }

  private encodeRequest(
    kind: Exclude<RequestKind, 'binding'>,
    transactionId: Uint8Array,
    credentials: Credentials,
    channel: Channel | undefined,
    peer: SocketAddr | undefined,
  ): Uint8Array {
    const attributes: StunAttribute[] = [];
    let method: number;
    switch (kind) {
      case 'allocate':
      case 'refresh':
      case 'delete':
      case 'deleteThenAllocate':
        method = kind === 'allocate' ? StunMethod.Allocate : StunMethod.Refresh;
        if (kind === 'allocate' || !this.refreshWithoutAllocateAttributes) {
          attributes.push(
            { kind: 'requestedTransport', protocol: TRANSPORT_UDP },
            { kind: 'additionalAddressFamily', family: 6 },
          );
        }
        attributes.push({ kind: 'software', value: this.software });
        if (kind === 'delete' || kind === 'deleteThenAllocate') attributes.push({ kind: 'lifetime', seconds: 0 });
        break;
      case 'channelBind':
        method = StunMethod.ChannelBind;
        attributes.push(
          { kind: 'xorPeerAddress', address: channel!.peer },
          { kind: 'channelNumber', channel: channel!.number },
          { kind: 'software', value: this.software },
        );
        break;
      case 'createPermission':
        method = StunMethod.CreatePermission;
        attributes.push({ kind: 'xorPeerAddress', address: peer! }, { kind: 'software', value: this.software });
        break;
    }
    if (credentials.nonce === undefined && this.learnRealm) {
      return encodeStunMessage({ method, class: 'request', transactionId, attributes });
    }
    attributes.push({ kind: 'username', value: credentials.username }, { kind: 'realm', value: credentials.realm });
    if (credentials.nonce !== undefined) attributes.push({ kind: 'nonce', value: credentials.nonce });
    return encodeStunMessage({ method, class: 'request', transactionId, attributes }, { integrityKey: credentials.key });
  }

  private sendBindingRequests(now: number): void {
    if (this.server.v4 !== undefined) this.send('binding', this.server.v4, now);
    if (this.server.v6 !== undefined) this.send('binding', this.server.v6, now);
  }

  /** Withdraws the relay candidates and forgets the allocation, its channels and every outstanding request. */
  private invalidate(): void {
    const relayed = this.relayed;
    if (relayed?.v4 !== undefined) this.events.push({ kind: 'candidateInvalidated', candidate: relayed.v4 });
    if (relayed?.v6 !== undefined) this.events.push({ kind: 'candidateInvalidated', candidate: relayed.v6 });
    this.relayed = undefined;
    this.channels.clear();
    this.permissions.clear();
    this.permissionRefreshes.clear();
    for (const request of this.pending.values()) if (request.channel !== undefined) request.channel.bindInFlight = false;
    this.pending.clear();
    this.retransmissions.clear();
    this.inFlightByKind.clear();
  }

  private invalidateServerReflexive(): void {
    if (this.srflxV4 !== undefined) this.events.push({ kind: 'candidateInvalidated', candidate: this.srflxV4 });
    if (this.srflxV6 !== undefined) this.events.push({ kind: 'candidateInvalidated', candidate: this.srflxV6 });
    this.srflxV4 = undefined;
    this.srflxV6 = undefined;
  }

  private isSuspended(): boolean {
    return this.relayed === undefined && this.pending.size === 0 && this.transmits.length === 0;
  }

  private inFlight(kind: RequestKind): boolean {
    return (this.inFlightByKind.get(kind) ?? 0) > 0;
  }

  private channelBindToPeerInFlight(peer: SocketAddr): boolean {
    if (this.channels.channelOf(peer)?.bindInFlight === true) return true;
    for (const buffered of this.bufferedChannelBinds) if (sameSocketAddr(buffered, peer)) return true;
    return false;
  }

  private relayedAddressFor(peer: SocketAddr): SocketAddr | undefined {
    const relayed = this.relayed;
    if (relayed === undefined) return undefined;
    return peer.family === 4 ? relayed.v4?.address : relayed.v6?.address;
  }

  private isServer(from: SocketAddr): boolean {
    const { v4, v6 } = this.server;
    return (v4 !== undefined && sameSocketAddr(v4, from)) || (v6 !== undefined && sameSocketAddr(v6, from));
  }

  private newTransactionId(): Uint8Array {
    const id = new Uint8Array(12);
    this.rng.fill(id);
    return id;
  }
}


function isRefreshKind(kind: RequestKind): boolean {
  return kind === 'refresh' || kind === 'delete' || kind === 'deleteThenAllocate';
}

function isAllocateOnlyAttribute(type: number): boolean {
  return type === StunAttributeType.RequestedTransport || type === StunAttributeType.AdditionalAddressFamily;
}
