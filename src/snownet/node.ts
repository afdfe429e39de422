/**
 * The connectivity node: one ICE agent and one WireGuard tunnel per peer, one TURN allocation per
 * relay, all multiplexed over the node's UDP sockets. Sans-IO: the shell feeds datagrams with the
 * local address they arrived on, drains `pollTransmit`, and calls `handleTimeout` at `pollTimeout`.
 *
 * Roles: `server` (the gateway: ICE controlled, never initiates WireGuard before nomination) and
 * `client` (ICE controlling, starts a handshake on every nomination).
 *
 * A connection upserted with `useIceless` runs a path agent (`path-agent/`) instead of ICE (spec
 * 1.6 §3.9): no connectivity checks; every WireGuard datagram of the connection passes the agent,
 * which fans the client's first initiation out over relay pairs, answers on arrival pairs and picks
 * the primary path by probing inside WireGuard. Its candidates use the path agent's codec.
 */
import { createHash } from 'node:crypto';
import {
  ACTIVE_TIMING,
  formatCandidate,
  IceAgent,
  IDLE_TIMING,
  SERVER_ACTIVE_TIMING,
  SERVER_IDLE_TIMING,
  isUsableIceAddress,
  parseCandidate,
  type Candidate,
  type IceCredentials,
  type IcePath,
  type IceTransmit,
  type StunTiming,
  TransactionIds,
} from '../ice/index.ts';
import { createLogger, Level } from '../log/index.ts';
import {
  channelDataChannel,
  decodeStunMessage,
  getAttribute,
  looksLikeStun,
  StunMethod,
  writeChannelDataHeader,
  type StunMessage,
} from '../stun/index.ts';
import { Allocation, type LocalCandidate } from '../turn/index.ts';
import { DeadlineQueue } from '../util/deadline-queue.ts';
import { EndpointMap } from '../util/endpoint-map.ts';
import type { RandomSource } from '../util/random.ts';
import { RingQueue } from '../util/ring-queue.ts';
import { sameSocketAddr, socketAddr, socketAddrKey, type SocketAddr } from '../util/socket-addr.ts';
import type { Transmit } from '../util/transmit.ts';
import {
  constantTimeEqual,
  INITIATION_OFFSET_MAC1,
  INITIATION_OFFSET_MAC2,
  initiationSender,
  mac,
  MESSAGE_INITIATION,
  MESSAGE_TRANSPORT,
  messageType,
  NodeCryptoTransportCipher,
  OpenBatch,
  publicIdentity,
  RateLimiter,
  receiverTunnelIndex,
  ReplayRings,
  SealBatch,
  SessionIndexAllocator,
  staticIdentity,
  Tunnel,
  type StaticIdentity,
  type OpenOutcome,
  type TransportCipher,
  type TunnelConfig,
} from '../wireguard/index.ts';
import { CandidateSignals } from './candidate-signals.ts';
import { IndexTable } from './index-table.ts';

import {
  CANDIDATE_TIMEOUT,
  CHANNEL_DATA_HEADROOM,
  DISCONNECT_TIMEOUT,
  MAX_BUFFERED_WHILE_CONNECTING,
  MAX_DATAGRAM_PAYLOAD,
  MAX_IDLE,
  MAX_OPTIMISTIC_CANDIDATES_PER_SIGNAL,
  WG_REKEY_ATTEMPT_TIME,
} from './constants.ts';
import { sameRelayServer, type RelayServer } from './relays.ts';
import {
  formatPathCandidate,
  hostCandidate,
  ICELESS_KEEPALIVE_TIMEOUT,
  ICELESS_REKEY_ATTEMPT_TIME,
  ICELESS_REKEY_TIMEOUT,
  parsePathCandidate,
  PathAgent,
  relayCandidate,
  samePathCandidate,
  serverReflexiveCandidate,
  type PathAgentStats,
  type PathCandidate,
  type PathInbound,
  type PathPair,
} from './path-agent/index.ts';

/** The hints of a connection's entry in `byIndex` (see IndexTable). */
const TUNNEL_HINT = 0;
const SESSION_HINT = 1;
const OWNER_HINT = 2;

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
  /** Test hook: told of every connection the node does work for. */
  readonly observer?: NodeObserver;
  /** Where WireGuard data is sealed and opened (node:crypto by default; the runtime injects the native one). */
  readonly transportCipher?: TransportCipher;
  /** Datagrams sealed or opened per cipher call (256 by default; each slot is a 1,344-byte buffer, twice). */
  readonly transportBatchCapacity?: number;
}

/**
 * Structural tests count work with this, not time: a timer fire must visit only the connections
 * that are due, and a datagram only the connection it belongs to.
 */
export interface NodeObserver {
  connectionVisited(connection: string): void;
  /** The connection's next deadline was worked out (its ICE agent and tunnel asked). */
  deadlineRead?(connection: string): void;
}

export interface ConnectionParams {
  readonly localCredentials: IceCredentials;
  readonly remoteCredentials: IceCredentials;
  readonly remotePublicKey: Uint8Array;
  readonly presharedKey: Uint8Array;
  /** The authorization's `use_iceless`: a path agent instead of ICE (spec 1.6 §3.9). */
  readonly useIceless?: boolean;
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
  | { readonly kind: 'connectionFailed'; readonly connection: string; readonly reason: FailureReason }
  /** The last relay's allocation failed or ended: ask the portal for a new set (1.6.0 `no_relays`). */
  | { readonly kind: 'noRelays' };

/** A decrypted IP packet and the peer it came from. `packet` is only valid until the next call. */
export interface DecryptedPacket {
  readonly connection: string;
  readonly packet: Uint8Array;
  /** What the caller passed to `decapsulateBatched` with the datagram (0 otherwise). */
  readonly tag: number;
  /** What the caller last gave `setConnectionOwner` for this connection (undefined: nothing yet). */
  readonly owner: unknown;
}

/** The datagrams of one socket read, as `readAhead` sees them. */
export interface DatagramRead {
  readonly count: number;
  payload(index: number): Uint8Array;
}

/**
 * What `decapsulate` did with a datagram other than yielding a packet: control traffic handled,
 * dropped (oversize, unusable local address, unknown WireGuard sender, failed decryption), or
 * not a format the node knows.
 */
export type DecapsulateStatus = 'handled' | 'dropped' | 'unknownFormat' | 'pending';

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
  /** Connections that sampled this relay for their relay candidates. */
  readonly members: Set<Connection>;
  /** Connections whose nominated path runs through this relay. */
  readonly pathUsers: Set<Connection>;
  removed: boolean;
}

interface ConnectionBase {
  readonly id: string;
  /** The tunnel's 24-bit index: the upper bits of every session index it announces. */
  readonly index: number;
  readonly tunnel: Tunnel;
  readonly params: ConnectionParams;
  state: ConnectionState;
  /** The relay sampled for this connection's relay candidates; cleared when it goes away. */
  relay: RelayEntry | undefined;
  path: IcePath | undefined;
  /** The relay a relayed path goes through (looked up once per nomination). */
  pathRelay: RelayEntry | undefined;
  readonly buffered: RingQueue<Uint8Array>;
  /** Remote endpoints registered in the node's source map for this connection. */
  readonly sources: SocketAddr[];
  readonly createdAt: number;
  lastActivity: number;
  disconnectedSince: number | undefined;
  failure: FailureReason | undefined;
  established: boolean;
  /** Where the connection sits in the node's deadline queue (Infinity: not queued). */
  scheduledAt: number;
  /** Removed from the node (a field, so the data path need not look the connection up again by id). */
  dropped: boolean;
  /** The caller's value for this connection, handed back with each decrypted packet (see `setConnectionOwner`). */
  owner: unknown;
}

interface IceConnection extends ConnectionBase {
  readonly kind: 'ice';
  readonly agent: IceAgent;
  /** USERNAME of the connectivity checks the peer sends us: `<our ufrag>:<their ufrag>`. */
  readonly checkUsername: string;
}

/** `path` follows the agent's primary; `buffered`, `sources` and `disconnectedSince` stay unused. */
interface IcelessConnection extends ConnectionBase {
  readonly kind: 'iceless';
  readonly paths: PathAgent;
  /** The peer's static key as a map key (initiations from unknown sources are found by it). */
  readonly peerKey: string;
}

type Connection = IceConnection | IcelessConnection;

/**
 * Deadlines at least this far ahead are rounded up to the next multiple of `DEADLINE_GRID`, so the
 * connections' keepalives, consent checks and WireGuard timers fire together in a few batches
 * rather than one timer each. Nearer deadlines (retransmissions while connecting) stay exact.
 */
const COARSE_HORIZON = 1_000;
const DEADLINE_GRID = 100;

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
  private readonly observer: NodeObserver | undefined;
  private readonly relays = new Map<string, RelayEntry>();
  /** Relays by each of their server addresses: TURN responses and ChannelData are routed by source. */
  private readonly relaysByServer = new EndpointMap<RelayEntry>();
  private readonly relayDeadlines = new DeadlineQueue<RelayEntry>();
  private readonly connections = new Map<string, Connection>();
  private readonly deadlines = new DeadlineQueue<Connection>();
  /** WireGuard responses, cookies and data by the tunnel index in their receiver index. */
  private readonly byIndex = new IndexTable<Connection>();
  /** Connectivity checks by USERNAME: the connection, or all of them when credentials collide. */
  private readonly byCheckUsername = new Map<string, IceConnection | IceConnection[]>();
  /** Tags the transaction ids of our connectivity checks with the connection's index, to route responses by `byIndex`. */
  private readonly transactionIds: TransactionIds;
  /** ICE-less connections by the peer's static key: initiations arriving from an unregistered source. */
  private readonly byPeerKey = new Map<string, IcelessConnection>();
  /** The last initiation found by its sender's key: its fanned-out copies skip the Diffie-Hellman. */
  private lastKeyLookup: { readonly initiation: Uint8Array; readonly connection: IcelessConnection } | undefined;
  /** Our relayed addresses: an ICE-less pair whose local end is one of them goes through that relay. */
  private readonly relaysByRelayed = new EndpointMap<RelayEntry>();
  /** ICE-less connections whose relay went away while no other relay was there to take its place. */
  private readonly icelessWithoutRelay = new Set<IcelessConnection>();
  /** WireGuard handshake initiations by the remote endpoint ICE saw the peer at. */
  private readonly bySource = new EndpointMap<Connection>();
  private readonly hostCandidates: SocketAddr[] = [];
  private readonly serverReflexive = new Map<4 | 6, { readonly candidate: LocalCandidate; readonly relayId: string }>();
  private readonly transmits = new RingQueue<Transmit>(64);
  private readonly events = new RingQueue<NodeEvent>();
  private readonly newCandidates = new CandidateSignals();
  private readonly invalidatedCandidates = new CandidateSignals();
  private readonly decrypted: { connection: string; packet: Uint8Array; tag: number; owner: unknown } = { connection: '', packet: new Uint8Array(0), tag: 0, owner: undefined };
  private readonly cipher: TransportCipher;
  private readonly replayRings = new ReplayRings();
  private readonly openBatch: OpenBatch;
  private readonly openConnections: (Connection | undefined)[];
  private readonly openTags: Float64Array;
  /** The arrival pair of a queued data message of an ICE-less connection. */
  private readonly openLocals: (SocketAddr | undefined)[];
  private readonly openRemotes: (SocketAddr | undefined)[];
  private batchingOpens = false;
  /** Where the read-ahead leaves what it read, so that the reads are not optimized away. */
  private prefetched = 0;
  /** `readAhead`'s table entries, by datagram of the read (grown to the largest read). */
  private readAheadEntries = new Int32Array(64);
  /** The caller's read-ahead of a connection's owner (see `setOwnerReadAhead`). */
  private ownerReadAhead: ((owner: unknown) => number) | undefined;
  /** The table entry and key `connectionByIndex` found last (see `refreshHints`). */
  private hintEntry = -1;
  private hintKey = -1;
  private batchTag = 0;
  private readonly sealBatch: SealBatch;
  private readonly sealConnections: (Connection | undefined)[];
  /** The ECN codepoint of each queued packet, for its datagram. */
  private readonly sealEcn: Uint8Array;
  private readonly sealedTransmit: { source: SocketAddr | undefined; destination: SocketAddr; payload: Uint8Array; ecn: number } = {
    source: undefined,
    destination: { family: 4, address: '0.0.0.0', port: 0 },
    payload: new Uint8Array(0),
    ecn: 0,
  };
  private lastLocal: SocketAddr | undefined;
  /** The pair a datagram of an ICE-less connection arrived on, reused for every datagram. */
  private readonly arrival: { local: SocketAddr; remote: SocketAddr } = {
    local: { family: 4, address: '0.0.0.0', port: 0 },
    remote: { family: 4, address: '0.0.0.0', port: 0 },
  };

  /** ICE check schedules of active and idle connections: the gateway's are slower to give up (1.6.0). */
  private readonly activeTiming: StunTiming;
  private readonly idleTiming: StunTiming;

  constructor(options: NodeOptions) {
    this.role = options.role;
    this.activeTiming = options.role === 'server' ? SERVER_ACTIVE_TIMING : ACTIVE_TIMING;
    this.idleTiming = options.role === 'server' ? SERVER_IDLE_TIMING : IDLE_TIMING;
    this.identity = staticIdentity(options.privateKey);
    this.publicKey = this.identity.publicKey;
    this.rng = options.rng;
    this.unixOffsetMs = options.unixOffsetMs;
    this.sendIndications = options.turnSendIndications ?? false;
    this.rateLimiter = new RateLimiter(this.identity, options.rng, options.now);
    this.indices = new SessionIndexAllocator(options.rng);
    this.transactionIds = new TransactionIds(options.rng);
    this.observer = options.observer;
    this.cipher = options.transportCipher ?? new NodeCryptoTransportCipher();
    this.openBatch = new OpenBatch(this.cipher, options.transportBatchCapacity);
    this.openConnections = new Array<Connection | undefined>(this.openBatch.capacity).fill(undefined);
    this.openTags = new Float64Array(this.openBatch.capacity);
    this.openLocals = new Array<SocketAddr | undefined>(this.openBatch.capacity).fill(undefined);
    this.openRemotes = new Array<SocketAddr | undefined>(this.openBatch.capacity).fill(undefined);
    this.sealBatch = new SealBatch(this.cipher, CHANNEL_DATA_HEADROOM, options.transportBatchCapacity);
    this.sealConnections = new Array<Connection | undefined>(this.sealBatch.capacity).fill(undefined);
    this.sealEcn = new Uint8Array(this.sealBatch.capacity);
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
      const entry: RelayEntry = { server, allocation, members: new Set(), pathUsers: new Set(), removed: false };
      this.relays.set(server.id, entry);
      if (server.v4 !== undefined) this.relaysByServer.set(server.v4, entry);
      if (server.v6 !== undefined) this.relaysByServer.set(server.v6, entry);
    }
    for (const [id, entry] of this.relays) if (!touched.has(id)) entry.allocation.refresh(now);
    for (const relay of [...this.relays.values()]) this.drainRelay(relay, now);
    for (const connection of [...this.icelessWithoutRelay]) this.migrateIcelessRelay(connection, now);
  }

  /**
   * Releases every relay allocation (REFRESH with LIFETIME 0) before the process exits, so a
   * restarted gateway on the same address can allocate again at once. Drain `pollTransmit` after.
   */
  close(now: number): void {
    for (const connection of [...this.connections.values()]) this.dropConnection(connection);
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

  get connectionCount(): number {
    return this.connections.size;
  }

  upsertConnection(id: string, params: ConnectionParams, now: number): UpsertResult {
    const existing = this.connections.get(id);
    if (existing !== undefined && reusable(existing.params, params)) {
      if (existing.state === 'idle') this.setState(existing, 'connected', now);
      existing.lastActivity = now;
      this.signalAllCandidates(existing, now);
      // An ICE-less connection's client fans its initiation out once, at creation.
      if (this.role === 'client' && existing.kind === 'ice' && existing.path !== undefined) {
        existing.tunnel.initiateHandshake(now);
        this.drainTunnel(existing, now);
      }
      this.touch(existing, now);
      return 'reused';
    }
    if (existing !== undefined) this.dropConnection(existing);
    if (this.relays.size === 0) return 'noTurnServers';

    const index = this.indices.next();
    if (index === undefined) throw new Error('WireGuard session indices exhausted');
    const relay = this.sampleRelay()!;
    const connection = params.useIceless === true ? this.createIcelessConnection(id, index, relay, params, now) : this.createIceConnection(id, index, relay, params, now);
    this.connections.set(id, connection);
    this.byIndex.set(index, connection);
    this.byIndex.setHint(this.byIndex.find(index), index, TUNNEL_HINT, connection.tunnel);
    relay.members.add(connection);
    if (connection.kind === 'ice') this.startIceConnection(connection, relay, now);
    else this.startIcelessConnection(connection, now);
    this.touch(connection, now);
    return 'created';
  }

  private createIceConnection(id: string, index: number, relay: RelayEntry, params: ConnectionParams, now: number): IceConnection {
    const agent = new IceAgent({
      role: this.role === 'server' ? 'controlled' : 'controlling',
      local: params.localCredentials,
      remote: params.remoteCredentials,
      rng: this.rng,
      transactionIds: this.transactionIds,
      transactionTag: index,
      timing: this.activeTiming,
    });
    const tunnel = this.createTunnel(index, params, now, { rekeyAttemptTime: WG_REKEY_ATTEMPT_TIME });
    // Every field written here, in the data path's order: fields added later (or by a spread) go to a
    // separate property store, one more cache line for each packet to wait for (README, issue 18).
    const connection: IceConnection = {
      kind: 'ice',
      tunnel,
      state: 'connecting',
      lastActivity: now,
      failure: undefined,
      scheduledAt: Infinity,
      owner: undefined,
      dropped: false,
      path: undefined,
      pathRelay: undefined,
      id,
      index,
      established: false,
      buffered: new RingQueue<Uint8Array>(4),
      params,
      relay,
      sources: [],
      createdAt: now,
      disconnectedSince: undefined,
      agent,
      checkUsername: `${params.localCredentials.ufrag}:${params.remoteCredentials.ufrag}`,
    };
    return connection;
  }

  private startIceConnection(connection: IceConnection, relay: RelayEntry, now: number): void {
    const sharing = this.byCheckUsername.get(connection.checkUsername);
    if (sharing === undefined) this.byCheckUsername.set(connection.checkUsername, connection);
    else if (Array.isArray(sharing)) sharing.push(connection);
    else this.byCheckUsername.set(connection.checkUsername, [sharing, connection]);

    for (const host of this.hostCandidates) this.addLocalHost(connection, host);
    for (const { candidate } of this.serverReflexive.values()) this.signalServerReflexive(connection, candidate);
    for (const candidate of relay.allocation.candidates()) {
      if (candidate.kind === 'relay') this.addLocalRelay(connection, relay.allocation, candidate);
    }
    connection.agent.handleTimeout(now);
    this.drainAgent(connection, now);
  }

  private createTunnel(index: number, params: ConnectionParams, now: number, timers: Pick<TunnelConfig, 'rekeyAttemptTime' | 'keepaliveTimeout' | 'rekeyTimeout'>): Tunnel {
    return new Tunnel({
      local: this.identity,
      peer: publicIdentity(params.remotePublicKey),
      presharedKey: params.presharedKey,
      index,
      rng: this.rng,
      rateLimiter: this.rateLimiter,
      now,
      headroom: CHANNEL_DATA_HEADROOM,
      cipher: this.cipher,
      replayRings: this.replayRings,
      ...timers,
      ...(this.unixOffsetMs !== undefined ? { unixOffsetMs: this.unixOffsetMs } : {}),
    });
  }

  /**
   * Lets the caller read its own state for a datagram's peer ahead: `readAhead` gets the connection's
   * owner (see `setConnectionOwner`) as soon as the datagram's table entry is found, beside the reads
   * of the connection, tunnel and session, so that a lone datagram's misses on the caller's side are
   * in flight with the node's. It must only read (its return value is kept, unused, so that the reads
   * stay).
   */
  setOwnerReadAhead(readAhead: (owner: unknown) => number): void {
    this.ownerReadAhead = readAhead;
  }

  /**
   * Keeps `owner` with connection `id` (nothing if there is none) until replaced or the connection goes: each
   * packet decrypted from it carries it, so the caller finds its own state for the peer without a lookup by id.
   */
  setConnectionOwner(id: string, owner: unknown): void {
    const connection = this.connections.get(id);
    if (connection === undefined) return;
    connection.owner = owner;
    this.byIndex.setHint(this.byIndex.find(connection.index), connection.index, OWNER_HINT, owner);
  }

  /**
   * Reads ahead, for the datagrams of one socket read, what handling them will read first, and
   * changes nothing. In two passes over the read, so that the cache misses of all its clients are
   * in flight together instead of one client's after another's: first each WireGuard message's
   * table entry, then each entry's connection, tunnel and last session (see `connectionByIndex`).
   * Writes the connections' owners to `owners` (from index 0, for the caller to read its own part
   * the same way; taken from the entry's hint, so that the caller's reads of them need not wait for
   * the connection's line) and returns how many. At thousands of clients these waits are most of a
   * packet's cost (README, issue 18). Any bytes are safe.
   */
  readAhead(read: DatagramRead, owners: unknown[]): number {
    const table = this.byIndex;
    const count = read.count;
    let entries = this.readAheadEntries;
    if (entries.length < count) entries = this.readAheadEntries = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      const key = receiverTunnelIndex(read.payload(i));
      entries[i] = key === undefined ? -1 : table.find(key);
    }
    let touched = this.prefetched;
    let found = 0;
    for (let i = 0; i < count; i++) {
      const at = entries[i]!;
      if (at === -1) continue;
      touched = (touched + this.readAheadEntry(at)) | 0;
      const owner = table.hint(at, OWNER_HINT);
      if (owner !== undefined) owners[found++] = owner;
    }
    this.prefetched = touched;
    return found;
  }

  /**
   * Reads, side by side, the connection of the table entry at `at` (the first and the last field a
   * data message reads of it) and the tunnel and session its hints name; changes nothing.
   */
  private readAheadEntry(at: number): number {
    const table = this.byIndex;
    const connection = table.valueAt(at);
    return ((connection.kind === 'iceless' || connection.dropped ? 1 : 0) + Tunnel.readAhead(table.hint(at, TUNNEL_HINT), table.hint(at, SESSION_HINT))) | 0;
  }

  /**
   * The connection of a message with a receiver index. The table entry's hints (the tunnel, the
   * session that carried the connection's last data, and the owner, through `setOwnerReadAhead`)
   * are read together with the connection, so that their cache misses overlap; `hintEntry`
   * remembers the entry for `refreshHints`.
   */
  private connectionByIndex(datagram: Uint8Array): Connection | undefined {
    const table = this.byIndex;
    const key = receiverTunnelIndex(datagram)!;
    const at = table.find(key);
    if (at === -1) return undefined;
    const connection = table.valueAt(at);
    this.hintEntry = at;
    this.hintKey = key;
    let touched = (this.prefetched + this.readAheadEntry(at)) | 0;
    const owner = table.hint(at, OWNER_HINT);
    if (owner !== undefined && this.ownerReadAhead !== undefined) touched = (touched + this.ownerReadAhead(owner)) | 0;
    this.prefetched = touched;
    return connection;
  }

  /** Keeps the session the tunnel now holds as the hint for its next data (a write only when it changed). */
  private refreshHints(connection: Connection): void {
    const session = connection.tunnel.sessionHint;
    if (this.byIndex.hint(this.hintEntry, SESSION_HINT) !== session) this.byIndex.setHint(this.hintEntry, this.hintKey, SESSION_HINT, session);
  }

  removeConnection(id: string): void {
    const connection = this.connections.get(id);
    if (connection !== undefined) this.dropConnection(connection);
  }

  /**
   * Drops a connection, sending `goodbye` (an IP packet) through it first when it is Connected or Idle and
   * has a WireGuard session; one still in ICE is just dropped. The datagram comes out of `pollTransmit`.
   */
  closeConnection(id: string, goodbye: Uint8Array, now: number): void {
    const connection = this.connections.get(id);
    if (connection === undefined) return;
    const sent = connection.path !== undefined && connection.tunnel.hasSession(now) && this.sendGoodbye(connection, goodbye, now);
    this.dropConnection(connection);
    if (connection.path === undefined) log.info('Connection closed during ICE', { connection: id });
    else log.info(sent ? 'Connection closed proactively (sent goodbye)' : 'Connection closed proactively (failed to send goodbye)', { connection: id });
  }

  /** `closeConnection` for every connection (graceful shutdown). */
  closeAll(goodbye: Uint8Array, now: number): void {
    for (const id of [...this.connections.keys()]) this.closeConnection(id, goodbye, now);
  }

  hasConnection(id: string): boolean {
    return this.connections.has(id);
  }

  connectionState(id: string): ConnectionState | undefined {
    return this.connections.get(id)?.state;
  }

  /** The remote candidates of a connection's ICE agent, in SDP form (for diagnostics and tests). */
  remoteCandidates(id: string): string[] {
    const connection = this.connections.get(id);
    if (connection === undefined) return [];
    if (connection.kind === 'iceless') return connection.paths.remoteCandidates().map(formatPathCandidate);
    return connection.agent.remoteCandidates().map(formatCandidate);
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

  /** The path agent's counters of an ICE-less connection (for diagnostics and tests). */
  pathAgentStats(id: string): Readonly<PathAgentStats> | undefined {
    const connection = this.connections.get(id);
    return connection?.kind === 'iceless' ? connection.paths.stats : undefined;
  }

  /** When the node next services a connection (for diagnostics and structural tests). */
  connectionDeadline(id: string): number | undefined {
    const at = this.connections.get(id)?.scheduledAt;
    return at === Infinity ? undefined : at;
  }

  addRemoteCandidate(id: string, sdp: string, now: number): void {
    const connection = this.connections.get(id);
    if (connection === undefined) return;
    if (connection.kind === 'iceless') {
      this.addIcelessRemote(connection, sdp, now);
      return;
    }
    if (connection.state !== 'connecting') return;
    const candidate = parseCandidate(sdp);
    if (typeof candidate === 'string') {
      log.debug('Ignoring unparsable remote candidate', { connection: id, candidate: sdp, error: candidate });
      return;
    }
    if (!connection.agent.addRemoteCandidate(candidate)) return;
    this.addOptimisticCandidates(connection);
    const relay = connection.relay;
    if (candidate.kind !== 'host' && relay !== undefined) {
      relay.allocation.bindChannel(candidate.address, now);
      this.drainRelay(relay, now);
    }
    connection.agent.handleTimeout(now);
    this.drainAgent(connection, now);
    this.touch(connection, now);
  }

  removeRemoteCandidate(id: string, sdp: string, now: number): void {
    const connection = this.connections.get(id);
    if (connection === undefined) return;
    if (connection.kind === 'iceless') {
      this.removeIcelessRemote(connection, sdp, now);
      return;
    }
    const candidate = parseCandidate(sdp);
    if (typeof candidate === 'string') return;
    if (connection.agent.removeRemoteCandidate(candidate)) {
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
      this.touch(connection, now);
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
    this.visit(connection);
    if (connection.path === undefined) {
      // The server never starts WireGuard before the client has nominated a path.
      if (this.role === 'server') {
        this.stats.encapsulateDropped++;
        return undefined;
      }
      const queued = connection.tunnel.encapsulate(packet, now);
      if (queued === 'queueFull') this.stats.encapsulateDropped++;
      this.drainTunnel(connection, now);
      this.touch(connection, now);
      return undefined;
    }
    connection.lastActivity = now;
    if (connection.state === 'idle') this.setState(connection, 'connected', now);
    const sealed = connection.tunnel.encapsulate(packet, now);
    if (typeof sealed === 'string') {
      this.drainTunnel(connection, now);
      this.touch(connection, now);
      return undefined;
    }
    this.touch(connection, now);
    return this.transmitOnPath(connection, sealed, now, ecnOf(packet));
  }

  /**
   * Handles one received datagram. `local` is the address it arrived on (destination IP from
   * pktinfo and the socket's port). Returns the decrypted packet, or what happened instead.
   *
   * Every step finds its owner by a key in the datagram, never by asking each connection: relay
   * traffic by source address, checks by USERNAME, check responses by transaction id, WireGuard
   * by receiver index (initiations, which carry none, by source address).
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
      const relay = this.relaysByServer.get(from);
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
          this.scheduleRelay(relay);
          source = input.peer;
          destination = input.relayed;
          payload = input.payload;
        }
      }
    }

    if (looksLikeStun(payload)) {
      const message = decodeStunMessage(payload);
      if (typeof message !== 'string' && message.method === StunMethod.Binding) {
        this.handleCheck(message, source, destination, now);
        return 'handled';
      }
    }

    const type = messageType(payload);
    let connection = type === MESSAGE_INITIATION ? this.bySource.get(source) : type === 0 ? undefined : this.connectionByIndex(payload);
    if (connection === undefined && type === MESSAGE_INITIATION) connection = this.icelessBySender(payload, source, destination, now);
    if (connection === undefined) {
      if (type !== 0) {
        this.stats.wireguardDropped++;
        return 'dropped';
      }
      this.stats.unknownFormat++;
      return 'unknownFormat';
    }
    this.visit(connection);
    if (connection.kind === 'iceless') return this.decapsulateIceless(connection, payload, source, destination, now);
    const result = connection.tunnel.decapsulate(payload, source.address, now, this.batchingOpens ? this.openBatch : undefined);
    if (type === MESSAGE_TRANSPORT) this.refreshHints(connection);
    if (result instanceof Uint8Array) return this.onDecrypted(connection, result, 0, now);
    if (result === 'pending') {
      this.openConnections[this.openBatch.lastSlot] = connection;
      this.openTags[this.openBatch.lastSlot] = this.batchTag;
      return 'pending';
    }
    this.drainTunnel(connection, now);
    this.touch(connection, now);
    return this.statusOf(connection, result, source);
  }

  /** What a WireGuard datagram that yielded no packet amounts to; drops are counted. */
  private statusOf(connection: Connection, result: Exclude<PathInbound, Uint8Array | 'pending'>, source: SocketAddr): DecapsulateStatus {
    switch (result) {
      case 'handshake':
        this.stats.handshakes++;
        return 'handled';
      case 'cookie':
      case 'keepalive':
      case 'probe':
      case 'replayed':
      case 'duplicate':
        return 'handled';
      default:
        this.stats.wireguardDropped++;
        if (log.enabled(Level.Debug)) log.debug('Dropped WireGuard datagram', { connection: connection.id, reason: result, from: socketAddrKey(source) });
        return 'dropped';
    }
  }

  /**
   * `decapsulate` for a batch of datagrams: a WireGuard data message is checked and queued
   * ('pending') and opened together with the others by `pollDecrypted`, which must be drained
   * at least every `transportBatchCapacity` datagrams (beyond that they are opened one by one).
   * `tag` comes back with the packet (the runtime passes the datagram's ECN bits).
   */
  decapsulateBatched(local: SocketAddr, from: SocketAddr, datagram: Uint8Array, tag: number, now: number): DecryptedPacket | DecapsulateStatus {
    this.batchingOpens = true;
    this.batchTag = tag;
    try {
      return this.decapsulate(local, from, datagram, now);
    } finally {
      this.batchingOpens = false;
    }
  }

  /** Datagrams `decapsulateBatched` and `queueEncapsulate` can hold before their poll must be drained. */
  get transportBatchCapacity(): number {
    return this.openBatch.capacity;
  }

  /** Opens the queued data messages (one cipher call) and yields their packets in arrival order. */
  pollDecrypted(now: number): DecryptedPacket | undefined {
    const batch = this.openBatch;
    for (let slot = batch.next(now); slot !== -1; slot = batch.next(now)) {
      const connection = this.openConnections[slot]!;
      this.openConnections[slot] = undefined;
      const outcome = batch.outcome(slot);
      if (connection.kind === 'iceless') {
        const opened = this.openedIceless(connection, slot, outcome, now);
        if (opened !== undefined) return opened;
        continue;
      }
      if (typeof outcome === 'number') return this.onDecrypted(connection, batch.packet(slot), this.openTags[slot]!, now);
      this.drainTunnel(connection, now);
      this.touch(connection, now);
      if (outcome !== 'keepalive') {
        this.stats.wireguardDropped++;
        if (log.enabled(Level.Debug)) log.debug('Dropped WireGuard datagram', { connection: connection.id, reason: outcome });
      }
    }
    return undefined;
  }

  /**
   * `encapsulate` for a batch of packets: the packet is queued to be sealed together with the
   * others by `pollSealed`. False when the batch is full: drain `pollSealed` and queue again.
   */
  queueEncapsulate(id: string, packet: Uint8Array, now: number): boolean {
    const connection = this.connections.get(id);
    if (connection === undefined || connection.path === undefined || packet.length > this.sealBatch.maxPlaintext) {
      const transmit = this.encapsulate(id, packet, now);
      if (transmit !== undefined) this.transmits.push(transmit);
      return true;
    }
    this.visit(connection);
    connection.lastActivity = now;
    if (connection.state === 'idle') this.setState(connection, 'connected', now);
    const slot = connection.tunnel.encapsulateInto(packet, now, this.sealBatch);
    if (slot === 'batchFull') return false;
    if (typeof slot === 'number') {
      this.sealConnections[slot] = connection;
      this.sealEcn[slot] = ecnOf(packet);
    } else {
      this.drainTunnel(connection, now);
    }
    this.touch(connection, now);
    return true;
  }

  /**
   * Seals the queued packets (one cipher call) and yields their datagrams in order. The
   * transmit and its payload are reused by the next call.
   */
  pollSealed(now: number): Transmit | undefined {
    const batch = this.sealBatch;
    for (let slot = batch.next(); slot !== -1; slot = batch.next()) {
      const connection = this.sealConnections[slot]!;
      this.sealConnections[slot] = undefined;
      if (!batch.sealed(slot) || connection.path === undefined) {
        this.stats.encapsulateDropped++;
        continue;
      }
      const transmit = this.sealedOnPath(connection, slot, now);
      if (transmit !== undefined) return transmit;
    }
    return undefined;
  }

  // --- time ---

  /** Services the relays and connections whose deadline has come, and nothing else. */
  handleTimeout(now: number): void {
    for (let relay = this.relayDeadlines.popDue(now); relay !== undefined; relay = this.relayDeadlines.popDue(now)) {
      relay.allocation.handleTimeout(now);
      this.drainRelay(relay, now);
    }
    for (let connection = this.deadlines.popDue(now); connection !== undefined; connection = this.deadlines.popDue(now)) {
      connection.scheduledAt = Infinity;
      this.serviceConnection(connection, now);
    }
  }

  /** The earliest deadline of any relay or connection: O(1). */
  pollTimeout(): number | undefined {
    const earliest = Math.min(this.deadlines.peekTime(), this.relayDeadlines.peekTime());
    return earliest === Infinity ? undefined : earliest;
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

  private sendGoodbye(connection: Connection, goodbye: Uint8Array, now: number): boolean {
    const transmit = this.encapsulate(connection.id, goodbye, now);
    if (transmit === undefined) return false;
    this.transmits.push(transmit);
    return true;
  }

  // --- internals: relays ---

  private removeRelay(id: string, now: number, deleteOnServer: boolean): void {
    const entry = this.relays.get(id);
    if (entry === undefined) return;
    if (deleteOnServer) entry.allocation.delete(now);
    this.relays.delete(id);
    entry.removed = true;
    const relayed = entry.allocation.candidates().filter((c) => c.kind === 'relay');
    // An ICE-less connection starts its paths over without this relay and moves to another one;
    // the peer finds it again by its key (the reference's reset for a relay replacement).
    for (const connection of [...entry.members]) {
      if (connection.kind !== 'iceless') continue;
      entry.members.delete(connection);
      connection.relay = undefined;
      connection.paths.rebuild((c) => !relayed.some((r) => samePathCandidate(r, c)), now);
      this.migrateIcelessRelay(connection, now);
    }
    // As the reference: the relay's candidates are withdrawn; the server-reflexive address it
    // reported stays a valid mapping of our socket.
    for (const candidate of relayed) this.onCandidateInvalidated(entry, candidate, now);
    if (entry.server.v4 !== undefined) this.relaysByServer.deleteIf(entry.server.v4, entry);
    if (entry.server.v6 !== undefined) this.relaysByServer.deleteIf(entry.server.v6, entry);
    this.relayDeadlines.delete(entry);
    for (let t = entry.allocation.pollTransmit(); t !== undefined; t = entry.allocation.pollTransmit()) this.transmits.push(t);
    for (const connection of entry.members) connection.relay = undefined;
    entry.members.clear();
    for (const connection of entry.pathUsers) {
      if (connection.kind === 'iceless') continue;
      connection.failure ??= 'relayGone';
      this.touch(connection, now);
    }
  }

  private drainRelay(relay: RelayEntry, now: number): void {
    const { allocation } = relay;
    for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) this.transmits.push(t);
    for (let e = allocation.pollEvent(); e !== undefined; e = allocation.pollEvent()) {
      if (e.kind === 'candidateAdded') this.onCandidateAdded(relay, e.candidate, now);
      else this.onCandidateInvalidated(relay, e.candidate, now);
    }
    const freed = allocation.canBeFreed();
    if (freed !== undefined && this.relays.get(relay.server.id) === relay) {
      log.info('Disconnecting from relay', { relay: relay.server.id, reason: freed });
      this.removeRelay(relay.server.id, now, false);
      if (this.relays.size === 0) {
        log.info('Removed last relay; requesting a new set');
        this.events.push({ kind: 'noRelays' });
      }
      return;
    }
    this.scheduleRelay(relay);
  }

  private scheduleRelay(relay: RelayEntry): void {
    if (!relay.removed) this.relayDeadlines.set(relay, relay.allocation.pollTimeout());
  }

  private onCandidateAdded(relay: RelayEntry, candidate: LocalCandidate, now: number): void {
    if (candidate.kind === 'srflx') {
      this.serverReflexive.set(candidate.address.family, { candidate, relayId: relay.server.id });
      for (const connection of relay.members) {
        if (connection.kind === 'iceless') this.addIcelessLocal(connection, candidate, now);
        else if (connection.state === 'connecting') this.signalServerReflexive(connection, candidate);
      }
      return;
    }
    if (candidate.kind !== 'relay') return;
    this.relaysByRelayed.set(candidate.address, relay);
    for (const connection of relay.members) {
      if (connection.kind === 'iceless') {
        this.addIcelessLocal(connection, candidate, now);
        continue;
      }
      if (connection.state !== 'connecting') continue;
      this.addLocalRelay(connection, relay.allocation, candidate);
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
      this.touch(connection, now);
    }
  }

  private onCandidateInvalidated(relay: RelayEntry, candidate: LocalCandidate, now: number): void {
    if (candidate.kind === 'relay') {
      this.relaysByRelayed.deleteIf(candidate.address, relay);
      // Relay candidates only ever went to the connections that sampled this relay.
      for (const connection of relay.members) {
        if (connection.kind === 'iceless') {
          if (!connection.paths.removeLocalCandidate(candidate, now)) continue;
          this.invalidatedCandidates.add(connection.id, formatPathCandidate(candidate));
          this.drainIceless(connection, now);
          this.touch(connection, now);
          continue;
        }
        const local = connection.agent.localCandidateAt(candidate.address);
        if (local === undefined || !connection.agent.removeLocalCandidate(candidate.address)) continue;
        this.invalidatedCandidates.add(connection.id, formatCandidate(local));
        connection.agent.handleTimeout(now);
        this.drainAgent(connection, now);
        this.touch(connection, now);
      }
      return;
    }
    if (candidate.kind !== 'srflx') return;
    const current = this.serverReflexive.get(candidate.address.family);
    if (current !== undefined && current.relayId === relay.server.id && sameSocketAddr(current.candidate.address, candidate.address)) {
      this.serverReflexive.delete(candidate.address.family);
    }
    // Every connection was told of it: every connection hears it is gone (a rare, per-event broadcast).
    // ICE-less connections keep it, as the reference does: its pairs are the base's anyway.
    for (const connection of this.connections.values()) {
      if (connection.kind === 'iceless') continue;
      this.invalidatedCandidates.add(connection.id, formatCandidate(connection.agent.serverReflexiveCandidate(candidate.address, candidate.base)));
    }
  }

  private allocationServing(relaySocket: SocketAddr): RelayEntry | undefined {
    const relay = this.relaysByServer.get(relaySocket);
    const active = relay?.allocation.activeSocket();
    return active !== undefined && sameSocketAddr(active, relaySocket) ? relay : undefined;
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
    // A new local address is news for every connection (a rare, per-event broadcast).
    for (const connection of this.connections.values()) {
      if (connection.kind === 'iceless') {
        this.addIcelessLocal(connection, hostCandidate(local), now);
        continue;
      }
      this.addLocalHost(connection, local);
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
      this.touch(connection, now);
    }
    return true;
  }

  private addLocalHost(connection: IceConnection, address: SocketAddr): void {
    const candidate = connection.agent.addLocalHostCandidate(address);
    if (candidate !== undefined) this.newCandidates.add(connection.id, formatCandidate(candidate));
  }

  private addLocalRelay(connection: IceConnection, allocation: Allocation, candidate: LocalCandidate): void {
    const relaySocket = allocation.activeSocket();
    if (relaySocket === undefined) return;
    const added = connection.agent.addLocalRelayCandidate(candidate.address, relaySocket, relaySocket.family);
    if (added !== undefined) this.newCandidates.add(connection.id, formatCandidate(added));
  }

  /** Signals every local candidate of the connection again (a reused connection: the peer may have lost them). */
  private signalAllCandidates(connection: Connection, now: number): void {
    if (connection.kind === 'iceless') {
      this.seedIcelessCandidates(connection, now);
      for (const candidate of connection.paths.localCandidates()) this.newCandidates.add(connection.id, formatPathCandidate(candidate));
      return;
    }
    for (const candidate of connection.agent.localCandidates()) this.newCandidates.add(connection.id, formatCandidate(candidate));
    for (const { candidate } of this.serverReflexive.values()) this.signalServerReflexive(connection, candidate);
  }

  /**
   * For each remote server-reflexive IPv4 address and remote IPv4 host candidate, a server-reflexive candidate
   * at that address with the host's port (up to two new ones per call, as 1.6.0's
   * `generate_optimistic_candidates`): a peer behind a NAT that forwards its listening port becomes reachable
   * directly even when the NAT maps other ports unpredictably.
   */
  private addOptimisticCandidates(connection: IceConnection): void {
    const remotes = connection.agent.remoteCandidates();
    let added = 0;
    for (const srflx of remotes) {
      if (srflx.kind !== 'srflx' || srflx.address.family !== 4) continue;
      for (const host of remotes) {
        if (host.kind !== 'host' || host.address.family !== 4) continue;
        const address = socketAddr(srflx.address.address, host.address.port);
        if (remotes.some((c) => c.kind === 'srflx' && sameSocketAddr(c.address, address))) continue;
        const optimistic = connection.agent.serverReflexiveCandidate(address, host.address);
        if (!connection.agent.addRemoteCandidate(optimistic)) continue;
        log.debug('Adding optimistic candidate for remote', { connection: connection.id, candidate: formatCandidate(optimistic) });
        if (++added === MAX_OPTIMISTIC_CANDIDATES_PER_SIGNAL) return;
      }
    }
  }

  private signalServerReflexive(connection: IceConnection, candidate: LocalCandidate): void {
    this.newCandidates.add(connection.id, formatCandidate(connection.agent.serverReflexiveCandidate(candidate.address, candidate.base)));
  }

  // --- internals: ICE-less connections ---

  private createIcelessConnection(id: string, index: number, relay: RelayEntry, params: ConnectionParams, now: number): IcelessConnection {
    const tunnel = this.createTunnel(index, params, now, {
      rekeyAttemptTime: ICELESS_REKEY_ATTEMPT_TIME,
      keepaliveTimeout: ICELESS_KEEPALIVE_TIMEOUT,
      rekeyTimeout: ICELESS_REKEY_TIMEOUT,
    });
    // As an ICE connection's: every field here, in the same order.
    return {
      kind: 'iceless',
      tunnel,
      state: 'connecting',
      lastActivity: now,
      failure: undefined,
      scheduledAt: Infinity,
      owner: undefined,
      dropped: false,
      path: undefined,
      pathRelay: undefined,
      id,
      index,
      established: false,
      buffered: new RingQueue<Uint8Array>(4),
      params,
      relay,
      sources: [],
      createdAt: now,
      disconnectedSince: undefined,
      paths: new PathAgent(),
      peerKey: keyText(params.remotePublicKey),
    };
  }

  private startIcelessConnection(connection: IcelessConnection, now: number): void {
    this.byPeerKey.set(connection.peerKey, connection);
    this.seedIcelessCandidates(connection, now);
    // Only the controlling side bootstraps: the responder answers, so no duplicate from each end.
    if (this.role === 'client') connection.tunnel.initiateHandshake(now);
    this.drainIceless(connection, now);
  }

  /** The node's host and server-reflexive candidates, then the relay candidates of the connection's relay. */
  private seedIcelessCandidates(connection: IcelessConnection, now: number): void {
    for (const host of this.hostCandidates) this.addIcelessLocal(connection, hostCandidate(host), now);
    for (const { candidate } of this.serverReflexive.values()) this.addIcelessLocal(connection, candidate, now);
    const relay = connection.relay;
    if (relay === undefined) return;
    for (const candidate of relay.allocation.candidates()) {
      if (candidate.kind === 'relay') this.addIcelessLocal(connection, candidate, now);
    }
  }

  private addIcelessLocal(connection: IcelessConnection, candidate: PathCandidate, now: number): void {
    if (!connection.paths.addLocalCandidate(candidate, now)) return;
    this.newCandidates.add(connection.id, formatPathCandidate(candidate));
    this.drainIceless(connection, now);
    this.touch(connection, now);
  }

  private addIcelessRemote(connection: IcelessConnection, sdp: string, now: number): void {
    const candidate = parsePathCandidate(sdp);
    if (typeof candidate === 'string') {
      log.debug('Ignoring unparsable ICE-less candidate', { connection: connection.id, candidate: sdp, error: candidate });
      return;
    }
    if (connection.paths.addRemoteCandidate(candidate, now)) this.addIcelessOptimisticCandidates(connection, now);
    const relay = connection.relay;
    if (candidate.kind !== 'host' && relay !== undefined) {
      relay.allocation.bindChannel(candidate.address, now);
      this.drainRelay(relay, now);
    }
    this.drainIceless(connection, now);
    this.touch(connection, now);
  }

  private removeIcelessRemote(connection: IcelessConnection, sdp: string, now: number): void {
    const candidate = parsePathCandidate(sdp);
    if (typeof candidate === 'string' || !connection.paths.removeRemoteCandidate(candidate, now)) return;
    this.drainIceless(connection, now);
    this.touch(connection, now);
  }

  /** `addOptimisticCandidates` for an ICE-less connection (1.6.0 applies it in both modes). */
  private addIcelessOptimisticCandidates(connection: IcelessConnection, now: number): void {
    const remotes = [...connection.paths.remoteCandidates()];
    let added = 0;
    for (const srflx of remotes) {
      if (srflx.kind !== 'srflx' || srflx.address.family !== 4) continue;
      for (const host of remotes) {
        if (host.kind !== 'host' || host.address.family !== 4) continue;
        const address = socketAddr(srflx.address.address, host.address.port);
        if (remotes.some((c) => c.kind === 'srflx' && sameSocketAddr(c.address, address))) continue;
        if (!connection.paths.addRemoteCandidate(serverReflexiveCandidate(address, host.address), now)) continue;
        if (++added === MAX_OPTIMISTIC_CANDIDATES_PER_SIGNAL) return;
      }
    }
  }

  /**
   * Finds the ICE-less connection an initiation from an unregistered source belongs to, by the
   * sender's static key (one Diffie-Hellman; its copies on other pairs reuse the answer). MAC1 is
   * checked first, and under load a valid MAC2, else a cookie reply goes back where it came from.
   */
  private icelessBySender(initiation: Uint8Array, source: SocketAddr, destination: SocketAddr, now: number): Connection | undefined {
    if (this.byPeerKey.size === 0) return undefined;
    const last = this.lastKeyLookup;
    if (last !== undefined && bytesEqual(last.initiation, initiation)) return last.connection;
    if (this.rateLimiter.isUnderLoad()) {
      const verdict = this.rateLimiter.verify(initiation, source.address, now);
      if (verdict.kind === 'cookieReply') this.sendOnPair({ local: destination, remote: source }, verdict.message, now);
      if (verdict.kind !== 'accept') return undefined;
    } else {
      const mac1 = mac(this.identity.mac1Key, initiation.subarray(0, INITIATION_OFFSET_MAC1));
      if (!constantTimeEqual(mac1, initiation.subarray(INITIATION_OFFSET_MAC1, INITIATION_OFFSET_MAC2))) return undefined;
    }
    const sender = initiationSender(this.identity, initiation);
    const connection = sender === undefined ? undefined : this.byPeerKey.get(keyText(sender));
    if (connection !== undefined) this.lastKeyLookup = { initiation: initiation.slice(), connection };
    return connection;
  }

  private decapsulateIceless(
    connection: IcelessConnection,
    payload: Uint8Array,
    source: SocketAddr,
    destination: SocketAddr,
    now: number,
  ): DecryptedPacket | DecapsulateStatus {
    const arrival = this.arrival;
    arrival.local = destination;
    arrival.remote = source;
    const result: PathInbound = connection.paths.decapsulate(connection.tunnel, payload, arrival, now, this.batchingOpens ? this.openBatch : undefined);
    if (result instanceof Uint8Array) return this.onDecrypted(connection, result, 0, now);
    if (result === 'pending') {
      const slot = this.openBatch.lastSlot;
      this.openConnections[slot] = connection;
      this.openTags[slot] = this.batchTag;
      this.openLocals[slot] = destination;
      this.openRemotes[slot] = source;
      return 'pending';
    }
    // A probe is traffic for the idle timer, as in the reference (it passes the connection state first).
    if (result === 'probe') {
      connection.lastActivity = now;
      if (connection.state === 'idle') this.setState(connection, 'connected', now);
    }
    this.drainIceless(connection, now);
    this.touch(connection, now);
    return this.statusOf(connection, result, source);
  }

  /** A batch-opened data message of an ICE-less connection: the packet, or undefined when it was a probe, a keepalive or dropped. */
  private openedIceless(connection: IcelessConnection, slot: number, outcome: OpenOutcome, now: number): DecryptedPacket | undefined {
    const arrival = this.arrival;
    arrival.local = this.openLocals[slot]!;
    arrival.remote = this.openRemotes[slot]!;
    this.openLocals[slot] = undefined;
    this.openRemotes[slot] = undefined;
    const opened = typeof outcome === 'number' ? this.openBatch.packet(slot) : outcome === 'keepalive' ? outcome : undefined;
    const result = opened === undefined ? outcome : connection.paths.receiveOpened(opened, arrival, now);
    if (result instanceof Uint8Array) return this.onDecrypted(connection, result, this.openTags[slot]!, now);
    if (result === 'probe') {
      connection.lastActivity = now;
      if (connection.state === 'idle') this.setState(connection, 'connected', now);
    }
    this.drainIceless(connection, now);
    this.touch(connection, now);
    if (typeof result === 'string' && result !== 'keepalive' && result !== 'probe') {
      this.stats.wireguardDropped++;
      if (log.enabled(Level.Debug)) log.debug('Dropped WireGuard datagram', { connection: connection.id, reason: result });
    }
    return undefined;
  }

  /** Everything the tunnel produced goes through the agent; what the agent wants sent goes on its pair. */
  private drainIceless(connection: IcelessConnection, now: number): void {
    const { tunnel, paths } = connection;
    for (let datagram = tunnel.pollTransmit(); datagram !== undefined; datagram = tunnel.pollTransmit()) paths.handleOutbound(datagram, now);
    for (let e = paths.pollEvent(); e !== undefined; e = paths.pollEvent()) this.onPrimaryChanged(connection, e.local, e.remote, now);
    for (let t = paths.pollTransmit(); t !== undefined; t = paths.pollTransmit()) {
      if (t.kind === 'wireguard') {
        this.sendOnPair(t, t.payload, now);
        continue;
      }
      // As the reference: a probe needs a session to ride (a responder waits for the initiator's confirmation).
      if (!tunnel.hasSession(now)) continue;
      const sealed = tunnel.encapsulate(t.payload, now);
      if (typeof sealed !== 'string') this.sendOnPair(t, sealed, now);
    }
    for (let e = tunnel.pollEvent(); e !== undefined; e = tunnel.pollEvent()) {
      if (e.kind === 'connectionExpired') connection.failure ??= 'wireguardExpired';
      else if (connection.path !== undefined) this.onEstablished(connection);
    }
  }

  private onPrimaryChanged(connection: IcelessConnection, local: SocketAddr, remote: SocketAddr, now: number): void {
    const relay = this.relaysByRelayed.get(local);
    const relaySocket = relay?.allocation.activeSocket();
    if (relay !== undefined && relaySocket === undefined) return;
    connection.path =
      relay === undefined ? { kind: 'direct', source: local, destination: remote } : { kind: 'relay', relay: relaySocket!, relayed: local, destination: remote };
    connection.pathRelay?.pathUsers.delete(connection);
    connection.pathRelay = relay;
    relay?.pathUsers.add(connection);
    if (log.enabled(Level.Info)) {
      log.info('Primary path', { connection: connection.id, local: socketAddrKey(local), remote: socketAddrKey(remote), relayed: relay !== undefined });
    }
    if (connection.state === 'connecting') this.setState(connection, 'connected', now);
    if (connection.tunnel.hasSession(now)) this.onEstablished(connection);
  }

  /** The connection carries data once WireGuard has a session and the agent a primary. */
  private onEstablished(connection: Connection): void {
    if (connection.established) return;
    connection.established = true;
    this.events.push({ kind: 'connectionEstablished', connection: connection.id });
  }

  /** Sends a datagram on a pair: from our relayed address through that relay, or straight from a local socket. */
  private sendOnPair(pair: PathPair, datagram: Uint8Array, now: number): void {
    const relay = this.relaysByRelayed.get(pair.local);
    if (relay === undefined) {
      this.transmits.push({ source: pair.local, destination: pair.remote, payload: datagram });
      return;
    }
    if (relay.removed) return;
    const transmit = relay.allocation.encodeToPeer(pair.remote, datagram, now);
    if (transmit !== undefined) this.transmits.push(transmit);
    this.drainRelayTransmits(relay);
  }

  /** After its relay went away: another relay's candidates, or a wait for the next relay to arrive. */
  private migrateIcelessRelay(connection: IcelessConnection, now: number): void {
    const relay = this.sampleRelay();
    if (relay === undefined) {
      this.icelessWithoutRelay.add(connection);
    } else {
      this.icelessWithoutRelay.delete(connection);
      connection.relay = relay;
      relay.members.add(connection);
      log.info('Moved an ICE-less connection to another relay', { connection: connection.id, relay: relay.server.id });
      this.seedIcelessCandidates(connection, now);
    }
    this.drainIceless(connection, now);
    this.touch(connection, now);
  }

  private sampleRelay(): RelayEntry | undefined {
    if (this.relays.size === 0) return undefined;
    const relayIds = [...this.relays.keys()];
    return this.relays.get(relayIds[this.rng.u32() % relayIds.length]!);
  }

  // --- internals: connections ---

  /** A Binding request goes to the connection its USERNAME names, a response to the one that sent the request. */
  private handleCheck(message: StunMessage, source: SocketAddr, destination: SocketAddr, now: number): void {
    if (message.class === 'request') {
      const username = getAttribute(message, 'username')?.value;
      const candidates = username === undefined ? undefined : this.byCheckUsername.get(username);
      if (candidates === undefined) return;
      if (!Array.isArray(candidates)) {
        this.offerCheck(candidates, message, source, destination, now);
        return;
      }
      for (const connection of candidates) if (this.offerCheck(connection, message, source, destination, now)) return;
      return;
    }
    if (message.class === 'indication') return;
    const connection = this.byIndex.get(this.transactionIds.tagOf(message.transactionId));
    if (connection === undefined || connection.kind !== 'ice') return;
    this.visit(connection);
    if (!connection.agent.handleStunMessage(message, source, destination, now)) return;
    this.drainAgent(connection, now);
    this.touch(connection, now);
  }

  private offerCheck(connection: IceConnection, message: StunMessage, source: SocketAddr, destination: SocketAddr, now: number): boolean {
    this.visit(connection);
    if (!connection.agent.handleStunMessage(message, source, destination, now)) return false;
    this.drainAgent(connection, now);
    this.touch(connection, now);
    return true;
  }

  private serviceConnection(connection: Connection, now: number): void {
    this.visit(connection);
    if (connection.kind === 'iceless') {
      connection.paths.handleTimeout(now);
      // Always, not only once a path exists: the client's bootstrap retransmits and expiry ride these timers.
      if (now >= (connection.tunnel.pollTimeout() ?? Infinity)) connection.tunnel.handleTimeout(now);
      this.drainIceless(connection, now);
    } else {
      connection.agent.handleTimeout(now);
      this.drainAgent(connection, now);
      if (connection.path !== undefined && now >= (connection.tunnel.pollTimeout() ?? Infinity)) {
        connection.tunnel.handleTimeout(now);
        this.drainTunnel(connection, now);
      }
    }
    if (this.checkConnection(connection, now)) this.schedule(connection, now, true);
  }

  private drainAgent(connection: IceConnection, now: number): void {
    const { agent } = connection;
    for (let t = agent.pollTransmit(); t !== undefined; t = agent.pollTransmit()) this.sendIce(t, now);
    for (let e = agent.pollEvent(); e !== undefined; e = agent.pollEvent()) {
      switch (e.kind) {
        case 'nominated':
          this.onNominated(connection, e.path, e.local, e.remote, now);
          break;
        case 'discoveredRecv':
          this.addSource(connection, e.source);
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

  private addSource(connection: Connection, source: SocketAddr): void {
    this.bySource.set(source, connection);
    connection.sources.push(source);
  }

  private onNominated(connection: IceConnection, path: IcePath, local: Candidate, remote: Candidate, now: number): void {
    const previous = connection.path;
    if (previous !== undefined && samePath(previous, path)) return;
    if (connection.state === 'idle' && previous !== undefined) {
      log.debug('Ignoring nomination of a new path while idle', { connection: connection.id });
      return;
    }
    connection.path = path;
    this.addSource(connection, path.destination);
    connection.pathRelay?.pathUsers.delete(connection);
    connection.pathRelay = path.kind === 'relay' ? this.allocationServing(path.relay) : undefined;
    connection.pathRelay?.pathUsers.add(connection);
    if (log.enabled(Level.Info)) {
      log.info('Nominated path', { connection: connection.id, local: formatCandidate(local), remote: formatCandidate(remote) });
    }
    if (connection.state === 'connecting') {
      this.setState(connection, 'connected', now);
      for (let datagram = connection.buffered.shift(); datagram !== undefined; datagram = connection.buffered.shift()) {
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
    if (connection.kind === 'iceless') {
      this.drainIceless(connection, now);
      return;
    }
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

  private onDecrypted(connection: Connection, packet: Uint8Array, tag: number, now: number): DecryptedPacket {
    connection.lastActivity = now;
    const waking = connection.state === 'idle';
    if (waking) this.setState(connection, 'connected', now);
    this.drainTunnel(connection, now);
    // Data moves an ICE connection's deadline earlier only by waking it or by a timer its tunnel
    // starts; otherwise the deadline (the ICE agent's, cold in memory at scale) is not read.
    if (waking || connection.kind === 'iceless' || connection.failure !== undefined || (connection.tunnel.receiveDeadlineAdded && connection.tunnel.receiveDeadline < connection.scheduledAt)) {
      this.touch(connection, now);
    }
    this.decrypted.connection = connection.id;
    this.decrypted.packet = packet;
    this.decrypted.tag = tag;
    this.decrypted.owner = connection.owner;
    return this.decrypted;
  }

  /** `transmitOnPath` for a sealed batch slot, into the reused transmit. */
  private sealedOnPath(connection: Connection, slot: number, now: number): Transmit | undefined {
    const path = connection.path!;
    const transmit = this.sealedTransmit;
    transmit.ecn = this.sealEcn[slot]!;
    if (path.kind === 'direct') {
      transmit.source = path.source;
      transmit.destination = path.destination;
      transmit.payload = this.sealBatch.datagram(slot);
      return transmit;
    }
    const relay = connection.pathRelay;
    const relaySocket = relay === undefined || relay.removed ? undefined : relay.allocation.activeSocket();
    const channel = relaySocket === undefined ? undefined : relay!.allocation.channelTo(path.destination, now);
    if (relaySocket === undefined || channel === undefined) return this.transmitOnPath(connection, this.sealBatch.datagram(slot), now, transmit.ecn);
    const framed = this.sealBatch.framed(slot);
    writeChannelDataHeader(framed, 0, channel, framed.length - CHANNEL_DATA_HEADROOM);
    transmit.source = undefined;
    transmit.destination = relaySocket;
    transmit.payload = framed;
    return transmit;
  }

  /** Wraps a WireGuard datagram (with CHANNEL_DATA_HEADROOM free bytes in front) for the nominated path. */
  private transmitOnPath(connection: Connection, datagram: Uint8Array, now: number, ecn = 0): Transmit | undefined {
    const path = connection.path!;
    if (path.kind === 'direct') return { source: path.source, destination: path.destination, payload: datagram, ecn };
    const relay = connection.pathRelay;
    const relaySocket = relay?.allocation.activeSocket();
    if (relay === undefined || relay.removed || relaySocket === undefined) {
      this.stats.encapsulateDropped++;
      return undefined;
    }
    const { allocation } = relay;
    const channel = allocation.channelTo(path.destination, now);
    if (channel !== undefined && datagram.byteOffset >= CHANNEL_DATA_HEADROOM) {
      const framed = new Uint8Array(datagram.buffer, datagram.byteOffset - CHANNEL_DATA_HEADROOM, datagram.length + CHANNEL_DATA_HEADROOM);
      writeChannelDataHeader(framed, 0, channel, datagram.length);
      return { source: undefined, destination: relaySocket, payload: framed, ecn };
    }
    const transmit = allocation.encodeToPeer(path.destination, datagram, now);
    if (transmit === undefined) this.stats.encapsulateDropped++;
    this.drainRelayTransmits(relay);
    return transmit === undefined || ecn === 0 ? transmit : { ...transmit, ecn };
  }

  private sendIce(transmit: IceTransmit, now: number): void {
    if (transmit.kind === 'direct') {
      this.transmits.push({ source: transmit.source, destination: transmit.destination, payload: transmit.payload });
      return;
    }
    const relay = this.allocationServing(transmit.relay);
    if (relay === undefined) return;
    const wrapped = relay.allocation.encodeToPeer(transmit.destination, transmit.payload, now);
    if (wrapped !== undefined) this.transmits.push(wrapped);
    this.drainRelayTransmits(relay);
  }

  /** After sending through a relay: its requests (a channel bind) go out and its deadline may have moved. */
  private drainRelayTransmits(relay: RelayEntry): void {
    for (let t = relay.allocation.pollTransmit(); t !== undefined; t = relay.allocation.pollTransmit()) this.transmits.push(t);
    this.scheduleRelay(relay);
  }

  private setState(connection: Connection, state: ConnectionState, now: number): void {
    if (connection.state === state) return;
    connection.state = state;
    if (connection.kind === 'ice') connection.agent.setTiming(state === 'idle' ? this.idleTiming : this.activeTiming);
    if (state !== 'idle') connection.lastActivity = now;
    log.debug('Connection state changed', { connection: connection.id, state });
  }

  /** Applies failures and the idle transition; returns false when the connection was dropped. */
  private checkConnection(connection: Connection, now: number): boolean {
    if (connection.failure === undefined) {
      if (connection.state === 'connecting' && now >= connection.createdAt + CANDIDATE_TIMEOUT && !hasRemoteCandidates(connection)) {
        connection.failure = 'noRemoteCandidates';
      } else if (connection.disconnectedSince !== undefined && now >= connection.disconnectedSince + DISCONNECT_TIMEOUT) {
        connection.failure = 'iceDisconnected';
      } else if (connection.kind === 'ice' && connection.pathRelay?.removed === true) {
        connection.failure = 'relayGone';
      }
    }
    if (connection.failure !== undefined) {
      const reason = connection.failure;
      this.dropConnection(connection);
      log.info('Connection failed', { connection: connection.id, reason });
      this.events.push({ kind: 'connectionFailed', connection: connection.id, reason });
      return false;
    }
    if (connection.state === 'connected' && now >= connection.lastActivity + MAX_IDLE) this.setState(connection, 'idle', now);
    return true;
  }

  /** The earliest instant the connection has work, coarsened (see DEADLINE_GRID). */
  private deadlineOf(connection: Connection, now: number): number {
    this.observer?.deadlineRead?.(connection.id);
    if (connection.failure !== undefined) return now;
    let at = (connection.kind === 'ice' ? connection.agent.pollTimeout() : connection.paths.pollTimeout()) ?? Infinity;
    if (connection.path !== undefined || connection.kind === 'iceless') {
      const tunnel = connection.tunnel.pollTimeout();
      if (tunnel !== undefined && tunnel < at) at = tunnel;
    }
    if (connection.state === 'connecting' && connection.createdAt + CANDIDATE_TIMEOUT < at && !hasRemoteCandidates(connection)) {
      at = connection.createdAt + CANDIDATE_TIMEOUT;
    }
    if (connection.disconnectedSince !== undefined && connection.disconnectedSince + DISCONNECT_TIMEOUT < at) at = connection.disconnectedSince + DISCONNECT_TIMEOUT;
    if (connection.state === 'connected' && connection.lastActivity + MAX_IDLE < at) at = connection.lastActivity + MAX_IDLE;
    if (at === Infinity || at - now < COARSE_HORIZON) return at;
    return Math.ceil(at / DEADLINE_GRID) * DEADLINE_GRID;
  }

  /**
   * After a connection was touched outside its timer: its queued deadline only moves earlier.
   * A later deadline is left for the timer to find (it wakes the connection a little early, once),
   * which keeps the data path to a comparison in the common case.
   */
  private touch(connection: Connection, now: number): void {
    if (connection.dropped) return;
    const at = this.deadlineOf(connection, now);
    if (at < connection.scheduledAt) {
      connection.scheduledAt = at;
      this.deadlines.set(connection, at);
    }
  }

  /** After servicing: the exact next deadline, never again within this `handleTimeout`. */
  private schedule(connection: Connection, now: number, fromTimer: boolean): void {
    let at = this.deadlineOf(connection, now);
    if (fromTimer && at <= now) at = now + 1;
    connection.scheduledAt = at;
    this.deadlines.set(connection, at);
  }

  private visit(connection: Connection): void {
    this.observer?.connectionVisited(connection.id);
  }

  private dropConnection(connection: Connection): void {
    if (this.connections.get(connection.id) !== connection) return;
    connection.tunnel.close();
    connection.dropped = true;
    this.connections.delete(connection.id);
    this.deadlines.delete(connection);
    connection.scheduledAt = Infinity;
    if (this.byIndex.get(connection.index) === connection) this.byIndex.delete(connection.index);
    if (connection.kind === 'ice') {
      const sharing = this.byCheckUsername.get(connection.checkUsername);
      if (sharing === connection) this.byCheckUsername.delete(connection.checkUsername);
      else if (Array.isArray(sharing)) {
        const at = sharing.indexOf(connection);
        if (at >= 0) sharing.splice(at, 1);
        if (sharing.length === 1) this.byCheckUsername.set(connection.checkUsername, sharing[0]!);
      }
      connection.agent.close();
    } else {
      if (this.byPeerKey.get(connection.peerKey) === connection) this.byPeerKey.delete(connection.peerKey);
      if (this.lastKeyLookup?.connection === connection) this.lastKeyLookup = undefined;
      this.icelessWithoutRelay.delete(connection);
    }
    for (const source of connection.sources) this.bySource.deleteIf(source, connection);
    connection.relay?.members.delete(connection);
    connection.pathRelay?.pathUsers.delete(connection);
    this.newCandidates.forget(connection.id);
    this.invalidatedCandidates.forget(connection.id);
  }
}

function sameCredentials(a: IceCredentials, b: IceCredentials): boolean {
  return a.ufrag === b.ufrag && a.password === b.password;
}

/** An upsert reuses a connection only when everything its ICE agent and WireGuard session came from is the same. */
function reusable(current: ConnectionParams, next: ConnectionParams): boolean {
  const iceless = current.useIceless === true;
  // A mode flip replaces the connection; an ICE-less one has no ICE credentials to compare.
  if (iceless !== (next.useIceless === true)) return false;
  return (
    (iceless || (sameCredentials(current.localCredentials, next.localCredentials) && sameCredentials(current.remoteCredentials, next.remoteCredentials))) &&
    bytesEqual(current.remotePublicKey, next.remotePublicKey) &&
    bytesEqual(current.presharedKey, next.presharedKey)
  );
}

function hasRemoteCandidates(connection: Connection): boolean {
  return connection.kind === 'ice' ? connection.agent.hasRemoteCandidates() : connection.paths.remoteCandidates().length > 0;
}

/** A static key as a map key. */
function keyText(key: Uint8Array): string {
  let text = '';
  for (const byte of key) text += byte.toString(16).padStart(2, '0');
  return text;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function samePath(a: IcePath, b: IcePath): boolean {
  if (a.kind !== b.kind || !sameSocketAddr(a.destination, b.destination)) return false;
  if (a.kind === 'direct' && b.kind === 'direct') return sameSocketAddr(a.source, b.source);
  if (a.kind === 'relay' && b.kind === 'relay') return sameSocketAddr(a.relay, b.relay) && sameSocketAddr(a.relayed, b.relayed);
  return false;
}

/** The ECN codepoint of an IP packet (its datagram carries the same; spec connectivity §1.3). */
function ecnOf(packet: Uint8Array): number {
  const first = packet[0] ?? 0;
  if (first >> 4 === 4) return (packet[1] ?? 0) & 0b11;
  if (first >> 4 === 6) return ((packet[1] ?? 0) >> 4) & 0b11;
  return 0;
}
