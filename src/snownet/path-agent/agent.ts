// The path agent of an ICE-less connection (spec gateway-1.6 §3.9): it picks which (local, remote)
// socket pair a WireGuard connection sends on, its primary. WireGuard owns the session and decides
// liveness; the agent never declares a connection dead.
//
// Pipeline:
//   candidates  local x remote, same family only, form pairs (keyed by the socket we send from and
//               the peer's address).
//   bootstrap   before any session exists, the initiator's handshake initiation (it reaches the agent
//               through `handleOutbound`) is fanned out over every pair involving a relay, with a
//               one-time fast retransmit ladder per pair. The responder answers each initiation on
//               the pair it arrived on and replays that answer, from a cache, for byte-identical
//               copies arriving on other pairs. The pair of the initiation or response that creates
//               the session becomes the preliminary primary.
//   probing     once a session exists every pair sends ICMPv6 echo requests inside WireGuard
//               (`probe.ts`); a reply measures the pair's RTT and may promote it to primary (never
//               demote: a better bucket always wins, the same bucket only by a clear RTT margin).
//               A pair goes quiet after its budget unless it is the primary (slow keepalive) or no
//               primary exists (every pair keeps hunting).
//   distress    the second unanswered re-key of ours, or the second peer initiation without peer
//               data in between, clears the primary and restarts probing; so does any new candidate.
//
// Inputs: `decapsulate` (every WireGuard datagram of the connection, with the pair it arrived on),
// `handleOutbound` (every datagram the WireGuard tunnel produces on its own), candidate commands,
// `handleTimeout`. Outputs: `pollTransmit` (WireGuard datagrams to send as they are, or probe
// packets to seal first, each on a named pair), `pollEvent` (primary changes), `pollTimeout`.
// Every deadline lives in a heap; nothing the agent keeps grows without bound.
//
// Deviations from the reference:
// - peer data resets the peer re-key count only once WireGuard has authenticated it (the reference
//   counts any datagram shaped like transport data);
// - a cookie reply answering our handshake response is sent back on its arrival pair and changes
//   nothing (the reference would treat it as an accepted response);
// - a pair that disappears takes its fan-out and retransmit state with it (the reference keeps
//   them by address until the bootstrap ends), so a pair that comes back is fanned out to again;
// - local candidates are capped (MAX_LOCAL_CANDIDATES).
import { createLogger, Level } from '../../log/index.ts';
import { bytesEqual } from '../../ip/bytes.ts';
import { DeadlineQueue } from '../../util/deadline-queue.ts';
import { sameSocketAddr, socketAddrKey, type SocketAddr } from '../../util/socket-addr.ts';
import {
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  messageType,
  type DecapsulateResult,
  type OpenBatch,
} from '../../wireguard/index.ts';
import {
  isFamilyMatched,
  samePathCandidate,
  sendSocket,
  serverReflexiveCandidate,
  type PathCandidate,
  type PathCandidateKind,
} from './candidate.ts';
import {
  BOOTSTRAP_RETRANSMIT_LADDER,
  MAX_LOCAL_CANDIDATES,
  MAX_PEER_REFLEXIVE,
  MAX_REMOTE_PER_KIND,
  PRIMARY_HYSTERESIS_FLOOR,
  PRIMARY_HYSTERESIS_FRACTION,
  PRIMARY_KEEPALIVE,
  PROBE_BUDGET,
  PROBE_BURST_GAPS,
  PROBE_INTERVAL,
  REKEY_DISTRESS_ATTEMPTS,
  RESPONDER_DEDUP_TTL,
} from './constants.ts';
import { RingQueue } from '../../util/ring-queue.ts';
import { makeProbeReply, makeProbeRequest, parseProbe } from './probe.ts';
import { pairBucket } from './score.ts';

/** What the agent needs of the connection's WireGuard tunnel (`Tunnel` has it). */
export interface PathTunnel {
  decapsulate(datagram: Uint8Array, sourceIp: string, now: number, batch?: OpenBatch): DecapsulateResult;
  pollTransmit(): Uint8Array | undefined;
}

/** A socket pair: `local` is the address we send from (our relayed address for relay candidates). */
export interface PathPair {
  readonly local: SocketAddr;
  readonly remote: SocketAddr;
}

/**
 * A datagram for a pair. `wireguard`: a WireGuard datagram, sent as it is (the same bytes may be
 * queued for several pairs). `probe`: an IP packet the connection seals with its session first.
 */
export interface PathTransmit extends PathPair {
  readonly kind: 'wireguard' | 'probe';
  readonly payload: Uint8Array;
}

export type PathEvent = { readonly kind: 'primaryChanged'; readonly local: SocketAddr; readonly remote: SocketAddr };

/**
 * What `decapsulate` did with a datagram, beyond the tunnel's own outcomes: a decrypted IP packet
 * for the TUN device; `probe`: a probe consumed; `replayed`: a cached response sent again for a
 * duplicate initiation; `duplicate`: a handshake message seen before, dropped.
 */
export type PathInbound = DecapsulateResult | 'probe' | 'replayed' | 'duplicate';

export interface PathAgentStats {
  probesSent: number;
  probeRepliesMatched: number;
  initiationsFannedOut: number;
  bootstrapRetransmits: number;
  responsesReplayed: number;
  duplicatesDropped: number;
  droppedWithoutPrimary: number;
}

interface Pair extends PathPair {
  readonly key: string;
  localKind: PathCandidateKind;
  remoteKind: PathCandidateKind;
  localFamilyMatched: boolean;
  /** The ICMP identifier of this pair's probes; a pair created again at the same addresses gets a new one. */
  id: number;
  nextSeq: number;
  /** Smoothed RTT (mean of the previous value and the new sample); undefined until measured. */
  rtt: number | undefined;
  /** Probes awaiting a reply, oldest first, at most PROBE_BUDGET. */
  readonly inflight: { seq: number; sentAt: number }[];
  probesSent: number;
  /** Index into PROBE_BURST_GAPS of the next gap (past its end: PROBE_INTERVAL). */
  gapIndex: number;
  /** The current bootstrap initiation went out on this pair. */
  fanned: boolean;
  /** Next step of the bootstrap retransmit ladder; undefined until the pair's first fan-out. */
  ladderStep: number | undefined;
}

interface CachedResponse {
  readonly initiation: Uint8Array;
  readonly response: Uint8Array;
  readonly expiresAt: number;
}

const log = createLogger('path-agent');

export class PathAgent {
  readonly stats: PathAgentStats = {
    probesSent: 0,
    probeRepliesMatched: 0,
    initiationsFannedOut: 0,
    bootstrapRetransmits: 0,
    responsesReplayed: 0,
    duplicatesDropped: 0,
    droppedWithoutPrimary: 0,
  };

  private locals: PathCandidate[] = [];
  private remotes: PathCandidate[] = [];
  private readonly pairs = new Map<string, Pair>();
  private readonly probeSchedule = new DeadlineQueue<Pair>();
  private readonly ladderSchedule = new DeadlineQueue<Pair>();
  /** Addresses (socketAddrKey) of remotes learnt from handshakes or probes rather than signalled. */
  private readonly peerReflexive = new Set<string>();
  private primaryPair: Pair | undefined;
  private nextPairId = 0;

  /** A handshake was seen, so a WireGuard session exists for probes to ride. Survives `rebuild`. */
  private hasSession = false;
  /** The initiation to fan out while bootstrapping. */
  private bootstrapInitiation: Uint8Array | undefined;
  private unansweredRekeys = 0;
  private peerRekeys = 0;
  private cachedResponse: CachedResponse | undefined;
  /** The last accepted initiation: a copy arriving after its cached response expired is dropped. */
  private lastInitiation: Uint8Array | undefined;
  /** The last accepted response: copies of it (answers to our fanned-out copies) are dropped. */
  private lastResponse: Uint8Array | undefined;

  private readonly transmits = new RingQueue<PathTransmit>();
  private readonly events = new RingQueue<PathEvent>();
  private lastNow = 0;

  // --- candidates ---

  /** Returns whether the candidate is new. A new candidate may offer a better path: re-probe. */
  addLocalCandidate(candidate: PathCandidate, now: number): boolean {
    this.lastNow = now;
    if (this.locals.some((c) => samePathCandidate(c, candidate))) return false;
    if (this.locals.length >= MAX_LOCAL_CANDIDATES) {
      log.debug('Ignoring local candidate over the cap', { address: socketAddrKey(candidate.address) });
      return false;
    }
    this.locals.push(candidate);
    for (const remote of this.remotes) this.addPair(candidate, remote, now);
    this.clearAndReprobe(now);
    return true;
  }

  /** Returns whether the candidate is new (a signalled candidate replacing a peer-reflexive one is not). */
  addRemoteCandidate(candidate: PathCandidate, now: number): boolean {
    this.lastNow = now;
    const addressKey = socketAddrKey(candidate.address);
    if (this.peerReflexive.has(addressKey)) {
      const index = this.remotes.findIndex((c) => sameSocketAddr(c.address, candidate.address));
      if (index !== -1) {
        // The signalled form replaces the learnt one in place, keeping the pairs' measurements.
        this.peerReflexive.delete(addressKey);
        this.remotes[index] = candidate;
        for (const pair of this.pairs.values()) if (sameSocketAddr(pair.remote, candidate.address)) pair.remoteKind = candidate.kind;
        return false;
      }
    }
    if (this.remotes.some((c) => samePathCandidate(c, candidate))) return false;

    let sameKind = 0;
    for (const c of this.remotes) if (c.kind === candidate.kind) sameKind++;
    if (sameKind >= MAX_REMOTE_PER_KIND) {
      const oldest = this.remotes.find((c) => c.kind === candidate.kind)!;
      log.debug('Evicting the oldest remote candidate of its kind', { kind: candidate.kind, address: socketAddrKey(oldest.address) });
      this.removeRemoteCandidate(oldest, now);
    }

    this.remotes.push(candidate);
    for (const local of this.locals) this.addPair(local, candidate, now);
    this.clearAndReprobe(now);
    return true;
  }

  removeLocalCandidate(candidate: PathCandidate, now: number): boolean {
    this.lastNow = now;
    const index = this.locals.findIndex((c) => samePathCandidate(c, candidate));
    if (index === -1) return false;
    this.locals.splice(index, 1);
    const socket = sendSocket(candidate);
    const primaryGone = this.primaryPair !== undefined && sameSocketAddr(this.primaryPair.local, socket);
    for (const pair of [...this.pairs.values()]) if (sameSocketAddr(pair.local, socket)) this.deletePair(pair);
    if (primaryGone) this.clearAndReprobe(now);
    return true;
  }

  removeRemoteCandidate(candidate: PathCandidate, now: number): boolean {
    this.lastNow = now;
    const index = this.remotes.findIndex((c) => samePathCandidate(c, candidate));
    if (index === -1) return false;
    this.remotes.splice(index, 1);
    this.peerReflexive.delete(socketAddrKey(candidate.address));
    const primaryGone = this.primaryPair !== undefined && sameSocketAddr(this.primaryPair.remote, candidate.address);
    for (const pair of [...this.pairs.values()]) if (sameSocketAddr(pair.remote, candidate.address)) this.deletePair(pair);
    if (primaryGone) this.clearAndReprobe(now);
    return true;
  }

  localCandidates(): readonly PathCandidate[] {
    return this.locals;
  }

  remoteCandidates(): readonly PathCandidate[] {
    return this.remotes;
  }

  /**
   * Starts over after a roam or a relay replacement: keeps the local candidates `keep` accepts and
   * every remote; forgets pairs, primary, bootstrap and caches. The WireGuard session survives, so
   * probing resumes at once on the new pairs, with no handshake.
   */
  rebuild(keep: (candidate: PathCandidate) => boolean, now: number): void {
    this.lastNow = now;
    const locals = this.locals.filter(keep);
    const remotes = this.remotes;
    this.locals = [];
    this.remotes = [];
    this.pairs.clear();
    this.probeSchedule.clear();
    this.ladderSchedule.clear();
    this.peerReflexive.clear();
    this.primaryPair = undefined;
    this.bootstrapInitiation = undefined;
    this.unansweredRekeys = 0;
    this.peerRekeys = 0;
    this.cachedResponse = undefined;
    this.lastInitiation = undefined;
    this.lastResponse = undefined;
    this.transmits.clear();
    this.events.clear();
    for (const local of locals) this.addLocalCandidate(local, now);
    for (const remote of remotes) this.addRemoteCandidate(remote, now);
  }

  // --- paths ---

  primary(): PathPair | undefined {
    return this.primaryPair;
  }

  /** Whether `address` is one of the peer's relay candidates (the peer's end of a pair is relayed). */
  remoteIsRelayed(address: SocketAddr): boolean {
    return this.remotes.some((c) => c.kind === 'relay' && sameSocketAddr(c.address, address));
  }

  pairCount(): number {
    return this.pairs.size;
  }

  /** The measured smoothed RTT of a pair (for diagnostics and tests). */
  pairRtt(local: SocketAddr, remote: SocketAddr): number | undefined {
    return this.pairs.get(pairKey(local, remote))?.rtt;
  }

  // --- WireGuard traffic ---

  /**
   * Routes a datagram the tunnel produced on its own: a bootstrap initiation is fanned out over the
   * relay pairs; a re-key initiation, data and keepalives go on the primary (dropped without one:
   * WireGuard retries once a path exists).
   */
  handleOutbound(datagram: Uint8Array, now: number): void {
    this.lastNow = now;
    const type = messageType(datagram);
    if (type === MESSAGE_INITIATION && !this.hasSession) {
      this.lastResponse = undefined;
      this.bootstrapInitiation = datagram;
      for (const pair of this.pairs.values()) pair.fanned = false;
      if (log.enabled(Level.Debug)) log.debug('Fanning out a bootstrap handshake initiation', { pairs: this.pairs.size });
      this.fanOut(now);
      return;
    }
    if (type === MESSAGE_INITIATION) {
      this.unansweredRekeys++;
      this.sendOnPrimary(datagram);
      // Fires once, on the crossing: once the primary is cleared, probing finds the next one.
      if (this.primaryPair !== undefined && this.unansweredRekeys === REKEY_DISTRESS_ATTEMPTS) {
        log.debug('Re-keys unanswered: clearing the primary and probing again');
        this.clearAndReprobe(now);
      }
      return;
    }
    this.sendOnPrimary(datagram);
  }

  /**
   * Handles one WireGuard datagram of this connection that arrived on `pair` (for a relayed
   * datagram, `local` is our relayed address). Handshake messages are authenticated by the tunnel
   * before any state changes; answers go back on the arrival pair. With `batch`, a data message
   * is only queued ('pending'); its opened form comes back through `receiveOpened`.
   */
  decapsulate(tunnel: PathTunnel, datagram: Uint8Array, pair: PathPair, now: number, batch?: OpenBatch): PathInbound {
    this.lastNow = now;
    switch (messageType(datagram)) {
      case MESSAGE_TRANSPORT: {
        const result = tunnel.decapsulate(datagram, pair.remote.address, now, batch);
        if (result instanceof Uint8Array || result === 'keepalive') return this.receiveOpened(result, pair, now);
        return result;
      }
      case MESSAGE_INITIATION:
        return this.receiveInitiation(tunnel, datagram, pair, now);
      case MESSAGE_RESPONSE:
        return this.receiveResponse(tunnel, datagram, pair, now);
      case MESSAGE_COOKIE_REPLY:
        return tunnel.decapsulate(datagram, pair.remote.address, now);
      default:
        return 'malformed';
    }
  }

  /** A data message of the peer, authenticated and opened: a packet for the caller, or a probe consumed. */
  receiveOpened(opened: Uint8Array | 'keepalive', pair: PathPair, now: number): PathInbound {
    this.lastNow = now;
    this.peerRekeys = 0;
    return opened === 'keepalive' ? opened : this.receivePacket(opened, pair, now);
  }

  // --- sans-IO outputs and time ---

  pollTransmit(): PathTransmit | undefined {
    return this.transmits.shift();
  }

  pollEvent(): PathEvent | undefined {
    return this.events.shift();
  }

  pollTimeout(): number | undefined {
    let earliest = this.hasSession ? this.probeSchedule.peekTime() : this.ladderSchedule.peekTime();
    const cached = this.cachedResponse;
    if (cached !== undefined && cached.expiresAt < earliest) earliest = cached.expiresAt;
    if ((this.transmits.length > 0 || this.events.length > 0) && this.lastNow < earliest) earliest = this.lastNow;
    return earliest === Infinity ? undefined : earliest;
  }

  handleTimeout(now: number): void {
    this.lastNow = now;
    if (this.hasSession) this.fireProbes(now);
    else this.fireRetransmits(now);
    if (this.cachedResponse !== undefined && now >= this.cachedResponse.expiresAt) this.cachedResponse = undefined;
  }

  // --- internals: inbound ---

  private receiveInitiation(tunnel: PathTunnel, datagram: Uint8Array, pair: PathPair, now: number): PathInbound {
    const cached = this.cachedResponse;
    if (cached !== undefined && now < cached.expiresAt && sameBytes(cached.initiation, datagram)) {
      this.stats.responsesReplayed++;
      this.queue('wireguard', pair, cached.response);
      return 'replayed';
    }
    if (this.lastInitiation !== undefined && sameBytes(this.lastInitiation, datagram)) {
      this.stats.duplicatesDropped++;
      return 'duplicate';
    }

    const result = this.authenticate(tunnel, datagram, pair, now);
    if (result !== 'handshake') return result;
    const response = tunnel.pollTransmit();

    const hadSession = this.hasSession;
    const initiation = datagram.slice();
    this.lastInitiation = initiation;
    this.registerPeerReflexive(pair, now);
    this.onSessionEstablished(now);
    // The establishing initiation came over the relay fan-out, the worst tier, so adopting its pair
    // can only be improved on by probing. A re-key initiation rides the peer's primary, which we
    // have not validated for sending: it never moves ours.
    if (!hadSession && this.primaryPair === undefined) {
      const arrival = this.pairs.get(pairKey(pair.local, pair.remote));
      if (arrival !== undefined) this.setPrimary(arrival);
    }
    this.peerRekeys++;
    if (this.primaryPair !== undefined && this.peerRekeys === REKEY_DISTRESS_ATTEMPTS) {
      log.debug('Peer re-keyed without hearing us: clearing the primary and probing again');
      this.clearAndReprobe(now);
    }

    if (response !== undefined) {
      this.cachedResponse = { initiation, response, expiresAt: now + RESPONDER_DEDUP_TTL };
      this.queue('wireguard', pair, response);
    }
    for (let more = tunnel.pollTransmit(); more !== undefined; more = tunnel.pollTransmit()) this.handleOutbound(more, now);
    return 'handshake';
  }

  private receiveResponse(tunnel: PathTunnel, datagram: Uint8Array, pair: PathPair, now: number): PathInbound {
    if (this.lastResponse !== undefined && sameBytes(this.lastResponse, datagram)) {
      this.stats.duplicatesDropped++;
      return 'duplicate';
    }
    const result = this.authenticate(tunnel, datagram, pair, now);
    if (result !== 'handshake') return result;

    this.endBootstrap();
    this.unansweredRekeys = 0;
    this.lastResponse = datagram.slice();
    this.onSessionEstablished(now);
    // A response proves its pair works both ways; without an RTT it can only improve the primary by bucket.
    const arrival = this.pairs.get(pairKey(pair.local, pair.remote));
    if (arrival !== undefined) {
      const primary = this.primaryPair;
      if (primary === undefined || (arrival !== primary && bucketOf(arrival) < bucketOf(primary))) this.setPrimary(arrival);
    }
    // Queued data or the keepalive that confirms the session.
    for (let more = tunnel.pollTransmit(); more !== undefined; more = tunnel.pollTransmit()) this.handleOutbound(more, now);
    return 'handshake';
  }

  private receivePacket(packet: Uint8Array, arrival: PathPair, now: number): PathInbound {
    const probe = parseProbe(packet);
    if (probe === undefined) return packet;
    if (probe.kind === 'request') {
      this.queue('probe', arrival, makeProbeReply(probe.id, probe.seq));
      this.registerPeerReflexive(arrival, now);
      // A triggered check: the request shows the peer's filter is open now, so probing back
      // completes the punch. Only for a pair gone quiet unmeasured; probing ones would ping-pong.
      const pair = this.pairs.get(pairKey(arrival.local, arrival.remote));
      if (pair !== undefined && !this.probeSchedule.has(pair) && pair.rtt === undefined) this.restartProbing(pair, now);
      return 'probe';
    }
    const pair = this.pairs.get(pairKey(arrival.local, arrival.remote));
    if (pair === undefined || pair.id !== probe.id) return 'probe';
    const index = pair.inflight.findIndex((p) => p.seq === probe.seq);
    if (index === -1) return 'probe';
    const sample = Math.max(0, now - pair.inflight[index]!.sentAt);
    pair.inflight.splice(index, 1);
    pair.rtt = pair.rtt === undefined ? sample : (pair.rtt + sample) / 2;
    this.stats.probeRepliesMatched++;
    this.selectPrimary();
    return 'probe';
  }

  /** WireGuard checks a handshake message; under load its cookie reply, which establishes nothing, goes back on the arrival pair. */
  private authenticate(tunnel: PathTunnel, datagram: Uint8Array, pair: PathPair, now: number): DecapsulateResult {
    const result = tunnel.decapsulate(datagram, pair.remote.address, now);
    if (result === 'underLoad') {
      for (let reply = tunnel.pollTransmit(); reply !== undefined; reply = tunnel.pollTransmit()) this.queue('wireguard', pair, reply);
    }
    return result;
  }

  // --- internals: pairs and probing ---

  private addPair(local: PathCandidate, remote: PathCandidate, now: number): void {
    const localSocket = sendSocket(local);
    if (localSocket.family !== remote.address.family) return;
    const key = pairKey(localSocket, remote.address);
    let pair = this.pairs.get(key);
    if (pair === undefined) {
      pair = {
        key,
        local: localSocket,
        remote: remote.address,
        localKind: local.kind,
        remoteKind: remote.kind,
        localFamilyMatched: isFamilyMatched(local),
        id: 0,
        nextSeq: 0,
        rtt: undefined,
        inflight: [],
        probesSent: 0,
        gapIndex: 0,
        fanned: false,
        ladderStep: undefined,
      };
      this.pairs.set(key, pair);
    } else {
      // A candidate sharing the pair's sockets replaces it: the pair starts over under a new id.
      pair.localKind = local.kind;
      pair.remoteKind = remote.kind;
      pair.localFamilyMatched = isFamilyMatched(local);
      pair.nextSeq = 0;
      pair.rtt = undefined;
      pair.inflight.length = 0;
      pair.probesSent = 0;
      this.probeSchedule.delete(pair);
    }
    pair.id = this.nextPairId;
    this.nextPairId = (this.nextPairId + 1) & 0xffff;
    if (this.hasSession) this.restartProbing(pair, now);
    else if (this.bootstrapInitiation !== undefined) this.fanOut(now);
  }

  private deletePair(pair: Pair): void {
    this.pairs.delete(pair.key);
    this.probeSchedule.delete(pair);
    this.ladderSchedule.delete(pair);
  }

  /** (Re)opens a pair's probing window: a fresh burst, no count, no RTT, nothing in flight. */
  private restartProbing(pair: Pair, now: number): void {
    pair.gapIndex = 0;
    pair.probesSent = 0;
    pair.rtt = undefined;
    pair.inflight.length = 0;
    this.probeSchedule.set(pair, now);
  }

  private fireProbes(now: number): void {
    for (let pair = this.probeSchedule.popDue(now); pair !== undefined; pair = this.probeSchedule.popDue(now)) {
      const seq = pair.nextSeq;
      pair.nextSeq = (pair.nextSeq + 1) & 0xffff;
      pair.inflight.push({ seq, sentAt: now });
      // A pathless pair hunts forever; a reply older than one budget no longer matters.
      if (pair.inflight.length > PROBE_BUDGET) pair.inflight.shift();
      pair.probesSent++;
      this.stats.probesSent++;
      this.queue('probe', pair, makeProbeRequest(pair.id, seq));

      if (this.primaryPair === undefined || pair.probesSent < PROBE_BUDGET) {
        const gap = pair.gapIndex < PROBE_BURST_GAPS.length ? PROBE_BURST_GAPS[pair.gapIndex]! : PROBE_INTERVAL;
        pair.gapIndex++;
        this.probeSchedule.set(pair, now + gap);
      } else if (pair === this.primaryPair) {
        this.probeSchedule.set(pair, now + PRIMARY_KEEPALIVE);
      }
    }
  }

  private clearAndReprobe(now: number): void {
    const former = this.primaryPair;
    this.primaryPair = undefined;
    // Without a session there is nothing to probe; `onSessionEstablished` starts every pair.
    if (!this.hasSession) return;
    for (const pair of this.pairs.values()) {
      const discovering = this.probeSchedule.has(pair) && pair.probesSent < PROBE_BUDGET;
      if (pair === former || !discovering) this.restartProbing(pair, now);
    }
  }

  /** Runs on every probe reply: probes may promote, never demote. */
  private selectPrimary(): void {
    let best: Pair | undefined;
    let bestBucket = Infinity;
    for (const pair of this.pairs.values()) {
      if (pair.rtt === undefined) continue;
      const bucket = bucketOf(pair);
      if (bucket < bestBucket || (bucket === bestBucket && pair.rtt < best!.rtt!)) {
        best = pair;
        bestBucket = bucket;
      }
    }
    if (best === undefined) return;
    const primary = this.primaryPair;
    if (primary === undefined) {
      this.setPrimary(best);
      return;
    }
    if (best === primary) return;
    const currentBucket = bucketOf(primary);
    if (bestBucket < currentBucket) {
      this.setPrimary(best);
      return;
    }
    // The same bucket: only a clear RTT win switches, so jitter between two live pairs does not flap.
    if (bestBucket === currentBucket && primary.rtt !== undefined) {
      const margin = Math.max(PRIMARY_HYSTERESIS_FLOOR, primary.rtt * PRIMARY_HYSTERESIS_FRACTION);
      if (best.rtt! + margin < primary.rtt) this.setPrimary(best);
    }
  }

  private setPrimary(pair: Pair): void {
    const from = this.primaryPair;
    this.primaryPair = pair;
    // Distress is counted per primary: counts from a previous path must not trip the new one.
    this.unansweredRekeys = 0;
    this.peerRekeys = 0;
    if (log.enabled(Level.Debug)) {
      log.debug('Primary path changed', { from: from?.key, local: socketAddrKey(pair.local), remote: socketAddrKey(pair.remote), rtt: pair.rtt });
    }
    this.events.push({ kind: 'primaryChanged', local: pair.local, remote: pair.remote });
  }

  private registerPeerReflexive(arrival: PathPair, now: number): void {
    // The peer reached us from a mapping it did not signal (a symmetric NAT): a new remote candidate.
    if (this.peerReflexive.size >= MAX_PEER_REFLEXIVE) return;
    if (this.remotes.some((c) => sameSocketAddr(c.address, arrival.remote))) return;
    if (log.enabled(Level.Debug)) log.debug('Learnt a peer-reflexive remote', { remote: socketAddrKey(arrival.remote) });
    this.peerReflexive.add(socketAddrKey(arrival.remote));
    this.addRemoteCandidate(serverReflexiveCandidate(arrival.remote, arrival.remote), now);
  }

  private onSessionEstablished(now: number): void {
    if (this.hasSession) return;
    this.hasSession = true;
    this.endBootstrap();
    for (const pair of this.pairs.values()) this.restartProbing(pair, now);
  }

  // --- internals: bootstrap ---

  private fanOut(now: number): void {
    const initiation = this.bootstrapInitiation;
    if (initiation === undefined || this.hasSession) return;
    for (const pair of this.pairs.values()) {
      if (pair.fanned || (pair.localKind !== 'relay' && pair.remoteKind !== 'relay')) continue;
      pair.fanned = true;
      this.stats.initiationsFannedOut++;
      this.queue('wireguard', pair, initiation);
      // The fast ladder is armed once per pair; a later initiation does not re-arm it.
      if (pair.ladderStep === undefined) {
        pair.ladderStep = 0;
        this.ladderSchedule.set(pair, now + BOOTSTRAP_RETRANSMIT_LADDER[0]!);
      }
    }
  }

  private fireRetransmits(now: number): void {
    const initiation = this.bootstrapInitiation;
    for (let pair = this.ladderSchedule.popDue(now); pair !== undefined; pair = this.ladderSchedule.popDue(now)) {
      if (initiation === undefined) continue;
      this.stats.bootstrapRetransmits++;
      this.queue('wireguard', pair, initiation);
      const step = pair.ladderStep! + 1;
      pair.ladderStep = step;
      if (step < BOOTSTRAP_RETRANSMIT_LADDER.length) this.ladderSchedule.set(pair, now + BOOTSTRAP_RETRANSMIT_LADDER[step]!);
    }
  }

  private endBootstrap(): void {
    this.bootstrapInitiation = undefined;
    this.ladderSchedule.clear();
  }

  // --- internals: output ---

  private sendOnPrimary(datagram: Uint8Array): void {
    const primary = this.primaryPair;
    if (primary === undefined) {
      this.stats.droppedWithoutPrimary++;
      return;
    }
    this.queue('wireguard', primary, datagram);
  }

  private queue(kind: PathTransmit['kind'], pair: PathPair, payload: Uint8Array): void {
    this.transmits.push({ kind, local: pair.local, remote: pair.remote, payload });
  }
}

function pairKey(local: SocketAddr, remote: SocketAddr): string {
  return `${socketAddrKey(local)} ${socketAddrKey(remote)}`;
}

function bucketOf(pair: Pair): number {
  return pairBucket(pair.localKind, pair.remoteKind, pair.localFamilyMatched, pair.local.family);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && bytesEqual(a, 0, b, 0, a.length);
}
