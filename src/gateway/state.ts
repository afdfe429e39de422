// GatewayState: the gateway's policy core. Sans-IO: it sees decrypted IP packets tagged with a client id
// (client -> resource), packets read from the TUN device (resource -> client), portal commands and time.
//
// Outputs:
// - per packet, a reused verdict object (`TunnelVerdict` / `TunVerdict`): the packet, possibly rewritten in
//   place or replaced by an ICMP reply, and where it goes;
// - `pollClientPacket()`: packets for a client produced later (p2p control replies after a resolution);
// - `pollEvent()`: requests for the IO shell (name resolutions, connections to close);
// - `pollTimeout()`: when `handleTimeout` must run next (resource expiry, NAT sessions ending, resolution
//   deadlines), each kept in a deadline queue so no tick visits every client.
//
// Client -> resource (1.6.0 `handle_network_input` + `translate_outbound`), in this order: fragments and
// malformed packets are dropped by the parser; multicast destinations are dropped; p2p control packets are
// handled (AssignedIps, GOODBYE); ICMP errors the client made are dropped; a foreign source address gets ICMP
// prohibited; the gateway's own tunnel address serves only its DNS forwarder and ICMP echo; other tunnel
// addresses (clients) are prohibited; an Internet-resource client may go anywhere but private, link-local,
// CGNAT and multicast ranges (network unreachable); otherwise the filters decide (prohibited); a DNS proxy IP is
// NATed to its real address (network unreachable without one).
//
// Resource -> client (`handle_tun_input` + `translate_inbound`): to a tunnel address of a known client only;
// from the gateway's own address unchanged; NAT undone (ICMP errors included); nothing from tunnel addresses;
// ICMP errors pass; otherwise the same rules on the source address and port, silently dropped.

import {
  ECN_CE,
  IpPacket,
  P2P_EVENT_ASSIGNED_IPS,
  P2P_EVENT_GOODBYE,
  decodeAssignedIpsPacket,
  formatIp,
  icmpErrorKind,
  isP2pControlPacket,
  makeDomainStatusPacket,
  makeIcmpDestinationUnreachable,
  makeTranslatedIcmpError,
  p2pControlEventType,
  parseCidr,
  parseIcmpErrorQuote,
  readU32,
} from '../ip/index.ts';
import type { AssignedIps, Cidr, IpAddr } from '../ip/index.ts';
import { createLogger, Level } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import { DeadlineQueue } from '../util/deadline-queue.ts';
import {
  internetResourceRejectsV4,
  internetResourceRejectsV6,
  isMulticastV4,
  isMulticastV6,
  isProxyV4,
  isProxyV6,
  isTunnelV4,
  isTunnelV6,
} from './address-rules.ts';
import { Canonical } from './canonical.ts';
import { ClientOnGateway } from './client.ts';
import type { Resource } from './client.ts';
import { MAX_RESOLUTIONS_PER_CLIENT, TUN_DNS_PORT, V6_RANGE_HOST_MASK } from './constants.ts';
import { L4, RealIpIds, l4Of, natKey } from './nat.ts';
import { Resolutions } from './resolutions.ts';
import type { Authorization, ClientInfo, DnsNatRequest, DomainStatus, Filter, ResourceDescription, TunnelInterface } from './types.ts';

export const enum TunnelAction {
  /** Dropped (malformed, fragment, unknown client, multicast, client ICMP error, NAT error, ...). */
  Drop = 0,
  /** `packet` (the same buffer, rewritten in place) goes to the TUN device. */
  ToTun = 1,
  /** `packet` is a new ICMP error to encrypt back to the same client. */
  ReplyToClient = 2,
  /** A p2p control packet, handled; any answer comes out of `pollClientPacket()`, any close out of `pollEvent()`. */
  Consumed = 3,
}

export const enum TunAction {
  Drop = 0,
  /** `packet` (rewritten in place or a translated ICMP error) goes to client `clientId`. */
  ToClient = 1,
}

export interface TunnelVerdict {
  action: TunnelAction;
  packet: Uint8Array;
  /** With a flow observer (`observeFlows`): the resource a `ToTun` packet belongs to; '' otherwise. */
  resourceId: string;
  /** With a flow observer: the DNS resource's domain a `ToTun` packet was translated for. */
  domain: string | undefined;
  /**
   * The client the packet came from (undefined: none), for the caller to keep with the client's connection and
   * pass back as `kept` with its next packet: then no lookup by id is made while that client stays.
   */
  client: unknown;
}

export interface TunVerdict {
  action: TunAction;
  clientId: string;
  packet: Uint8Array;
  /** With a flow observer: the resource a `ToClient` packet comes from; '' otherwise (ICMP errors, the gateway's own). */
  resourceId: string;
}

/**
 * Flow logging's view of the packets (the flow tracker's packet tuple). With one set, the state loads each
 * client -> resource packet it lets through after any NAT, and each resource -> client packet for a client
 * before NAT is undone, and names their resource in the verdict, so the caller can record the flow.
 */
export interface FlowObserver {
  load(packet: IpPacket): boolean;
}

export interface ClientPacket {
  readonly clientId: string;
  readonly packet: Uint8Array;
}

/**
 * Why a client's policy state went:
 * - `goodbye`: the client sent GOODBYE; its connection is dropped at once, without answer;
 * - `noResources`: its last resource was revoked or expired; its connection is closed, with a GOODBYE first.
 */
export type ClientRemovalReason = 'goodbye' | 'noResources';

export type GatewayEvent =
  /** Resolve `domain` (A and AAAA) and answer with `handleDnsResolution`. */
  | { readonly type: 'resolve'; readonly domain: string }
  /** The answer to `resolveForLegacyAccess` (undefined = resolution failed). */
  | { readonly type: 'legacyResolution'; readonly requestId: string; readonly domain: string; readonly ips: readonly IpAddr[] | undefined }
  /** The client's policy state is gone; its connection must go too (see the reason). */
  | { readonly type: 'clientRemoved'; readonly clientId: string; readonly reason: ClientRemovalReason };

export type AccessResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** Work refused or dropped because of a bound (metrics and tests). */
export interface PolicyStats {
  p2pRateLimited: number;
  resolutionsRefused: number;
  natSessionsRefused: number;
}

type Waiter =
  | { readonly kind: 'p2p'; readonly client: ClientOnGateway; readonly request: AssignedIps; readonly proxies: readonly IpAddr[] }
  | { readonly kind: 'legacy'; readonly requestId: string; readonly domain: string };

export interface GatewayStateOptions {
  readonly logger?: Logger;
}

/** Due deadlines handled per `handleTimeout` call; the rest come at once with the next call (see pollTimeout). */
const MAX_DEADLINES_PER_TIMEOUT = 1024;
/** Distinct values of each kind shared among clients before the sharing starts over. */
const MAX_CANONICAL_VALUES = 4096;

export class GatewayState {
  readonly stats: PolicyStats = { p2pRateLimited: 0, resolutionsRefused: 0, natSessionsRefused: 0 };
  private readonly clients = new Map<string, ClientOnGateway>();
  /** Host routes of client tunnel IPv4s. */
  private readonly clientsByV4 = new Map<number, ClientOnGateway>();
  /** Host routes of client tunnel IPv6s, keyed by the low 21 bits (only addresses in the tunnel /107 are routable). */
  private readonly clientsByV6 = new Map<number, ClientOnGateway>();
  private gatewayTun: TunnelInterface | undefined;
  private readonly realIds = new RealIpIds();
  /** Resource ids, names, networks and filter lists, one instance for every client holding them. */
  private readonly canonicalText = new Canonical<string>(MAX_CANONICAL_VALUES);
  private readonly canonicalNetworks = new Canonical<Cidr>(MAX_CANONICAL_VALUES);
  private readonly canonicalFilterLists = new Canonical<readonly Filter[]>(MAX_CANONICAL_VALUES);
  private readonly resolutions = new Resolutions<Waiter>();
  /** Resource expiries, keyed by `clientId resourceId`. */
  private readonly expiries = new DeadlineQueue<string>();
  /** Clients by when their NAT table has sessions to look at (each table orders its own sessions). */
  private readonly natSweeps = new DeadlineQueue<ClientOnGateway>();
  private readonly events: GatewayEvent[] = [];
  private readonly clientPackets: ClientPacket[] = [];
  private readonly logger: Logger;

  private readonly packet = new IpPacket();
  private readonly quote = new IpPacket();
  private readonly tunnelVerdict: TunnelVerdict = { action: TunnelAction.Drop, packet: new Uint8Array(0), resourceId: '', domain: undefined, client: undefined };
  private readonly tunVerdict: TunVerdict = { action: TunAction.Drop, clientId: '', packet: new Uint8Array(0), resourceId: '' };
  private flowObserver: FlowObserver | undefined;

  constructor(options: GatewayStateOptions = {}) {
    this.logger = options.logger ?? createLogger('firezone_tunnel::gateway');
  }

  /** Flow attribution on (with the tracker's tuple) or off (undefined: no cost per packet). */
  observeFlows(observer: FlowObserver | undefined): void {
    this.flowObserver = observer;
  }

  // ---- Portal commands -------------------------------------------------------------------------------------

  /**
   * `init`: stores the gateway's tunnel IPs. With `authorizations` present, every authorization not listed is
   * revoked, for every client (listed or not); without it (older portals) nothing is revoked. A client left
   * without resources is removed (its connection closed with GOODBYE).
   */
  init(iface: TunnelInterface, authorizations: readonly Authorization[] | undefined, now: number): void {
    void now;
    this.gatewayTun = iface;
    if (authorizations === undefined) return;
    const allowed = new Map<string, Set<string>>();
    for (const { clientId, resourceId } of authorizations) {
      const key = clientId.toLowerCase();
      let set = allowed.get(key);
      if (set === undefined) {
        set = new Set();
        allowed.set(key, set);
      }
      set.add(resourceId.toLowerCase());
    }
    const emptied: ClientOnGateway[] = [];
    for (const client of this.clients.values()) {
      for (const resource of client.retainResources(allowed.get(client.id) ?? NO_RESOURCES)) {
        this.expiries.delete(expiryKey(client.id, resource.id));
        this.logger.info('Revoking resource authorization', { cid: client.id, rid: resource.id });
      }
      if (client.isEmpty) emptied.push(client);
    }
    for (const client of emptied) this.removeClient(client, 'noResources');
  }

  /** `authorize_flow` / `create_authorization`: access of `client` to `resource` until `expiresAt` (same clock as `now`; undefined = never). */
  authorizeFlow(client: ClientInfo, resource: ResourceDescription, expiresAt: number | undefined, now: number): AccessResult {
    return this.allowAccess(client, resource, expiresAt, undefined, now);
  }

  /** The legacy `request_connection` / `allow_access` path; `dnsNat` carries an already resolved domain. */
  allowAccess(client: ClientInfo, description: ResourceDescription, expiresAt: number | undefined, dnsNat: DnsNatRequest | undefined, now: number): AccessResult {
    const gatewayTun = this.gatewayTun;
    if (gatewayTun === undefined) return { ok: false, error: 'TUN device not configured' };
    if (client.ipv4.family !== 4 || client.ipv6.family !== 6) return { ok: false, error: 'client tunnel IPs of the wrong family' };
    const resource = this.toResource(description, expiresAt);
    if (resource === undefined) return { ok: false, error: `invalid resource address ${'address' in description ? description.address : ''}` };
    const clientId = client.id.toLowerCase();
    let record = this.clients.get(clientId);
    if (record === undefined) {
      record = new ClientOnGateway(clientId, client.ipv4, client.ipv6, gatewayTun.ipv4, gatewayTun.ipv6, now);
      this.clients.set(clientId, record);
    }
    if (record.addResource(resource) === 'type-mismatch') {
      this.logger.error('Resources cannot change type', { cid: clientId, rid: resource.id });
    } else {
      this.expiries.set(expiryKey(clientId, resource.id), expiresAt);
    }
    if (dnsNat !== undefined) {
      const proxies = this.acceptedProxies(clientId, dnsNat.proxyIps);
      const error = record.setupNat(dnsNat.domain, resource.id, dnsNat.resolvedIps, proxies, this.realIds, now);
      this.scheduleNatSweep(record);
      if (error !== undefined) return { ok: false, error };
    }
    this.addIpRoutes(record, client.ipv4, client.ipv6);
    return { ok: true };
  }

  /**
   * A new expiry for a resource the client holds (undefined = never); false when it holds no such resource.
   * Past expiries take effect at the next `handleTimeout`.
   */
  updateResourceExpiry(clientId: string, resourceId: string, expiresAt: number | undefined): boolean {
    const id = clientId.toLowerCase();
    const rid = resourceId.toLowerCase();
    const resource = this.clients.get(id)?.resource(rid);
    if (resource === undefined) return false;
    resource.expiresAt = expiresAt;
    this.expiries.set(expiryKey(id, rid), expiresAt);
    return true;
  }

  /** `reject_access`: the client loses the resource; without resources left it is removed (GOODBYE). */
  rejectAccess(clientId: string, resourceId: string, now: number): void {
    void now;
    const client = this.clients.get(clientId.toLowerCase());
    if (client === undefined) return;
    const rid = resourceId.toLowerCase();
    if (client.removeResource(rid) !== undefined) this.expiries.delete(expiryKey(client.id, rid));
    if (client.isEmpty) this.removeClient(client, 'noResources');
  }

  /** `resource_updated`: new filters for every client holding the resource (addresses and names are ignored). */
  resourceUpdated(description: ResourceDescription): void {
    const resourceId = description.id.toLowerCase();
    const filters = description.type === 'internet' ? NO_FILTERS : this.canonicalFilters(description.filters);
    if (description.type !== 'internet') this.warnAboutInvalidFilters(resourceId, filters);
    for (const client of this.clients.values()) {
      if (client.updateFilters(resourceId, description.type, filters) === 'type-mismatch') {
        this.logger.error('Resources cannot change type', { cid: client.id, rid: resourceId });
      }
    }
  }

  /** Graceful shutdown: all policy state goes, without events (the caller closes every connection). */
  shutDown(): void {
    for (const client of this.clients.values()) client.dispose();
    this.clients.clear();
    this.clientsByV4.clear();
    this.clientsByV6.clear();
    this.expiries.clear();
    this.natSweeps.clear();
  }

  /** Legacy flows resolve before granting access; the answer comes as a `legacyResolution` event. */
  resolveForLegacyAccess(domain: string, requestId: string, now: number): void {
    this.requestResolution(domain, { kind: 'legacy', requestId, domain }, now);
  }

  /** The answer to a `resolve` event: the union of A and AAAA results, or undefined when both failed. */
  handleDnsResolution(domain: string, ips: readonly IpAddr[] | undefined, now: number): void {
    for (const waiter of this.resolutions.complete(domain, ips, now)) this.finishResolution(waiter, ips, now);
  }

  // ---- Time ------------------------------------------------------------------------------------------------

  handleTimeout(now: number): void {
    for (const waiter of this.resolutions.expire(now)) this.finishResolution(waiter, undefined, now);
    let budget = MAX_DEADLINES_PER_TIMEOUT;
    for (let key = this.expiries.popDue(now); key !== undefined; key = budget-- > 0 ? this.expiries.popDue(now) : undefined) this.expire(key);
    for (let client = budget > 0 ? this.natSweeps.popDue(now) : undefined; client !== undefined; client = budget > 0 ? this.natSweeps.popDue(now) : undefined) {
      client.natSweepAt = Infinity;
      budget -= client.nat.sweep(now, budget);
      this.scheduleNatSweep(client);
    }
  }

  pollTimeout(): number | undefined {
    const at = Math.min(this.resolutions.nextDeadline() ?? Infinity, this.expiries.peekTime(), this.natSweeps.peekTime());
    return at === Infinity ? undefined : at;
  }

  pollEvent(): GatewayEvent | undefined {
    return this.events.shift();
  }

  pollClientPacket(): ClientPacket | undefined {
    return this.clientPackets.shift();
  }

  // ---- Client -> resource ----------------------------------------------------------------------------------

  /**
   * Reads `owner` (a connection's owner, see Node.setConnectionOwner) ahead if it is a client; changes nothing.
   * The node calls it as soon as a datagram's connection is found, and the runtime for each owner of a read
   * before the read's packets are handled, so that the clients' memory accesses overlap the node's.
   */
  prefetch(owner: unknown): number {
    return owner instanceof ClientOnGateway ? owner.readAhead() : 0;
  }

  /**
   * A decrypted packet from `clientId`. `outerCe`: the carrying UDP datagram was marked Congestion Experienced.
   * `kept`: the verdict's `client` for an earlier packet of the same connection, used while that client is not
   * removed (a removed one authorises nothing: the client is then looked up by id). The returned verdict object
   * is reused by the next call.
   */
  handleTunnelPacket(clientId: string, bytes: Uint8Array, now: number, outerCe = false, kept?: unknown): TunnelVerdict {
    const client = kept instanceof ClientOnGateway && !kept.removed ? kept : this.clients.get(clientId);
    const verdict = this.tunnelVerdict;
    verdict.client = client;
    verdict.action = TunnelAction.Drop;
    verdict.packet = bytes;
    verdict.resourceId = '';
    verdict.domain = undefined;
    const packet = this.packet;
    if (packet.parse(bytes) !== undefined) return verdict;
    const v4 = packet.version === 4;
    const dst = packet.destinationOffset;
    if (v4 ? isMulticastV4(packet.destinationV4) : isMulticastV6(bytes, dst)) return verdict;
    if (client === undefined) return verdict;
    if (isP2pControlPacket(packet)) {
      this.handleP2pControl(client, packet, now);
      verdict.action = TunnelAction.Consumed;
      return verdict;
    }
    if (icmpErrorKind(packet) === 'error') return verdict;
    if (!client.sentFromTunnelAddress(packet)) return this.reply(packet, 'prohibited');
    if (packet.destinationEquals(v4 ? client.gatewayV4 : client.gatewayV6)) {
      return servedOnTunnelAddress(packet) ? this.toTun(packet, outerCe) : this.reply(packet, 'prohibited');
    }
    const dst32 = v4 ? packet.destinationV4 : 0;
    if (v4 ? isTunnelV4(dst32) : isTunnelV6(bytes, dst)) return this.reply(packet, 'prohibited');
    const toProxy = v4 ? isProxyV4(dst32) : isProxyV6(bytes, dst);
    if (client.internetResourceId !== undefined && !toProxy) {
      if (v4 ? internetResourceRejectsV4(dst32) : internetResourceRejectsV6(bytes, dst)) return this.reply(packet, 'unreachable');
      if (this.flowObserver !== undefined) this.attributeTunnelPacket(packet, client.internetResourceId, undefined);
      return this.toTun(packet, outerCe);
    }
    if (!client.permitsOutbound(packet, toProxy)) return this.reply(packet, 'prohibited');
    if (!toProxy) {
      if (this.flowObserver !== undefined) this.attributeTunnelPacket(packet, client.outboundResourceOf(packet, false), undefined);
      return this.toTun(packet, outerCe);
    }
    const translation = client.translations.lookup(bytes, dst, packet.version);
    if (translation === undefined || translation.real === undefined || translation.real.family !== packet.version) return this.reply(packet, 'unreachable');
    translation.domain.lastUsed = now;
    const l4 = l4Of(packet.transport);
    const value = packet.sourceValue;
    if (l4 === L4.None || value < 0) {
      if (this.logger.enabled(Level.Debug)) this.logger.debug('Unsupported protocol towards a DNS resource', { cid: client.id });
      return verdict;
    }
    const resourceId = this.flowObserver === undefined ? undefined : client.outboundResourceOf(packet, true);
    const proxy32 = readU32(bytes, dst + (v4 ? 0 : 12));
    const session = client.openNat().outgoing(l4, value, translation.proxy, proxy32, translation.real, translation.realId, packet.tcpFlags, now);
    this.scheduleNatSweep(client);
    if (typeof session === 'string') {
      this.stats.natSessionsRefused++;
      if (this.logger.enabled(Level.Debug)) this.logger.debug(session === 'full' ? 'Too many NAT sessions' : 'Exhausted NAT', { cid: client.id, dst: formatIp(translation.real) });
      return verdict;
    }
    packet.setDestination(session.real);
    packet.setSourceValue(session.outsideValue);
    if (this.flowObserver !== undefined) this.attributeTunnelPacket(packet, resourceId, translation.domain.name);
    return this.toTun(packet, outerCe);
  }

  // ---- Resource -> client ----------------------------------------------------------------------------------

  /** A packet read from the TUN device. The returned verdict object is reused by the next call. */
  handleTunPacket(bytes: Uint8Array, now: number): TunVerdict {
    const verdict = this.tunVerdict;
    verdict.action = TunAction.Drop;
    verdict.clientId = '';
    verdict.packet = bytes;
    verdict.resourceId = '';
    const packet = this.packet;
    if (packet.parse(bytes) !== undefined) return verdict;
    const v4 = packet.version === 4;
    let client: ClientOnGateway | undefined;
    if (v4) {
      const address = packet.destinationV4;
      if (!isTunnelV4(address)) return verdict;
      client = this.clientsByV4.get(address);
    } else {
      if (!isTunnelV6(bytes, packet.destinationOffset)) return verdict;
      client = this.clientsByV6.get(readU32(bytes, packet.destinationOffset + 12) & V6_RANGE_HOST_MASK);
    }
    if (client === undefined) return verdict;
    if (packet.sourceEquals(v4 ? client.gatewayV4 : client.gatewayV6)) return this.toClient(client, bytes);
    const observer = this.flowObserver;
    if (observer !== undefined) observer.load(packet);
    let out = bytes;
    const icmpKind = icmpErrorKind(packet);
    if (icmpKind === 'error') {
      const translated = this.translateIcmpError(client, packet, now);
      if (translated === undefined) return verdict;
      if (translated !== bytes) {
        out = translated;
        if (packet.parse(translated) !== undefined) return verdict;
      }
    } else {
      const l4 = l4Of(packet.transport);
      const value = packet.destinationValue;
      if (icmpKind === 'unsupported' || l4 === L4.None || value < 0) return verdict;
      const srcId = v4 ? packet.sourceV4 : this.realIds.lookupV6(bytes, packet.sourceOffset);
      if (srcId >= 0) {
        const key = natKey(packet.version, l4, value, srcId);
        const session = client.nat.incoming(key, packet.tcpFlags, now);
        this.scheduleNatSweep(client);
        if (session !== undefined) {
          packet.setSource(session.proxy);
          packet.setDestinationValue(session.insideValue);
        } else if (client.nat.isExpired(key)) {
          return verdict;
        }
      }
    }
    if (!client.sentToTunnelAddress(packet)) return verdict;
    const src = packet.sourceOffset;
    const src32 = v4 ? packet.sourceV4 : 0;
    if (v4 ? isTunnelV4(src32) : isTunnelV6(out, src)) return verdict;
    if (icmpKind === 'error') return this.toClient(client, out);
    const fromProxy = v4 ? isProxyV4(src32) : isProxyV6(out, src);
    if (client.internetResourceId !== undefined && !fromProxy) {
      if (v4 ? internetResourceRejectsV4(src32) : internetResourceRejectsV6(out, src)) return verdict;
      if (observer !== undefined) verdict.resourceId = client.internetResourceId;
      return this.toClient(client, out);
    }
    if (!client.permitsInbound(packet, fromProxy)) return verdict;
    if (observer !== undefined) verdict.resourceId = client.inboundResourceOf(packet, fromProxy) ?? '';
    return this.toClient(client, out);
  }

  // ---- Introspection (tests, metrics) ----------------------------------------------------------------------

  hasClient(clientId: string): boolean {
    return this.clients.has(clientId.toLowerCase());
  }

  clientResourceIds(clientId: string): string[] {
    return this.clients.get(clientId.toLowerCase())?.resourceIds() ?? [];
  }

  natSessionCount(clientId: string): number {
    return this.clients.get(clientId.toLowerCase())?.nat.size ?? 0;
  }

  /** The real IP a client's proxy IP currently translates to. */
  translationOf(clientId: string, proxy: IpAddr): IpAddr | undefined {
    return this.clients.get(clientId.toLowerCase())?.translations.get(proxy)?.real;
  }

  /** How many proxy IPs and domains of the client have translations. */
  translationCounts(clientId: string): { readonly proxies: number; readonly domains: number } {
    const translations = this.clients.get(clientId.toLowerCase())?.translations;
    return { proxies: translations?.size ?? 0, domains: translations?.domainCount ?? 0 };
  }

  /** Filter-table networks rebuilt for the client so far (a test hook: updates touch only their own networks). */
  filterWork(clientId: string): number {
    return this.clients.get(clientId.toLowerCase())?.filterWork ?? 0;
  }

  /** NAT deadline queue operations of a client so far (a test hook). */
  natWork(clientId: string): number {
    return this.clients.get(clientId.toLowerCase())?.nat.deadlineOperations ?? 0;
  }

  /** The expiry deadline of a resource of a client (same clock as `now`), if any. */
  resourceExpiry(clientId: string, resourceId: string): number | undefined {
    return this.expiries.timeOf(expiryKey(clientId.toLowerCase(), resourceId.toLowerCase()));
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Deadline queue operations over clients so far (a test hook: timers cost O(log n), never a visit of every client). */
  get deadlineWork(): number {
    return this.expiries.operations + this.natSweeps.operations;
  }

  // ---- Helpers ---------------------------------------------------------------------------------------------

  private reply(packet: IpPacket, code: 'prohibited' | 'unreachable'): TunnelVerdict {
    const verdict = this.tunnelVerdict;
    verdict.action = TunnelAction.ReplyToClient;
    verdict.packet = makeIcmpDestinationUnreachable(packet, code);
    return verdict;
  }

  private attributeTunnelPacket(packet: IpPacket, resourceId: string | undefined, domain: string | undefined): void {
    const verdict = this.tunnelVerdict;
    verdict.resourceId = resourceId ?? '';
    verdict.domain = domain;
    this.flowObserver!.load(packet);
  }

  private toTun(packet: IpPacket, outerCe: boolean): TunnelVerdict {
    if (outerCe) packet.applyOuterEcn(ECN_CE);
    const verdict = this.tunnelVerdict;
    verdict.action = TunnelAction.ToTun;
    verdict.packet = packet.bytes;
    return verdict;
  }

  private toClient(client: ClientOnGateway, packet: Uint8Array): TunVerdict {
    const verdict = this.tunVerdict;
    verdict.action = TunAction.ToClient;
    verdict.clientId = client.id;
    verdict.packet = packet;
    return verdict;
  }

  /** A translated copy, the packet itself when it concerns no NAT session, or undefined to drop. */
  private translateIcmpError(client: ClientOnGateway, error: IpPacket, now: number): Uint8Array | undefined {
    const quote = this.quote;
    if (parseIcmpErrorQuote(error, quote) !== undefined) return undefined;
    const dstId = quote.version === 4 ? quote.destinationV4 : this.realIds.lookupV6(quote.bytes, quote.destinationOffset);
    if (dstId < 0) return error.bytes;
    const key = natKey(quote.version, l4Of(quote.transport), quote.sourceValue, dstId);
    const session = client.nat.incoming(key, 0, now);
    if (session === undefined) return client.nat.isExpired(key) ? undefined : error.bytes;
    return makeTranslatedIcmpError(error, quote, session.proxy, session.insideValue);
  }

  private handleP2pControl(client: ClientOnGateway, packet: IpPacket, now: number): void {
    const eventType = p2pControlEventType(packet);
    if (eventType === P2P_EVENT_GOODBYE) {
      this.logger.info('Client said goodbye', { cid: client.id });
      this.removeClient(client, 'goodbye');
      return;
    }
    if (eventType !== P2P_EVENT_ASSIGNED_IPS) {
      this.logger.debug('Ignoring p2p control event', { cid: client.id, type: eventType });
      return;
    }
    if (!client.takeControlPacket(now)) {
      this.stats.p2pRateLimited++;
      return;
    }
    const request = decodeAssignedIpsPacket(packet);
    if (typeof request === 'string') {
      this.logger.debug('Malformed AssignedIps', { cid: client.id, error: request });
      return;
    }
    if (!client.hasResource(request.resource)) {
      this.logger.warn('Received AssignedIps for a resource that is not allowed', { cid: client.id, rid: request.resource, domain: request.domain });
      this.sendDomainStatus(client.id, request, 'Inactive');
      return;
    }
    if (client.pendingResolutions >= MAX_RESOLUTIONS_PER_CLIENT) {
      this.stats.resolutionsRefused++;
      this.sendDomainStatus(client.id, request, 'Inactive');
      return;
    }
    const proxies = this.acceptedProxies(client.id, request.proxyIps);
    this.requestResolution(request.domain, { kind: 'p2p', client, request, proxies }, now);
  }

  private requestResolution(domain: string, waiter: Waiter, now: number): void {
    const outcome = this.resolutions.request(domain, waiter, now);
    if (outcome === 'requested' || outcome === 'joined') {
      if (waiter.kind === 'p2p') waiter.client.pendingResolutions++;
      if (outcome === 'requested') this.events.push({ type: 'resolve', domain });
      return;
    }
    if (outcome === 'full') {
      this.stats.resolutionsRefused++;
      this.logger.warn('Too many concurrent DNS resolutions, refusing request', { domain });
      this.finishResolution(waiter, undefined, now);
      return;
    }
    this.finishResolution(waiter, outcome, now);
  }

  private finishResolution(waiter: Waiter, ips: readonly IpAddr[] | undefined, now: number): void {
    if (waiter.kind === 'legacy') {
      this.events.push({ type: 'legacyResolution', requestId: waiter.requestId, domain: waiter.domain, ips });
      return;
    }
    const { client, request } = waiter;
    if (this.clients.get(client.id) !== client) {
      this.logger.debug('Client gone before its domain was resolved', { cid: client.id, domain: request.domain });
      return;
    }
    if (client.pendingResolutions > 0) client.pendingResolutions--;
    if (ips === undefined) {
      this.sendDomainStatus(client.id, request, 'Inactive');
      return;
    }
    const error = client.setupNat(request.domain, request.resource, ips, waiter.proxies, this.realIds, now);
    this.scheduleNatSweep(client);
    if (error !== undefined) this.logger.debug('Failed to set up DNS resource NAT', { cid: client.id, domain: request.domain, error });
    this.sendDomainStatus(client.id, request, error === undefined ? 'Active' : 'Inactive');
  }

  private sendDomainStatus(clientId: string, request: AssignedIps, status: DomainStatus): void {
    const packet = makeDomainStatusPacket({ resource: request.resource, domain: request.domain, status });
    if (packet !== undefined) this.clientPackets.push({ clientId, packet });
  }

  /** Proxy IPs outside the proxy ranges would be forwarded untranslated; they are ignored. */
  private acceptedProxies(clientId: string, proxies: readonly IpAddr[]): IpAddr[] {
    const accepted = proxies.filter(isProxyIp);
    if (accepted.length !== proxies.length) {
      const rejected = proxies.filter((ip) => !isProxyIp(ip)).map(formatIp);
      this.logger.warn('Ignoring proxy IPs outside the proxy ranges', { cid: clientId, ips: rejected.join(',') });
    }
    return accepted;
  }

  /** A resource's expiry came up. */
  private expire(key: string): void {
    const space = key.indexOf(' ');
    const client = this.clients.get(key.slice(0, space));
    if (client === undefined) return;
    const resourceId = key.slice(space + 1);
    if (client.removeResource(resourceId) === undefined) return;
    this.logger.info('Access to resource expired', { cid: client.id, rid: resourceId });
    if (client.isEmpty) this.removeClient(client, 'noResources');
  }

  /** Keeps the client's place in `natSweeps` at its NAT table's next sweep (a comparison when nothing moved). */
  private scheduleNatSweep(client: ClientOnGateway): void {
    const at = client.nat.nextSweep;
    if (at === client.natSweepAt) return;
    client.natSweepAt = at;
    this.natSweeps.set(client, at);
  }

  private removeClient(client: ClientOnGateway, reason: ClientRemovalReason): void {
    if (this.clients.get(client.id) !== client) return;
    this.clients.delete(client.id);
    for (const key of client.ipKeys(4)) if (this.clientsByV4.get(key) === client) this.clientsByV4.delete(key);
    for (const key of client.ipKeys(6)) if (this.clientsByV6.get(key) === client) this.clientsByV6.delete(key);
    for (const resourceId of client.resourceIds()) this.expiries.delete(expiryKey(client.id, resourceId));
    this.natSweeps.delete(client);
    client.dispose();
    if (reason === 'noResources') this.logger.debug('Access to last resource for client removed', { cid: client.id });
    this.events.push({ type: 'clientRemoved', clientId: client.id, reason });
  }

  private addIpRoutes(client: ClientOnGateway, ipv4: IpAddr, ipv6: IpAddr): void {
    if (ipv4.family === 4 && isTunnelV4(ipv4.value)) {
      this.route(this.clientsByV4, 4, ipv4.value, client);
    }
    if (ipv6.family === 6 && isTunnelV6(ipv6.bytes, 0)) {
      this.route(this.clientsByV6, 6, readU32(ipv6.bytes, 12) & V6_RANGE_HOST_MASK, client);
    }
  }

  private route(table: Map<number, ClientOnGateway>, family: 4 | 6, key: number, client: ClientOnGateway): void {
    const owner = table.get(key);
    if (owner !== undefined && owner !== client) this.logger.warn('Tunnel IP already owned by another client, broken invariant', { cid: client.id, other: owner.id });
    table.set(key, client);
    client.addIpKey(family, key);
  }

  private toResource(description: ResourceDescription, expiresAt: number | undefined): Resource | undefined {
    const lowercase = description.id.toLowerCase();
    const id = this.canonicalText.of(lowercase, lowercase);
    switch (description.type) {
      case 'internet':
        return { type: 'internet', id, expiresAt };
      case 'cidr': {
        const parsed = parseCidr(description.address);
        if (parsed === undefined) return undefined;
        const network = this.canonicalNetworks.of(description.address, parsed);
        this.warnAboutInvalidFilters(id, description.filters);
        return { type: 'cidr', id, network, filters: this.canonicalFilters(description.filters), expiresAt };
      }
      case 'dns':
        this.warnAboutInvalidFilters(id, description.filters);
        return { type: 'dns', id, pattern: this.canonicalText.of(description.address, description.address), filters: this.canonicalFilters(description.filters), expiresAt };
    }
  }

  /** The one shared instance of a filter list (an empty one included), so that clients share its rules too. */
  private canonicalFilters(filters: readonly Filter[]): readonly Filter[] {
    return filters.length === 0 ? NO_FILTERS : this.canonicalFilterLists.of(JSON.stringify(filters), filters);
  }

  private warnAboutInvalidFilters(resourceId: string, filters: readonly Filter[]): void {
    for (const filter of filters) {
      if (filter.protocol === 'icmp' || filter.portRangeStart <= filter.portRangeEnd) continue;
      this.logger.warn('Ignoring filter with start > end', { rid: resourceId, start: filter.portRangeStart, end: filter.portRangeEnd });
    }
  }
}

const NO_RESOURCES: ReadonlySet<string> = new Set();
const NO_FILTERS: readonly Filter[] = [];

function expiryKey(clientId: string, resourceId: string): string {
  return `${clientId} ${resourceId}`;
}

/** The gateway's own tunnel address serves its DNS forwarder (UDP and TCP) and answers ICMP echo. */
function servedOnTunnelAddress(packet: IpPacket): boolean {
  switch (packet.transport) {
    case 'tcp':
    case 'udp':
      return packet.destinationPort === TUN_DNS_PORT;
    case 'icmpv4':
    case 'icmpv6':
      return packet.isIcmpEchoRequest;
    case 'unsupported':
      return false;
  }
}

function isProxyIp(ip: IpAddr): boolean {
  return ip.family === 4 ? isProxyV4(ip.value) : isProxyV6(ip.bytes, 0);
}
