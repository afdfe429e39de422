// The policy state of one client on the gateway: its resources, the filter table derived from them (kept up to
// date one resource at a time), the DNS-resource translation plan and its NAT sessions.
//
// Thousands of clients are held at once, most idle with one resource: what a client does not use (a second
// resource, proxy IPs, NAT sessions, filters of a kind) is allocated when first needed, and its addresses are
// kept as numbers.

import { hostCidr, inNetworkV4, inNetworkV6, readI32, readU32 } from '../ip/index.ts';
import type { Cidr, IpAddr, IpPacket } from '../ip/index.ts';
import { P2P_CONTROL_BURST, P2P_CONTROL_RATE_PER_S } from './constants.ts';
import { matchesDomainPattern } from './domain-pattern.ts';
import type { FilterEngine } from './filter.ts';
import { FilterTable, resourceOfRules } from './filter-table.ts';
import type { NetworkRules } from './filter-table.ts';
import { NatTable } from './nat.ts';
import type { RealIpIds } from './nat.ts';
import { ProxyTranslations } from './proxy-translations.ts';
import type { Translation } from './proxy-translations.ts';
import { TokenBucketRule } from './token-bucket.ts';
import type { Filter } from './types.ts';

export type Resource =
  | { readonly type: 'cidr'; readonly id: string; readonly network: Cidr; filters: readonly Filter[]; expiresAt: number | undefined }
  | { readonly type: 'dns'; readonly id: string; readonly pattern: string; filters: readonly Filter[]; expiresAt: number | undefined }
  | { readonly type: 'internet'; readonly id: string; expiresAt: number | undefined };

export type AddResult = 'added' | 'updated' | 'type-mismatch';

const CONTROL_PACKETS = new TokenBucketRule(P2P_CONTROL_BURST, P2P_CONTROL_RATE_PER_S);
/** The plan and NAT table of every client without its own: read, never written. */
const NO_TRANSLATIONS = new ProxyTranslations();
const NO_NAT = new NatTable();

// The fields a packet reads come first and together (fewer cache lines of a client not seen lately).
export class ClientOnGateway {
  /** Removed from the state: a reference kept elsewhere (with the client's connection) authorises nothing. */
  removed = false;
  /** The tunnel IPv4 and the four words of the tunnel IPv6, as int32 (small integers, never boxed). */
  private readonly tunV4: number;
  readonly gatewayV4: IpAddr;
  /** An Internet resource the client holds (then every destination outside the special ranges is allowed). */
  internetResourceId: string | undefined;
  /**
   * The CIDR networks' table when it holds exactly one network, kept here so that a packet reads no further
   * object: its family (0: not one network, see `filters`), prefix length, address words as the prefix table
   * keys them (IPv4: the first), its rules and their engine.
   */
  private soleFamily: 0 | 4 | 6 = 0;
  private soleLength = 0;
  private soleW0 = 0;
  private soleEngine: FilterEngine | undefined;
  private readonly tunV6w0: number;
  private readonly tunV6w1: number;
  private readonly tunV6w2: number;
  private readonly tunV6w3: number;
  readonly gatewayV6: IpAddr;
  private soleW1 = 0;
  private soleW2 = 0;
  private soleW3 = 0;
  private soleRules: NetworkRules | undefined;
  /** CIDR resources' networks (undefined until the first). */
  private filters: FilterTable | undefined;
  /** The resources held: the one itself, or a map by id from the second on (undefined: none). */
  private held: Resource | Map<string, Resource> | undefined;
  /** DNS resources' proxy IPs (host routes), apart so that a renumbering drops them all at once. */
  private proxyFilters: FilterTable | undefined;
  /** The DNS-resource translation plan: one shared empty plan until the first announcement (read-only). */
  translations: ProxyTranslations = NO_TRANSLATIONS;
  /** The NAT sessions: one shared empty table until the first session (`openNat`; read-only until then). */
  nat: NatTable = NO_NAT;
  /** Where the client sits in the state's queue of NAT tables to sweep (Infinity: not queued). */
  natSweepAt = Infinity;
  /** p2p control packets the client may still send, as of `controlPacketsAt`. */
  private controlPackets = P2P_CONTROL_BURST;
  private controlPacketsAt: number;
  /** Name resolutions this client waits on. */
  pendingResolutions = 0;
  /** Host-route keys of the state's IP tables owned by this client, for removal (-1: none). */
  private ipKeyV4 = -1;
  private ipKeyV6 = -1;
  /** Further keys, for a client given other tunnel IPs later (rare). */
  private otherIpKeys: { readonly v4: number[]; readonly v6: number[] } | undefined;

  readonly id: string;

  constructor(
    id: string,
    tunV4: IpAddr,
    tunV6: IpAddr,
    gatewayV4: IpAddr,
    gatewayV6: IpAddr,
    now: number,
  ) {
    this.id = id;
    this.gatewayV4 = gatewayV4;
    this.gatewayV6 = gatewayV6;
    this.tunV4 = tunV4.family === 4 ? tunV4.value | 0 : 0;
    const v6 = tunV6.family === 6 ? tunV6.bytes : NO_ADDRESS_V6;
    this.tunV6w0 = readI32(v6, 0);
    this.tunV6w1 = readI32(v6, 4);
    this.tunV6w2 = readI32(v6, 8);
    this.tunV6w3 = readI32(v6, 12);
    this.controlPacketsAt = now;
  }

  get isEmpty(): boolean {
    return this.held === undefined;
  }

  resource(resourceId: string): Resource | undefined {
    const held = this.held;
    if (held === undefined || !(held instanceof Map)) return held?.id === resourceId ? held : undefined;
    return held.get(resourceId);
  }

  hasResource(resourceId: string): boolean {
    return this.resource(resourceId) !== undefined;
  }

  /** The resources held, in the order they were added. */
  resources(): Resource[] {
    const held = this.held;
    if (held === undefined) return [];
    return held instanceof Map ? [...held.values()] : [held];
  }

  resourceIds(): string[] {
    return this.resources().map((r) => r.id);
  }

  /** Whether the packet comes from the client's tunnel address of its family. */
  sentFromTunnelAddress(packet: IpPacket): boolean {
    return packet.version === 4 ? (packet.sourceV4 | 0) === this.tunV4 : this.isTunV6At(packet.bytes, packet.sourceOffset);
  }

  /**
   * Reads the first and the last of the fields a data packet's checks read (see GatewayState.prefetch), so
   * that every line of them is requested at once; changes nothing.
   */
  readAhead(): number {
    return this.removed || this.soleEngine === undefined ? 1 : 0;
  }

  /** Whether the packet goes to the client's tunnel address of its family. */
  sentToTunnelAddress(packet: IpPacket): boolean {
    return packet.version === 4 ? (packet.destinationV4 | 0) === this.tunV4 : this.isTunV6At(packet.bytes, packet.destinationOffset);
  }

  /** Spends one p2p control packet if the client may send one now. */
  takeControlPacket(now: number): boolean {
    const level = CONTROL_PACKETS.levelAt(this.controlPackets, this.controlPacketsAt, now);
    if (now > this.controlPacketsAt) this.controlPacketsAt = now;
    if (level < 1) {
      this.controlPackets = level;
      return false;
    }
    this.controlPackets = level - 1;
    return true;
  }

  /** Records that the state's host route `key` of `family` leads to this client. */
  addIpKey(family: 4 | 6, key: number): void {
    const first = family === 4 ? this.ipKeyV4 : this.ipKeyV6;
    if (first === key) return;
    if (first === -1) {
      if (family === 4) this.ipKeyV4 = key;
      else this.ipKeyV6 = key;
      return;
    }
    this.otherIpKeys ??= { v4: [], v6: [] };
    const others = family === 4 ? this.otherIpKeys.v4 : this.otherIpKeys.v6;
    if (!others.includes(key)) others.push(key);
  }

  /** The state's host-route keys of `family` leading to this client. */
  ipKeys(family: 4 | 6): number[] {
    const first = family === 4 ? this.ipKeyV4 : this.ipKeyV6;
    if (first === -1) return [];
    const others = this.otherIpKeys === undefined ? [] : family === 4 ? this.otherIpKeys.v4 : this.otherIpKeys.v6;
    return [first, ...others];
  }

  /** The client's own NAT table, for a new session (the shared empty one is never written). */
  openNat(): NatTable {
    if (this.nat === NO_NAT) this.nat = new NatTable();
    return this.nat;
  }

  /** Client -> resource: some network containing the destination allows the packet. */
  permitsOutbound(packet: IpPacket, toProxy: boolean): boolean {
    return (toProxy && this.proxyFilters !== undefined && this.proxyFilters.permitsOutbound(packet)) || this.networksPermit(packet, true, packet.destinationOffset);
  }

  /** Resource -> client: some network containing the source allows the packet. */
  permitsInbound(packet: IpPacket, fromProxy: boolean): boolean {
    return (fromProxy && this.proxyFilters !== undefined && this.proxyFilters.permitsInbound(packet)) || this.networksPermit(packet, false, packet.sourceOffset);
  }

  /**
   * The resource of the packet `permitsOutbound(packet, toProxy)` just permitted (flow attribution), from the
   * network that call found (see FilterTable.lastResourceOf).
   */
  outboundResourceOf(packet: IpPacket, toProxy: boolean): string | undefined {
    return this.lastPermittedResource(packet, toProxy, true);
  }

  /** The resource of the packet `permitsInbound(packet, fromProxy)` just permitted. */
  inboundResourceOf(packet: IpPacket, fromProxy: boolean): string | undefined {
    return this.lastPermittedResource(packet, fromProxy, false);
  }

  /** Whether the CIDR networks are kept in the client's own fields (one network) rather than its table (a test hook). */
  get holdsSoleNetwork(): boolean {
    return this.soleFamily !== 0;
  }

  /** Filter-table networks rebuilt so far (a test hook). */
  get filterWork(): number {
    return (this.filters?.networksRebuilt ?? 0) + (this.proxyFilters?.networksRebuilt ?? 0);
  }

  /** A known id of the same type gets the new filters and the new expiry (the caller re-arms it). */
  addResource(resource: Resource): AddResult {
    const existing = this.resource(resource.id);
    if (existing === undefined) {
      this.hold(resource);
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
    const existing = this.resource(resourceId);
    if (existing === undefined) return 'absent';
    if (existing.type !== type) return 'type-mismatch';
    if (existing.type === 'internet') return 'updated';
    existing.filters = filters;
    this.grant(existing);
    return 'updated';
  }

  removeResource(resourceId: string): Resource | undefined {
    const resource = this.resource(resourceId);
    if (resource === undefined) return undefined;
    this.release(resourceId);
    this.revoke(resource);
    return resource;
  }

  /** Drops every resource not in `keep`; returns the dropped ones. */
  retainResources(keep: ReadonlySet<string>): Resource[] {
    const dropped = this.resources().filter((resource) => !keep.has(resource.id));
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
    const resource = this.resource(resourceId);
    if (resource === undefined) return 'unknown resource';
    if (resource.type !== 'dns') return 'not a DNS resource';
    if (!matchesDomainPattern(resource.pattern, domain)) return `domain does not match the resource address ${resource.pattern}`;
    if (this.translations === NO_TRANSLATIONS) this.translations = new ProxyTranslations();
    const change = this.translations.assign(domain, resourceId, proxies, resolved, realIds, now);
    for (const translation of change.removed) this.withdraw(translation);
    for (const translation of change.current) (this.proxyFilters ??= new FilterTable()).set(hostCidr(translation.proxy), resourceId, resource.filters);
    return undefined;
  }

  /** Forgets every translation and NAT session (a client that renumbered its proxy IPs). */
  resetNat(): void {
    this.proxyFilters = undefined;
    this.translations = NO_TRANSLATIONS;
    this.nat = NO_NAT;
  }

  /** Everything this client holds goes (it is being removed). */
  dispose(): void {
    this.removed = true;
    this.nat = NO_NAT;
  }

  private isTunV6At(bytes: Uint8Array, offset: number): boolean {
    return (
      readI32(bytes, offset) === this.tunV6w0 &&
      readI32(bytes, offset + 4) === this.tunV6w1 &&
      readI32(bytes, offset + 8) === this.tunV6w2 &&
      readI32(bytes, offset + 12) === this.tunV6w3
    );
  }

  /** Whether the CIDR network containing the address at `offset` (the longest first, then shorter) allows the packet. */
  private networksPermit(packet: IpPacket, useDestinationPort: boolean, offset: number): boolean {
    const family = this.soleFamily;
    if (family === 0) return this.filters !== undefined && (useDestinationPort ? this.filters.permitsOutbound(packet) : this.filters.permitsInbound(packet));
    if (packet.version !== family) return false;
    const inside =
      family === 4
        ? inNetworkV4(this.soleW0, this.soleLength, readU32(packet.bytes, offset))
        : inNetworkV6(this.soleW0, this.soleW1, this.soleW2, this.soleW3, this.soleLength, packet.bytes, offset);
    return inside && this.soleEngine!.permits(packet, useDestinationPort);
  }

  /** The resource of what just permitted a packet: the proxy table if it was asked and said yes, else the CIDR networks. */
  private lastPermittedResource(packet: IpPacket, proxy: boolean, useDestinationPort: boolean): string | undefined {
    if (proxy && this.proxyFilters?.lastPermitted === true) return this.proxyFilters.lastResourceOf(packet, useDestinationPort);
    if (this.soleFamily !== 0) return resourceOfRules(this.soleRules!, packet, useDestinationPort);
    return this.filters?.lastResourceOf(packet, useDestinationPort);
  }

  /** Copies the CIDR table's network into the client's fields when it is the only one (after every change). */
  private keepSoleNetwork(): void {
    const sole = this.filters?.sole();
    if (sole === undefined) {
      this.soleFamily = 0;
      this.soleEngine = undefined;
      this.soleRules = undefined;
      return;
    }
    const { address, prefixLength } = sole.network;
    this.soleLength = prefixLength;
    if (address.family === 4) {
      this.soleW0 = address.value | 0;
      this.soleW1 = this.soleW2 = this.soleW3 = 0;
    } else {
      this.soleW0 = readI32(address.bytes, 0);
      this.soleW1 = readI32(address.bytes, 4);
      this.soleW2 = readI32(address.bytes, 8);
      this.soleW3 = readI32(address.bytes, 12);
    }
    this.soleEngine = sole.rules.engine;
    this.soleRules = sole.rules;
    this.soleFamily = address.family;
  }

  private hold(resource: Resource): void {
    const held = this.held;
    if (held === undefined) {
      this.held = resource;
      return;
    }
    if (held instanceof Map) {
      held.set(resource.id, resource);
      return;
    }
    this.held = new Map([
      [held.id, held],
      [resource.id, resource],
    ]);
  }

  private release(resourceId: string): void {
    const held = this.held;
    if (!(held instanceof Map)) {
      this.held = undefined;
      return;
    }
    held.delete(resourceId);
    if (held.size === 1) for (const last of held.values()) this.held = last;
  }

  /** Installs the resource's networks in the filter table. */
  private grant(resource: Resource): void {
    switch (resource.type) {
      case 'internet':
        this.internetResourceId ??= resource.id;
        return;
      case 'cidr':
        (this.filters ??= new FilterTable()).set(resource.network, resource.id, resource.filters);
        this.keepSoleNetwork();
        return;
      case 'dns':
        for (const translation of this.translations.ofResource(resource.id)) (this.proxyFilters ??= new FilterTable()).set(hostCidr(translation.proxy), resource.id, resource.filters);
        return;
    }
  }

  private revoke(resource: Resource): void {
    switch (resource.type) {
      case 'internet':
        if (this.internetResourceId !== resource.id) return;
        this.internetResourceId = undefined;
        for (const other of this.resources()) if (other.type === 'internet') this.internetResourceId = other.id;
        return;
      case 'cidr':
        this.filters?.delete(resource.network, resource.id);
        if (this.filters?.size === 0) this.filters = undefined;
        this.keepSoleNetwork();
        return;
      case 'dns':
        for (const translation of this.translations.ofResource(resource.id)) this.proxyFilters?.delete(hostCidr(translation.proxy), resource.id);
        return;
    }
  }

  private withdraw(translation: Translation): void {
    const network = hostCidr(translation.proxy);
    for (const resourceId of translation.resources) this.proxyFilters?.delete(network, resourceId);
  }
}

const NO_ADDRESS_V6 = new Uint8Array(16);
