import { Resolver as AresResolver } from 'node:dns/promises';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';

/**
 * Resolves DNS-resource names as 1.6.0 does (hickory with the system configuration): `A` and `AAAA` as two
 * independent lookups, the hosts file first, then the nameservers of /etc/resolv.conf; answers cached for their
 * record TTL in a cache of 512 entries. A failed lookup of one type contributes no address; only the whole
 * resolution running past 10 s is an error.
 */
export type RecordType = 'A' | 'AAAA';

export interface RecordAnswer {
  readonly address: string;
  /** Seconds the answer may be cached. */
  readonly ttl: number;
}

/** One lookup of one record type; rejects when the name has no such records or the query failed. */
export type RecordLookup = (name: string, type: RecordType) => Promise<readonly RecordAnswer[]>;

export interface ResolverOptions {
  readonly lookup?: RecordLookup;
  readonly timeoutMs?: number;
  readonly cacheSize?: number;
  readonly maxConcurrent?: number;
  /** Called with each lookup's duration (seconds), its type and whether it answered. */
  readonly observeLookup?: (seconds: number, type: RecordType, answered: boolean) => void;
  /** Monotonic milliseconds; injectable for tests. */
  readonly clock?: () => number;
}

export class ResolveError extends Error {
  constructor(
    message: string,
    readonly reason: 'timeout' | 'overloaded',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The reference's limits: 10 s per resolution, 512 cached answers, 1000 resolutions at once. */
export const RESOLUTION_TIMEOUT_MS = 10_000;
export const RESOLVER_CACHE_SIZE = 512;
export const MAX_CONCURRENT_RESOLUTIONS = 1000;
/** hickory's ceiling on a positive answer's lifetime in the cache. */
const MAX_TTL_SECONDS = 86_400;

interface CacheEntry {
  readonly addresses: readonly string[];
  readonly expiresAt: number;
}

/** Cached, coalescing resolution of names into their IPv4 then IPv6 addresses, without duplicates. */
export class Resolver {
  private readonly lookup: RecordLookup;
  private readonly timeoutMs: number;
  private readonly cacheSize: number;
  private readonly maxConcurrent: number;
  private readonly observeLookup: ResolverOptions['observeLookup'];
  private readonly clock: () => number;
  /** Keyed by `<type> <name>`, least recently used first. */
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<string[]>>();

  constructor(options: ResolverOptions = {}) {
    this.lookup = options.lookup ?? systemRecordLookup();
    this.timeoutMs = options.timeoutMs ?? RESOLUTION_TIMEOUT_MS;
    this.cacheSize = options.cacheSize ?? RESOLVER_CACHE_SIZE;
    this.maxConcurrent = options.maxConcurrent ?? MAX_CONCURRENT_RESOLUTIONS;
    this.observeLookup = options.observeLookup;
    this.clock = options.clock ?? (() => performance.now());
  }

  get pendingCount(): number {
    return this.inFlight.size;
  }

  get cachedCount(): number {
    return this.cache.size;
  }

  resolve(hostname: string): Promise<string[]> {
    const name = hostname.toLowerCase().replace(/\.$/, '');
    const pending = this.inFlight.get(name);
    if (pending !== undefined) return pending;
    const v4 = this.cached('A', name);
    const v6 = this.cached('AAAA', name);
    if (v4 !== undefined && v6 !== undefined) return Promise.resolve(unique(v4, v6));
    if (this.inFlight.size >= this.maxConcurrent) {
      return Promise.reject(new ResolveError(`Too many concurrent DNS queries; dropping ${name}`, 'overloaded'));
    }
    const query = this.query(name, v4, v6).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, query);
    return query;
  }

  private async query(name: string, v4: readonly string[] | undefined, v6: readonly string[] | undefined): Promise<string[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ResolveError(`DNS query for ${name} timed out`, 'timeout')), this.timeoutMs);
    });
    try {
      const both = Promise.all([v4 ?? this.lookupRecords(name, 'A'), v6 ?? this.lookupRecords(name, 'AAAA')]);
      const [ipv4, ipv6] = await Promise.race([both, timeout]);
      return unique(ipv4, ipv6);
    } finally {
      clearTimeout(timer);
    }
  }

  private async lookupRecords(name: string, type: RecordType): Promise<readonly string[]> {
    const startedAt = this.clock();
    let answers: readonly RecordAnswer[];
    try {
      answers = await this.lookup(name, type);
    } catch {
      this.observeLookup?.((this.clock() - startedAt) / 1000, type, false);
      return [];
    }
    this.observeLookup?.((this.clock() - startedAt) / 1000, type, true);
    const family = type === 'A' ? 4 : 6;
    const addresses = answers.filter((answer) => isIP(answer.address) === family).map((answer) => answer.address);
    const ttl = Math.min(MAX_TTL_SECONDS, ...answers.map((answer) => answer.ttl));
    if (addresses.length > 0 && ttl > 0) this.remember(`${type} ${name}`, { addresses, expiresAt: this.clock() + ttl * 1000 });
    return addresses;
  }

  private cached(type: RecordType, name: string): readonly string[] | undefined {
    const key = `${type} ${name}`;
    const entry = this.cache.get(key);
    if (entry === undefined) return undefined;
    this.cache.delete(key);
    if (entry.expiresAt <= this.clock()) return undefined;
    this.cache.set(key, entry);
    return entry.addresses;
  }

  private remember(key: string, entry: CacheEntry): void {
    this.cache.delete(key);
    this.cache.set(key, entry);
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as string);
  }
}

function unique(ipv4: readonly string[], ipv6: readonly string[]): string[] {
  return [...new Set([...ipv4, ...ipv6])];
}

/** How long an answer from the hosts file is kept (hickory gives hosts entries a lifetime of its own). */
const HOSTS_TTL_SECONDS = 86_400;
const HOSTS_RECHECK_MS = 1_000;

/**
 * The hosts file first, then the nameservers of /etc/resolv.conf through c-ares (the configuration is read
 * when the lookup is built, as hickory's system configuration is).
 */
export function systemRecordLookup(options: { hostsFile?: string; clock?: () => number } = {}): RecordLookup {
  const hosts = new HostsFile(options.hostsFile ?? '/etc/hosts', options.clock ?? (() => performance.now()));
  const dns = new AresResolver({ timeout: RESOLUTION_TIMEOUT_MS / 2, tries: 2 });
  return async (name, type) => {
    const local = (await hosts.lookup(name)).filter((address) => isIP(address) === (type === 'A' ? 4 : 6));
    if (local.length > 0) return local.map((address) => ({ address, ttl: HOSTS_TTL_SECONDS }));
    const records = type === 'A' ? await dns.resolve4(name, { ttl: true }) : await dns.resolve6(name, { ttl: true });
    return records;
  };
}

/** /etc/hosts, read again when it changes (checked at most once a second). */
class HostsFile {
  private entries = new Map<string, string[]>();
  private mtimeMs = -1;
  private checkedAt = -Infinity;
  private reloading: Promise<void> | undefined;

  constructor(
    private readonly path: string,
    private readonly clock: () => number,
  ) {}

  async lookup(name: string): Promise<readonly string[]> {
    const now = this.clock();
    if (now - this.checkedAt >= HOSTS_RECHECK_MS) {
      this.checkedAt = now;
      this.reloading = this.reload();
    }
    await this.reloading;
    return this.entries.get(name) ?? [];
  }

  private async reload(): Promise<void> {
    try {
      const { mtimeMs } = await stat(this.path);
      if (mtimeMs === this.mtimeMs) return;
      this.mtimeMs = mtimeMs;
      this.entries = parseHosts(await readFile(this.path, 'utf8'));
    } catch {
      this.mtimeMs = -1;
      this.entries = new Map();
    }
  }
}

/** Name (lower case, no trailing dot) to its addresses in file order. */
export function parseHosts(text: string): Map<string, string[]> {
  const entries = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const fields = line.replace(/#.*/, '').trim().split(/\s+/);
    const address = fields[0]?.replace(/%.*$/, '');
    if (address === undefined || isIP(address) === 0) continue;
    for (const alias of fields.slice(1)) {
      const name = alias.toLowerCase().replace(/\.$/, '');
      const list = entries.get(name) ?? [];
      if (!list.includes(address)) list.push(address);
      entries.set(name, list);
    }
  }
  return entries;
}
