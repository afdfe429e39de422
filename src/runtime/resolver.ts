import { lookup as dnsLookup, type LookupAddress } from 'node:dns';

/** Resolves DNS-resource names the way the reference does: the system resolver (getaddrinfo). */
export type LookupFunction = (hostname: string) => Promise<LookupAddress[]>;

export interface ResolverOptions {
  readonly lookup?: LookupFunction;
  readonly timeoutMs?: number;
  readonly cacheTtlMs?: number;
  readonly maxConcurrent?: number;
  /** Monotonic milliseconds; injectable for tests. */
  readonly clock?: () => number;
}

export class ResolveError extends Error {
  constructor(
    message: string,
    readonly reason: 'timeout' | 'overloaded' | 'failed',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const systemLookup: LookupFunction = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))),
  );

/**
 * Cached, coalescing name resolution: successful answers are kept 30 s, concurrent lookups of
 * one name share a single query, each query gives up after 10 s, and at most 1000 run at once.
 * Results list IPv6 addresses first, then IPv4, each in resolver order, without duplicates.
 */
export class Resolver {
  private readonly lookup: LookupFunction;
  private readonly timeoutMs: number;
  private readonly cacheTtlMs: number;
  private readonly maxConcurrent: number;
  private readonly clock: () => number;
  private readonly cache = new Map<string, { addresses: string[]; expiresAt: number }>();
  private readonly inFlight = new Map<string, Promise<string[]>>();

  constructor(options: ResolverOptions = {}) {
    this.lookup = options.lookup ?? systemLookup;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.cacheTtlMs = options.cacheTtlMs ?? 30_000;
    this.maxConcurrent = options.maxConcurrent ?? 1000;
    this.clock = options.clock ?? (() => performance.now());
  }

  get pendingCount(): number {
    return this.inFlight.size;
  }

  resolve(hostname: string): Promise<string[]> {
    const name = hostname.toLowerCase().replace(/\.$/, '');
    const cached = this.cache.get(name);
    if (cached !== undefined) {
      if (cached.expiresAt > this.clock()) return Promise.resolve(cached.addresses);
      this.cache.delete(name);
    }
    const pending = this.inFlight.get(name);
    if (pending !== undefined) return pending;
    if (this.inFlight.size >= this.maxConcurrent) {
      return Promise.reject(new ResolveError(`Too many concurrent DNS queries; dropping ${name}`, 'overloaded'));
    }
    const query = this.query(name).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, query);
    return query;
  }

  private async query(name: string): Promise<string[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ResolveError(`DNS query for ${name} timed out`, 'timeout')), this.timeoutMs);
    });
    try {
      const answers = await Promise.race([this.lookup(name), timeout]);
      const addresses = orderAddresses(answers);
      this.cache.set(name, { addresses, expiresAt: this.clock() + this.cacheTtlMs });
      return addresses;
    } catch (error) {
      if (error instanceof ResolveError) throw error;
      throw new ResolveError(`Failed to resolve ${name}`, 'failed', { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

function orderAddresses(answers: readonly LookupAddress[]): string[] {
  const v6 = answers.filter((a) => a.family === 6).map((a) => a.address);
  const v4 = answers.filter((a) => a.family === 4).map((a) => a.address);
  return [...new Set([...v6, ...v4])];
}
