/**
 * A small, test-only TURN server (RFC 8656 subset) as a sans-IO state machine, for simulated
 * networks. It behaves like the Firezone relay where that matters to a client: long-term
 * credentials with realm `firezone` by default, and 401/438 responses signed when the request
 * named a known user. Supports Binding, Allocate (with ADDITIONAL-ADDRESS-FAMILY), Refresh,
 * CreatePermission, ChannelBind, Send indications and ChannelData, and relays peer traffic back
 * as ChannelData or Data indications.
 */
import {
  channelDataChannel,
  CHANNEL_DATA_HEADER_LENGTH,
  decodeStunMessage,
  encodeChannelData,
  encodeStunMessage,
  getAttribute,
  longTermKey,
  looksLikeChannelData,
  StunMethod,
  verifyIntegrity,
  type StunAttribute,
  type StunMessage,
} from '../../src/stun/index.ts';
import { DeadlineQueue } from '../../src/util/deadline-queue.ts';
import { RingQueue } from '../../src/util/ring-queue.ts';
import { socketAddr, socketAddrKey, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import type { SimAgent } from './sim-network.ts';

export interface TestTurnServerOptions {
  /** Where clients reach the server (IPv4, and optionally IPv6). */
  readonly listen: readonly SocketAddr[];
  /** The IP of relayed addresses per family. */
  readonly relayIpv4: string;
  readonly relayIpv6?: string;
  readonly realm?: string;
  /** Returns the password for a username, or undefined for an unknown user. */
  readonly password: (username: string) => string | undefined;
  /** Whether 401/438 responses are signed (Firezone relay) or not (RFC-style, like coturn). */
  readonly signErrors?: boolean;
  readonly lifetimeSeconds?: number;
  /**
   * Peers the server refuses, like coturn's `denied-peer-ip`: ChannelBind and CreatePermission
   * get 403 Forbidden and Send indications are dropped.
   */
  readonly deniedPeer?: (peer: SocketAddr) => boolean;
}

interface Allocation {
  readonly client: SocketAddr;
  readonly listen: SocketAddr;
  readonly key: Uint8Array;
  readonly relayed: SocketAddr[];
  expiresAt: number;
  readonly channelsByNumber: Map<number, SocketAddr>;
  readonly channelsByPeer: Map<string, number>;
  readonly permissions: Set<string>;
}

export class TestTurnServer implements SimAgent {
  private readonly realm: string;
  private readonly lifetime: number;
  private nonce = 'nonce-1';
  private nextPort = 49152;
  private readonly allocations = new Map<string, Allocation>();
  private readonly byRelayed = new Map<string, Allocation>();
  /** Allocations by expiry, so a datagram does not visit every allocation to expire the stale ones. */
  private readonly expiries = new DeadlineQueue<Allocation>();
  private readonly transmits = new RingQueue<Transmit>();
  /** Counters for assertions in tests. */
  readonly stats = { allocations: 0, refreshes: 0, channelBinds: 0, deniedPeers: 0, relayedToPeer: 0, relayedToClient: 0 };

  constructor(private readonly options: TestTurnServerOptions) {
    this.realm = options.realm ?? 'firezone';
    this.lifetime = options.lifetimeSeconds ?? 600;
  }

  /** Every address a datagram for this server may be sent to: listen and relayed addresses. */
  ownsAddress(addr: SocketAddr): boolean {
    return this.options.listen.some((l) => sameAddr(l, addr)) || this.byRelayed.has(socketAddrKey(addr));
  }

  /** Makes the current nonce stale: the next authenticated request gets 438. */
  rotateNonce(): void {
    this.nonce = `nonce-${Number(this.nonce.slice(6)) + 1}`;
  }

  allocationCount(): number {
    return this.allocations.size;
  }

  handleInput(from: SocketAddr, to: SocketAddr, bytes: Uint8Array, now: number): void {
    this.expire(now);
    const listen = this.options.listen.find((l) => sameAddr(l, to));
    if (listen !== undefined) {
      if (looksLikeChannelData(bytes)) return this.handleChannelData(from, bytes);
      const message = decodeStunMessage(bytes);
      if (typeof message === 'string') return;
      return this.handleStun(from, listen, message, now);
    }
    const allocation = this.byRelayed.get(socketAddrKey(to));
    if (allocation !== undefined) this.handlePeerData(allocation, to, from, bytes);
  }

  pollTransmit(): Transmit | undefined {
    return this.transmits.shift();
  }

  // As a host of the simulated network: datagrams in, no timers.
  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void {
    this.handleInput(from, to, payload, now);
  }

  handleTimeout(): void {}

  pollTimeout(): number | undefined {
    return undefined;
  }

  private handleStun(from: SocketAddr, listen: SocketAddr, message: StunMessage, now: number): void {
    if (message.method === StunMethod.Binding && message.class === 'request') {
      this.send(listen, from, encodeStunMessage({ method: StunMethod.Binding, class: 'success', transactionId: message.transactionId, attributes: [{ kind: 'xorMappedAddress', address: from }] }));
      return;
    }
    if (message.class === 'indication' && message.method === StunMethod.Send) {
      const allocation = this.allocations.get(socketAddrKey(from));
      const peer = getAttribute(message, 'xorPeerAddress')?.address;
      const data = getAttribute(message, 'data')?.data;
      if (allocation === undefined || peer === undefined || data === undefined) return;
      if (!allocation.permissions.has(peer.address) || this.denies(peer)) return;
      this.relayToPeer(allocation, peer, data);
      return;
    }
    if (message.class !== 'request') return;

    const username = getAttribute(message, 'username')?.value;
    const password = username === undefined ? undefined : this.options.password(username);
    const key = username !== undefined && password !== undefined ? longTermKey(username, this.realm, password) : undefined;
    const nonce = getAttribute(message, 'nonce')?.value;
    const errorKey = this.options.signErrors === false ? undefined : key;
    if (key === undefined || message.integrityOffset === undefined || nonce === undefined) {
      return this.error(listen, from, message, 401, 'Unauthorized', errorKey, true);
    }
    if (!verifyIntegrity(message, key)) return this.error(listen, from, message, 401, 'Unauthorized', undefined, true);
    if (nonce !== this.nonce) return this.error(listen, from, message, 438, 'Stale Nonce', errorKey, true);

    const existing = this.allocations.get(socketAddrKey(from));
    switch (message.method) {
      case StunMethod.Allocate: {
        if (existing !== undefined) return this.error(listen, from, message, 437, 'Allocation Mismatch', key, false);
        const relayed = [socketAddr(this.options.relayIpv4, this.nextPort++)];
        const wantsV6 = getAttribute(message, 'additionalAddressFamily')?.family === 6;
        if (wantsV6 && this.options.relayIpv6 !== undefined) relayed.push(socketAddr(this.options.relayIpv6, this.nextPort++));
        const allocation: Allocation = {
          client: from,
          listen,
          key,
          relayed,
          expiresAt: now + this.lifetime * 1000,
          channelsByNumber: new Map(),
          channelsByPeer: new Map(),
          permissions: new Set(),
        };
        this.allocations.set(socketAddrKey(from), allocation);
        this.expiries.set(allocation, allocation.expiresAt);
        for (const r of relayed) this.byRelayed.set(socketAddrKey(r), allocation);
        this.stats.allocations++;
        return this.success(listen, from, message, key, [
          ...relayed.map((address): StunAttribute => ({ kind: 'xorRelayedAddress', address })),
          { kind: 'xorMappedAddress', address: from },
          { kind: 'lifetime', seconds: this.lifetime },
        ]);
      }
      case StunMethod.Refresh: {
        if (existing === undefined) return this.error(listen, from, message, 437, 'Allocation Mismatch', key, false);
        const requested = getAttribute(message, 'lifetime')?.seconds ?? this.lifetime;
        this.stats.refreshes++;
        if (requested === 0) this.remove(existing);
        else this.expiries.set(existing, (existing.expiresAt = now + this.lifetime * 1000));
        return this.success(listen, from, message, key, [{ kind: 'lifetime', seconds: requested === 0 ? 0 : this.lifetime }]);
      }
      case StunMethod.CreatePermission: {
        if (existing === undefined) return this.error(listen, from, message, 437, 'Allocation Mismatch', key, false);
        const peers = message.attributes.flatMap((a) => (a.kind === 'xorPeerAddress' ? [a.address] : []));
        if (peers.some((peer) => this.denies(peer))) return this.error(listen, from, message, 403, 'Forbidden', key, false);
        for (const peer of peers) existing.permissions.add(peer.address);
        return this.success(listen, from, message, key, []);
      }
      case StunMethod.ChannelBind: {
        if (existing === undefined) return this.error(listen, from, message, 437, 'Allocation Mismatch', key, false);
        const peer = getAttribute(message, 'xorPeerAddress')?.address;
        const channel = getAttribute(message, 'channelNumber')?.channel;
        if (peer === undefined || channel === undefined) return this.error(listen, from, message, 400, 'Bad Request', key, false);
        if (!existing.relayed.some((r) => r.family === peer.family)) return this.error(listen, from, message, 443, 'Peer Address Family Mismatch', key, false);
        if (this.denies(peer)) return this.error(listen, from, message, 403, 'Forbidden', key, false);
        const boundPeer = existing.channelsByNumber.get(channel);
        const boundChannel = existing.channelsByPeer.get(socketAddrKey(peer));
        if ((boundPeer !== undefined && !sameAddr(boundPeer, peer)) || (boundChannel !== undefined && boundChannel !== channel)) {
          return this.error(listen, from, message, 400, 'Bad Request', key, false);
        }
        existing.channelsByNumber.set(channel, peer);
        existing.channelsByPeer.set(socketAddrKey(peer), channel);
        existing.permissions.add(peer.address);
        this.stats.channelBinds++;
        return this.success(listen, from, message, key, []);
      }
      default:
        return this.error(listen, from, message, 400, 'Bad Request', key, false);
    }
  }

  private denies(peer: SocketAddr): boolean {
    if (this.options.deniedPeer?.(peer) !== true) return false;
    this.stats.deniedPeers++;
    return true;
  }

  private handleChannelData(from: SocketAddr, bytes: Uint8Array): void {
    const allocation = this.allocations.get(socketAddrKey(from));
    const channel = channelDataChannel(bytes);
    if (allocation === undefined || channel === -1) return;
    const peer = allocation.channelsByNumber.get(channel);
    if (peer === undefined) return;
    this.relayToPeer(allocation, peer, bytes.subarray(CHANNEL_DATA_HEADER_LENGTH));
  }

  private relayToPeer(allocation: Allocation, peer: SocketAddr, payload: Uint8Array): void {
    const relayed = allocation.relayed.find((r) => r.family === peer.family);
    if (relayed === undefined) return;
    this.stats.relayedToPeer++;
    this.send(relayed, peer, payload.slice());
  }

  private handlePeerData(allocation: Allocation, relayed: SocketAddr, peer: SocketAddr, payload: Uint8Array): void {
    if (!allocation.permissions.has(peer.address)) return;
    this.stats.relayedToClient++;
    const channel = allocation.channelsByPeer.get(socketAddrKey(peer));
    if (channel !== undefined) {
      this.send(allocation.listen, allocation.client, encodeChannelData(channel, payload));
      return;
    }
    const transactionId = new Uint8Array(12);
    this.send(allocation.listen, allocation.client, encodeStunMessage({
      method: StunMethod.Data,
      class: 'indication',
      transactionId,
      attributes: [{ kind: 'xorPeerAddress', address: peer }, { kind: 'data', data: payload }],
    }));
    void relayed;
  }

  private success(listen: SocketAddr, to: SocketAddr, request: StunMessage, key: Uint8Array, attributes: StunAttribute[]): void {
    this.send(listen, to, encodeStunMessage({ method: request.method, class: 'success', transactionId: request.transactionId, attributes }, { integrityKey: key }));
  }

  private error(listen: SocketAddr, to: SocketAddr, request: StunMessage, code: number, reason: string, key: Uint8Array | undefined, challenge: boolean): void {
    const attributes: StunAttribute[] = [{ kind: 'errorCode', code, reason }];
    if (challenge) attributes.push({ kind: 'realm', value: this.realm }, { kind: 'nonce', value: this.nonce });
    this.send(listen, to, encodeStunMessage({ method: request.method, class: 'error', transactionId: request.transactionId, attributes }, { integrityKey: key }));
  }

  private send(source: SocketAddr, destination: SocketAddr, payload: Uint8Array): void {
    this.transmits.push({ source, destination, payload });
  }

  private expire(now: number): void {
    for (let allocation = this.expiries.popDue(now); allocation !== undefined; allocation = this.expiries.popDue(now)) this.remove(allocation);
  }

  private remove(allocation: Allocation): void {
    this.expiries.delete(allocation);
    this.allocations.delete(socketAddrKey(allocation.client));
    for (const r of allocation.relayed) this.byRelayed.delete(socketAddrKey(r));
  }
}

function sameAddr(a: SocketAddr, b: SocketAddr): boolean {
  return a.address === b.address && a.port === b.port;
}
