// Coalesced, cached name resolution requests: one `resolve` request per name in flight, successes cached 30 s,
// a 10 s deadline per request, at most 1000 names in flight.

import { DNS_CACHE_TTL_MS, DNS_RESOLUTION_TIMEOUT_MS, MAX_CONCURRENT_RESOLUTIONS } from './constants.ts';
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
   * when the caller must ask the resolver, 'joined' when a request is already in flight, 'dropped' when full.
   */
  request(domain: string, waiter: W, now: number): readonly IpAddr[] | 'requested' | 'joined' | 'dropped' {
    const key = domain.toLowerCase();
    const cached = this.cache.get(key);
    if (cached !== undefined && now - cached.at < DNS_CACHE_TTL_MS) return cached.ips;
    const pending = this.pending.get(key);
    if (pending !== undefined) {
      pending.waiters.push(waiter);
      return 'joined';
    }
    if (this.pending.size >= MAX_CONCURRENT_RESOLUTIONS) return 'dropped';
    this.pending.set(key, { deadline: now + DNS_RESOLUTION_TIMEOUT_MS, waiters: [waiter] });
    return 'requested';
  }

  /** Completes the request for `domain`; returns its waiters (none if it already timed out). */
  complete(domain: string, outcome: ResolutionOutcome, now: number): W[] {
    const key = domain.toLowerCase();
    if (outcome !== undefined) this.cache.set(key, { ips: outcome, at: now });
    const pending = this.pending.get(key);
    if (pending === undefined) return [];
    this.pending.delete(key);
    return pending.waiters;
  }

  /** Removes requests whose deadline has passed; returns their waiters. Also drops stale cache entries. */
  expire(now: number): W[] {
    const failed: W[] = [];
    for (const [key, pending] of this.pending) {
      if (pending.deadline > now) continue;
      this.pending.delete(key);
      failed.push(...pending.waiters);
    }
    for (const [key, cached] of this.cache) if (now - cached.at >= DNS_CACHE_TTL_MS) this.cache.delete(key);
    return failed;
  }

  nextDeadline(): number | undefined {
    let earliest: number | undefined;
    for (const pending of this.pending.values()) {
      if (earliest === undefined || pending.deadline < earliest) earliest = pending.deadline;
    }
    return earliest;
  }

  get inFlight(): number {
    return this.pending.size;
  }
}
