/**
 * The gateway's event loop: joins the portal channel, the connectivity node, the policy state,
 * the TUN device and the UDP sockets. Everything here reacts to one input at a time (a batch of
 * datagrams, a batch of TUN packets, a portal message, the timer), then drains the state
 * machines' outputs and arms one timer for the earliest deadline.
 *
 * The IO objects are injected, so tests drive the loop with in-memory sockets and a fake TUN.
 *
 * Work bounds: each input is bounded by the state machines it feeds; what the loop adds is that
 * name resolutions finishing together (their promises settle one microtask after another, with
 * no I/O in between) are handled at most RESOLUTIONS_PER_TURN at a time, the rest after the loop
 * has had a turn; an input that still takes longer than SLOW_INPUT_MS is counted and logged
 * (one WARN a minute), as a bug to find. Interface updates are superseded by a newer `init`.
 */
import { GatewayState, TunAction, TunnelAction, type ResourceDescription as PolicyResource } from '../gateway/index.ts';
import { ECN_CE, makeGoodbyePacket, parseIp, type IpAddr } from '../ip/index.ts';
import { expiresAtToMonotonic } from '../gateway/time.ts';
import { createLogger, errorChain, Level } from '../log/index.ts';
import {
  encodeEgress,
  type AllowAccessMessage,
  type ClientId,
  type CreateAuthorizationMessage,
  type IngressMessage,
  type InitMessage,
  type Relay,
  type RequestConnectionMessage,
  type ResourceDescription,
} from '../portal/index.ts';
import { mergeRelayEntries, type DecryptedPacket, type Node, type RelayServer } from '../snownet/index.ts';
import type { RandomSource } from '../util/random.ts';
import { RingQueue } from '../util/ring-queue.ts';
import { WarningLimiter } from '../util/warning-limiter.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import type { Transmit } from '../util/transmit.ts';
import { validatePacketChecksums } from './checksums.ts';
import type { FlowLogs } from './flow-logs.ts';
import type { TunReadBatch } from './tun-device.ts';
import { sendTransmit, type DatagramSocket, type UdpDatagramBatch } from './udp-socket.ts';

const log = createLogger('firezone_gateway::eventloop');

/** Name resolutions handled before the loop yields to I/O. */
export const RESOLUTIONS_PER_TURN = 32;
/** An input that takes longer than this is counted and logged. */
export const SLOW_INPUT_MS = 50;

type InputKind = 'datagrams' | 'tunPackets' | 'portalMessage' | 'timer' | 'resolutions';

export interface PortalPort {
  send(event: string, payload: Readonly<Record<string, unknown>>): void;
  /** Reconnects to get a fresh `init`: 1.4.13's answer to "no relays left", kept for the v1 dialect. */
  reconnect(): void;
}

export interface PacketSink {
  write(packet: Uint8Array): boolean;
  /** Writes `count` packets in one go (views valid only during the call); returns how many were taken. */
  writeBatch?(packets: readonly Uint8Array[], count: number): number;
}

export interface NameResolver {
  resolve(name: string): Promise<string[]>;
}

export interface TunnelAddresses {
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface EventLoopOptions {
  readonly node: Node;
  readonly state: GatewayState;
  readonly sockets: { readonly v4: DatagramSocket | undefined; readonly v6: DatagramSocket | undefined };
  readonly tun: PacketSink;
  readonly portal: PortalPort;
  readonly resolver: NameResolver;
  /**
   * Applies `init`'s addresses to the TUN device and rebinds the DNS forwarder; rejects on a fatal
   * failure. `superseded` aborts when a newer `init` arrives (stop retrying, resolve quietly).
   */
  readonly configureInterface: (addresses: TunnelAddresses, superseded: AbortSignal) => Promise<void>;
  /** Monotonic milliseconds. */
  readonly clock: () => number;
  /** Wall-clock milliseconds (for `expires_at`). */
  readonly wallClock: () => number;
  readonly rng: RandomSource;
  readonly validateChecksums?: boolean;
  /** A fatal error: the process must stop with `Failed to start Gateway: <error>`. */
  readonly onFatal: (error: Error) => void;
  /** Advertised in `set_snownet_capabilities` after every join (spec gateway-1.6 §2.3.4); false until ICE-less connections are complete. */
  readonly iceless?: boolean;
  /** Arms a timer; the loop keeps at most one. Injectable for tests. */
  readonly setTimer?: (callback: () => void, delayMs: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
  /** Runs a callback after pending I/O (setImmediate); injectable for tests. */
  readonly defer?: (callback: () => void) => void;
  /** Flow logs (issue 21): fed every allowed packet both ways, the authorizations and `init`'s settings. */
  readonly flowLogs?: FlowLogs | undefined;
}

/** The datagram index rides in the node's batch tag above the two ECN bits. */
const ECN_TAG_BITS = 2;
const ECN_TAG_MASK = 0b11;

type PendingLegacy =
  | { readonly kind: 'requestConnection'; readonly message: RequestConnectionMessage }
  | { readonly kind: 'allowAccess'; readonly message: AllowAccessMessage };

export interface LoopStats {
  tunnelToTun: number;
  tunToTunnel: number;
  prohibitedReplies: number;
  dropped: number;
  /** Packets dropped because a state machine threw (a bug; logged once per message). */
  internalErrors: number;
}

/** How long inputs kept the loop busy. */
export interface LoopWorkStats {
  /** Inputs that took longer than SLOW_INPUT_MS. */
  slowInputs: number;
  /** The longest input, ms. */
  maxInputMs: number;
}

export class GatewayEventLoop {
  readonly stats: LoopStats = { tunnelToTun: 0, tunToTunnel: 0, prohibitedReplies: 0, dropped: 0, internalErrors: 0 };
  readonly work: LoopWorkStats = { slowInputs: 0, maxInputMs: 0 };
  private readonly reportedErrors = new Set<string>();
  private readonly o: EventLoopOptions;
  private readonly setTimer: (callback: () => void, delayMs: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private timer: unknown;
  private timerAt = Infinity;
  private stopped = false;
  private interfaceUpdate: Promise<void> = Promise.resolve();
  private interfaceSuperseded: AbortController | undefined;
  private readonly defer: (callback: () => void) => void;
  /** Resolutions that finished and wait for their turn. */
  private readonly resolved = new RingQueue<{ readonly domain: string; readonly ips: readonly IpAddr[] | undefined }>();
  /** Resolutions handled since the loop last handled another input or yielded. */
  private resolutionsThisTurn = 0;
  private resolutionTurnScheduled = false;
  private readonly slowInputWarnings = new WarningLimiter<InputKind>();
  private readonly pendingLegacy = new Map<string, PendingLegacy>();
  private readonly onTimer = (): void => this.handleTimeout();
  /** Decrypted packets for the TUN device, written in one call per batch. */
  private readonly tunBatch: Uint8Array[] = [];
  private tunBatchCount = 0;
  /** The UDP read being handled (its datagrams' addresses are the flows' outer paths). */
  private datagrams: UdpDatagramBatch | undefined;
  /** Where `prefetch` leaves what it read, so that the reads are not optimized away. */
  private prefetched = 0;
  /** The owners `Node.readAhead` found in a read (cleared after each). */
  private readonly readAheadOwners: unknown[] = [];
  /** With flow logs: each datagram's source and destination, as decoded once for the node. */
  private readonly outerSources: SocketAddr[] = [];
  private readonly outerDestinations: SocketAddr[] = [];
  /**
   * Candidate changes held back while the portal is down, per client (spec gateway-1.6 §1.8);
   * undefined while it is up. Starts up (as the reference): before the first join nothing is held.
   */
  private held: Map<string, { added: Set<string>; removed: Set<string> }> | undefined;
  /** The dialect of the last join (the socket path it was made on). */
  private portalDialect: 'v1' | 'v2' = 'v2';

  constructor(options: EventLoopOptions) {
    this.o = options;
    options.node.setOwnerReadAhead((owner) => options.state.prefetch(owner));
    options.flowLogs?.attach(options.state);
    this.setTimer = options.setTimer ?? ((callback, delay) => setTimeout(callback, delay));
    this.clearTimer = options.clearTimer ?? ((handle) => clearTimeout(handle as NodeJS.Timeout));
    this.defer = options.defer ?? ((callback) => void setImmediate(callback));
  }

  /** Says GOODBYE on every connection, releases the relay allocations (sends their deletion), then stops. */
  shutdown(): void {
    if (this.stopped) return;
    const now = this.o.clock();
    this.o.flowLogs?.closeAll(now);
    this.o.state.shutDown();
    this.o.node.closeAll(makeGoodbyePacket(), now);
    this.o.node.close(now);
    this.flush(now);
    this.stop();
  }

  stop(): void {
    this.stopped = true;
    this.interfaceSuperseded?.abort();
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
  }

  /**
   * Datagrams from one UDP socket read. WireGuard data messages are opened together (one cipher
   * call per `transportBatchCapacity` datagrams) and their packets written to the TUN device in
   * one call.
   */
  handleDatagrams(batch: UdpDatagramBatch): void {
    if (this.stopped) return;
    const now = this.o.clock();
    this.resolutionsThisTurn = 0;
    const capacity = this.o.node.transportBatchCapacity;
    this.datagrams = batch;
    if (batch.count > 1) this.prefetch(batch);
    for (let i = 0; i < batch.count; i++) {
      try {
        this.handleDatagram(batch, i, now);
      } catch (error) {
        this.contain(error);
      }
      if ((i + 1) % capacity === 0) this.drainDecrypted(now);
    }
    this.drainDecrypted(now);
    this.datagrams = undefined;
    this.flush(now);
    this.inputDone('datagrams', now);
  }

  /**
   * A first pass over a read: each data message's connection, tunnel, session and client are read
   * ahead (Node.readAhead, then GatewayState.prefetch for the clients), several clients' cache misses
   * at once, so that the pass that handles them finds them in the cache (README, issue 18: per packet
   * at 10,000 clients in reads of 32).
   */
  private prefetch(batch: UdpDatagramBatch): void {
    const { node, state } = this.o;
    const owners = this.readAheadOwners;
    let read = this.prefetched;
    try {
      const found = node.readAhead(batch, owners);
      for (let i = 0; i < found; i++) read = (read + state.prefetch(owners[i])) | 0;
      // Not kept until the next read: a client removed meanwhile is let go.
      owners.fill(undefined, 0, found);
    } catch (error) {
      this.contain(error);
    }
    this.prefetched = read;
  }

  private handleDatagram(batch: UdpDatagramBatch, i: number, now: number): void {
    const destination = batch.destination(i);
    const source = batch.source(i);
    if (this.o.flowLogs !== undefined) {
      this.outerSources[i] = source;
      this.outerDestinations[i] = destination;
    }
    const result = this.o.node.decapsulateBatched(destination, source, batch.payload(i), batch.ecn(i) | (i << ECN_TAG_BITS), now);
    if (typeof result !== 'string') this.handleDecrypted(result, now, i);
  }

  private drainDecrypted(now: number): void {
    const { node } = this.o;
    for (;;) {
      let decrypted: DecryptedPacket | undefined;
      try {
        decrypted = node.pollDecrypted(now);
      } catch (error) {
        this.contain(error);
        continue;
      }
      if (decrypted === undefined) break;
      try {
        this.handleDecrypted(decrypted, now, decrypted.tag >>> ECN_TAG_BITS);
      } catch (error) {
        this.contain(error);
      }
    }
    this.writeTunBatch();
  }

  /**
   * `decrypted.tag` holds the ECN codepoint of the datagram it came in (Congestion Experienced reaches the inner
   * packet); `index` is that datagram's place in the UDP read.
   */
  private handleDecrypted(decrypted: DecryptedPacket, now: number, index: number): void {
    const verdict = this.o.state.handleTunnelPacket(decrypted.connection, decrypted.packet, now, (decrypted.tag & ECN_TAG_MASK) === ECN_CE, decrypted.owner);
    if (verdict.client !== decrypted.owner) this.o.node.setConnectionOwner(decrypted.connection, verdict.client);
    switch (verdict.action) {
      case TunnelAction.ToTun: {
        this.writeToTun(verdict.packet);
        this.stats.tunnelToTun++;
        const flows = this.o.flowLogs;
        const datagrams = this.datagrams;
        if (flows !== undefined && verdict.resourceId !== '' && datagrams !== undefined && index < datagrams.count) {
          flows.clientToResource(decrypted.connection, verdict.resourceId, verdict.domain, this.outerSources[index]!, this.outerDestinations[index]!, now);
        }
        break;
      }
      case TunnelAction.ReplyToClient:
        this.stats.prohibitedReplies++;
        this.sendToClient(decrypted.connection, verdict.packet, now);
        break;
      case TunnelAction.Consumed:
        break;
      case TunnelAction.Drop:
        this.stats.dropped++;
        break;
    }
  }

  /**
   * A packet that made a state machine throw is a bug, not a reason to stop serving every other
   * client: it is dropped, counted and reported (once per distinct message).
   */
  private contain(error: unknown): void {
    this.stats.internalErrors++;
    const message = errorChain(error);
    if (this.reportedErrors.has(message) || this.reportedErrors.size >= 100) return;
    this.reportedErrors.add(message);
    log.error('Dropped a packet after an internal error', { error: message, stack: error instanceof Error ? error.stack : undefined });
  }

  /** Packets read from the TUN device: judged one by one, sealed together (one cipher call per batch). */
  handleTunPackets(batch: TunReadBatch): void {
    if (this.stopped) return;
    const now = this.o.clock();
    this.resolutionsThisTurn = 0;
    const { state, node } = this.o;
    for (let i = 0; i < batch.count; i++) {
      try {
        const verdict = state.handleTunPacket(batch.packet(i), now);
        if (verdict.action === TunAction.ToClient) {
          this.stats.tunToTunnel++;
          if (!node.queueEncapsulate(verdict.clientId, verdict.packet, now)) {
            this.drainSealed(now);
            node.queueEncapsulate(verdict.clientId, verdict.packet, now);
          }
          if (verdict.resourceId !== '') this.o.flowLogs?.resourceToClient(verdict.clientId, verdict.resourceId, now);
        } else {
          this.stats.dropped++;
        }
      } catch (error) {
        this.contain(error);
      }
    }
    this.drainSealed(now);
    this.flush(now);
    this.inputDone('tunPackets', now);
  }

  private drainSealed(now: number): void {
    const { node } = this.o;
    for (;;) {
      let transmit: Transmit | undefined;
      try {
        transmit = node.pollSealed(now);
      } catch (error) {
        this.contain(error);
        continue;
      }
      if (transmit === undefined) return;
      this.sendDatagram(transmit);
    }
  }

  /**
   * The portal channel is joined (every join): advertise the capabilities (v2 only; older portals
   * answer `unknown_message`), then flush the candidate changes held while it was down, one
   * message per client and kind.
   */
  portalJoined(dialect: 'v1' | 'v2' = 'v2'): void {
    if (this.stopped) return;
    this.portalDialect = dialect;
    const now = this.o.clock();
    if (dialect === 'v2') this.sendToPortal(encodeEgress({ kind: 'setSnownetCapabilities', iceless: this.o.iceless ?? false }));
    const held = this.held;
    this.held = undefined;
    if (held === undefined) return;
    for (const [clientId, changes] of held) {
      if (changes.added.size > 0) this.sendToPortal(encodeEgress({ kind: 'broadcastIceCandidates', clientIds: [clientId as ClientId], candidates: changes.added }));
    }
    for (const [clientId, changes] of held) {
      if (changes.removed.size > 0) {
        this.sendToPortal(encodeEgress({ kind: 'broadcastInvalidatedIceCandidates', clientIds: [clientId as ClientId], candidates: changes.removed }));
      }
    }
    this.flush(now);
  }

  /** The portal connection is down (a hiccup): candidate changes are held from now on. */
  portalDisconnected(): void {
    this.held ??= new Map();
  }

  /** How many candidate changes are held for the portal (tests, metrics). */
  get heldCandidateCount(): number {
    let count = 0;
    for (const changes of this.held?.values() ?? []) count += changes.added.size + changes.removed.size;
    return count;
  }

  handlePortalMessage(message: IngressMessage): void {
    if (this.stopped) return;
    const now = this.o.clock();
    this.resolutionsThisTurn = 0;
    try {
      this.dispatch(message, now);
    } catch (error) {
      log.warn('Failed to handle portal message', { kind: message.kind, error: errorChain(error) });
    }
    this.flush(now);
    this.inputDone('portalMessage', now);
  }

  handleTimeout(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.stopped) return;
    const now = this.o.clock();
    this.resolutionsThisTurn = 0;
    this.o.node.handleTimeout(now);
    this.o.state.handleTimeout(now);
    this.o.flowLogs?.handleTimeout(now);
    this.flush(now);
    this.inputDone('timer', now);
  }

  // --- portal messages ---

  private dispatch(message: IngressMessage, now: number): void {
    const { node, state } = this.o;
    switch (message.kind) {
      case 'init':
        return this.handleInit(message, now);
      case 'createAuthorization':
        return this.handleCreateAuthorization(message, now);
      case 'accessAuthorizationExpiryUpdated':
        // Obsolete in 1.6.0: parsed and ignored, as the reference does.
        return;
      case 'rejectAccess':
        state.rejectAccess(message.clientId, message.resourceId, now);
        this.o.flowLogs?.revoke(message.clientId, message.resourceId);
        return;
      case 'resourceUpdated':
        state.resourceUpdated(toPolicyResource(message.resource));
        return;
      case 'relaysPresence':
        node.updateRelays(message.disconnectedIds, turnRelays(message.connected), now);
        return;
      case 'iceCandidates':
        for (const candidate of message.candidates) node.addRemoteCandidate(message.clientId, candidate, now);
        return;
      case 'invalidateIceCandidates':
        for (const candidate of message.candidates) node.removeRemoteCandidate(message.clientId, candidate, now);
        return;
      case 'requestConnection':
        return this.startLegacy({ kind: 'requestConnection', message }, message.client.payload.domain?.name, now);
      case 'allowAccess':
        return this.startLegacy({ kind: 'allowAccess', message }, message.payload?.name, now);
    }
  }

  private handleInit(message: InitMessage, now: number): void {
    const ipv4 = parseIp(message.interface.ipv4);
    const ipv6 = parseIp(message.interface.ipv6);
    if (ipv4 === undefined || ipv6 === undefined) {
      log.warn('Ignoring init with invalid interface addresses');
      return;
    }
    const flowLogs = this.o.flowLogs;
    if (flowLogs !== undefined) {
      // 1.6.0's `init` carries `flow_logs` (older portals: absent, uploads off).
      flowLogs.init(message.flowLogs);
      if (message.authorizations !== undefined) flowLogs.retainAuthorizations(message.authorizations);
    }
    this.o.node.updateRelays([], turnRelays(message.relays), now);
    this.o.state.init({ ipv4, ipv6 }, message.authorizations, now);
    for (const { clientId, resourceId, expiresAt } of message.authorizations ?? []) {
      if (expiresAt === undefined) continue;
      if (!this.o.state.updateResourceExpiry(clientId, resourceId, this.expiry(expiresAt, now))) {
        log.debug('Failed to update access authorization: no such authorization', { cid: clientId, rid: resourceId });
      }
    }
    const addresses = { ipv4: message.interface.ipv4, ipv6: message.interface.ipv6 };
    this.interfaceSuperseded?.abort();
    const superseded = new AbortController();
    this.interfaceSuperseded = superseded;
    this.interfaceUpdate = this.interfaceUpdate
      .then(() => (superseded.signal.aborted ? undefined : this.o.configureInterface(addresses, superseded.signal)))
      .catch((error: unknown) => this.o.onFatal(error instanceof Error ? error : new Error(String(error))));
  }

  private handleCreateAuthorization(message: CreateAuthorizationMessage, now: number): void {
    const { client } = message;
    const upsert = this.o.node.upsertConnection(
      client.id,
      {
        localCredentials: { ufrag: message.gatewayIceCredentials.username, password: message.gatewayIceCredentials.password },
        remoteCredentials: { ufrag: message.clientIceCredentials.username, password: message.clientIceCredentials.password },
        remotePublicKey: client.publicKey.bytes,
        presharedKey: client.presharedKey.bytes,
        useIceless: message.useIceless,
      },
      now,
    );
    if (upsert === 'noTurnServers') {
      if (message.ackEvent === 'authorization_created') {
        // 1.6.0: ask the portal for relays (it answers `relays_presence`); the client's request times out.
        log.debug('Failed to create authorization: No TURN servers available', { cid: client.id });
        this.sendToPortal(encodeEgress({ kind: 'noRelays' }));
      } else {
        log.warn('No TURN servers available; reconnecting to the portal for a fresh init', { cid: client.id });
        this.o.portal.reconnect();
      }
      return;
    }
    const info = clientInfo(client.id, client.ipv4, client.ipv6);
    if (info !== undefined) {
      const result = this.o.state.authorizeFlow(info, toPolicyResource(message.resource), this.expiry(message.expiresAt, now), now);
      if (!result.ok) log.debug('Access not recorded', { cid: client.id, error: result.error });
      // 1.6.0's `create_authorization` carries the flow-logs ingest token.
      else this.o.flowLogs?.authorize(client.id, message.resource.id, message.ingestToken);
    }
    this.sendToPortal(encodeEgress({ kind: message.ackEvent === 'authorization_created' ? 'authorizationCreated' : 'flowAuthorized', ref: message.ref }));
  }

  private startLegacy(pending: PendingLegacy, domain: string | undefined, now: number): void {
    if (domain === undefined) return this.finishLegacy(pending, undefined, now);
    this.pendingLegacy.set(pending.message.ref, pending);
    this.o.state.resolveForLegacyAccess(domain, pending.message.ref, now);
  }

  private finishLegacy(pending: PendingLegacy, resolved: { domain: string; ips: readonly IpAddr[] } | undefined, now: number): void {
    const { state, node } = this.o;
    if (pending.kind === 'allowAccess') {
      const m = pending.message;
      const info = clientInfo(m.clientId, m.clientIpv4, m.clientIpv6);
      if (info === undefined) return;
      // A failed resolution still grants access, with nothing to translate to (the reference does the same).
      const nat = m.payload && { domain: m.payload.name, proxyIps: parseIps(m.payload.proxyIps), resolvedIps: resolved?.ips ?? [] };
      const result = state.allowAccess(info, toPolicyResource(m.resource), this.expiry(m.expiresAt, now), nat, now);
      if (!result.ok) log.warn('Failed to allow access', { cid: m.clientId, error: result.error });
      return;
    }
    const m = pending.message;
    const { peer, payload } = m.client;
    const local = { ufrag: randomIceText(this.o.rng, 4), password: randomIceText(this.o.rng, 22) };
    node.removeConnection(m.client.id);
    const upsert = node.upsertConnection(
      m.client.id,
      {
        localCredentials: local,
        remoteCredentials: { ufrag: payload.iceParameters.username, password: payload.iceParameters.password },
        remotePublicKey: peer.publicKey.bytes,
        presharedKey: peer.presharedKey.bytes,
      },
      now,
    );
    if (upsert === 'noTurnServers') {
      this.o.portal.reconnect();
      return;
    }
    const info = clientInfo(m.client.id, peer.ipv4, peer.ipv6);
    const nat = payload.domain && resolved && { domain: payload.domain.name, proxyIps: parseIps(payload.domain.proxyIps), resolvedIps: resolved.ips };
    const result = info === undefined ? { ok: false as const, error: 'invalid client addresses' } : state.allowAccess(info, toPolicyResource(m.resource), this.expiry(m.expiresAt, now), nat, now);
    if (!result.ok) {
      log.warn('Failed to accept legacy connection', { cid: m.client.id, error: result.error });
      node.removeConnection(m.client.id);
      return;
    }
    this.sendToPortal(encodeEgress({ kind: 'connectionReady', ref: m.ref, iceParameters: { username: local.ufrag, password: local.password } }));
  }

  private expiry(expiresAt: number | undefined, now: number): number | undefined {
    return expiresAtToMonotonic(expiresAt, now, this.o.wallClock());
  }

  // --- outputs ---

  private flush(now: number): void {
    const { node, state } = this.o;
    for (let packet = state.pollClientPacket(); packet !== undefined; packet = state.pollClientPacket()) {
      this.sendToClient(packet.clientId, packet.packet, now);
    }
    for (let event = state.pollEvent(); event !== undefined; event = state.pollEvent()) {
      switch (event.type) {
        case 'resolve':
          this.resolve(event.domain);
          break;
        case 'legacyResolution': {
          const pending = this.pendingLegacy.get(event.requestId);
          this.pendingLegacy.delete(event.requestId);
          if (pending === undefined) break;
          if (event.ips === undefined && pending.kind === 'requestConnection') {
            log.debug('DNS resolution failed; not answering the legacy connection request', { domain: event.domain });
            break;
          }
          this.finishLegacy(pending, event.ips === undefined ? undefined : { domain: event.domain, ips: event.ips }, now);
          break;
        }
        case 'clientRemoved':
          this.o.flowLogs?.removeClient(event.clientId);
          if (event.reason === 'goodbye') node.removeConnection(event.clientId);
          else node.closeConnection(event.clientId, makeGoodbyePacket(), now);
          break;
      }
    }
    for (let event = node.pollEvent(); event !== undefined; event = node.pollEvent()) {
      switch (event.kind) {
        case 'newIceCandidates':
          if (this.held !== undefined) this.hold(event.connection, event.candidates, 'added');
          else this.sendToPortal(encodeEgress({ kind: 'broadcastIceCandidates', clientIds: [event.connection as ClientId], candidates: event.candidates }));
          break;
        case 'invalidatedIceCandidates':
          if (this.held !== undefined) this.hold(event.connection, event.candidates, 'removed');
          else this.sendToPortal(encodeEgress({ kind: 'broadcastInvalidatedIceCandidates', clientIds: [event.connection as ClientId], candidates: event.candidates }));
          break;
        case 'connectionFailed':
          // The policy state stays: a client that connects again keeps its authorizations (1.6.0);
          // only the candidates held for it are forgotten.
          this.held?.delete(event.connection);
          break;
        case 'connectionEstablished':
          log.debug('WireGuard session established', { cid: event.connection });
          break;
        case 'noRelays':
          // 1.6.0 asks for a new set (the portal answers `relays_presence`); a 1.4.13 portal has no such message.
          if (this.portalDialect === 'v2') this.sendToPortal(encodeEgress({ kind: 'noRelays' }));
          break;
      }
    }
    for (let transmit = node.pollTransmit(); transmit !== undefined; transmit = node.pollTransmit()) this.sendDatagram(transmit);
    this.o.flowLogs?.flush();
    this.o.sockets.v4?.flush();
    this.o.sockets.v6?.flush();
    this.armTimer(now);
  }

  /**
   * Holds one connection's candidate changes while the portal is down: an added candidate cancels
   * a held removal of it; a removed candidate that was only held as added is never announced.
   */
  private hold(connection: string, candidates: readonly string[], kind: 'added' | 'removed'): void {
    const held = this.held!;
    let changes = held.get(connection);
    if (changes === undefined) {
      changes = { added: new Set(), removed: new Set() };
      held.set(connection, changes);
    }
    for (const candidate of candidates) {
      if (kind === 'added') {
        changes.removed.delete(candidate);
        changes.added.add(candidate);
      } else if (!changes.added.delete(candidate)) {
        changes.removed.add(candidate);
      }
    }
  }

  private sendToClient(clientId: string, packet: Uint8Array, now: number): void {
    const transmit = this.o.node.encapsulate(clientId, packet, now);
    if (transmit !== undefined) this.sendDatagram(transmit);
  }

  private sendDatagram(transmit: Transmit): void {
    if (sendTransmit(this.o.sockets, transmit) === 'notConnected' && log.enabled(Level.Debug)) {
      log.debug('No socket for the destination family', { family: transmit.destination.family });
    }
  }

  private writeToTun(packet: Uint8Array): void {
    if (this.o.validateChecksums) validatePacketChecksums(packet);
    if (this.o.tun.writeBatch === undefined) {
      this.o.tun.write(packet);
      return;
    }
    this.tunBatch[this.tunBatchCount++] = packet;
  }

  private writeTunBatch(): void {
    if (this.tunBatchCount === 0) return;
    const count = this.tunBatchCount;
    this.tunBatchCount = 0;
    this.o.tun.writeBatch!(this.tunBatch, count);
  }

  private sendToPortal(message: { event: string; payload: Readonly<Record<string, unknown>> }): void {
    this.o.portal.send(message.event, message.payload);
  }

  private resolve(domain: string): void {
    this.o.resolver.resolve(domain).then(
      (addresses) => this.afterResolution(domain, parseIps(addresses)),
      (error: unknown) => {
        log.debug('DNS resolution failed', { domain, error: errorChain(error) });
        this.afterResolution(domain, undefined);
      },
    );
  }

  private afterResolution(domain: string, ips: readonly IpAddr[] | undefined): void {
    if (this.stopped) return;
    this.resolved.push({ domain, ips });
    if (!this.resolutionTurnScheduled) this.handleResolved();
  }

  /** Handles finished resolutions up to this turn's budget; the rest wait for the next turn. */
  private handleResolved(): void {
    const now = this.o.clock();
    for (let next = this.resolved.peek(); next !== undefined; next = this.resolved.peek()) {
      if (this.resolutionsThisTurn >= RESOLUTIONS_PER_TURN) {
        this.resolutionTurnScheduled = true;
        this.defer(this.onResolutionTurn);
        break;
      }
      this.resolved.shift();
      this.resolutionsThisTurn++;
      this.o.state.handleDnsResolution(next.domain, next.ips, now);
    }
    this.flush(now);
    this.inputDone('resolutions', now);
  }

  private readonly onResolutionTurn = (): void => {
    this.resolutionTurnScheduled = false;
    this.resolutionsThisTurn = 0;
    if (!this.stopped) this.handleResolved();
  };

  /** Records how long an input took since `startedAt` (the clock read when it began). */
  private inputDone(kind: InputKind, startedAt: number): void {
    const took = this.o.clock() - startedAt;
    if (took > this.work.maxInputMs) this.work.maxInputMs = took;
    if (took <= SLOW_INPUT_MS) return;
    this.work.slowInputs++;
    const suppressed = this.slowInputWarnings.allow(kind, startedAt);
    if (suppressed !== undefined) log.warn('An input kept the event loop busy', { input: kind, ms: Math.round(took), suppressed });
  }

  /**
   * Arms the one timer for the earliest deadline. Both state machines answer `pollTimeout` in O(1)
   * (their deadlines live in heaps), so this costs the same after every input whatever the number
   * of clients; a timer that fires early finds nothing due and is re-armed.
   */
  private armTimer(now: number): void {
    const node = this.o.node.pollTimeout() ?? Infinity;
    const state = this.o.state.pollTimeout() ?? Infinity;
    const flows = this.o.flowLogs?.pollTimeout() ?? Infinity;
    const at = Math.min(node, state, flows);
    if (at === Infinity || at >= this.timerAt) return;
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timerAt = at;
    this.timer = this.setTimer(this.onTimer, Math.max(0, Math.ceil(at - now)));
  }
}

function turnRelays(relays: readonly Relay[]): RelayServer[] {
  const entries = [];
  for (const relay of relays) {
    if (relay.kind === 'turn') entries.push({ id: relay.id, addr: relay.addr, username: relay.username, password: relay.password });
  }
  return mergeRelayEntries(entries);
}

export function toPolicyResource(resource: ResourceDescription): PolicyResource {
  if (resource.kind === 'internet') return { type: 'internet', id: resource.id };
  return {
    type: resource.kind,
    id: resource.id,
    address: resource.address,
    filters: resource.filters.map((f) =>
      f.kind === 'icmp' ? { protocol: 'icmp' as const } : { protocol: f.kind, portRangeStart: f.portRangeStart, portRangeEnd: f.portRangeEnd },
    ),
  };
}

function clientInfo(id: string, ipv4Text: string, ipv6Text: string): { id: string; ipv4: IpAddr; ipv6: IpAddr } | undefined {
  const ipv4 = parseIp(ipv4Text);
  const ipv6 = parseIp(ipv6Text);
  if (ipv4 === undefined || ipv6 === undefined) return undefined;
  return { id, ipv4, ipv6 };
}

function parseIps(texts: readonly string[]): IpAddr[] {
  const out: IpAddr[] = [];
  for (const text of texts) {
    const ip = parseIp(text);
    if (ip !== undefined) out.push(ip);
  }
  return out;
}

const ICE_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomIceText(rng: RandomSource, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += ICE_ALPHABET[rng.u32() % ICE_ALPHABET.length];
  return text;
}

