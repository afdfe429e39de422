// FlowTracker: turns the packets the gateway forwards into flow reports. Sans-IO: it is fed packets (already
// judged by the policy), authorizations and time, and drained through `pollRecord()` and `pollTimeout()`.
//
// A flow is one TCP or UDP conversation of one client with one resource: it is keyed by the client, the
// resource and the inner 5-tuple in the initiator's orientation (client -> resource). The rules are the
// reference's (rust/libs/connlib/flow-tracker at gateway-1.6.0), seen from the gateway, which is always the
// responder:
//
// - "tx" (client -> resource) packets arrive from the network. They create flows, split them and close them
//   on RST; the outer path they arrived on is recorded, a change appends a path, a 17th path splits the flow.
//   Only an authorization that carries an ingest token gets flows (the token is the attribution).
// - "rx" (resource -> client) packets come from the TUN device and only count once they were handed to the
//   tunnel; they never create a flow.
// - TCP: FIN or RST never opens a flow, nor does a bare ACK (the tail of a closed flow); a SYN after the
//   client sent anything but SYNs starts a new flow on the same tuple; RST closes at once; FIN both ways
//   closes shortly after the last packet (`FIN_LINGER_MS`), the report ending at that last packet.
// - Any flow idle for `FLOW_IDLE_TIMEOUT_MS` closes, ending at the time it is noticed.
// - "bytes" are transport payload bytes, as in the reference.
//
// Beyond the reference: the number of flows is bounded per client and in total; at a bound the oldest flow
// (by start) is closed and reported, and counted in `stats`.
//
// Cost: an existing flow costs a hash lookup, a few field compares and counter updates per packet, with no
// allocation. Idle deadlines live in a DeadlineQueue and are not moved per packet: a flow's entry is checked
// when it comes due and re-armed at `lastPacket + timeout` if the flow was active meanwhile, so a timer fire
// visits only flows that are (or were) due.

import { PROTOCOL_TCP, formatIpv4, formatIpv6, writeU32 } from '../ip/index.ts';
import { createLogger } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import { DeadlineQueue } from '../util/deadline-queue.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import { FIN_LINGER_MS, FLOW_IDLE_TIMEOUT_MS, MAX_FLOWS, MAX_FLOWS_PER_CLIENT, MAX_OUTERS_PER_FLOW } from './constants.ts';
import type { IngestToken } from './ingest-token.ts';
import { PacketTuple } from './packet-tuple.ts';
import type { FlowClose, FlowRecord, OuterPath } from './record.ts';
import { UtcClock } from './utc-time.ts';

export interface FlowTrackerOptions {
  /** Monotonic milliseconds at creation, and the wall clock (unix ms) at that instant. */
  readonly now: number;
  readonly unixMs: number;
  readonly maxFlowsPerClient?: number;
  readonly maxFlows?: number;
  readonly logger?: Logger;
}

export interface FlowTrackerStats {
  opened: number;
  closed: number;
  /** Flows closed early because their client reached `maxFlowsPerClient`. */
  evictedForClient: number;
  /** Flows closed early because the tracker reached `maxFlows`. */
  evictedForTotal: number;
  /** Flows split because their outer path changed more than `MAX_OUTERS_PER_FLOW` times. */
  splitOnPaths: number;
  /** Deadline entries handled by `handleTimeout` (a structural test hook: work per fire). */
  deadlineVisits: number;
}

export class FlowTracker {
  /** The packet being recorded: load it, then call `clientToResource` or `resourceToClient`. */
  readonly packet = new PacketTuple();
  readonly stats: FlowTrackerStats = { opened: 0, closed: 0, evictedForClient: 0, evictedForTotal: 0, splitOnPaths: 0, deadlineVisits: 0 };
  private enabledFlag = false;
  private readonly clock: UtcClock;
  private readonly logger: Logger;
  private readonly maxFlowsPerClient: number;
  private readonly maxFlows: number;
  private readonly clients = new Map<string, ClientFlows>();
  private readonly buckets = new Map<number, Flow>();
  private readonly deadlines = new DeadlineQueue<Flow>();
  private readonly records: FlowRecord[] = [];
  private recordsHead = 0;
  private count = 0;
  private oldest: Flow | undefined;
  private newest: Flow | undefined;
  private nextScopeId = 1;
  /** The last (client, resource) looked up and its scope: consecutive packets of a flow skip both maps. */
  private cachedClientId: string | undefined;
  private cachedResourceId: string | undefined;
  private cachedScope: Scope | undefined;
  /** The flow of the last packet: consecutive packets of one flow skip the hash and the bucket lookup. */
  private lastFlow: Flow | undefined;

  constructor(options: FlowTrackerOptions) {
    this.clock = new UtcClock(options.now, options.unixMs);
    this.logger = options.logger ?? createLogger('firezone_tunnel::flow_tracker');
    this.maxFlowsPerClient = options.maxFlowsPerClient ?? MAX_FLOWS_PER_CLIENT;
    this.maxFlows = options.maxFlows ?? MAX_FLOWS;
  }

  get enabled(): boolean {
    return this.enabledFlag;
  }

  /** Turns recording of new packets on or off; flows already tracked still close and report. */
  setEnabled(enabled: boolean): void {
    if (enabled !== this.enabledFlag) this.logger.info('Flow tracking toggled', { enabled });
    this.enabledFlag = enabled;
  }

  get flowCount(): number {
    return this.count;
  }

  flowCountOf(clientId: string): number {
    return this.clients.get(clientId.toLowerCase())?.count ?? 0;
  }

  // ---- Authorizations (control plane) -------------------------------------------------------------------------

  /** The ingest token of (client, resource): flows of that authorization are recorded with it. */
  authorize(clientId: string, resourceId: string, token: IngestToken): void {
    const cid = clientId.toLowerCase();
    const rid = resourceId.toLowerCase();
    let client = this.clients.get(cid);
    if (client === undefined) {
      client = new ClientFlows(cid);
      this.clients.set(cid, client);
    }
    let scope = client.scopes.get(rid);
    if (scope === undefined) {
      scope = new Scope(this.nextScopeId++, client, rid);
      client.scopes.set(rid, scope);
      this.cachedClientId = undefined;
    }
    scope.token = token;
  }

  /** No new flows for (client, resource); its open flows run to their end with the token they started with. */
  revoke(clientId: string, resourceId: string): void {
    const client = this.clients.get(clientId.toLowerCase());
    const scope = client?.scopes.get(resourceId.toLowerCase());
    if (scope === undefined) return;
    scope.token = undefined;
    this.forgetIfUnused(scope);
  }

  /** `revoke` for every resource of the client. */
  removeClient(clientId: string): void {
    const client = this.clients.get(clientId.toLowerCase());
    if (client === undefined) return;
    for (const scope of [...client.scopes.values()]) {
      scope.token = undefined;
      this.forgetIfUnused(scope);
    }
  }

  /** Revokes every authorization of a listed client that `keep` does not name (the `init` rule). */
  retainAuthorizations(keep: ReadonlyMap<string, ReadonlySet<string>>): void {
    for (const [clientId, resources] of keep) {
      const client = this.clients.get(clientId.toLowerCase());
      if (client === undefined) continue;
      for (const scope of [...client.scopes.values()]) {
        if (resources.has(scope.resourceId)) continue;
        scope.token = undefined;
        this.forgetIfUnused(scope);
      }
    }
  }

  // ---- Packets (hot path) --------------------------------------------------------------------------------------

  /**
   * `packet` (loaded by the caller) went from the client to the resource: after the policy let it through and
   * after any NAT, as it leaves for the resource. It arrived from `from` on our `to`. Ids are lower-case (as
   * the policy core keeps them); `domain` is the DNS resource's name, if any.
   */
  clientToResource(clientId: string, resourceId: string, domain: string | undefined, from: SocketAddr, to: SocketAddr, now: number): void {
    if (!this.enabledFlag) return;
    const t = this.packet;
    if (t.protocol === 0) return;
    const scope = this.scopeOf(clientId, resourceId);
    if (scope === undefined || scope.token === undefined) return;
    let flow = this.lastFlow;
    if (flow === undefined || flow.scope !== scope || !flow.matches(t)) {
      flow = this.find(scope, t, flowHash(scope.id, t));
      if (flow === undefined) {
        if (t.protocol === PROTOCOL_TCP && (t.fin || t.rst || (t.ack && !t.syn && t.payloadLength === 0))) return;
        this.open(scope, scope.token, domain, flowHash(scope.id, t), from, to, now);
        return;
      }
      this.lastFlow = flow;
    }
    if (flow.outers.length >= MAX_OUTERS_PER_FLOW && !flow.isCurrentPath(from, to)) {
      this.stats.splitOnPaths++;
      this.close(flow, this.clock.micros(now));
      this.open(scope, scope.token, domain, flow.hash, from, to, now);
      return;
    }
    if (t.protocol === PROTOCOL_TCP && t.syn && flow.nonSynTx) {
      this.close(flow, this.clock.micros(now));
      this.open(scope, scope.token, domain, flow.hash, from, to, now);
      return;
    }
    if (!flow.isCurrentPath(from, to)) flow.addPath(from, to, this.clock.micros(now));
    flow.txPackets++;
    flow.txBytes += t.payloadLength;
    flow.lastPacket = now;
    if (t.protocol !== PROTOCOL_TCP) return;
    if (!t.syn) flow.nonSynTx = true;
    if (t.rst) {
      this.close(flow, this.clock.micros(now));
      return;
    }
    if (t.fin && !flow.finTx) {
      flow.finTx = true;
      if (flow.finRx) this.lingerAfterFins(flow, now);
    }
  }

  /**
   * `packet` (loaded by the caller, as read from the TUN device, before any NAT) went from the resource to the
   * client and was handed to the client's tunnel.
   */
  resourceToClient(clientId: string, resourceId: string, now: number): void {
    if (!this.enabledFlag) return;
    const t = this.packet;
    if (t.protocol === 0) return;
    const scope = this.scopeOf(clientId, resourceId);
    if (scope === undefined) return;
    t.flip();
    let flow = this.lastFlow;
    if (flow === undefined || flow.scope !== scope || !flow.matches(t)) {
      flow = this.find(scope, t, flowHash(scope.id, t));
      if (flow !== undefined) this.lastFlow = flow;
    }
    t.flip();
    if (flow === undefined) return;
    flow.rxPackets++;
    flow.rxBytes += t.payloadLength;
    flow.lastPacket = now;
    if (t.protocol !== PROTOCOL_TCP) return;
    if (t.rst) {
      this.close(flow, this.clock.micros(now));
      return;
    }
    if (t.fin && !flow.finRx) {
      flow.finRx = true;
      if (flow.finTx) this.lingerAfterFins(flow, now);
    }
  }

  // ---- Time and outputs ----------------------------------------------------------------------------------------

  handleTimeout(now: number): void {
    for (let flow = this.deadlines.popDue(now); flow !== undefined; flow = this.deadlines.popDue(now)) {
      this.stats.deadlineVisits++;
      const finished = flow.finTx && flow.finRx;
      const due = flow.lastPacket + (finished ? FIN_LINGER_MS : FLOW_IDLE_TIMEOUT_MS);
      if (due > now) {
        this.deadlines.set(flow, due);
        continue;
      }
      this.close(flow, this.clock.micros(finished ? flow.lastPacket : now));
    }
  }

  pollTimeout(): number | undefined {
    const at = this.deadlines.peekTime();
    return at === Infinity ? undefined : at;
  }

  pollRecord(): FlowRecord | undefined {
    if (this.recordsHead === this.records.length) return undefined;
    const record = this.records[this.recordsHead]!;
    this.records[this.recordsHead++] = undefined as unknown as FlowRecord;
    if (this.recordsHead === this.records.length) {
      this.records.length = 0;
      this.recordsHead = 0;
    }
    return record;
  }

  /** Closes every flow (shutdown), each report ending at `now`. */
  closeAll(now: number): void {
    const end = this.clock.micros(now);
    while (this.oldest !== undefined) this.close(this.oldest, end);
  }

  // ---- Helpers -------------------------------------------------------------------------------------------------

  private scopeOf(clientId: string, resourceId: string): Scope | undefined {
    if (clientId === this.cachedClientId && resourceId === this.cachedResourceId) return this.cachedScope;
    const scope = this.clients.get(clientId)?.scopes.get(resourceId);
    this.cachedClientId = clientId;
    this.cachedResourceId = resourceId;
    this.cachedScope = scope;
    return scope;
  }

  private find(scope: Scope, t: PacketTuple, hash: number): Flow | undefined {
    for (let flow = this.buckets.get(hash); flow !== undefined; flow = flow.nextSameHash) {
      if (flow.scope === scope && flow.matches(t)) return flow;
    }
    return undefined;
  }

  private open(scope: Scope, token: IngestToken, domain: string | undefined, hash: number, from: SocketAddr, to: SocketAddr, now: number): void {
    const client = scope.client;
    if (client.count >= this.maxFlowsPerClient && client.oldest !== undefined) {
      this.stats.evictedForClient++;
      this.warnEviction('client', client.id);
      this.close(client.oldest, this.clock.micros(now));
    }
    if (this.count >= this.maxFlows && this.oldest !== undefined) {
      this.stats.evictedForTotal++;
      this.warnEviction('total', client.id);
      this.close(this.oldest, this.clock.micros(now));
    }
    const t = this.packet;
    const start = this.clock.micros(now);
    const flow = new Flow(scope, t, hash, token, domain, start, now, { from, to, activatedAt: start });
    flow.nextSameHash = this.buckets.get(hash);
    this.buckets.set(hash, flow);
    flow.allPrev = this.newest;
    if (this.newest !== undefined) this.newest.allNext = flow;
    else this.oldest = flow;
    this.newest = flow;
    flow.clientPrev = client.newest;
    if (client.newest !== undefined) client.newest.clientNext = flow;
    else client.oldest = flow;
    client.newest = flow;
    client.count++;
    scope.flowCount++;
    this.count++;
    this.stats.opened++;
    this.deadlines.set(flow, now + FLOW_IDLE_TIMEOUT_MS);
    this.lastFlow = flow;
    this.emit(flow, undefined);
  }

  private close(flow: Flow, endMicros: number): void {
    if (this.lastFlow === flow) this.lastFlow = undefined;
    const head = this.buckets.get(flow.hash);
    if (head === flow) {
      if (flow.nextSameHash === undefined) this.buckets.delete(flow.hash);
      else this.buckets.set(flow.hash, flow.nextSameHash);
    } else {
      let previous = head;
      while (previous !== undefined && previous.nextSameHash !== flow) previous = previous.nextSameHash;
      if (previous !== undefined) previous.nextSameHash = flow.nextSameHash;
    }
    if (flow.allPrev !== undefined) flow.allPrev.allNext = flow.allNext;
    else this.oldest = flow.allNext;
    if (flow.allNext !== undefined) flow.allNext.allPrev = flow.allPrev;
    else this.newest = flow.allPrev;
    const scope = flow.scope;
    const client = scope.client;
    if (flow.clientPrev !== undefined) flow.clientPrev.clientNext = flow.clientNext;
    else client.oldest = flow.clientNext;
    if (flow.clientNext !== undefined) flow.clientNext.clientPrev = flow.clientPrev;
    else client.newest = flow.clientPrev;
    client.count--;
    scope.flowCount--;
    this.count--;
    this.stats.closed++;
    this.deadlines.delete(flow);
    this.emit(flow, {
      flowEnd: endMicros,
      lastPacket: this.clock.micros(flow.lastPacket),
      rxPackets: flow.rxPackets,
      txPackets: flow.txPackets,
      rxBytes: flow.rxBytes,
      txBytes: flow.txBytes,
    });
    this.forgetIfUnused(scope);
  }

  private lingerAfterFins(flow: Flow, now: number): void {
    const at = now + FIN_LINGER_MS;
    const current = this.deadlines.timeOf(flow);
    if (current === undefined || at < current) this.deadlines.set(flow, at);
  }

  private emit(flow: Flow, close: FlowClose | undefined): void {
    this.records.push({
      token: flow.token,
      protocol: flow.protocol === PROTOCOL_TCP ? 'tcp' : 'udp',
      innerSrcIp: flow.srcText,
      innerSrcPort: flow.srcPort,
      innerDstIp: flow.dstText,
      innerDstPort: flow.dstPort,
      domain: flow.domain,
      outers: close === undefined ? flow.outers.slice() : flow.outers,
      flowStart: flow.start,
      close,
    });
  }

  private forgetIfUnused(scope: Scope): void {
    if (scope.token !== undefined || scope.flowCount > 0) return;
    const client = scope.client;
    this.cachedClientId = undefined;
    this.cachedScope = undefined;
    if (client.scopes.get(scope.resourceId) === scope) client.scopes.delete(scope.resourceId);
    if (client.scopes.size === 0 && this.clients.get(client.id) === client) this.clients.delete(client.id);
  }

  private warnEviction(bound: 'client' | 'total', clientId: string): void {
    const evicted = this.stats.evictedForClient + this.stats.evictedForTotal;
    if (evicted === 1 || evicted % 1000 === 0) {
      this.logger.warn('Too many flows tracked; closing the oldest', { bound, cid: clientId, evicted });
    }
  }
}

class ClientFlows {
  readonly scopes = new Map<string, Scope>();
  count = 0;
  oldest: Flow | undefined;
  newest: Flow | undefined;

  constructor(readonly id: string) {}
}

/** One authorization (client, resource) and the ingest token new flows get. */
class Scope {
  token: IngestToken | undefined;
  flowCount = 0;

  constructor(
    readonly id: number,
    readonly client: ClientFlows,
    readonly resourceId: string,
  ) {}
}

class Flow {
  readonly protocol: number;
  readonly family: 4 | 6;
  readonly src0: number;
  readonly src1: number;
  readonly src2: number;
  readonly src3: number;
  readonly dst0: number;
  readonly dst1: number;
  readonly dst2: number;
  readonly dst3: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly srcText: string;
  readonly dstText: string;
  readonly outers: OuterPath[];
  nextSameHash: Flow | undefined;
  allPrev: Flow | undefined;
  allNext: Flow | undefined;
  clientPrev: Flow | undefined;
  clientNext: Flow | undefined;
  txPackets = 1;
  txBytes: number;
  rxPackets = 0;
  rxBytes = 0;
  finTx = false;
  finRx = false;
  /** The client sent something other than a SYN: a later SYN starts a new flow. */
  nonSynTx: boolean;
  private pathFrom: SocketAddr;
  private pathTo: SocketAddr;

  constructor(
    readonly scope: Scope,
    t: PacketTuple,
    readonly hash: number,
    readonly token: IngestToken,
    readonly domain: string | undefined,
    /** Unix µs. */
    readonly start: number,
    /** Monotonic ms. */
    public lastPacket: number,
    path: OuterPath,
  ) {
    this.protocol = t.protocol;
    this.family = t.family;
    this.src0 = t.src0;
    this.src1 = t.src1;
    this.src2 = t.src2;
    this.src3 = t.src3;
    this.dst0 = t.dst0;
    this.dst1 = t.dst1;
    this.dst2 = t.dst2;
    this.dst3 = t.dst3;
    this.srcPort = t.srcPort;
    this.dstPort = t.dstPort;
    this.srcText = addressText(t.family, t.src0, t.src1, t.src2, t.src3);
    this.dstText = addressText(t.family, t.dst0, t.dst1, t.dst2, t.dst3);
    this.txBytes = t.payloadLength;
    this.nonSynTx = !t.syn;
    this.outers = [path];
    this.pathFrom = path.from!;
    this.pathTo = path.to;
  }

  matches(t: PacketTuple): boolean {
    return (
      this.srcPort === t.srcPort &&
      this.dstPort === t.dstPort &&
      this.protocol === t.protocol &&
      this.src0 === t.src0 &&
      this.dst0 === t.dst0 &&
      this.family === t.family &&
      this.src1 === t.src1 &&
      this.src2 === t.src2 &&
      this.src3 === t.src3 &&
      this.dst1 === t.dst1 &&
      this.dst2 === t.dst2 &&
      this.dst3 === t.dst3
    );
  }

  isCurrentPath(from: SocketAddr, to: SocketAddr): boolean {
    return sameEndpoint(this.pathFrom, from) && sameEndpoint(this.pathTo, to);
  }

  addPath(from: SocketAddr, to: SocketAddr, activatedAt: number): void {
    this.outers.push({ from, to, activatedAt });
    this.pathFrom = from;
    this.pathTo = to;
  }
}

function sameEndpoint(a: SocketAddr, b: SocketAddr): boolean {
  return a === b || (a.port === b.port && a.address === b.address);
}

function flowHash(scopeId: number, t: PacketTuple): number {
  let h = Math.imul(scopeId ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ ((t.srcPort << 16) | t.dstPort), 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ t.src0 ^ (t.protocol << 24), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ t.dst0, 0xc2b2ae35);
  if (t.family === 6) {
    h = Math.imul(h ^ (h >>> 16) ^ t.src3, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13) ^ t.dst3 ^ t.src1 ^ t.dst1, 0xc2b2ae35);
    h = Math.imul(h ^ (h >>> 16) ^ t.src2 ^ t.dst2, 0x85ebca6b);
  }
  // 30 bits: a small integer, so using it as a Map key boxes nothing.
  return (h ^ (h >>> 16)) & 0x3fffffff;
}

function addressText(family: 4 | 6, w0: number, w1: number, w2: number, w3: number): string {
  if (family === 4) return formatIpv4(w0);
  const bytes = new Uint8Array(16);
  writeU32(bytes, 0, w0);
  writeU32(bytes, 4, w1);
  writeU32(bytes, 8, w2);
  writeU32(bytes, 12, w3);
  return formatIpv6(bytes);
}
