// One client's DNS-resource translation plan: which real address each of its proxy IPs stands for.
//
// A client gives every domain its own proxy IPs (4 IPv4 and 4 IPv6 in the 1.6 client) and announces them with
// AssignedIps. The plan (1.6.0 `setup_nat`) maps the i-th proxy of a family, in address order, onto the resolved
// addresses of that family round-robin; a proxy with no address of its family still gets an entry (traffic to it
// is answered network-unreachable). Proxies are keyed by their IPv4 address or the low 32 bits of the IPv6 one.
//
// Bounded where the reference is not: a domain's proxies are replaced by each announcement (not added to), at most
// MAX_PROXY_IPS_PER_FAMILY per family are taken, and at most MAX_NAT_DOMAINS_PER_CLIENT domains are held (a new
// one beyond replaces the one whose proxies were used least recently).

import { compareIp, ipEquals, readU32 } from '../ip/index.ts';
import type { IpAddr } from '../ip/index.ts';
import { MAX_NAT_DOMAINS_PER_CLIENT, MAX_PROXY_IPS_PER_FAMILY } from './constants.ts';
import type { RealIpIds } from './nat.ts';

export interface Translation {
  readonly proxy: IpAddr;
  readonly domain: DomainPlan;
  /** The DNS resources the proxy was announced for (several resources may cover one domain). */
  readonly resources: Set<string>;
  /** Undefined when the domain has no address of the proxy's family. */
  real: IpAddr | undefined;
  /** The NAT's key for `real` (see RealIpIds); -1 without one. */
  realId: number;
}

export interface DomainPlan {
  /** Lowercase, without the trailing dot. */
  readonly name: string;
  proxies: Translation[];
  /** When a packet last went through one of its proxies, or it was last announced. */
  lastUsed: number;
}

export interface PlanChange {
  /** Translations that no longer exist. */
  readonly removed: readonly Translation[];
  /** The domain's translations after the change. */
  readonly current: readonly Translation[];
}

// The maps of every plan without any: read, never written (`assign` gives a plan its own first).
const NO_TRANSLATIONS: ReadonlyMap<number, Translation> = new Map();
const NO_DOMAINS: ReadonlyMap<string, DomainPlan> = new Map();
const NO_RESOURCES: ReadonlyMap<string, Set<Translation>> = new Map();

/** Most clients never announce a proxy IP: their plan holds no maps of its own until the first. */
export class ProxyTranslations {
  private v4 = NO_TRANSLATIONS as Map<number, Translation>;
  private v6 = NO_TRANSLATIONS as Map<number, Translation>;
  private domains = NO_DOMAINS as Map<string, DomainPlan>;
  /** resource id -> translations announced for it (kept while the resource is away: it may come back). */
  private byResource = NO_RESOURCES as Map<string, Set<Translation>>;

  get size(): number {
    return this.v4.size + this.v6.size;
  }

  get domainCount(): number {
    return this.domains.size;
  }

  /** The translation of the proxy address at `bytes[offset]`. */
  lookup(bytes: Uint8Array, offset: number, family: 4 | 6): Translation | undefined {
    return family === 4 ? this.v4.get(readU32(bytes, offset)) : this.v6.get(readU32(bytes, offset + 12));
  }

  get(proxy: IpAddr): Translation | undefined {
    return proxy.family === 4 ? this.v4.get(proxy.value) : this.v6.get(readU32(proxy.bytes, 12));
  }

  /** Translations announced for `resourceId`. */
  ofResource(resourceId: string): Iterable<Translation> {
    return this.byResource.get(resourceId) ?? NONE;
  }

  /**
   * Whether one of `proxies` translates for a domain other than `domain`: the client renumbered (it signed out
   * and in again) and everything it announced before is void (1.6.0 `have_proxy_ips_been_reassigned`).
   */
  reassigned(domain: string, proxies: readonly IpAddr[]): boolean {
    const name = domain.toLowerCase();
    for (const proxy of proxies) {
      const existing = this.get(proxy);
      if (existing !== undefined && existing.domain.name !== name) return true;
    }
    return false;
  }

  clear(): void {
    this.v4 = NO_TRANSLATIONS as Map<number, Translation>;
    this.v6 = NO_TRANSLATIONS as Map<number, Translation>;
    this.domains = NO_DOMAINS as Map<string, DomainPlan>;
    this.byResource = NO_RESOURCES as Map<string, Set<Translation>>;
  }

  /** Whether the plan holds maps of its own (a test hook: none until the first announcement, none after clear). */
  get allocated(): boolean {
    return this.domains !== NO_DOMAINS;
  }

  /**
   * Plans `domain` (announced for `resourceId`) onto `resolved`: its proxies become `proxies` (sorted, at most
   * MAX_PROXY_IPS_PER_FAMILY per family), the i-th of each family translating to the (i mod n)-th resolved
   * address of that family. Returns what went away and what the domain holds now.
   */
  assign(domain: string, resourceId: string, proxies: readonly IpAddr[], resolved: readonly IpAddr[], realIds: RealIpIds, now: number): PlanChange {
    const name = domain.toLowerCase();
    const removed: Translation[] = [];
    if (this.domains === NO_DOMAINS) {
      this.v4 = new Map();
      this.v6 = new Map();
      this.domains = new Map();
      this.byResource = new Map();
    }
    let plan = this.domains.get(name);
    if (plan === undefined) {
      if (this.domains.size >= MAX_NAT_DOMAINS_PER_CLIENT) this.evictLeastRecentlyUsed(removed);
      plan = { name, proxies: [], lastUsed: now };
      this.domains.set(name, plan);
    }
    plan.lastUsed = now;
    const wanted = takeProxies(proxies);
    for (const translation of plan.proxies) {
      if (!wanted.some((p) => ipEquals(p, translation.proxy))) {
        this.forget(translation);
        removed.push(translation);
      }
    }
    const realV4 = sortUnique(resolved.filter((ip) => ip.family === 4));
    const realV6 = sortUnique(resolved.filter((ip) => ip.family === 6));
    let nextV4 = 0;
    let nextV6 = 0;
    const current: Translation[] = [];
    for (const proxy of wanted) {
      const targets = proxy.family === 4 ? realV4 : realV6;
      const index = proxy.family === 4 ? nextV4++ : nextV6++;
      const real = targets.length === 0 ? undefined : targets[index % targets.length]!;
      let translation = this.get(proxy);
      if (translation === undefined) {
        translation = { proxy, domain: plan, resources: new Set(), real: undefined, realId: -1 };
        this.set(translation);
      }
      translation.resources.add(resourceId);
      let ofResource = this.byResource.get(resourceId);
      if (ofResource === undefined) this.byResource.set(resourceId, (ofResource = new Set()));
      ofResource.add(translation);
      translation.real = real;
      translation.realId = real === undefined ? -1 : realIds.idOf(real);
      current.push(translation);
    }
    plan.proxies = current;
    return { removed, current };
  }

  private evictLeastRecentlyUsed(removed: Translation[]): void {
    let oldest: DomainPlan | undefined;
    for (const plan of this.domains.values()) if (oldest === undefined || plan.lastUsed < oldest.lastUsed) oldest = plan;
    if (oldest === undefined) return;
    this.domains.delete(oldest.name);
    for (const translation of oldest.proxies) {
      this.forget(translation);
      removed.push(translation);
    }
  }

  private set(translation: Translation): void {
    const proxy = translation.proxy;
    if (proxy.family === 4) this.v4.set(proxy.value, translation);
    else this.v6.set(readU32(proxy.bytes, 12), translation);
  }

  private forget(translation: Translation): void {
    const proxy = translation.proxy;
    if (proxy.family === 4) this.v4.delete(proxy.value);
    else this.v6.delete(readU32(proxy.bytes, 12));
    for (const resourceId of translation.resources) {
      const ofResource = this.byResource.get(resourceId);
      if (ofResource === undefined) continue;
      ofResource.delete(translation);
      if (ofResource.size === 0) this.byResource.delete(resourceId);
    }
  }
}

const NONE: readonly Translation[] = [];

/** Sorted, without duplicates, at most MAX_PROXY_IPS_PER_FAMILY of each family (the lowest). */
function takeProxies(proxies: readonly IpAddr[]): IpAddr[] {
  const sorted = sortUnique(proxies);
  const taken: IpAddr[] = [];
  let v4 = 0;
  let v6 = 0;
  for (const proxy of sorted) {
    if (proxy.family === 4 ? v4++ < MAX_PROXY_IPS_PER_FAMILY : v6++ < MAX_PROXY_IPS_PER_FAMILY) taken.push(proxy);
  }
  return taken;
}

function sortUnique(ips: readonly IpAddr[]): IpAddr[] {
  const sorted = [...ips].sort(compareIp);
  return sorted.filter((ip, i) => i === 0 || !ipEquals(ip, sorted[i - 1]!));
}
