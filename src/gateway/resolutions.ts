// Coalesced, cached name resolution requests: one `resolve` request per name in flight, successes cached 30 s,
// a 10 s deadline per request, at most MAX_CONCURRENT_RESOLUTIONS names in flight and MAX_CACHED_RESOLUTIONS
// cached. Deadlines and cache lifetimes are constant, so both maps are in expiry order (an entry is re-inserted
// when renewed) and expiring costs only the entries that expire.

import { DNS_CACHE_TTL_MS, DNS_RESOLUTION_TIMEOUT_MS, MAX_CACHED_RESOLUTIONS, MAX_CONCURRENT_RESOLUTIONS } from './constants.ts';
import type { IpAddr } from '../ip/index.ts';

export type ResolutionOutcome = readonly IpAddr[] | undefined;

interface Pending<W> {
  readonly deadline: number;
  readonly waiters: W[];
}

export class Resolutions<W> {
  private readonly cache = new Map<string, { readonly ips: readonly IpAddr[]; readonly at: number }>();
  private readonly pending = new Map<string, Pending<W>>();

  /**
   * Registers `waiter` for `domain`. Returns the cached IPs if fresh (the waiter is then not stored), 'requested'
   * when the caller must ask the resolver, 'joined' when a request is already in flight, 'full' when too many
   * names are in flight.
   */
  request(domain: string, waiter: W, now: number): readonly IpAddr[] | 'requested' | 'joined' | 'full' {
    const key = domain.toLowerCase();
    const cached = this.cache.get(key);
    if (cached !== undefined && now - cached.at < DNS_CACHE_TTL_MS) return cached.ips;
    const pending = this.pending.get(key);
    if (pending !== undefined) {
      pending.waiters.push(waiter);
      return 'joined';
    }
    if (this.pending.size >= MAX_CONCURRENT_RESOLUTIONS) return 'full';
    this.pending.set(key, { deadline: now + DNS_RESOLUTION_TIMEOUT_MS, waiters: [waiter] });
    return 'requested';
  }

  /** Completes the request for `domain`; returns its waiters (none if it already timed out). */
  complete(domain: string, outcome: ResolutionOutcome, now: number): W[] {
    const key = domain.toLowerCase();
    if (outcome !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, { ips: outcome, at: now });
      if (this.cache.size > MAX_CACHED_RESOLUTIONS) this.cache.delete(this.cache.keys().next().value!);
    }
    const pending = this.pending.get(key);
    if (pending === undefined) return [];
    this.pending.delete(key);
    return pending.waiters;
  }

  /** Removes requests whose deadline has passed and returns their waiters; drops stale cache entries. */
  expire(now: number): W[] {
    const failed: W[] = [];
    for (const [key, pending] of this.pending) {
      if (pending.deadline > now) break;
      this.pending.delete(key);
      for (const waiter of pending.waiters) failed.push(waiter);
    }
    for (const [key, cached] of this.cache) {
      if (now - cached.at < DNS_CACHE_TTL_MS) break;
      this.cache.delete(key);
    }
    return failed;
  }

  /** The earliest request deadline (stale cache entries need no wake-up: they go with the next `expire`). */
  nextDeadline(): number | undefined {
    for (const pending of this.pending.values()) return pending.deadline;
    return undefined;
  }

  get inFlight(): number {
    return this.pending.size;
  }
}
