/**
 * The connectivity node: one ICE agent and one WireGuard tunnel per peer, one TURN allocation per
 * relay, all multiplexed over the node's UDP sockets. Sans-IO: the shell feeds datagrams with the
 * local address they arrived on, drains `pollTransmit`, and calls `handleTimeout` at `pollTimeout`.
 *
 * Roles: `server` (the gateway: ICE controlled, never initiates WireGuard before nomination) and
 * `client` (ICE controlling, starts a handshake on every nomination).
 */
import { createHash } from 'node:crypto';
import {
  ACTIVE_TIMING,
  formatCandidate,
  IceAgent,
  IDLE_TIMING,
  isUsableIceAddress,
  parseCandidate,
  type Candidate,
  type IceCredentials,
  type IcePath,
  type IceTransmit,
} from '../ice/index.ts';
import { createLogger, Level } from '../log/index.ts';
import { channelDataChannel, decodeStunMessage, looksLikeStun, StunMethod, writeChannelDataHeader } from '../stun/index.ts';
import { Allocation, type LocalCandidate } from '../turn/index.ts';
import type { RandomSource } from '../util/random.ts';
import { sameSocketAddr, socketAddrKey, type SocketAddr } from '../util/socket-addr.ts';
import type { Transmit } from '../util/transmit.ts';
import {
  messageType,
  publicIdentity,
  RateLimiter,
  SessionIndexAllocator,
  staticIdentity,
  Tunnel,
  type StaticIdentity,
} from '../wireguard/index.ts';
import { CandidateSignals } from './candidate-signals.ts';
import {
  CANDIDATE_TIMEOUT,
  CHANNEL_DATA_HEADROOM,
  DISCONNECT_TIMEOUT,
  MAX_BUFFERED_WHILE_CONNECTING,
  MAX_DATAGRAM_PAYLOAD,
  MAX_IDLE,
  WIREGUARD_TIMER_TICK,
} from './constants.ts';
import { sameRelayServer, type RelayServer } from './relays.ts';

export type NodeRole = 'server' | 'client';

export interface NodeOptions {
  readonly role: NodeRole;
  /** Our static X25519 private key (32 bytes), generated once per process. */
  readonly privateKey: Uint8Array;
  readonly rng: RandomSource;
  readonly now: number;
  /** Unix time minus `now` in ms, for WireGuard handshake timestamps. */
  readonly unixOffsetMs?: number;
  /** Use Send indications towards peers without a channel (standard TURN servers). */
  readonly turnSendIndications?: boolean;
}

export interface ConnectionParams {
  readonly localCredentials: IceCredentials;
  readonly remoteCredentials: IceCredentials;
  readonly remotePublicKey: Uint8Array;
  readonly presharedKey: Uint8Array;
}

export type UpsertResult = 'created' | 'reused' | 'noTurnServers';

export type ConnectionState = 'connecting' | 'connected' | 'idle';

export type FailureReason =
  | 'noRemoteCandidates'
  | 'iceDisconnected'
  | 'wireguardExpired'
  | 'relayGone';

export type NodeEvent =
  | { readonly kind: 'newIceCandidates'; readonly connection: string; readonly candidates: readonly string[] }
  | { readonly kind: 'invalidatedIceCandidates'; readonly connection: string; readonly candidates: readonly string[] }
  | { readonly kind: 'connectionEstablished'; readonly connection: string }
  | { readonly kind: 'connectionFailed'; readonly connection: string; readonly reason: FailureReason };

/** A decrypted IP packet and the peer it came from. `packet` is only valid until the next call. */
export interface DecryptedPacket {
  readonly connection: string;
  readonly packet: Uint8Array;
}

/**
 * What `decapsulate` did with a datagram other than yielding a packet: control traffic handled,
 * dropped (oversize, unusable local address, unknown WireGuard sender, failed decryption), or
 * not a format the node knows.
 */
export type DecapsulateStatus = 'handled' | 'dropped' | 'unknownFormat';

export interface NodeStats {
  datagramsIn: number;
  oversizeDropped: number;
  unknownFormat: number;
  wireguardDropped: number;
  encapsulateDropped: number;
  handshakes: number;
}

interface RelayEntry {
  readonly server: RelayServer;
  readonly allocation: Allocation;
}

interface Connection {
  readonly id: string;
  readonly agent: IceAgent;
  readonly tunnel: Tunnel;
  readonly localCredentials: IceCredentials;
  state: ConnectionState;
  /** The relay sampled for this connection's relay candidates; cleared when it goes away. */
  relayId: string | undefined;
  path: IcePath | undefined;
  /** The relay allocation a relayed path goes through (looked up once per nomination). */
  pathAllocation: Allocation | undefined;
  readonly buffered: Uint8Array[];
  /** Remote addresses that sent authenticated ICE messages: WireGuard from them is accepted. */
  readonly possibleSources: Set<string>;
  readonly createdAt: number;
  lastActivity: number;
  disconnectedSince: number | undefined;
  nextWireguardTick: number;
  failure: FailureReason | undefined;
  established: boolean;
}

const log = createLogger('snownet');

export class Node {
  readonly role: NodeRole;
  readonly publicKey: Uint8Array;
  readonly stats: NodeStats = { datagramsIn: 0, oversizeDropped: 0, unknownFormat: 0, wireguardDropped: 0, encapsulateDropped: 0, handshakes: 0 };
  private readonly identity: StaticIdentity;
  private readonly rng: RandomSource;
  private readonly unixOffsetMs: number | undefined;
  private readonly software: string;
  private readonly sendIndications: boolean;
  private readonly rateLimiter: RateLimiter;
  private readonly indices: SessionIndexAllocator;
  private readonly relays = new Map<string, RelayEntry>();
  private readonly connections = new Map<string, Connection>();
  private readonly hostCandidates: SocketAddr[] = [];
  private readonly serverReflexive = new Map<4 | 6, { readonly candidate: LocalCandidate; readonly relayId: string }>();
  private readonly transmits: Transmit[] = [];
  private readonly events: NodeEvent[] = [];
  private readonly newCandidates = new CandidateSignals();
  private readonly invalidatedCandidates = new CandidateSignals();
  private readonly decrypted: { connection: string; packet: Uint8Array } = { connection: '', packet: new Uint8Array(0) };
  private lastAccepted: { readonly source: SocketAddr; readonly connection: Connection } | undefined;
  private lastLocal: SocketAddr | undefined;

  constructor(options: NodeOptions) {
    this.role = options.role;
    this.identity = staticIdentity(options.privateKey);
    this.publicKey = this.identity.publicKey;
    this.rng = options.rng;
    this.unixOffsetMs = options.unixOffsetMs;
    this.sendIndications = options.turnSendIndications ?? false;
    this.rateLimiter = new RateLimiter(this.identity, options.rng, options.now);
    this.indices = new SessionIndexAllocator(options.rng);
    const session = createHash('sha256').update('SESSION-ID').update(this.publicKey).digest('hex').toUpperCase();
    this.software = `snownet; session=${session}`;
  }

  // --- relays ---

  /** Applies `init` / `relays_presence`: removes relays, adds or replaces others, refreshes the rest. */
  updateRelays(remove: readonly string[], add: readonly RelayServer[], now: number): void {
    for (const id of remove) {
      if (this.relays.has(id)) log.info('Removed TURN server', { rid: id });
      this.removeRelay(id, now, false);
    }
    const touched = new Set<string>();
    for (const server of add) {
      touched.add(server.id);
      const existing = this.relays.get(server.id);
      const address = [server.v4, server.v6].filter((a) => a !== undefined).map((a) => socketAddrKey(a)).join(', ');
      if (existing !== undefined && sameRelayServer(existing.server, server)) {
        log.debug('Skipping known TURN server', { rid: server.id, address });
        continue;
      }
      log.info(existing === undefined ? 'Added new TURN server' : 'Replaced TURN server', { rid: server.id, address });
      if (existing !== undefined) this.removeRelay(server.id, now, false);
      const allocation = new Allocation(
        {
          server: { v4: server.v4, v6: server.v6 },
          username: server.username,
          password: server.password,
          software: this.software,
          rng: this.rng,
          sendIndications: this.sendIndications,
        },
        now,
      );
      this.relays.set(server.id, { server, allocation });
    }
    for (const [id, entry] of this.relays) if (!touched.has(id)) entry.allocation.refresh(now);
    this.drainRelays(now);
  }

  /**
   * Releases every relay allocation (REFRESH with LIFETIME 0) before the process exits, so a
   * restarted gateway on the same address can allocate again at once. Drain `pollTransmit` after.
   */
  close(now: number): void {
    this.connections.clear();
    for (const id of [...this.relays.keys()]) this.removeRelay(id, now, true);
  }

  relayIds(): string[] {
    return [...this.relays.keys()];
  }

  /** Srflx and relay candidates each relay has produced so far (for diagnostics and tests). */
  relayCandidates(id: string): LocalCandidate[] {
    return this.relays.get(id)?.allocation.candidates() ?? [];
  }

  // --- connections ---

  upsertConnection(id: string, params: ConnectionParams, now: number): UpsertResult {
    const existing = this.connections.get(id);
    if (existing !== undefined && sameCredentials(existing.localCredentials, params.localCredentials)) {
      if (existing.state === 'idle') this.setState(existing, 'connected', now);
      existing.lastActivity = now;
      return 'reused';
    }
    if (existing !== undefined) this.dropConnection(existing);
    if (this.relays.size === 0) return 'noTurnServers';

    const index = this.indices.next();
    if (index === undefined) throw new Error('WireGuard session indices exhausted');
    const relayIds = [...this.relays.keys()];
    const relayId = relayIds[this.rng.u32() % relayIds.length];
    const connection: Connection = {
      id,
      agent: new IceAgent({
        role: this.role === 'server' ? 'controlled' : 'controlling',
        local: params.localCredentials,
        remote: params.remoteCredentials,
        rng: this.rng,
      }),
      tunnel: new Tunnel({
        local: this.identity,
        peer: publicIdentity(params.remotePublicKey),
        presharedKey: params.presharedKey,
        index,
        rng: this.rng,
        rateLimiter: this.rateLimiter,
        now,
        headroom: CHANNEL_DATA_HEADROOM,
        ...(this.unixOffsetMs !== undefined ? { unixOffsetMs: this.unixOffsetMs } : {}),
      }),
      localCredentials: params.localCredentials,
      state: 'connecting',
      relayId,
      path: undefined,
      pathAllocation: undefined,
      buffered: [],
      possibleSources: new Set(),
      createdAt: now,
      lastActivity: now,
      disconnectedSince: undefined,
      nextWireguardTick: now,
      failure: undefined,
      established: false,
    };
    this.connections.set(id, connection);

    for (const host of this.hostCandidates) this.addLocalHost(connection, host);
    for (const { candidate } of [...this.serverReflexive.values()]) this.signalServerReflexive(connection, candidate);
    const relay = relayId === undefined ? undefined : this.relays.get(relayId);
    if (relay !== undefined) {
      for (const candidate of relay.allocation.candidates()) {
        if (candidate.kind === 'relay') this.addLocalRelay(connection, relay.allocation, candidate);
      }
    }
    connection.agent.handleTimeout(now);
    this.drainAgent(connection, now);
    return 'created';
  }

  removeConnection(id: string): void {
    const connection = this.connections.get(id);
    if (connection !== undefined) this.dropConnection(connection);
  }

  hasConnection(id: string): boolean {
    return this.connections.has(id);
  }

  connectionState(id: string): ConnectionState | undefined {
    return this.connections.get(id)?.state;
  }

  /** The nominated path of a connection, if any (for diagnostics and tests). */
  /** Connections by nominated path; visits every connection, so only for metrics exports. */
  connectionCounts(): { direct: number; relayed: number; pending: number } {
    const counts = { direct: 0, relayed: 0, pending: 0 };
    for (const connection of this.connections.values()) {
      if (connection.path === undefined) counts.pending++;
      else if (connection.path.kind === 'direct') counts.direct++;
      else counts.relayed++;
    }
    return counts;
  }

  connectionPath(id: string): IcePath | undefined {
    return this.connections.get(id)?.path;
  }

  addRemoteCandidate(id: string, sdp: string, now: number): void {
    const connection = this.connections.get(id);
    if (connection === undefined || connection.state !== 'connecting') return;
    const candidate = parseCandidate(sdp);
    if (typeof candidate === 'string') {
      log.debug('Ignoring unparsable remote candidate', { connection: id, candidate: sdp, error: candidate });
      return;
    }
    if (!connection.agent.addRemoteCandidate(candidate)) return;
    if (candidate.kind !== 'host') {
      const relay = connection.relayId === undefined ? undefined : this.relays.get(connection.relayId);
      relay?.allocation.bindChannel(candidate.address, now);
      if (relay !== undefined) this.drainRelay(relay, now);
    }
    connection.agent.handleTimeout(now);
    this.drainAgent(connection, now);
  }

  removeRemoteCandidate(id: string, sdp: string, now: number): void {
    const connection = this.connections.get(id);
    if (connection === undefined) return;
    const candidate = parseCandidate(sdp);
    if (typeof candidate === 'string') return;
    if (connection.agent.removeRemoteCandidate(candidate)) {
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
    }
  }

  // --- data path ---

  /**
   * Encrypts an IP packet for a peer. Returns the datagram to send, or undefined when it was
   * queued for a handshake or dropped (no connection, not yet nominated on the server side).
   */
  encapsulate(id: string, packet: Uint8Array, now: number): Transmit | undefined {
    const connection = this.connections.get(id);
    if (connection === undefined) {
      this.stats.encapsulateDropped++;
      return undefined;
    }
    if (connection.path === undefined) {
      // The server never starts WireGuard before the client has nominated a path.
      if (this.role === 'server') {
        this.stats.encapsulateDropped++;
        return undefined;
      }
      const queued = connection.tunnel.encapsulate(packet, now);
      if (queued === 'queueFull') this.stats.encapsulateDropped++;
      return undefined;
    }
    connection.lastActivity = now;
    if (connection.state === 'idle') this.setState(connection, 'connected', now);
    const sealed = connection.tunnel.encapsulate(packet, now);
    if (typeof sealed === 'string') {
      this.drainTunnel(connection, now);
      return undefined;
    }
    return this.transmitOnPath(connection, sealed, now);
  }

  /**
   * Handles one received datagram. `local` is the address it arrived on (destination IP from
   * pktinfo and the socket's port). Returns the decrypted packet, or what happened instead.
   */
  decapsulate(local: SocketAddr, from: SocketAddr, datagram: Uint8Array, now: number): DecryptedPacket | DecapsulateStatus {
    this.stats.datagramsIn++;
    if (datagram.length > MAX_DATAGRAM_PAYLOAD) {
      this.stats.oversizeDropped++;
      return 'dropped';
    }
    if (!this.learnHostCandidate(local, now)) return 'dropped';

    let source = from;
    let destination = local;
    let payload = datagram;
    const first = datagram[0] ?? 0xff;
    if (first <= 0x03 || (first >= 0x40 && first <= 0x4f)) {
      const relay = this.relayAt(from);
      if (relay === undefined && first >= 0x40 && channelDataChannel(datagram) !== -1) {
        // Well-formed ChannelData is only ever accepted from a relay.
        return 'dropped';
      }
      if (relay !== undefined) {
        const input = relay.allocation.handleInput(datagram, from, local, now);
        if (input === 'consumed') {
          this.drainRelay(relay, now);
          return 'handled';
        }
        if (input !== 'notForUs') {
          source = input.peer;
          destination = input.relayed;
          payload = input.payload;
        }
      }
    }

    if (looksLikeStun(payload)) {
      const message = decodeStunMessage(payload);
      if (typeof message !== 'string' && message.method === StunMethod.Binding) {
        for (const connection of this.connections.values()) {
          if (connection.agent.handleStunMessage(message, source, destination, now)) {
            this.drainAgent(connection, now);
            break;
          }
        }
        return 'handled';
      }
    }

    const connection = this.connectionAccepting(source);
    if (connection === undefined) {
      if (messageType(payload) !== 0) {
        this.stats.wireguardDropped++;
        return 'dropped';
      }
      this.stats.unknownFormat++;
      return 'unknownFormat';
    }
    const result = connection.tunnel.decapsulate(payload, source.address, now);
    if (result instanceof Uint8Array) {
      connection.lastActivity = now;
      if (connection.state === 'idle') this.setState(connection, 'connected', now);
      this.drainTunnel(connection, now);
      this.decrypted.connection = connection.id;
      this.decrypted.packet = result;
      return this.decrypted;
    }
    this.drainTunnel(connection, now);
    switch (result) {
      case 'handshake':
        this.stats.handshakes++;
        return 'handled';
      case 'cookie':
      case 'keepalive':
        return 'handled';
      default:
        this.stats.wireguardDropped++;
        if (log.enabled(Level.Debug)) log.debug('Dropped WireGuard datagram', { connection: connection.id, reason: result, from: socketAddrKey(source) });
        return 'dropped';
    }
  }

  // --- time ---

  handleTimeout(now: number): void {
    this.rateLimiter.handleTimeout(now);
    for (const relay of [...this.relays.values()]) relay.allocation.handleTimeout(now);
    this.drainRelays(now);

    for (const connection of [...this.connections.values()]) {
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
      if (connection.path !== undefined && (now >= connection.nextWireguardTick || now >= (connection.tunnel.pollTimeout() ?? Infinity))) {
        connection.tunnel.handleTimeout(now);
        connection.nextWireguardTick = now + WIREGUARD_TIMER_TICK;
        this.drainTunnel(connection, now);
      }
      this.checkConnection(connection, now);
    }
  }

  pollTimeout(): number | undefined {
    let earliest: number | undefined = this.rateLimiter.pollTimeout();
    const consider = (at: number | undefined): void => {
      if (at !== undefined && (earliest === undefined || at < earliest)) earliest = at;
    };
    for (const relay of this.relays.values()) consider(relay.allocation.pollTimeout());
    for (const connection of this.connections.values()) {
      // A failure found outside handleTimeout (a relay removed) is reported at once.
      if (connection.failure !== undefined) consider(connection.lastActivity);
      consider(connection.agent.pollTimeout());
      if (connection.path !== undefined) {
        consider(connection.nextWireguardTick);
        consider(connection.tunnel.pollTimeout());
      }
      if (connection.state === 'connecting' && connection.agent.remoteCandidates().length === 0) consider(connection.createdAt + CANDIDATE_TIMEOUT);
      if (connection.disconnectedSince !== undefined) consider(connection.disconnectedSince + DISCONNECT_TIMEOUT);
      if (connection.state === 'connected') consider(connection.lastActivity + MAX_IDLE);
    }
    return earliest;
  }

  pollTransmit(): Transmit | undefined {
    return this.transmits.shift();
  }

  pollEvent(): NodeEvent | undefined {
    const invalidated = this.invalidatedCandidates.take();
    if (invalidated !== undefined) return { kind: 'invalidatedIceCandidates', ...invalidated };
    const added = this.newCandidates.take();
    if (added !== undefined) return { kind: 'newIceCandidates', ...added };
    return this.events.shift();
  }

  // --- internals: relays ---

  private removeRelay(id: string, now: number, deleteOnServer: boolean): void {
    const entry = this.relays.get(id);
    if (entry === undefined) return;
    if (deleteOnServer) entry.allocation.delete(now);
    // As the reference: the relay's candidates are withdrawn; the server-reflexive address it
    // reported stays a valid mapping of our socket.
    for (const candidate of entry.allocation.candidates()) {
      if (candidate.kind === 'relay') this.onCandidateInvalidated(id, candidate, now);
    }
    this.relays.delete(id);
    for (const transmit of drain(entry.allocation)) this.transmits.push(transmit);
    for (const connection of this.connections.values()) {
      if (connection.relayId === id) connection.relayId = undefined;
      if (connection.pathAllocation === entry.allocation) connection.failure ??= 'relayGone';
    }
  }

  private drainRelays(now: number): void {
    for (const relay of [...this.relays.values()]) this.drainRelay(relay, now);
  }

  private drainRelay(relay: RelayEntry, now: number): void {
    const { allocation } = relay;
    for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) this.transmits.push(t);
    for (let e = allocation.pollEvent(); e !== undefined; e = allocation.pollEvent()) {
      if (e.kind === 'candidateAdded') this.onCandidateAdded(relay, e.candidate, now);
      else this.onCandidateInvalidated(relay.server.id, e.candidate, now);
    }
    const freed = allocation.canBeFreed();
    if (freed !== undefined && this.relays.get(relay.server.id) === relay) {
      log.info('Disconnecting from relay', { relay: relay.server.id, reason: freed });
      this.removeRelay(relay.server.id, now, false);
    }
  }

  private onCandidateAdded(relay: RelayEntry, candidate: LocalCandidate, now: number): void {
    if (candidate.kind === 'srflx') {
      this.serverReflexive.set(candidate.address.family, { candidate, relayId: relay.server.id });
      for (const connection of this.connections.values()) {
        if (connection.state === 'connecting' && connection.relayId === relay.server.id) this.signalServerReflexive(connection, candidate);
      }
      return;
    }
    if (candidate.kind !== 'relay') return;
    for (const connection of this.connections.values()) {
      if (connection.state === 'connecting' && connection.relayId === relay.server.id) {
        this.addLocalRelay(connection, relay.allocation, candidate);
        connection.agent.handleTimeout(now);
        this.drainAgent(connection, now);
      }
    }
  }

  private onCandidateInvalidated(relayId: string, candidate: LocalCandidate, now: number): void {
    if (candidate.kind === 'srflx') {
      const current = this.serverReflexive.get(candidate.address.family);
      if (current !== undefined && current.relayId === relayId && sameSocketAddr(current.candidate.address, candidate.address)) {
        this.serverReflexive.delete(candidate.address.family);
      }
    }
    for (const connection of this.connections.values()) {
      if (candidate.kind === 'relay') {
        const local = connection.agent.localCandidates().find((c) => sameSocketAddr(c.address, candidate.address));
        if (local === undefined || !connection.agent.removeLocalCandidate(candidate.address)) continue;
        this.invalidatedCandidates.add(connection.id, formatCandidate(local));
        connection.agent.handleTimeout(now);
        this.drainAgent(connection, now);
      } else if (candidate.kind === 'srflx') {
        this.invalidatedCandidates.add(connection.id, formatCandidate(connection.agent.serverReflexiveCandidate(candidate.address, candidate.base)));
      }
    }
  }

  private relayAt(from: SocketAddr): RelayEntry | undefined {
    for (const relay of this.relays.values()) {
      const { v4, v6 } = relay.server;
      if ((v4 !== undefined && sameSocketAddr(v4, from)) || (v6 !== undefined && sameSocketAddr(v6, from))) return relay;
    }
    return undefined;
  }

  private allocationServing(relaySocket: SocketAddr): Allocation | undefined {
    for (const relay of this.relays.values()) {
      const active = relay.allocation.activeSocket();
      if (active !== undefined && sameSocketAddr(active, relaySocket)) return relay.allocation;
    }
    return undefined;
  }

  // --- internals: candidates ---

  /** Step 1 of demultiplexing: the local address a datagram arrived on is a host candidate. */
  private learnHostCandidate(local: SocketAddr, now: number): boolean {
    // Every datagram passes here: known addresses (all usable) are found without a closure or parse.
    if (local === this.lastLocal) return true;
    for (const host of this.hostCandidates) {
      if (sameSocketAddr(host, local)) {
        this.lastLocal = local;
        return true;
      }
    }
    if (!isUsableIceAddress(local)) return false;
    this.hostCandidates.push(local);
    this.lastLocal = local;
    for (const connection of this.connections.values()) {
      this.addLocalHost(connection, local);
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
    }
    return true;
  }

  private addLocalHost(connection: Connection, address: SocketAddr): void {
    const candidate = connection.agent.addLocalHostCandidate(address);
    if (candidate !== undefined) this.newCandidates.add(connection.id, formatCandidate(candidate));
  }

  private addLocalRelay(connection: Connection, allocation: Allocation, candidate: LocalCandidate): void {
    const relaySocket = allocation.activeSocket();
    if (relaySocket === undefined) return;
    const added = connection.agent.addLocalRelayCandidate(candidate.address, relaySocket, relaySocket.family);
    if (added !== undefined) this.newCandidates.add(connection.id, formatCandidate(added));
  }

  private signalServerReflexive(connection: Connection, candidate: LocalCandidate): void {
    this.newCandidates.add(connection.id, formatCandidate(connection.agent.serverReflexiveCandidate(candidate.address, candidate.base)));
  }

  // --- internals: connections ---

  private drainAgent(connection: Connection, now: number): void {
    const { agent } = connection;
    for (let t = agent.pollTransmit(); t !== undefined; t = agent.pollTransmit()) this.sendIce(connection, t, now);
    for (let e = agent.pollEvent(); e !== undefined; e = agent.pollEvent()) {
      switch (e.kind) {
        case 'nominated':
          this.onNominated(connection, e.path, e.local, e.remote, now);
          break;
        case 'discoveredRecv':
          connection.possibleSources.add(socketAddrKey(e.source));
          break;
        case 'stateChanged':
          if (e.state === 'disconnected') connection.disconnectedSince ??= now;
          else if (e.state === 'checking' || e.state === 'connected') connection.disconnectedSince = undefined;
          break;
        case 'roleChanged':
          break;
      }
    }
  }

  private onNominated(connection: Connection, path: IcePath, local: Candidate, remote: Candidate, now: number): void {
    const previous = connection.path;
    if (previous !== undefined && samePath(previous, path)) return;
    if (connection.state === 'idle' && previous !== undefined) {
      log.debug('Ignoring nomination of a new path while idle', { connection: connection.id });
      return;
    }
    connection.path = path;
    connection.pathAllocation = path.kind === 'relay' ? this.allocationServing(path.relay) : undefined;
    if (log.enabled(Level.Info)) {
      log.info('Nominated path', { connection: connection.id, local: formatCandidate(local), remote: formatCandidate(remote) });
    }
    if (connection.state === 'connecting') {
      this.setState(connection, 'connected', now);
      for (const datagram of connection.buffered.splice(0)) {
        const transmit = this.transmitOnPath(connection, datagram, now);
        if (transmit !== undefined) this.transmits.push(transmit);
      }
    }
    if (this.role === 'client') {
      connection.tunnel.initiateHandshake(now);
      this.drainTunnel(connection, now);
    }
  }

  private drainTunnel(connection: Connection, now: number): void {
    const { tunnel } = connection;
    for (let datagram = tunnel.pollTransmit(); datagram !== undefined; datagram = tunnel.pollTransmit()) {
      if (connection.path === undefined) {
        if (connection.buffered.length >= MAX_BUFFERED_WHILE_CONNECTING) connection.buffered.shift();
        connection.buffered.push(datagram);
        continue;
      }
      const transmit = this.transmitOnPath(connection, datagram, now);
      if (transmit !== undefined) this.transmits.push(transmit);
    }
    for (let e = tunnel.pollEvent(); e !== undefined; e = tunnel.pollEvent()) {
      if (e.kind === 'connectionExpired') {
        connection.failure ??= 'wireguardExpired';
      } else if (!connection.established) {
        connection.established = true;
        this.events.push({ kind: 'connectionEstablished', connection: connection.id });
      }
    }
  }

  /** Wraps a WireGuard datagram (with CHANNEL_DATA_HEADROOM free bytes in front) for the nominated path. */
  private transmitOnPath(connection: Connection, datagram: Uint8Array, now: number): Transmit | undefined {
    const path = connection.path!;
    if (path.kind === 'direct') return { source: path.source, destination: path.destination, payload: datagram };
    const allocation = connection.pathAllocation;
    const relaySocket = allocation?.activeSocket();
    if (allocation === undefined || relaySocket === undefined) {
      this.stats.encapsulateDropped++;
      return undefined;
    }
    const channel = allocation.channelTo(path.destination, now);
    if (channel !== undefined && datagram.byteOffset >= CHANNEL_DATA_HEADROOM) {
      const framed = new Uint8Array(datagram.buffer, datagram.byteOffset - CHANNEL_DATA_HEADROOM, datagram.length + CHANNEL_DATA_HEADROOM);
      writeChannelDataHeader(framed, 0, channel, datagram.length);
      return { source: undefined, destination: relaySocket, payload: framed };
    }
    const transmit = allocation.encodeToPeer(path.destination, datagram, now);
    if (transmit === undefined) this.stats.encapsulateDropped++;
    for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) this.transmits.push(t);
    return transmit;
  }

  private sendIce(connection: Connection, transmit: IceTransmit, now: number): void {
    if (transmit.kind === 'direct') {
      this.transmits.push({ source: transmit.source, destination: transmit.destination, payload: transmit.payload });
      return;
    }
    const allocation = this.allocationServing(transmit.relay);
    if (allocation === undefined) return;
    const wrapped = allocation.encodeToPeer(transmit.destination, transmit.payload, now);
    if (wrapped !== undefined) this.transmits.push(wrapped);
    for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) this.transmits.push(t);
    void connection;
  }

  private connectionAccepting(source: SocketAddr): Connection | undefined {
    // The socket layer hands out one SocketAddr object per peer endpoint, so the common case
    // (the same peer as the last datagram) is an identity check, with no string built.
    const cached = this.lastAccepted;
    if (cached !== undefined && cached.source === source && this.connections.get(cached.connection.id) === cached.connection && this.accepts(cached.connection, source)) {
      return cached.connection;
    }
    const found = this.findAccepting(source);
    this.lastAccepted = found === undefined ? undefined : { source, connection: found };
    return found;
  }

  private accepts(connection: Connection, source: SocketAddr): boolean {
    const path = connection.path;
    return (path !== undefined && sameSocketAddr(path.destination, source)) || connection.possibleSources.has(socketAddrKey(source));
  }

  private findAccepting(source: SocketAddr): Connection | undefined {
    const key = socketAddrKey(source);
    for (const connection of this.connections.values()) {
      const path = connection.path;
      if (path !== undefined && sameSocketAddr(path.destination, source)) return connection;
      if (connection.possibleSources.has(key)) return connection;
    }
    return undefined;
  }

  private setState(connection: Connection, state: ConnectionState, now: number): void {
    if (connection.state === state) return;
    connection.state = state;
    connection.agent.setTiming(state === 'idle' ? IDLE_TIMING : ACTIVE_TIMING);
    if (state !== 'idle') connection.lastActivity = now;
    log.debug('Connection state changed', { connection: connection.id, state });
  }

  private checkConnection(connection: Connection, now: number): void {
    if (connection.failure === undefined) {
      if (connection.state === 'connecting' && now >= connection.createdAt + CANDIDATE_TIMEOUT && connection.agent.remoteCandidates().length === 0) {
        connection.failure = 'noRemoteCandidates';
      } else if (connection.disconnectedSince !== undefined && now >= connection.disconnectedSince + DISCONNECT_TIMEOUT) {
        connection.failure = 'iceDisconnected';
      } else if (connection.pathAllocation !== undefined && ![...this.relays.values()].some((r) => r.allocation === connection.pathAllocation)) {
        connection.failure = 'relayGone';
      }
    }
    if (connection.failure !== undefined) {
      const reason = connection.failure;
      this.dropConnection(connection);
      log.info('Connection failed', { connection: connection.id, reason });
      this.events.push({ kind: 'connectionFailed', connection: connection.id, reason });
      return;
    }
    if (connection.state === 'connected' && now >= connection.lastActivity + MAX_IDLE) this.setState(connection, 'idle', now);
  }

  private dropConnection(connection: Connection): void {
    this.connections.delete(connection.id);
    this.newCandidates.forget(connection.id);
    this.invalidatedCandidates.forget(connection.id);
  }
}

function sameCredentials(a: IceCredentials, b: IceCredentials): boolean {
  return a.ufrag === b.ufrag && a.password === b.password;
}

function samePath(a: IcePath, b: IcePath): boolean {
  if (a.kind !== b.kind || !sameSocketAddr(a.destination, b.destination)) return false;
  if (a.kind === 'direct' && b.kind === 'direct') return sameSocketAddr(a.source, b.source);
  if (a.kind === 'relay' && b.kind === 'relay') return sameSocketAddr(a.relay, b.relay) && sameSocketAddr(a.relayed, b.relayed);
  return false;
}

function drain(allocation: Allocation): Transmit[] {
  const out: Transmit[] = [];
  for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) out.push(t);
  return out;
}
