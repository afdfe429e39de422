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
import { sameSocketAddr, socketAddrKey } from '../util/socket-addr.ts';
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
  private remoteCredentials: IceCredentials | undefined;
  private readonly rng: RandomSource;
  private readonly tieBreaker: bigint;
  private readonly checkPacing: Millis;
  private readonly resolveRoleConflicts: boolean;
  private timing: StunTiming;

  // `locals`, `remotes` and `pairs` are replaced by exact-size copies when they change: a pushed-to
  // array reserves 17 slots (152 bytes) to hold the two to four entries of a typical connection.
  private locals: LocalEntry[] = [];
  /** Host and relay candidates added so far per family: each takes 2 less local preference than the one before. */
  private hostCandidatesV4 = 0;
  private hostCandidatesV6 = 0;
  private relayCandidatesV4 = 0;
  private relayCandidatesV6 = 0;
  /** By address, in the order learnt; an agent has a handful, so a scan beats a map of address strings. */
  private remotes: RemoteEntry[] = [];
  private pairs: Pair[] = [];
  private readonly transactionIds: TransactionIds;
  private readonly transactionTag: number;
  /** Sources of authenticated messages that are no remote candidate's address (those are flagged on their entry). */
  private otherDiscoveredSources: SocketAddr[] | undefined;
  /** The earliest raw deadline of all pairs, valid unless `deadlineStale`: polls do not rescan the pairs. */
  private deadline: Millis = Infinity;
  private deadlineStale = true;

  private selected: Pair | undefined;
  private state: IceConnectionState = 'new';
  private lastNow: Millis = -Infinity;
  private lastCheckAt: Millis = -Infinity;

  // Small: the node drains both after every call, and a ring only grows when it must.
  private readonly transmits = new RingQueue<IceTransmit>(2);
  private readonly events = new RingQueue<IceEvent>(2);

  constructor(options: IceAgentOptions) {
    this.role = options.role;
    this.ownCredentials = options.local;
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
    this.deadlineStale = true;
  }

  /** Switches the check schedule of every pair (active vs idle). */
  setTiming(timing: StunTiming): void {
    if (timing === this.timing) return;
    this.timing = timing;
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
    const entry = this.locals.find((l) => !l.discarded && sameSocketAddr(l.candidate.address, address));
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
    const existing = this.remoteAt(candidate.address);
    if (existing !== undefined) {
      if (existing.discarded) {
        existing.discarded = false;
        existing.candidate = candidate;
        existing.host = existing.srflx = existing.relay = undefined;
        existing.setSignalled(candidate.kind, candidate);
        this.pairWithLocals(existing);
        this.updateState('remote candidate enabled again');
        return true;
      }
      if (candidate.kind === 'prflx' || existing.signalled(candidate.kind) !== undefined) return false;
      existing.setSignalled(candidate.kind, candidate);
      if (existing.candidate.kind === 'prflx' || candidate.priority > existing.candidate.priority) this.replaceRemote(existing, candidate);
      return true;
    }
    const entry = this.newRemote(candidate);
    entry.setSignalled(candidate.kind, candidate);
    this.pairWithLocals(entry);
    this.updateState('remote candidate added');
    return true;
  }

  /** Invalidates a remote candidate: its pairs go, and its address no longer becomes peer-reflexive. */
  removeRemoteCandidate(candidate: Candidate): boolean {
    const entry = this.remoteAt(candidate.address);
    if (entry === undefined || entry.discarded) return false;
    if (entry.candidate.kind !== 'prflx' && entry.signalled(candidate.kind) === undefined) return false;
    entry.setSignalled(candidate.kind, undefined);
    const best = entry.bestSignalled();
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
    this.sortAndTrimPairs();
  }

  localCandidates(): Candidate[] {
    const out: Candidate[] = [];
    for (const entry of this.locals) if (!entry.discarded) out.push(entry.candidate);
    return out;
  }

  /** Whether any remote candidate (signalled or peer-reflexive) is known; allocates nothing. */
  hasRemoteCandidates(): boolean {
    for (const entry of this.remotes) if (!entry.discarded) return true;
    return false;
  }

  /** The live local candidate at `address`, if any. */
  localCandidateAt(address: SocketAddr): Candidate | undefined {
    return this.findLocal(address)?.candidate;
  }

  remoteCandidates(): Candidate[] {
    const out: Candidate[] = [];
    for (const entry of this.remotes) if (!entry.discarded) out.push(entry.candidate);
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
    const canCheck = this.remoteCredentials !== undefined;
    const pacedFrom = this.lastCheckAt + this.checkPacing;
    for (const pair of this.pairs) {
      if (canCheck) {
        const due = pair.triggered ? -Infinity : nextAttemptAt(this.timing, pair);
        const paced = due > pacedFrom ? due : pacedFrom;
        if (paced < earliest) earliest = paced;
      }
      const failAt = failsAt(this.timing, pair);
      if (failAt < earliest) earliest = failAt;
    }
    return earliest;
  }

  // ---- local candidates ----

  private nextLocalPreference(kind: 'host' | 'relay', family: 4 | 6): number {
    let count: number;
    if (kind === 'host') count = family === 4 ? this.hostCandidatesV4++ : this.hostCandidatesV6++;
    else count = family === 4 ? this.relayCandidatesV4++ : this.relayCandidatesV6++;
    return LOCAL_PREFERENCE_START[kind][family] - 2 * count;
  }

  private addLocal(candidate: Candidate, relay: SocketAddr | undefined): Candidate | undefined {
    const existing = this.locals.find((l) => !l.discarded && sameSocketAddr(l.candidate.address, candidate.address));
    if (existing !== undefined) {
      if (existing.candidate.priority >= candidate.priority) return undefined;
      existing.discarded = true;
      this.dropPairs((pair) => pair.local === existing);
    }
    const entry: LocalEntry = { candidate, relay, discarded: false };
    this.locals = this.locals.concat([entry]);
    for (const remote of this.remotes) if (!remote.discarded) this.addPair(entry, remote);
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
    const existing = this.pairBetween(local.candidate.base, remote.candidate.address);
    if (existing !== undefined) {
      if (this.comparePriority(existing.local, existing.remote, local, remote) >= 0) return existing;
      existing.local = local;
      existing.remote = remote;
      return existing;
    }
    const pair = new Pair(local, remote);
    this.pairs = this.pairs.concat([pair]);
    this.deadlineStale = true;
    return pair;
  }

  /** The pair from this local base to this remote address (a pair is known by these two). */
  private pairBetween(localBase: SocketAddr, remote: SocketAddr): Pair | undefined {
    for (const pair of this.pairs) {
      if (sameSocketAddr(pair.local.candidate.base, localBase) && sameSocketAddr(pair.remote.candidate.address, remote)) return pair;
    }
    return undefined;
  }

  /**
   * Orders two pairs by RFC 8445 §6.1.2.3 priority 2^32·min(G,D) + 2·max(G,D) + (G>D ? 1 : 0), G the
   * controlling side's candidate priority, without building that 64-bit number: candidate priorities
   * are below 2^31, so it orders as (min, max, G>D). Negative: a is lower; 0: equal.
   */
  private comparePriority(aLocal: LocalEntry, aRemote: RemoteEntry, bLocal: LocalEntry, bRemote: RemoteEntry): number {
    const controlling = this.role === 'controlling';
    const aG = controlling ? aLocal.candidate.priority : aRemote.candidate.priority;
    const aD = controlling ? aRemote.candidate.priority : aLocal.candidate.priority;
    const bG = controlling ? bLocal.candidate.priority : bRemote.candidate.priority;
    const bD = controlling ? bRemote.candidate.priority : bLocal.candidate.priority;
    const byMin = Math.min(aG, aD) - Math.min(bG, bD);
    if (byMin !== 0) return byMin;
    const byMax = Math.max(aG, aD) - Math.max(bG, bD);
    if (byMax !== 0) return byMax;
    return (aG > aD ? 1 : 0) - (bG > bD ? 1 : 0);
  }

  private comparePairs(a: Pair, b: Pair): number {
    return this.comparePriority(a.local, a.remote, b.local, b.remote);
  }

  private sortAndTrimPairs(): void {
    this.deadlineStale = true;
    this.pairs.sort((a, b) => this.comparePairs(b, a));
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
    this.pairs = kept.length === this.pairs.length ? this.pairs : kept.slice();
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
    for (const pair of this.pairs) if (failsAt(this.timing, pair) <= now) anyFailed = true;
    if (!anyFailed) return;
    this.dropPairs((pair) => failsAt(this.timing, pair) <= now);
  }

  // ---- checks ----

  private sendDueChecks(now: Millis): void {
    if (this.remoteCredentials === undefined) return;
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
      const due = pair.triggered ? -Infinity : nextAttemptAt(this.timing, pair);
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
    const transactionId = checkScratch.transactionId;
    let word: number;
    do {
      this.transactionIds.fill(transactionId, this.transactionTag, this.rng);
      word = transactionWord(transactionId);
    } while (word === 0 || this.pairAwaitingWord(word) !== undefined);
    const controlling = this.role === 'controlling';
    const useCandidate = controlling && pair.nominated;
    const attributes = useCandidate ? checkScratch.nominating : checkScratch.plain;
    checkScratch.username.value = `${remoteCredentials.ufrag}:${this.ownCredentials.ufrag}`;
    const role = controlling ? checkScratch.controlling : checkScratch.controlled;
    role.tieBreaker = this.tieBreaker;
    attributes[1] = role;
    checkScratch.priority.priority = candidatePriority('prflx', localPreferenceOf(pair.local.candidate.priority));
    const payload = encodeStunMessage(
      { method: StunMethod.Binding, class: 'request', transactionId, attributes },
      { integrityKey: integrityKey(remoteCredentials.password), fingerprint: true },
    );
    pair.rememberAttempt(word, this.role === 'controlling');
    if (pair.trailingUnanswered === 0) pair.firstUnansweredAt = now;
    pair.attempts += 1;
    pair.trailingUnanswered += 1;
    pair.lastSentAt = now;
    pair.triggered = false;
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
    if (!verifyIntegrity(message, integrityKey(this.ownCredentials.password))) return false;
    const priority = getAttribute(message, 'priority')?.priority;
    if (priority === undefined) return false;
    if (this.resolveRoleConflicts && this.roleConflictAnswered(message, from, to)) return true;
    const useCandidate = getAttribute(message, 'useCandidate') !== undefined;
    if (useCandidate && this.role === 'controlling') return false;

    const remote = this.findOrLearnRemote(from, priority);
    this.noteDiscovered(from);
    if (remote === undefined) return true;
    const local = this.findLocal(to);
    if (local === undefined) {
      if (logger.enabled(Level.Debug)) logger.debug('check on unknown local address', { to: socketAddrKey(to) });
      return true;
    }
    this.transmits.push(transmitOf(local, from, this.bindingSuccess(message.transactionId, from)));
    let pair = this.pairBetween(local.candidate.base, from);
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
    if (pair === undefined || this.remoteCredentials === undefined) return false;
    if (!verifyIntegrity(message, integrityKey(this.remoteCredentials.password))) return false;
    if (getAttribute(message, 'xorMappedAddress') === undefined) return false;
    pair.forgetAttempt(pair.attemptIndex(transactionWord(message.transactionId)));
    this.noteDiscovered(from);
    pair.trailingUnanswered = 0;
    pair.succeeded = true;
    this.evaluateNomination('check succeeded');
    return true;
  }

  private handleErrorResponse(message: StunMessage): boolean {
    const pair = this.pairAwaiting(message.transactionId);
    if (pair === undefined || this.remoteCredentials === undefined) return false;
    if (!verifyIntegrity(message, integrityKey(this.remoteCredentials.password))) return false;
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
      { integrityKey: integrityKey(this.ownCredentials.password), fingerprint: true },
    );
    this.transmits.push(transmitOf(local, from, payload));
    return true;
  }

  private switchRole(role: IceRole, reason: string): void {
    if (this.role === role) return;
    this.role = role;
    if (logger.enabled(Level.Debug)) logger.debug('ICE role changed', { role, reason });
    for (const pair of this.pairs) pair.nominated = false;
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
      { integrityKey: integrityKey(this.ownCredentials.password), fingerprint: true },
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

  private remoteAt(address: SocketAddr): RemoteEntry | undefined {
    for (const entry of this.remotes) if (sameSocketAddr(entry.candidate.address, address)) return entry;
    return undefined;
  }

  private newRemote(candidate: Candidate): RemoteEntry {
    const entry = new RemoteEntry(candidate);
    const others = this.otherDiscoveredSources;
    const index = others === undefined ? -1 : others.findIndex((source) => sameSocketAddr(source, candidate.address));
    if (index >= 0) {
      entry.discovered = true;
      others!.splice(index, 1);
      if (others!.length === 0) this.otherDiscoveredSources = undefined;
    }
    this.remotes = this.remotes.concat([entry]);
    return entry;
  }

  private findOrLearnRemote(from: SocketAddr, priority: number): RemoteEntry | undefined {
    const existing = this.remoteAt(from);
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
    return this.newRemote(candidate);
  }

  private noteDiscovered(source: SocketAddr): void {
    const entry = this.remoteAt(source);
    if (entry !== undefined) {
      if (entry.discovered) return;
      entry.discovered = true;
    } else {
      const others = (this.otherDiscoveredSources ??= []);
      if (others.some((known) => sameSocketAddr(known, source))) return;
      others.push(source);
    }
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
      if (eligible && (best === undefined || this.comparePairs(pair, best) > 0)) best = pair;
    }
    if (best !== undefined && (this.selected === undefined || this.comparePairs(this.selected, best) !== 0)) {
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
    for (const remote of this.remotes) if (!remote.discarded) hasRemote = true;
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

class RemoteEntry {
  discarded = false;
  /** An authenticated message came from this address (`discoveredRecv` was told). */
  discovered = false;
  /**
   * Every signalled candidate at this address by kind: a peer without NAT signals the same
   * address as host and srflx, and invalidating one of them must not drop the other's pairs.
   */
  host: Candidate | undefined = undefined;
  srflx: Candidate | undefined = undefined;
  relay: Candidate | undefined = undefined;

  /** The highest-priority signalled candidate at this address (or a peer-reflexive one). */
  constructor(public candidate: Candidate) {}

  signalled(kind: CandidateKind): Candidate | undefined {
    return kind === 'host' ? this.host : kind === 'srflx' ? this.srflx : kind === 'relay' ? this.relay : undefined;
  }

  /** Peer-reflexive candidates are never signalled: setting one does nothing. */
  setSignalled(kind: CandidateKind, candidate: Candidate | undefined): void {
    if (kind === 'host') this.host = candidate;
    else if (kind === 'srflx') this.srflx = candidate;
    else if (kind === 'relay') this.relay = candidate;
  }

  bestSignalled(): Candidate | undefined {
    let best = this.host;
    if (this.srflx !== undefined && (best === undefined || this.srflx.priority > best.priority)) best = this.srflx;
    if (this.relay !== undefined && (best === undefined || this.relay.priority > best.priority)) best = this.relay;
    return best;
  }
}

const SUCCEEDED = 1;
const TRIGGERED = 2;
const NOMINATED = 4;
const CONTROLLING_ATTEMPTS_SHIFT = 3;

/** `Pair` has this many slots for outstanding attempts (a compile error if the constant changes). */
const REMEMBERED_ATTEMPT_SLOTS: 4 = MAX_REMEMBERED_ATTEMPTS;

class Pair {
  attempts = 0;
  trailingUnanswered = 0;
  lastSentAt: Millis = -Infinity;
  firstUnansweredAt: Millis = -Infinity;
  /** `succeeded`, `triggered`, `nominated` and `controllingAttempts` in one number: a field each costs 8 bytes per pair. */
  private flags = 0;
  /**
   * The `transactionWord`s of the last REMEMBERED_ATTEMPT_SLOTS attempts that may still be answered,
   * oldest first, 0 past the last: fields rather than an array, as every pair of every connection has them.
   */
  private attempt0 = 0;
  private attempt1 = 0;
  private attempt2 = 0;
  private attempt3 = 0;

  constructor(
    public local: LocalEntry,
    public remote: RemoteEntry,
  ) {}

  get succeeded(): boolean {
    return (this.flags & SUCCEEDED) !== 0;
  }

  set succeeded(value: boolean) {
    this.flags = value ? this.flags | SUCCEEDED : this.flags & ~SUCCEEDED;
  }

  get triggered(): boolean {
    return (this.flags & TRIGGERED) !== 0;
  }

  set triggered(value: boolean) {
    this.flags = value ? this.flags | TRIGGERED : this.flags & ~TRIGGERED;
  }

  /** Controlling: we nominated it, so every check on it carries USE-CANDIDATE. Controlled: the peer sent USE-CANDIDATE on it. */
  get nominated(): boolean {
    return (this.flags & NOMINATED) !== 0;
  }

  set nominated(value: boolean) {
    this.flags = value ? this.flags | NOMINATED : this.flags & ~NOMINATED;
  }

  /** Bit i: attempt i was sent while controlling. */
  private get controllingAttempts(): number {
    return this.flags >>> CONTROLLING_ATTEMPTS_SHIFT;
  }

  private set controllingAttempts(bits: number) {
    this.flags = (this.flags & ((1 << CONTROLLING_ATTEMPTS_SHIFT) - 1)) | (bits << CONTROLLING_ATTEMPTS_SHIFT);
  }

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

/**
 * What every check is encoded from, filled in by `sendCheck` and read by the encoder before it returns:
 * a check allocates its datagram and little else.
 */
const checkScratch = (() => {
  const username = { kind: 'username' as const, value: '' };
  const controlling = { kind: 'iceControlling' as const, tieBreaker: 0n };
  const controlled = { kind: 'iceControlled' as const, tieBreaker: 0n };
  const priority = { kind: 'priority' as const, priority: 0 };
  const plain: StunAttribute[] = [username, controlling, priority];
  const nominating: StunAttribute[] = [username, controlling, priority, { kind: 'useCandidate' }];
  return { transactionId: new Uint8Array(12), username, controlling, controlled, priority, plain, nominating };
})();

/** Passwords up to this long (one HMAC block) are written into `keyScratch`. */
const SCRATCH_KEY_BYTES = 64;
const keyScratch = new Uint8Array(SCRATCH_KEY_BYTES);
/** `keyScratch` views by length, made once each. */
const keyViews: Uint8Array[] = [];

/**
 * The MESSAGE-INTEGRITY key of a password (`shortTermKey`: its UTF-8 bytes), written into a scratch
 * buffer each time a message is signed or verified rather than kept per agent (two typed arrays and
 * their buffer, some 350 bytes per connection): the HMAC reads the key at once and keeps nothing.
 * Valid until the next call. Non-ASCII or long passwords get a fresh array.
 */
function integrityKey(password: string): Uint8Array {
  const length = password.length;
  if (length > SCRATCH_KEY_BYTES) return shortTermKey(password);
  for (let i = 0; i < length; i++) {
    const code = password.charCodeAt(i);
    if (code >= 0x80) return shortTermKey(password);
    keyScratch[i] = code;
  }
  return (keyViews[length] ??= keyScratch.subarray(0, length));
}

const logger = createLogger('ice');

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
