// A sans-IO ICE agent (RFC 8445, full ICE, one UDP component, trickle) behaving like the reference's
// str0m agent as snownet configures it.
//
// Pipeline: local candidates (host, relay) x remote candidates (trickled or peer-reflexive) form
// candidate pairs of the same family. Every surviving pair is checked forever on the schedule in
// `stun-timing.ts` (that doubles as consent and keepalive); a pair whose checks go unanswered for the
// ICE timeout is pruned. Incoming checks are answered, may create peer-reflexive candidates and queue a
// triggered check. The controlling side nominates its best succeeded pair by sending USE-CANDIDATE on
// it and selects it once such a check is answered; the controlled side selects the highest-priority
// pair the peer sent USE-CANDIDATE on, without waiting for its own check.
//
// Deviations from RFC 8445 (all as in the reference): no frozen state and no foundations-based
// unfreezing, nomination is not final, no end-of-candidates, checks never stop, no Failed state
// (a connection with nothing left to try is `disconnected`), error responses are ignored, and role
// conflicts are not resolved unless `resolveRoleConflicts` is set (then RFC 8445 §7.3.1.1 applies).
import { createLogger, Level } from '../log/index.ts';
import type { RandomSource } from '../util/random.ts';
import { RingQueue } from '../util/ring-queue.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import { socketAddrKey } from '../util/socket-addr.ts';
import {
  StunMethod,
  decodeStunMessage,
  encodeStunMessage,
  getAttribute,
  shortTermKey,
  verifyIntegrity,
} from '../stun/index.ts';
import type { StunAttribute, StunMessage } from '../stun/index.ts';
import {
  candidateFoundation,
  candidatePriority,
  fakeRelatedAddress,
  fallbackPriority,
  localPreferenceOf,
} from './candidate.ts';
import type { Candidate, CandidateKind } from './candidate.ts';
import {
  COMPONENT_ID,
  CROSS_FAMILY_RELAY_PENALTY,
  DEFAULT_CHECK_PACING,
  LOCAL_PREFERENCE_START,
  MAX_CANDIDATE_PAIRS,
  MAX_REMEMBERED_ATTEMPTS,
  MAX_STUN_STRING_BYTES,
  PRFLX_FOUNDATION,
} from './constants.ts';
import { ACTIVE_TIMING, failsAt, nextAttemptAt } from './stun-timing.ts';
import { TransactionIds, transactionWord } from './transaction-id.ts';
import type { Millis, StunTiming } from './stun-timing.ts';

export type IceRole = 'controlling' | 'controlled';

export interface IceCredentials {
  readonly ufrag: string;
  readonly password: string;
}

/**
 * How a datagram on a candidate pair travels. `direct`: from our local base straight to the peer.
 * `relay`: the TURN client must wrap it (ChannelData or Send) to `relay` so it leaves our relayed
 * address `relayed` towards `destination`.
 */
export type IcePath =
  | { readonly kind: 'direct'; readonly source: SocketAddr; readonly destination: SocketAddr }
  | {
      readonly kind: 'relay';
      readonly relay: SocketAddr;
      readonly relayed: SocketAddr;
      readonly destination: SocketAddr;
    };

export type IceTransmit =
  | {
      readonly kind: 'direct';
      readonly source: SocketAddr;
      readonly destination: SocketAddr;
      readonly payload: Uint8Array;
    }
  | {
      readonly kind: 'relay';
      readonly relay: SocketAddr;
      readonly relayed: SocketAddr;
      readonly destination: SocketAddr;
      readonly payload: Uint8Array;
    };

/**
 * new: nothing done yet. checking: pairs are being tried. connected: a pair is selected and others
 * still live. completed: a pair is selected and it is the only one. disconnected: nothing selected and
 * every pair has failed (never while either side has no candidates).
 */
export type IceConnectionState = 'new' | 'checking' | 'connected' | 'completed' | 'disconnected';

export type IceEvent =
  | { readonly kind: 'stateChanged'; readonly state: IceConnectionState }
  /** The selected (nominated) pair changed: send application data on `path` from now on. */
  | { readonly kind: 'nominated'; readonly local: Candidate; readonly remote: Candidate; readonly path: IcePath }
  /** The first authenticated STUN message from `source`: the peer may send application data from there. */
  | { readonly kind: 'discoveredRecv'; readonly source: SocketAddr }
  | { readonly kind: 'roleChanged'; readonly role: IceRole };

export interface IceAgentOptions {
  readonly role: IceRole;
  readonly local: IceCredentials;
  /** The peer's credentials; checks start once they are known (`setRemoteCredentials`). */
  readonly remote?: IceCredentials | undefined;
  readonly rng: RandomSource;
  readonly timing?: StunTiming | undefined;
  /** RFC 8445 Ta between two checks; 0 (the reference) sends every due check at once. */
  readonly checkPacing?: Millis | undefined;
  /** Apply RFC 8445 §7.3.1.1 (487 Role Conflict). The reference does not. */
  readonly resolveRoleConflicts?: boolean | undefined;
  /**
   * Writes `transactionTag` into the transaction id of every check, so that a node holding many agents
   * routes a response by `transactionIds.tagOf(id)`. Shared by the node's agents; one of its own otherwise.
   */
  readonly transactionIds?: TransactionIds | undefined;
  readonly transactionTag?: number | undefined;
}

export class IceAgent {
  private role: IceRole;
  private readonly ownCredentials: IceCredentials;
  private readonly localKey: Uint8Array;
  private remoteCredentials: IceCredentials | undefined;
  private remoteKey: Uint8Array | undefined;
  private readonly rng: RandomSource;
  private readonly tieBreaker: bigint;
  private readonly checkPacing: Millis;
  private readonly resolveRoleConflicts: boolean;
  private timing: StunTiming;

  private readonly locals: LocalEntry[] = [];
  private readonly localCounts = new Map<string, number>();
  private readonly remotes = new Map<string, RemoteEntry>();
  private pairs: Pair[] = [];
  private readonly transactionIds: TransactionIds;
  private readonly transactionTag: number;
  private readonly discoveredSources = new Set<string>();
  /** The earliest raw deadline of all pairs, valid unless `deadlineStale`: polls do not rescan the pairs. */
  private deadline: Millis = Infinity;
  private deadlineStale = true;

  private selected: Pair | undefined;
  private state: IceConnectionState = 'new';
  private lastNow: Millis = -Infinity;
  private lastCheckAt: Millis = -Infinity;

  private readonly transmits = new RingQueue<IceTransmit>();
  private readonly events = new RingQueue<IceEvent>();

  constructor(options: IceAgentOptions) {
    this.role = options.role;
    this.ownCredentials = options.local;
    this.localKey = shortTermKey(options.local.password);
    this.rng = options.rng;
    this.tieBreaker = (BigInt(options.rng.u32()) << 32n) | BigInt(options.rng.u32());
    this.timing = options.timing ?? ACTIVE_TIMING;
    this.checkPacing = options.checkPacing ?? DEFAULT_CHECK_PACING;
    this.resolveRoleConflicts = options.resolveRoleConflicts ?? false;
    this.transactionIds = options.transactionIds ?? new TransactionIds(options.rng);
    this.transactionTag = (options.transactionTag ?? 0) >>> 0;
    if (options.remote !== undefined) this.setRemoteCredentials(options.remote);
  }

  get controlling(): boolean {
    return this.role === 'controlling';
  }

  get connectionState(): IceConnectionState {
    return this.state;
  }

  get localCredentials(): IceCredentials {
    return this.ownCredentials;
  }

  /** The selected pair's path, if any. */
  get nominatedPath(): IcePath | undefined {
    return this.selected === undefined ? undefined : pathOf(this.selected.local, this.selected.remote.candidate.address);
  }

  get remoteUfrag(): string | undefined {
    return this.remoteCredentials?.ufrag;
  }

  setRemoteCredentials(credentials: IceCredentials): void {
    this.remoteCredentials = credentials;
    this.remoteKey = shortTermKey(credentials.password);
    this.deadlineStale = true;
  }

  /** Switches the check schedule of every pair (active vs idle). */
  setTiming(timing: StunTiming): void {
    if (timing === this.timing) return;
    this.timing = timing;
    for (const pair of this.pairs) scheduleOf(timing, pair);
    this.deadlineStale = true;
  }

  /** Forgets every outstanding transaction (the agent is being dropped). */
  close(): void {
    for (const pair of this.pairs) pair.forgetAttempts();
  }

  /**
   * Adds a host candidate (a local address:port we receive on). Returns the candidate to signal, or
   * undefined when the address is not usable for ICE or already known.
   */
  addLocalHostCandidate(address: SocketAddr): Candidate | undefined {
    if (!isUsableIceAddress(address)) return undefined;
    const preference = this.nextLocalPreference('host', address.family);
    const priority = candidatePriority('host', preference);
    const candidate: Candidate = {
      kind: 'host',
      foundation: candidateFoundation('host', priority, address, undefined, 'udp'),
      component: COMPONENT_ID,
      protocol: 'udp',
      priority,
      address,
      base: address,
      related: undefined,
      ufrag: this.ownCredentials.ufrag,
    };
    return this.addLocal(candidate, undefined);
  }

  /**
   * Adds a relayed candidate: `relayed` is the XOR-RELAYED-ADDRESS, `relay` the TURN server socket it
   * lives on, `viaFamily` the family of the local socket used to reach the relay.
   */
  addLocalRelayCandidate(relayed: SocketAddr, relay: SocketAddr, viaFamily: 4 | 6 = relay.family): Candidate | undefined {
    const penalty = viaFamily === relayed.family ? 0 : CROSS_FAMILY_RELAY_PENALTY;
    const preference = this.nextLocalPreference('relay', relayed.family) - penalty;
    const priority = candidatePriority('relay', preference);
    const related = fakeRelatedAddress(relayed.family);
    const candidate: Candidate = {
      kind: 'relay',
      foundation: candidateFoundation('relay', priority, relayed, related, 'udp'),
      component: COMPONENT_ID,
      protocol: 'udp',
      priority,
      address: relayed,
      base: relayed,
      related,
      ufrag: this.ownCredentials.ufrag,
    };
    return this.addLocal(candidate, relay);
  }

  /**
   * A server-reflexive candidate to signal. Like the reference it does not enter the agent (checks go
   * from its base, a host candidate), so it gets the fallback priority and carries no ufrag.
   */
  serverReflexiveCandidate(address: SocketAddr, base: SocketAddr): Candidate {
    const priority = fallbackPriority('srflx', address.family);
    const related = fakeRelatedAddress(address.family);
    return {
      kind: 'srflx',
      foundation: candidateFoundation('srflx', priority, base, related, 'udp'),
      component: COMPONENT_ID,
      protocol: 'udp',
      priority,
      address,
      base,
      related,
      ufrag: undefined,
    };
  }

  /** Stops using a local candidate (its relay went away, say); its pairs are dropped. */
  removeLocalCandidate(address: SocketAddr): boolean {
    const key = socketAddrKey(address);
    const entry = this.locals.find((l) => !l.discarded && socketAddrKey(l.candidate.address) === key);
    if (entry === undefined) return false;
    entry.discarded = true;
    this.dropPairs((pair) => pair.local === entry);
    return true;
  }

  /**
   * Adds a trickled remote candidate. Returns false when it is ignored: wrong component or ufrag, not
   * UDP, or already known. A known peer-reflexive candidate at the same address is upgraded in place
   * (its pairs keep their state); a previously removed one is enabled again.
   */
  addRemoteCandidate(candidate: Candidate): boolean {
    if (candidate.component !== COMPONENT_ID) return false;
    const remoteUfrag = this.remoteCredentials?.ufrag;
    if (candidate.ufrag !== undefined && remoteUfrag !== undefined && candidate.ufrag !== remoteUfrag) return false;
    const key = socketAddrKey(candidate.address);
    const existing = this.remotes.get(key);
    if (existing !== undefined) {
      if (existing.discarded) {
        existing.discarded = false;
        existing.candidate = candidate;
        existing.signalled.clear();
        if (candidate.kind !== 'prflx') existing.signalled.set(candidate.kind, candidate);
        this.pairWithLocals(existing);
        this.updateState('remote candidate enabled again');
        return true;
      }
      if (candidate.kind === 'prflx' || existing.signalled.has(candidate.kind)) return false;
      existing.signalled.set(candidate.kind, candidate);
      if (existing.candidate.kind === 'prflx' || candidate.priority > existing.candidate.priority) this.replaceRemote(existing, candidate);
      return true;
    }
    const entry: RemoteEntry = { candidate, discarded: false, signalled: new Map() };
    if (candidate.kind !== 'prflx') entry.signalled.set(candidate.kind, candidate);
    this.remotes.set(key, entry);
    this.pairWithLocals(entry);
    this.updateState('remote candidate added');
    return true;
  }

  /** Invalidates a remote candidate: its pairs go, and its address no longer becomes peer-reflexive. */
  removeRemoteCandidate(candidate: Candidate): boolean {
    const entry = this.remotes.get(socketAddrKey(candidate.address));
    if (entry === undefined || entry.discarded) return false;
    if (entry.candidate.kind !== 'prflx' && !entry.signalled.has(candidate.kind)) return false;
    entry.signalled.delete(candidate.kind);
    let best: Candidate | undefined;
    for (const other of entry.signalled.values()) if (best === undefined || other.priority > best.priority) best = other;
    if (best !== undefined) {
      // Another candidate at the same address stays valid: its pairs live on.
      if (best !== entry.candidate) this.replaceRemote(entry, best);
      return true;
    }
    entry.discarded = true;
    this.dropPairs((pair) => pair.remote === entry);
    return true;
  }

  private replaceRemote(entry: RemoteEntry, candidate: Candidate): void {
    entry.candidate = candidate;
    for (const pair of this.pairs) if (pair.remote === entry) pair.priority = this.pairPriority(pair.local, entry);
    this.sortAndTrimPairs();
  }

  localCandidates(): Candidate[] {
    const out: Candidate[] = [];
    for (const entry of this.locals) if (!entry.discarded) out.push(entry.candidate);
    return out;
  }

  /** Whether any remote candidate (signalled or peer-reflexive) is known; allocates nothing. */
  hasRemoteCandidates(): boolean {
    for (const entry of this.remotes.values()) if (!entry.discarded) return true;
    return false;
  }

  /** The live local candidate at `address`, if any. */
  localCandidateAt(address: SocketAddr): Candidate | undefined {
    return this.findLocal(address)?.candidate;
  }

  remoteCandidates(): Candidate[] {
    const out: Candidate[] = [];
    for (const entry of this.remotes.values()) if (!entry.discarded) out.push(entry.candidate);
    return out;
  }

  /** Decodes and handles a datagram; see `handleStunMessage`. Never throws. */
  handleInput(payload: Uint8Array, from: SocketAddr, to: SocketAddr, now: Millis): boolean {
    const message = decodeStunMessage(payload);
    if (typeof message === 'string') return false;
    return this.handleStunMessage(message, from, to, now);
  }

  /**
   * Offers a decoded STUN message that arrived from `from` on `to` (a host address, or our relayed
   * address for datagrams unwrapped from the relay). Returns true when this agent accepted it: a
   * Binding request for our ufrag with valid MESSAGE-INTEGRITY, or a response to one of our checks.
   * Anything else returns false and changes nothing.
   */
  handleStunMessage(message: StunMessage, from: SocketAddr, to: SocketAddr, now: Millis): boolean {
    if (message.method !== StunMethod.Binding) return false;
    this.advanceClock(now);
    this.deadlineStale = true;
    switch (message.class) {
      case 'request':
        return this.handleRequest(message, from, to);
      case 'success':
        return this.handleSuccess(message, from);
      case 'error':
        return this.handleErrorResponse(message);
      case 'indication':
        return false;
    }
  }

  handleTimeout(now: Millis): void {
    this.advanceClock(now);
    this.deadlineStale = true;
    if (this.state === 'new') this.transition('checking', 'started');
    this.pruneFailedPairs(now);
    this.updateState('timeout');
    this.sendDueChecks(now);
  }

  pollTimeout(): Millis | undefined {
    if (this.state === 'new') return this.lastNow === -Infinity ? 0 : this.lastNow;
    if (this.deadlineStale) {
      this.deadline = this.earliestDeadline();
      this.deadlineStale = false;
    }
    if (this.deadline === Infinity) return undefined;
    return Math.max(this.deadline, this.lastNow);
  }

  pollTransmit(): IceTransmit | undefined {
    return this.transmits.shift();
  }

  pollEvent(): IceEvent | undefined {
    return this.events.shift();
  }

  private earliestDeadline(): Millis {
    let earliest = Infinity;
    const canCheck = this.remoteKey !== undefined;
    const pacedFrom = this.lastCheckAt + this.checkPacing;
    for (const pair of this.pairs) {
      if (canCheck) {
        const due = pair.triggered ? -Infinity : pair.dueAt;
        const paced = due > pacedFrom ? due : pacedFrom;
        if (paced < earliest) earliest = paced;
      }
      if (pair.failAt < earliest) earliest = pair.failAt;
    }
    return earliest;
  }

  // ---- local candidates ----

  private nextLocalPreference(kind: CandidateKind, family: 4 | 6): number {
    const key = `${kind}${family}`;
    const count = this.localCounts.get(key) ?? 0;
    this.localCounts.set(key, count + 1);
    return LOCAL_PREFERENCE_START[kind === 'host' ? 'host' : kind === 'relay' ? 'relay' : kind === 'prflx' ? 'prflx' : 'srflx'][
      family
    ] - 2 * count;
  }

  private addLocal(candidate: Candidate, relay: SocketAddr | undefined): Candidate | undefined {
    const key = socketAddrKey(candidate.address);
    const existing = this.locals.find((l) => !l.discarded && socketAddrKey(l.candidate.address) === key);
    if (existing !== undefined) {
      if (existing.candidate.priority >= candidate.priority) return undefined;
      existing.discarded = true;
      this.dropPairs((pair) => pair.local === existing);
    }
    const entry: LocalEntry = { candidate, relay, discarded: false };
    this.locals.push(entry);
    for (const remote of this.remotes.values()) if (!remote.discarded) this.addPair(entry, remote);
    this.sortAndTrimPairs();
    this.updateState('local candidate added');
    return candidate;
  }

  // ---- pairs ----

  private pairWithLocals(remote: RemoteEntry): void {
    for (const local of this.locals) if (!local.discarded) this.addPair(local, remote);
    this.sortAndTrimPairs();
  }

  private addPair(local: LocalEntry, remote: RemoteEntry): Pair | undefined {
    if (local.candidate.address.family !== remote.candidate.address.family) return undefined;
    if (remote.candidate.protocol !== 'udp') return undefined;
    const key = pairKey(local.candidate.base, remote.candidate.address);
    const priority = this.pairPriority(local, remote);
    const existing = this.pairs.find((p) => p.key === key);
    if (existing !== undefined) {
      if (existing.priority >= priority) return existing;
      existing.local = local;
      existing.remote = remote;
      existing.priority = priority;
      return existing;
    }
    const pair = new Pair(key, local, remote, priority);
    this.pairs.push(pair);
    this.deadlineStale = true;
    return pair;
  }

  /** RFC 8445 §6.1.2.3: 2^32·min(G,D) + 2·max(G,D) + (G>D ? 1 : 0), G the controlling side's priority. */
  private pairPriority(local: LocalEntry, remote: RemoteEntry): bigint {
    const ours = local.candidate.priority;
    const theirs = remote.candidate.priority;
    const g = this.role === 'controlling' ? ours : theirs;
    const d = this.role === 'controlling' ? theirs : ours;
    const min = BigInt(Math.min(g, d));
    const max = BigInt(Math.max(g, d));
    return (min << 32n) + 2n * max + (g > d ? 1n : 0n);
  }

  private sortAndTrimPairs(): void {
    this.deadlineStale = true;
    this.pairs.sort((a, b) => (a.priority > b.priority ? -1 : a.priority < b.priority ? 1 : 0));
    if (this.pairs.length > MAX_CANDIDATE_PAIRS) {
      const dropped = this.pairs.slice(MAX_CANDIDATE_PAIRS);
      this.pairs.length = MAX_CANDIDATE_PAIRS;
      if (this.selected !== undefined && dropped.includes(this.selected)) {
        this.selected = undefined;
        this.evaluateNomination('selected pair trimmed');
      }
    }
  }

  private dropPairs(predicate: (pair: Pair) => boolean): void {
    const kept: Pair[] = [];
    let selectedDropped = false;
    for (const pair of this.pairs) {
      if (!predicate(pair)) {
        kept.push(pair);
        continue;
      }
      if (pair === this.selected) selectedDropped = true;
    }
    this.pairs = kept;
    this.deadlineStale = true;
    if (selectedDropped) this.selected = undefined;
    this.evaluateNomination('pairs dropped');
  }

  /** The live pair with an outstanding check under this transaction id. */
  private pairAwaiting(transactionId: Uint8Array): Pair | undefined {
    if (this.transactionIds.tagOf(transactionId) !== this.transactionTag) return undefined;
    return this.pairAwaitingWord(transactionWord(transactionId));
  }

  private pairAwaitingWord(word: number): Pair | undefined {
    for (const pair of this.pairs) if (pair.attemptIndex(word) >= 0) return pair;
    return undefined;
  }

  private pruneFailedPairs(now: Millis): void {
    let anyFailed = false;
    for (const pair of this.pairs) if (pair.failAt <= now) anyFailed = true;
    if (!anyFailed) return;
    this.dropPairs((pair) => pair.failAt <= now);
  }

  // ---- checks ----

  private sendDueChecks(now: Millis): void {
    if (this.remoteKey === undefined || this.remoteCredentials === undefined) return;
    for (;;) {
      if (now < this.lastCheckAt + this.checkPacing) return;
      const pair = this.nextDuePair(now);
      if (pair === undefined) return;
      this.sendCheck(pair, now);
    }
  }

  /** Triggered checks first, then the pair that has waited longest past its due time. */
  private nextDuePair(now: Millis): Pair | undefined {
    let best: Pair | undefined;
    let bestDue = Infinity;
    for (const pair of this.pairs) {
      const due = pair.triggered ? -Infinity : pair.dueAt;
      if (due > now) continue;
      if (due < bestDue) {
        best = pair;
        bestDue = due;
      }
    }
    return best;
  }

  private sendCheck(pair: Pair, now: Millis): void {
    const remoteCredentials = this.remoteCredentials!;
    const transactionId = new Uint8Array(12);
    let word: number;
    do {
      this.transactionIds.fill(transactionId, this.transactionTag, this.rng);
      word = transactionWord(transactionId);
    } while (word === 0 || this.pairAwaitingWord(word) !== undefined);
    const useCandidate = this.role === 'controlling' && pair.nominated;
    const attributes: StunAttribute[] = [
      { kind: 'username', value: `${remoteCredentials.ufrag}:${this.ownCredentials.ufrag}` },
      this.role === 'controlling'
        ? { kind: 'iceControlling', tieBreaker: this.tieBreaker }
        : { kind: 'iceControlled', tieBreaker: this.tieBreaker },
      { kind: 'priority', priority: candidatePriority('prflx', localPreferenceOf(pair.local.candidate.priority)) },
    ];
    if (useCandidate) attributes.push({ kind: 'useCandidate' });
    const payload = encodeStunMessage(
      { method: StunMethod.Binding, class: 'request', transactionId, attributes },
      { integrityKey: this.remoteKey, fingerprint: true },
    );
    pair.rememberAttempt(word, this.role === 'controlling');
    if (pair.trailingUnanswered === 0) pair.firstUnansweredAt = now;
    pair.attempts += 1;
    pair.trailingUnanswered += 1;
    pair.lastSentAt = now;
    pair.triggered = false;
    scheduleOf(this.timing, pair);
    this.lastCheckAt = now;
    this.transmits.push(transmitOf(pair.local, pair.remote.candidate.address, payload));
  }

  // ---- incoming ----

  private handleRequest(message: StunMessage, from: SocketAddr, to: SocketAddr): boolean {
    const username = getAttribute(message, 'username')?.value;
    if (username === undefined || username.length > MAX_STUN_STRING_BYTES) return false;
    const colon = username.indexOf(':');
    if (colon < 0 || colon === username.length - 1) return false;
    if (username.slice(0, colon) !== this.ownCredentials.ufrag) return false;
    const remoteUfrag = this.remoteCredentials?.ufrag;
    if (remoteUfrag !== undefined && username.slice(colon + 1) !== remoteUfrag) return false;
    if (!verifyIntegrity(message, this.localKey)) return false;
    const priority = getAttribute(message, 'priority')?.priority;
    if (priority === undefined) return false;
    if (this.resolveRoleConflicts && this.roleConflictAnswered(message, from, to)) return true;
    const useCandidate = getAttribute(message, 'useCandidate') !== undefined;
    if (useCandidate && this.role === 'controlling') return false;

    this.noteDiscovered(from);
    const remote = this.findOrLearnRemote(from, priority);
    if (remote === undefined) return true;
    const local = this.findLocal(to);
    if (local === undefined) {
      if (logger.enabled(Level.Debug)) logger.debug('check on unknown local address', { to: socketAddrKey(to) });
      return true;
    }
    this.transmits.push(transmitOf(local, from, this.bindingSuccess(message.transactionId, from)));
    let pair = this.pairs.find((p) => p.key === pairKey(local.candidate.base, from));
    if (pair === undefined) {
      pair = this.addPair(local, remote);
      this.sortAndTrimPairs();
      if (pair === undefined || !this.pairs.includes(pair)) return true;
      this.updateState('peer-reflexive pair');
    }
    if (useCandidate && this.role === 'controlled') {
      pair.triggered = true;
      if (!pair.nominated) {
        pair.nominated = true;
        this.evaluateNomination('peer nominated a pair');
      }
    } else if (!pair.succeeded) {
      pair.triggered = true;
    }
    return true;
  }

  private handleSuccess(message: StunMessage, from: SocketAddr): boolean {
    const pair = this.pairAwaiting(message.transactionId);
    if (pair === undefined || this.remoteKey === undefined) return false;
    if (!verifyIntegrity(message, this.remoteKey)) return false;
    if (getAttribute(message, 'xorMappedAddress') === undefined) return false;
    pair.forgetAttempt(pair.attemptIndex(transactionWord(message.transactionId)));
    this.noteDiscovered(from);
    pair.trailingUnanswered = 0;
    pair.succeeded = true;
    scheduleOf(this.timing, pair);
    this.evaluateNomination('check succeeded');
    return true;
  }

  private handleErrorResponse(message: StunMessage): boolean {
    const pair = this.pairAwaiting(message.transactionId);
    if (pair === undefined || this.remoteKey === undefined) return false;
    if (!verifyIntegrity(message, this.remoteKey)) return false;
    const code = getAttribute(message, 'errorCode')?.code;
    if (code !== ROLE_CONFLICT || !this.resolveRoleConflicts) return true;
    const index = pair.attemptIndex(transactionWord(message.transactionId));
    const sentControlling = pair.attemptSentControlling(index);
    pair.forgetAttempt(index);
    if (sentControlling === (this.role === 'controlling')) {
      this.switchRole(this.role === 'controlling' ? 'controlled' : 'controlling', 'peer reported a role conflict');
    }
    pair.triggered = true;
    return true;
  }

  /** RFC 8445 §7.3.1.1. Returns true when the request was answered with 487 and must go no further. */
  private roleConflictAnswered(message: StunMessage, from: SocketAddr, to: SocketAddr): boolean {
    const theirs =
      this.role === 'controlling'
        ? getAttribute(message, 'iceControlling')?.tieBreaker
        : getAttribute(message, 'iceControlled')?.tieBreaker;
    if (theirs === undefined) return false;
    const oursIsLarger = this.tieBreaker >= theirs;
    const switchRoles = this.role === 'controlling' ? !oursIsLarger : oursIsLarger;
    if (switchRoles) {
      this.switchRole(this.role === 'controlling' ? 'controlled' : 'controlling', 'role conflict lost');
      return false;
    }
    const local = this.findLocal(to);
    if (local === undefined) return true;
    const payload = encodeStunMessage(
      {
        method: StunMethod.Binding,
        class: 'error',
        transactionId: message.transactionId,
        attributes: [{ kind: 'errorCode', code: ROLE_CONFLICT, reason: 'Role Conflict' }],
      },
      { integrityKey: this.localKey, fingerprint: true },
    );
    this.transmits.push(transmitOf(local, from, payload));
    return true;
  }

  private switchRole(role: IceRole, reason: string): void {
    if (this.role === role) return;
    this.role = role;
    if (logger.enabled(Level.Debug)) logger.debug('ICE role changed', { role, reason });
    for (const pair of this.pairs) {
      pair.priority = this.pairPriority(pair.local, pair.remote);
      pair.nominated = false;
    }
    this.selected = undefined;
    this.sortAndTrimPairs();
    this.events.push({ kind: 'roleChanged', role });
    this.evaluateNomination(reason);
  }

  private bindingSuccess(transactionId: Uint8Array, from: SocketAddr): Uint8Array {
    return encodeStunMessage(
      {
        method: StunMethod.Binding,
        class: 'success',
        transactionId,
        attributes: [{ kind: 'xorMappedAddress', address: from }],
      },
      { integrityKey: this.localKey, fingerprint: true },
    );
  }

  private findLocal(address: SocketAddr): LocalEntry | undefined {
    for (const entry of this.locals) {
      if (entry.discarded) continue;
      const candidate = entry.candidate.address;
      if (candidate.port === address.port && candidate.address === address.address) return entry;
    }
    return undefined;
  }

  private findOrLearnRemote(from: SocketAddr, priority: number): RemoteEntry | undefined {
    const key = socketAddrKey(from);
    const existing = this.remotes.get(key);
    if (existing !== undefined) return existing.discarded ? undefined : existing;
    const candidate: Candidate = {
      kind: 'prflx',
      foundation: PRFLX_FOUNDATION,
      component: COMPONENT_ID,
      protocol: 'udp',
      priority,
      address: from,
      base: from,
      related: undefined,
      ufrag: undefined,
    };
    const entry: RemoteEntry = { candidate, discarded: false, signalled: new Map() };
    this.remotes.set(key, entry);
    return entry;
  }

  private noteDiscovered(source: SocketAddr): void {
    const key = socketAddrKey(source);
    if (this.discoveredSources.has(key)) return;
    this.discoveredSources.add(key);
    this.events.push({ kind: 'discoveredRecv', source });
  }

  // ---- nomination and state ----

  /**
   * Controlling: the best succeeded pair becomes nominated and selected at once (its checks carry
   * USE-CANDIDATE from then on). Controlled: the best pair the peer nominated is selected.
   */
  private evaluateNomination(reason: string): void {
    let best: Pair | undefined;
    for (const pair of this.pairs) {
      const eligible = this.role === 'controlling' ? pair.succeeded : pair.nominated;
      if (eligible && (best === undefined || pair.priority > best.priority)) best = pair;
    }
    if (best !== undefined && (this.selected === undefined || this.selected.priority !== best.priority)) {
      if (this.role === 'controlling' && !best.nominated) {
        best.nominated = true;
        best.triggered = true;
      }
      this.selected = best;
      if (logger.enabled(Level.Debug)) {
        logger.debug('nominated pair changed', {
          local: socketAddrKey(best.local.candidate.address),
          remote: socketAddrKey(best.remote.candidate.address),
          reason,
        });
      }
      this.events.push({
        kind: 'nominated',
        local: best.local.candidate,
        remote: best.remote.candidate,
        path: pathOf(best.local, best.remote.candidate.address),
      });
    }
    this.updateState(reason);
  }

  private updateState(reason: string): void {
    if (this.state === 'new') return;
    this.transition(this.computeState(), reason);
  }

  private computeState(): IceConnectionState {
    let othersPossible = false;
    for (const pair of this.pairs) if (!pair.nominated) othersPossible = true;
    if (this.selected !== undefined) return othersPossible ? 'connected' : 'completed';
    if (this.pairs.length > 0) return 'checking';
    const hasLocal = this.locals.some((l) => !l.discarded);
    let hasRemote = false;
    for (const remote of this.remotes.values()) if (!remote.discarded) hasRemote = true;
    return hasLocal && hasRemote ? 'disconnected' : 'checking';
  }

  private transition(next: IceConnectionState, reason: string): void {
    if (next === this.state) return;
    if (logger.enabled(Level.Debug)) logger.debug('ICE state', { from: this.state, to: next, reason });
    this.state = next;
    this.events.push({ kind: 'stateChanged', state: next });
  }

  private advanceClock(now: Millis): void {
    if (now > this.lastNow) this.lastNow = now;
  }

}

interface LocalEntry {
  readonly candidate: Candidate;
  /** The TURN server of a relayed candidate. */
  readonly relay: SocketAddr | undefined;
  discarded: boolean;
}

interface RemoteEntry {
  /** The highest-priority signalled candidate at this address (or a peer-reflexive one). */
  candidate: Candidate;
  discarded: boolean;
  /**
   * Every signalled candidate at this address by kind: a peer without NAT signals the same
   * address as host and srflx, and invalidating one of them must not drop the other's pairs.
   */
  readonly signalled: Map<CandidateKind, Candidate>;
}

/** `Pair` has this many slots for outstanding attempts (a compile error if the constant changes). */
const REMEMBERED_ATTEMPT_SLOTS: 4 = MAX_REMEMBERED_ATTEMPTS;

class Pair {
  attempts = 0;
  trailingUnanswered = 0;
  lastSentAt: Millis = -Infinity;
  firstUnansweredAt: Millis = -Infinity;
  succeeded = false;
  triggered = false;
  /** Controlling: we nominated it, so every check on it carries USE-CANDIDATE. Controlled: the peer sent USE-CANDIDATE on it. */
  nominated = false;
  /** `nextAttemptAt` and `failsAt` of the current timing, kept up to date whenever the history or the timing changes. */
  dueAt: Millis = -Infinity;
  failAt: Millis = Infinity;
  /**
   * The `transactionWord`s of the last REMEMBERED_ATTEMPT_SLOTS attempts that may still be answered,
   * oldest first, 0 past the last: fields rather than an array, as every pair of every connection has them.
   */
  private attempt0 = 0;
  private attempt1 = 0;
  private attempt2 = 0;
  private attempt3 = 0;
  /** Bit i: attempt i was sent while controlling. */
  private controllingAttempts = 0;

  constructor(
    readonly key: string,
    public local: LocalEntry,
    public remote: RemoteEntry,
    public priority: bigint,
  ) {}

  /** Remembers an attempt (`word` not 0), forgetting the oldest when all slots are taken. */
  rememberAttempt(word: number, controlling: boolean): void {
    if (this.attempt3 !== 0) this.forgetAttempt(0);
    const index = this.attempt0 === 0 ? 0 : this.attempt1 === 0 ? 1 : this.attempt2 === 0 ? 2 : 3;
    if (index === 0) this.attempt0 = word;
    else if (index === 1) this.attempt1 = word;
    else if (index === 2) this.attempt2 = word;
    else this.attempt3 = word;
    if (controlling) this.controllingAttempts |= 1 << index;
  }

  /** The slot of an outstanding attempt, or -1. */
  attemptIndex(word: number): number {
    if (word === 0) return -1;
    if (word === this.attempt0) return 0;
    if (word === this.attempt1) return 1;
    if (word === this.attempt2) return 2;
    if (word === this.attempt3) return 3;
    return -1;
  }

  attemptSentControlling(index: number): boolean {
    return ((this.controllingAttempts >>> index) & 1) === 1;
  }

  forgetAttempt(index: number): void {
    if (index < 0 || index >= REMEMBERED_ATTEMPT_SLOTS) return;
    if (index <= 0) this.attempt0 = this.attempt1;
    if (index <= 1) this.attempt1 = this.attempt2;
    if (index <= 2) this.attempt2 = this.attempt3;
    this.attempt3 = 0;
    const below = this.controllingAttempts & ((1 << index) - 1);
    this.controllingAttempts = below | ((this.controllingAttempts >>> (index + 1)) << index);
  }

  forgetAttempts(): void {
    this.attempt0 = this.attempt1 = this.attempt2 = this.attempt3 = 0;
    this.controllingAttempts = 0;
  }
}

const ROLE_CONFLICT = 487;

const logger = createLogger('ice');

function scheduleOf(timing: StunTiming, pair: Pair): void {
  pair.dueAt = nextAttemptAt(timing, pair);
  pair.failAt = failsAt(timing, pair);
}

function pairKey(localBase: SocketAddr, remote: SocketAddr): string {
  return `${socketAddrKey(localBase)}|${socketAddrKey(remote)}`;
}

function pathOf(local: LocalEntry, destination: SocketAddr): IcePath {
  if (local.relay !== undefined) {
    return { kind: 'relay', relay: local.relay, relayed: local.candidate.address, destination };
  }
  return { kind: 'direct', source: local.candidate.base, destination };
}

function transmitOf(local: LocalEntry, destination: SocketAddr, payload: Uint8Array): IceTransmit {
  if (local.relay !== undefined) {
    return { kind: 'relay', relay: local.relay, relayed: local.candidate.address, destination, payload };
  }
  return { kind: 'direct', source: local.candidate.base, destination, payload };
}

/** Not unspecified, broadcast, multicast or IPv4 link-local; not IPv6 unspecified or multicast. */
export function isUsableIceAddress(address: SocketAddr): boolean {
  if (address.family === 4) {
    const text = address.address;
    if (text === '0.0.0.0' || text === '255.255.255.255' || text.startsWith('169.254.')) return false;
    const first = Number(text.slice(0, text.indexOf('.')));
    return first < 224 || first > 239;
  }
  const text = address.address.toLowerCase();
  return text !== '::' && !text.startsWith('ff');
}
