// The policy state of one client on the gateway: its resources, the filter table derived from them (kept up to
// date one resource at a time), the DNS-resource translation plan and its NAT sessions.

import { hostCidr } from '../ip/index.ts';
import type { Cidr, IpAddr, IpPacket } from '../ip/index.ts';
import { P2P_CONTROL_BURST, P2P_CONTROL_RATE_PER_S } from './constants.ts';
import { matchesDomainPattern } from './domain-pattern.ts';
import { FilterTable } from './filter-table.ts';
import { NatTable } from './nat.ts';
import type { RealIpIds } from './nat.ts';
import { ProxyTranslations } from './proxy-translations.ts';
import type { Translation } from './proxy-translations.ts';
import { TokenBucket } from './token-bucket.ts';
import type { Filter } from './types.ts';

export type Resource =
  | { readonly type: 'cidr'; readonly id: string; readonly network: Cidr; filters: readonly Filter[]; expiresAt: number | undefined }
  | { readonly type: 'dns'; readonly id: string; readonly pattern: string; filters: readonly Filter[]; expiresAt: number | undefined }
  | { readonly type: 'internet'; readonly id: string; expiresAt: number | undefined };

export type AddResult = 'added' | 'updated' | 'type-mismatch';

export class ClientOnGateway {
  readonly resources = new Map<string, Resource>();
  /** An Internet resource the client holds (then every destination outside the special ranges is allowed). */
  internetResourceId: string | undefined;
  /** CIDR resources' networks. */
  readonly filters = new FilterTable();
  /** DNS resources' proxy IPs (host routes), apart so that a renumbering drops them all at once. */
  proxyFilters = new FilterTable();
  readonly translations = new ProxyTranslations();
  readonly nat = new NatTable();
  /** Where the client sits in the state's queue of NAT tables to sweep (Infinity: not queued). */
  natSweepAt = Infinity;
  /** p2p control packets the client may still send now. */
  readonly controlPackets: TokenBucket;
  /** Name resolutions this client waits on. */
  pendingResolutions = 0;
  /** Host-route keys of the IP table owned by this client, for removal. */
  readonly ipKeysV4: number[] = [];
  readonly ipKeysV6: number[] = [];

  constructor(
    readonly id: string,
    readonly tunV4: IpAddr,
    readonly tunV6: IpAddr,
    readonly gatewayV4: IpAddr,
    readonly gatewayV6: IpAddr,
    now: number,
  ) {
    this.controlPackets = new TokenBucket(P2P_CONTROL_BURST, P2P_CONTROL_RATE_PER_S, now);
  }

  get isEmpty(): boolean {
    return this.resources.size === 0;
  }

  /** Client -> resource: some network containing the destination allows the packet. */
  permitsOutbound(packet: IpPacket, toProxy: boolean): boolean {
    return (toProxy && this.proxyFilters.permitsOutbound(packet)) || this.filters.permitsOutbound(packet);
  }

  /** Resource -> client: some network containing the source allows the packet. */
  permitsInbound(packet: IpPacket, fromProxy: boolean): boolean {
    return (fromProxy && this.proxyFilters.permitsInbound(packet)) || this.filters.permitsInbound(packet);
  }

  /**
   * The resource of the packet `permitsOutbound(packet, toProxy)` just permitted (flow attribution), from the
   * network that call found (see FilterTable.lastResourceOf).
   */
  outboundResourceOf(packet: IpPacket, toProxy: boolean): string | undefined {
    const table = toProxy && this.proxyFilters.lastPermitted ? this.proxyFilters : this.filters;
    return table.lastResourceOf(packet, true);
  }

  /** The resource of the packet `permitsInbound(packet, fromProxy)` just permitted. */
  inboundResourceOf(packet: IpPacket, fromProxy: boolean): string | undefined {
    const table = fromProxy && this.proxyFilters.lastPermitted ? this.proxyFilters : this.filters;
    return table.lastResourceOf(packet, false);
  }

  /** Filter-table networks rebuilt so far (a test hook). */
  get filterWork(): number {
    return this.filters.networksRebuilt + this.proxyFilters.networksRebuilt;
  }

  /** A known id of the same type gets the new filters and the new expiry (the caller re-arms it). */
  addResource(resource: Resource): AddResult {
    const existing = this.resources.get(resource.id);
    if (existing === undefined) {
      this.resources.set(resource.id, resource);
      this.grant(resource);
      return 'added';
    }
    if (existing.type !== resource.type) return 'type-mismatch';
    existing.expiresAt = resource.expiresAt;
    if (existing.type !== 'internet' && resource.type !== 'internet') {
      existing.filters = resource.filters;
      this.grant(existing);
    }
    return 'updated';
  }

  /** Replaces the filters of a held resource of the same type. */
  updateFilters(resourceId: string, type: Resource['type'], filters: readonly Filter[]): 'updated' | 'absent' | 'type-mismatch' {
    const existing = this.resources.get(resourceId);
    if (existing === undefined) return 'absent';
    if (existing.type !== type) return 'type-mismatch';
    if (existing.type === 'internet') return 'updated';
    existing.filters = filters;
    this.grant(existing);
    return 'updated';
  }

  removeResource(resourceId: string): Resource | undefined {
    const resource = this.resources.get(resourceId);
    if (resource === undefined) return undefined;
    this.resources.delete(resourceId);
    this.revoke(resource);
    return resource;
  }

  /** Drops every resource not in `keep`; returns the dropped ones. */
  retainResources(keep: ReadonlySet<string>): Resource[] {
    const dropped: Resource[] = [];
    for (const resource of this.resources.values()) if (!keep.has(resource.id)) dropped.push(resource);
    for (const resource of dropped) this.removeResource(resource.id);
    return dropped;
  }

  /**
   * Plans proxy -> real translations for `domain` of DNS resource `resourceId` (1.6.0 `setup_nat`). If one of
   * `proxies` belonged to another domain, all NAT state and translations go first. Returns an error text or
   * undefined on success. `proxies` must already lie in the proxy ranges.
   */
  setupNat(domain: string, resourceId: string, resolved: readonly IpAddr[], proxies: readonly IpAddr[], realIds: RealIpIds, now: number): string | undefined {
    if (this.translations.reassigned(domain, proxies)) this.resetNat();
    const resource = this.resources.get(resourceId);
    if (resource === undefined) return 'unknown resource';
    if (resource.type !== 'dns') return 'not a DNS resource';
    if (!matchesDomainPattern(resource.pattern, domain)) return `domain does not match the resource address ${resource.pattern}`;
    const change = this.translations.assign(domain, resourceId, proxies, resolved, realIds, now);
    for (const translation of change.removed) this.withdraw(translation);
    for (const translation of change.current) this.proxyFilters.set(hostCidr(translation.proxy), resourceId, resource.filters);
    return undefined;
  }

  /** Forgets every translation and NAT session (a client that renumbered its proxy IPs). */
  resetNat(): void {
    this.proxyFilters = new FilterTable();
    this.translations.clear();
    this.nat.clear();
  }

  /** Everything this client holds goes (it is being removed). */
  dispose(): void {
    this.nat.clear();
  }

  /** Installs the resource's networks in the filter table. */
  private grant(resource: Resource): void {
    switch (resource.type) {
      case 'internet':
        this.internetResourceId ??= resource.id;
        return;
      case 'cidr':
        this.filters.set(resource.network, resource.id, resource.filters);
        return;
      case 'dns':
        for (const translation of this.translations.ofResource(resource.id)) this.proxyFilters.set(hostCidr(translation.proxy), resource.id, resource.filters);
        return;
    }
  }

  private revoke(resource: Resource): void {
    switch (resource.type) {
      case 'internet':
        if (this.internetResourceId !== resource.id) return;
        this.internetResourceId = undefined;
        for (const other of this.resources.values()) if (other.type === 'internet') this.internetResourceId = other.id;
        return;
      case 'cidr':
        this.filters.delete(resource.network, resource.id);
        return;
      case 'dns':
        for (const translation of this.translations.ofResource(resource.id)) this.proxyFilters.delete(hostCidr(translation.proxy), resource.id);
        return;
    }
  }

  private withdraw(translation: Translation): void {
    const network = hostCidr(translation.proxy);
    for (const resourceId of translation.resources) this.proxyFilters.delete(network, resourceId);
  }
}
