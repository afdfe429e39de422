// Per-client DNS-resource NAT: inside (proto, source port / echo id, proxy IP) <-> outside (proto, value, real IP).
// Keys are packed into one safe integer: ((family * 4 + proto) * 65536 + value) * 2^32 + ip32, where ip32 is the
// IPv4 address, the low 32 bits of an IPv6 proxy (proxies lie in one /107) or an interned id of an IPv6 real IP.
//
// Each session tracks its last packet in each direction and the FINs and RSTs seen (1.6.0 `EntryState`), and
// goes at the earliest of: its protocol's TTL after the last packet, 60 s after the last outgoing packet while
// nothing ever came back, 5 s after the last packet once both sides sent FIN, at once after a RST. A session past
// that time is gone for every packet (checked on lookup), and the table's deadline queue frees it within a second
// (`nextSweep`, `sweep`): one entry per session, moved only when a FIN or RST brings the removal forward (later
// removals are found when the entry comes up). Clearing the table is O(1) in the number of other clients.

import { TCP_FLAG_FIN, TCP_FLAG_RST, hashWords, readU32 } from '../ip/index.ts';
import type { IpAddr, Transport } from '../ip/index.ts';
import { DeadlineQueue } from '../util/deadline-queue.ts';
import {
  MAX_EXPIRED_NAT_TUPLES_PER_CLIENT,
  MAX_NAT_SESSIONS_PER_CLIENT,
  NAT_FIN_LINGER_MS,
  NAT_SWEEP_GRANULARITY_MS,
  NAT_TTL_ICMP_MS,
  NAT_TTL_TCP_MS,
  NAT_TTL_UDP_MS,
  NAT_UNCONFIRMED_TTL_MS,
} from './constants.ts';

const TWO_POW_32 = 0x1_0000_0000;

/** The protocols the NAT tracks; 0 = not translatable. */
export const enum L4 {
  None = 0,
  Tcp = 1,
  Udp = 2,
  Icmp = 3,
}

export function l4Of(transport: Transport): L4 {
  switch (transport) {
    case 'tcp':
      return L4.Tcp;
    case 'udp':
      return L4.Udp;
    case 'icmpv4':
    case 'icmpv6':
      return L4.Icmp;
    case 'unsupported':
      return L4.None;
  }
}

export function natKey(family: 4 | 6, l4: L4, value: number, ip32: number): number {
  return (((family === 4 ? 0 : 4) + l4) * 65536 + value) * TWO_POW_32 + ip32;
}

export function ttlOf(l4: L4): number {
  return l4 === L4.Tcp ? NAT_TTL_TCP_MS : l4 === L4.Udp ? NAT_TTL_UDP_MS : NAT_TTL_ICMP_MS;
}

/** Small integer ids for IPv6 real IPs so they fit the packed NAT key; IPv4 addresses are their own id. */
export class RealIpIds {
  private readonly buckets = new Map<number, { w0: number; w1: number; w2: number; w3: number; id: number }[]>();
  private next = 0;

  idOf(address: IpAddr): number {
    if (address.family === 4) return address.value;
    const found = this.lookupV6(address.bytes, 0);
    if (found >= 0) return found;
    const b = address.bytes;
    const entry = { w0: readU32(b, 0), w1: readU32(b, 4), w2: readU32(b, 8), w3: readU32(b, 12), id: this.next++ };
    const hash = hashWords(entry.w0, entry.w1, entry.w2, entry.w3);
    const bucket = this.buckets.get(hash);
    if (bucket === undefined) this.buckets.set(hash, [entry]);
    else bucket.push(entry);
    return entry.id;
  }

  /** The id of the IPv6 address at `bytes[offset]`, or -1 if it was never a real IP. */
  lookupV6(bytes: Uint8Array, offset: number): number {
    const w0 = readU32(bytes, offset);
    const w1 = readU32(bytes, offset + 4);
    const w2 = readU32(bytes, offset + 8);
    const w3 = readU32(bytes, offset + 12);
    const bucket = this.buckets.get(hashWords(w0, w1, w2, w3));
    if (bucket === undefined) return -1;
    for (let i = 0; i < bucket.length; i++) {
      const e = bucket[i]!;
      if (e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3) return e.id;
    }
    return -1;
  }
}

const enum Seen {
  OutgoingFin = 1,
  IncomingFin = 2,
  OutgoingRst = 4,
  IncomingRst = 8,
}

export class NatSession {
  lastOutgoing: number;
  /** -1 until the first packet comes back (the session is then unconfirmed). */
  lastIncoming = -1;
  seen = 0;

  constructor(
    readonly insideKey: number,
    readonly outsideKey: number,
    readonly l4: L4,
    readonly insideValue: number,
    readonly outsideValue: number,
    readonly proxy: IpAddr,
    readonly real: IpAddr,
    now: number,
  ) {
    this.lastOutgoing = now;
  }

  /** When the session goes (1.6.0 `EntryState::remove_at`). */
  removeAt(): number {
    const last = this.lastIncoming > this.lastOutgoing ? this.lastIncoming : this.lastOutgoing;
    let at = last + ttlOf(this.l4);
    if (this.lastIncoming < 0) at = Math.min(at, this.lastOutgoing + NAT_UNCONFIRMED_TTL_MS);
    if ((this.seen & (Seen.OutgoingFin | Seen.IncomingFin)) === (Seen.OutgoingFin | Seen.IncomingFin)) at = Math.min(at, last + NAT_FIN_LINGER_MS);
    if ((this.seen & (Seen.OutgoingRst | Seen.IncomingRst)) !== 0) at = Math.min(at, last);
    return at;
  }
}

export type NatOutcome = 'exhausted' | 'full';

/** The sessions and tuples of every table without any: read, never written (a table gets its own first). */
const NO_SESSIONS: ReadonlyMap<number, NatSession> = new Map();
const NO_TUPLES: ReadonlySet<number> = new Set();

/** Most clients never use a DNS resource: a table without sessions holds no maps of its own. */
export class NatTable {
  private byInside = NO_SESSIONS as Map<number, NatSession>;
  private byOutside = NO_SESSIONS as Map<number, NatSession>;
  /** Outside tuples of ended sessions, oldest first: a late reply to one is dropped rather than passed on. */
  private expired = NO_TUPLES as Set<number>;

  private readonly deadlines = new DeadlineQueue<NatSession>();

  get size(): number {
    return this.byInside.size;
  }

  /** When `sweep` has work to do (Infinity: never). */
  get nextSweep(): number {
    return this.deadlines.peekTime();
  }

  /** Deadline queue operations so far (a test hook: structural tests count work, not time). */
  get deadlineOperations(): number {
    return this.deadlines.operations;
  }

  /**
   * The session of an outgoing packet's (l4, value, proxy): an existing one keeps its outside tuple (and its
   * real IP, even when the proxy now translates elsewhere); a new one on `real` takes the original value if
   * free, else the next one up, wrapping to 1. `'exhausted'` when every value is taken, `'full'` when
   * the client has MAX_NAT_SESSIONS_PER_CLIENT sessions.
   */
  outgoing(l4: L4, value: number, proxy: IpAddr, proxy32: number, real: IpAddr, realId: number, tcpFlags: number, now: number): NatSession | NatOutcome {
    const family = proxy.family;
    const insideKey = natKey(family, l4, value, proxy32);
    const existing = this.live(this.byInside.get(insideKey), now);
    if (existing !== undefined) {
      existing.lastOutgoing = now;
      this.record(existing, tcpFlags, Seen.OutgoingFin, Seen.OutgoingRst);
      return existing;
    }
    if (this.byInside.size >= MAX_NAT_SESSIONS_PER_CLIENT) return 'full';
    const outsideValue = this.freeOutsideValue(family, l4, value, realId);
    if (outsideValue < 0) return 'exhausted';
    const outsideKey = natKey(family, l4, outsideValue, realId);
    const session = new NatSession(insideKey, outsideKey, l4, value, outsideValue, proxy, real, now);
    this.record(session, tcpFlags, Seen.OutgoingFin, Seen.OutgoingRst);
    if (this.byInside === NO_SESSIONS) {
      this.byInside = new Map();
      this.byOutside = new Map();
    }
    this.byInside.set(insideKey, session);
    this.byOutside.set(outsideKey, session);
    if (this.expired !== NO_TUPLES) this.expired.delete(outsideKey);
    this.deadlines.set(session, sweepTime(session.removeAt()));
    return session;
  }

  /**
   * A reply (or an ICMP error quoting an outgoing packet) for the outside tuple `outsideKey`: the live session,
   * now confirmed, or undefined (then `isExpired` tells whether the tuple belonged to an ended session).
   */
  incoming(outsideKey: number, tcpFlags: number, now: number): NatSession | undefined {
    const session = this.live(this.byOutside.get(outsideKey), now);
    if (session === undefined) return undefined;
    session.lastIncoming = now;
    this.record(session, tcpFlags, Seen.IncomingFin, Seen.IncomingRst);
    return session;
  }

  isExpired(outsideKey: number): boolean {
    return this.expired.has(outsideKey);
  }

  /**
   * Looks at up to `budget` sessions whose deadline came up: ends those whose time has come, queues the others
   * again. Returns how many it looked at.
   */
  sweep(now: number, budget: number): number {
    let done = 0;
    for (let session = done < budget ? this.deadlines.popDue(now) : undefined; session !== undefined; session = done < budget ? this.deadlines.popDue(now) : undefined) {
      done++;
      const removeAt = session.removeAt();
      if (now >= removeAt) this.end(session);
      else this.deadlines.set(session, sweepTime(removeAt));
    }
    return done;
  }

  /** Drops every session and remembered tuple (a proxy IP reassignment, or the client going away). */
  clear(): void {
    this.byInside = NO_SESSIONS as Map<number, NatSession>;
    this.byOutside = NO_SESSIONS as Map<number, NatSession>;
    this.expired = NO_TUPLES as Set<number>;
    this.deadlines.clear();
  }

  /** Whether the table holds maps of its own (a test hook: none until the first session, none once all ended). */
  get holdsSessionMaps(): boolean {
    return this.byInside !== NO_SESSIONS;
  }

  private live(session: NatSession | undefined, now: number): NatSession | undefined {
    if (session === undefined) return undefined;
    if (now < session.removeAt()) return session;
    this.end(session);
    return undefined;
  }

  private record(session: NatSession, tcpFlags: number, fin: Seen, rst: Seen): void {
    if ((tcpFlags & (TCP_FLAG_FIN | TCP_FLAG_RST)) === 0) return;
    if ((tcpFlags & TCP_FLAG_FIN) !== 0) session.seen |= fin;
    if ((tcpFlags & TCP_FLAG_RST) !== 0) session.seen |= rst;
    const at = sweepTime(session.removeAt());
    const queued = this.deadlines.timeOf(session);
    if (queued !== undefined && at < queued) this.deadlines.set(session, at);
  }

  private end(session: NatSession): void {
    this.byInside.delete(session.insideKey);
    if (this.byOutside.get(session.outsideKey) === session) this.byOutside.delete(session.outsideKey);
    this.deadlines.delete(session);
    if (this.byInside.size === 0) {
      this.byInside = NO_SESSIONS as Map<number, NatSession>;
      this.byOutside = NO_SESSIONS as Map<number, NatSession>;
      this.deadlines.clear();
    }
    if (this.expired === NO_TUPLES) this.expired = new Set();
    this.expired.add(session.outsideKey);
    if (this.expired.size > MAX_EXPIRED_NAT_TUPLES_PER_CLIENT) this.expired.delete(this.expired.values().next().value!);
  }

  private freeOutsideValue(family: 4 | 6, l4: L4, original: number, realId: number): number {
    for (let v = original; v <= 0xffff; v++) if (!this.byOutside.has(natKey(family, l4, v, realId))) return v;
    for (let v = 1; v < original; v++) if (!this.byOutside.has(natKey(family, l4, v, realId))) return v;
    return -1;
  }
}

/** Sessions are swept on a coarse grid, so the ones ending within the same second share one wake-up. */
function sweepTime(removeAt: number): number {
  return Math.ceil(removeAt / NAT_SWEEP_GRANULARITY_MS) * NAT_SWEEP_GRANULARITY_MS;
}
