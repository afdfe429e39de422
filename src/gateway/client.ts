// The policy state of one client on the gateway: its resources, the filter table derived from them, the
// DNS-resource translation plan (proxy -> real IP) and its NAT sessions.

import { PrefixTable, cidrContains, cidrContainsCidr, compareIp, hostCidr, ipEquals, readU32 } from '../ip/index.ts';
import type { Cidr, IpAddr } from '../ip/index.ts';
import { IPV4_PROXY_RANGE, IPV6_PROXY_RANGE } from './constants.ts';
import { matchesDomainPattern } from './domain-pattern.ts';
import { FilterEngine } from './filter.ts';
import { NatTable } from './nat.ts';
import type { RealIpIds } from './nat.ts';
import type { Filter } from './types.ts';

export type Resource =
  | { readonly type: 'cidr'; readonly id: string; readonly network: Cidr; filters: readonly Filter[]; expiresAt: number | undefined }
  | {
      readonly type: 'dns';
      readonly id: string;
      readonly pattern: string;
      readonly domains: Map<string, readonly IpAddr[]>;
      filters: readonly Filter[];
      expiresAt: number | undefined;
    }
  | { readonly type: 'internet'; readonly id: string; expiresAt: number | undefined };

export interface Translation {
  readonly resourceId: string;
  readonly proxy: IpAddr;
  readonly real: IpAddr;
  readonly realId: number;
}

export type AddResult = 'added' | 'filters-replaced' | 'type-mismatch';

export class ClientOnGateway {
  readonly resources = new Map<string, Resource>();
  internetEnabled = false;
  filters = new PrefixTable<FilterEngine>();
  /** Keyed by the IPv4 proxy address. */
  readonly translationsV4 = new Map<number, Translation>();
  /** Keyed by the low 32 bits of the IPv6 proxy address (all proxies lie in one /107). */
  readonly translationsV6 = new Map<number, Translation>();
  readonly nat = new NatTable();
  /** Host-route keys of the IP table owned by this client, for removal. */
  readonly ipKeysV4: number[] = [];
  readonly ipKeysV6: number[] = [];

  constructor(
    readonly id: string,
    readonly tunV4: IpAddr,
    readonly tunV6: IpAddr,
    readonly gatewayV4: IpAddr,
    readonly gatewayV6: IpAddr,
  ) {}

  /**
   * A known id gets the new filters and the new expiry (the reference keeps the old expiry; a re-authorization
   * with a later expiry must not be cut short).
   */
  addResource(resource: Resource): AddResult {
    const existing = this.resources.get(resource.id);
    if (existing === undefined) {
      this.resources.set(resource.id, resource);
      this.recomputeFilters();
      return 'added';
    }
    if (existing.type !== resource.type) return 'type-mismatch';
    existing.expiresAt = resource.expiresAt;
    if (existing.type !== 'internet' && resource.type !== 'internet') existing.filters = resource.filters;
    this.recomputeFilters();
    return 'filters-replaced';
  }

  /** Replaces the filters of a held resource of the same type. */
  updateFilters(resourceId: string, type: Resource['type'], filters: readonly Filter[]): 'updated' | 'absent' | 'type-mismatch' {
    const existing = this.resources.get(resourceId);
    if (existing === undefined) return 'absent';
    if (existing.type !== type) return 'type-mismatch';
    if (existing.type === 'internet') return 'updated';
    existing.filters = filters;
    this.recomputeFilters();
    return 'updated';
  }

  removeResource(resourceId: string): boolean {
    if (!this.resources.delete(resourceId)) return false;
    this.recomputeFilters();
    return true;
  }

  /** Drops every resource not in `keep`; returns the dropped ids. */
  retainResources(keep: ReadonlySet<string>): string[] {
    const dropped = [...this.resources.keys()].filter((id) => !keep.has(id));
    for (const id of dropped) this.resources.delete(id);
    if (dropped.length > 0) this.recomputeFilters();
    return dropped;
  }

  /** Drops resources with `expiresAt <= now`; returns the dropped ids. */
  expireResources(now: number): string[] {
    const dropped: string[] = [];
    for (const resource of this.resources.values()) {
      if (resource.expiresAt !== undefined && resource.expiresAt <= now) dropped.push(resource.id);
    }
    for (const id of dropped) this.resources.delete(id);
    if (dropped.length > 0) this.recomputeFilters();
    return dropped;
  }

  /**
   * Plans proxy -> real translations for `domain`: proxies and resolved IPs sorted, each family mapped round-robin
   * (falling back to the other family), proxies with a live NAT session left alone. Returns an error text or
   * undefined on success. Proxies outside the proxy ranges must already be filtered out by the caller.
   */
  setupNat(domain: string, resourceId: string, resolved: readonly IpAddr[], proxies: readonly IpAddr[], realIds: RealIpIds): string | undefined {
    const resource = this.resources.get(resourceId);
    if (resource === undefined) return 'unknown resource';
    if (resource.type !== 'dns') return 'not a DNS resource';
    if (!matchesDomainPattern(resource.pattern, domain)) return `domain does not match the resource address ${resource.pattern}`;
    const sortedResolved = sortUnique(resolved);
    const sortedProxies = sortUnique(proxies);
    const resolvedV4 = sortedResolved.filter((ip) => ip.family === 4);
    const resolvedV6 = sortedResolved.filter((ip) => ip.family === 6);
    const targetsV4 = resolvedV4.length > 0 ? resolvedV4 : resolvedV6;
    const targetsV6 = resolvedV6.length > 0 ? resolvedV6 : resolvedV4;
    let indexV4 = 0;
    let indexV6 = 0;
    for (const proxy of sortedProxies) {
      const targets = proxy.family === 4 ? targetsV4 : targetsV6;
      if (targets.length === 0) continue;
      const index = proxy.family === 4 ? indexV4++ : indexV6++;
      const real = targets[index % targets.length]!;
      if (this.nat.hasLiveSessionFor(proxy)) continue;
      const translation: Translation = { resourceId, proxy, real, realId: realIds.idOf(real) };
      if (proxy.family === 4) this.translationsV4.set(proxy.value, translation);
      else this.translationsV6.set(readU32(proxy.bytes, 12), translation);
    }
    resource.domains.set(domain.toLowerCase(), sortedResolved);
    this.recomputeFilters();
    return undefined;
  }

  translationFor(bytes: Uint8Array, dstOffset: number, family: 4 | 6): Translation | undefined {
    return family === 4 ? this.translationsV4.get(readU32(bytes, dstOffset)) : this.translationsV6.get(readU32(bytes, dstOffset + 12));
  }

  /** Rebuilds the filter table from scratch (control plane only). */
  recomputeFilters(): void {
    const table = new PrefixTable<FilterEngine>();
    const resources = [...this.resources.values()];
    this.internetEnabled = resources.some((r) => r.type === 'internet');
    for (const resource of resources) {
      if (resource.type !== 'cidr') continue;
      const network = resource.network;
      const lists = resources.filter((r) => covers(r, network)).map((r) => (r.type === 'internet' ? [] : r.filters));
      table.insert(network, FilterEngine.fromLists(lists));
    }
    const dnsEngines = new Map<string, FilterEngine>();
    for (const translations of [this.translationsV4, this.translationsV6]) {
      for (const translation of translations.values()) {
        const resource = this.resources.get(translation.resourceId);
        if (resource === undefined || resource.type !== 'dns') continue;
        let engine = dnsEngines.get(resource.id);
        if (engine === undefined) {
          engine = FilterEngine.fromLists([resource.filters]);
          dnsEngines.set(resource.id, engine);
        }
        table.insert(hostCidr(translation.proxy), engine);
      }
    }
    this.filters = table;
  }
}

/** Whether some network of `resource` contains all of `network` (the Internet resource covers everything). */
function covers(resource: Resource, network: Cidr): boolean {
  switch (resource.type) {
    case 'internet':
      return true;
    case 'cidr':
      return cidrContainsCidr(resource.network, network);
    case 'dns':
      for (const ips of resource.domains.values()) {
        if (ips.some((ip) => cidrContainsCidr(hostCidr(ip), network))) return true;
      }
      return false;
  }
}

export function isProxyIp(ip: IpAddr): boolean {
  return cidrContains(ip.family === 4 ? IPV4_PROXY_RANGE : IPV6_PROXY_RANGE, ip);
}

function sortUnique(ips: readonly IpAddr[]): IpAddr[] {
  const sorted = [...ips].sort(compareIp);
  return sorted.filter((ip, i) => i === 0 || !ipEquals(ip, sorted[i - 1]!));
}

