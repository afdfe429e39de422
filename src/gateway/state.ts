// GatewayState: the gateway's policy core. Sans-IO: it sees decrypted IP packets tagged with a client id
// (client -> resource), packets read from the TUN device (resource -> client), portal commands and time.
//
// Outputs:
// - per packet, a reused verdict object (`TunnelVerdict` / `TunVerdict`): the packet, possibly rewritten in
//   place or replaced by an ICMP reply, and where it goes;
// - `pollClientPacket()`: packets for a client produced later (p2p control replies after a resolution);
// - `pollEvent()`: requests for the IO shell (name resolutions, removed clients);
// - `pollTimeout()`: when `handleTimeout` must run next (expiry tick, resolution deadlines).

import {
  ECN_CE,
  IpPacket,
  P2P_EVENT_ASSIGNED_IPS,
  cidrContains,
  cidrContainsV4,
  cidrContainsV6,
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
import type { AssignedIps, IpAddr } from '../ip/index.ts';
import { createLogger, Level } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import { ClientOnGateway, isProxyIp } from './client.ts';
import type { Resource } from './client.ts';
import { EXPIRY_TICK_MS, IPV4_PROXY_RANGE, IPV4_TUNNEL, IPV6_PROXY_RANGE, IPV6_TUNNEL, V6_RANGE_HOST_MASK } from './constants.ts';
import { L4, RealIpIds, l4Of, natKey } from './nat.ts';
import { Resolutions } from './resolutions.ts';
import type { Authorization, ClientInfo, DnsNatRequest, DomainStatus, Filter, ResourceDescription, TunnelInterface } from './types.ts';

export const enum TunnelAction {
  /** Dropped (malformed, unknown client, NAT error, ...). */
  Drop = 0,
  /** `packet` (the same buffer, rewritten in place) goes to the TUN device. */
  ToTun = 1,
  /** `packet` is a new ICMP error to encrypt back to the same client. */
  ReplyToClient = 2,
  /** A p2p control packet, handled; any answer comes out of `pollClientPacket()`. */
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
}

export interface TunVerdict {
  action: TunAction;
  clientId: string;
  packet: Uint8Array;
}

export interface ClientPacket {
  readonly clientId: string;
  readonly packet: Uint8Array;
}

export type GatewayEvent =
  /** Resolve `domain` (A and AAAA) and answer with `handleDnsResolution`. */
  | { readonly type: 'resolve'; readonly domain: string }
  /** The answer to `resolveForLegacyAccess` (undefined = resolution failed). */
  | { readonly type: 'legacyResolution'; readonly requestId: string; readonly domain: string; readonly ips: readonly IpAddr[] | undefined }
  /** The client's policy state is gone (no resources left); its connection is not closed by the core. */
  | { readonly type: 'clientRemoved'; readonly clientId: string };

export type AccessResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

type Waiter =
  | { readonly kind: 'p2p'; readonly clientId: string; readonly request: AssignedIps }
  | { readonly kind: 'legacy'; readonly requestId: string; readonly domain: string };

export interface GatewayStateOptions {
  readonly logger?: Logger;
}

export class GatewayState {
  private readonly clients = new Map<string, ClientOnGateway>();
  /** Host routes of client tunnel IPv4s. */
  private readonly clientsByV4 = new Map<number, ClientOnGateway>();
  /** Host routes of client tunnel IPv6s, keyed by the low 21 bits (only addresses in the tunnel /107 are routable). */
  private readonly clientsByV6 = new Map<number, ClientOnGateway>();
  private gatewayTun: TunnelInterface | undefined;
  private readonly realIds = new RealIpIds();
  private readonly resolutions = new Resolutions<Waiter>();
  private readonly events: GatewayEvent[] = [];
  private readonly clientPackets: ClientPacket[] = [];
  private nextTick: number | undefined;
  private readonly logger: Logger;

  private readonly packet = new IpPacket();
  private readonly quote = new IpPacket();
  private readonly tunnelVerdict: TunnelVerdict = { action: TunnelAction.Drop, packet: new Uint8Array(0) };
  private readonly tunVerdict: TunVerdict = { action: TunAction.Drop, clientId: '', packet: new Uint8Array(0) };

  constructor(options: GatewayStateOptions = {}) {
    this.logger = options.logger ?? createLogger('firezone_tunnel::gateway');
  }

  // ---- Portal commands -------------------------------------------------------------------------------------

  /**
   * `init`: stores the gateway's tunnel IPs. With `authorizations` present, every authorization not listed is
   * revoked, for every client (listed or not); without it (older portals) nothing is revoked. Clients left
   * without resources are removed at the next tick.
   */
  init(iface: TunnelInterface, authorizations: readonly Authorization[] | undefined, now: number): void {
    this.touch(now);
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
    for (const client of this.clients.values()) {
      const revoked = client.retainResources(allowed.get(client.id) ?? new Set());
      for (const resourceId of revoked) this.logger.info('Revoking resource authorization', { cid: client.id, rid: resourceId });
    }
  }

  /** `authorize_flow`: records access of `client` to `resource` until `expiresAt` (same clock as `now`; undefined = never). */
  authorizeFlow(client: ClientInfo, resource: ResourceDescription, expiresAt: number | undefined, now: number): AccessResult {
    return this.allowAccess(client, resource, expiresAt, undefined, now);
  }

  /** The legacy `request_connection` / `allow_access` path; `dnsNat` carries an already resolved domain. */
  allowAccess(client: ClientInfo, description: ResourceDescription, expiresAt: number | undefined, dnsNat: DnsNatRequest | undefined, now: number): AccessResult {
    this.touch(now);
    const gatewayTun = this.gatewayTun;
    if (gatewayTun === undefined) return { ok: false, error: 'TUN device not configured' };
    if (client.ipv4.family !== 4 || client.ipv6.family !== 6) return { ok: false, error: 'client tunnel IPs of the wrong family' };
    const resource = this.toResource(description, expiresAt);
    if (resource === undefined) return { ok: false, error: `invalid resource address ${'address' in description ? description.address : ''}` };
    const clientId = client.id.toLowerCase();
    let record = this.clients.get(clientId);
    if (record === undefined) {
      record = new ClientOnGateway(clientId, client.ipv4, client.ipv6, gatewayTun.ipv4, gatewayTun.ipv6);
      this.clients.set(clientId, record);
    }
    if (record.addResource(resource) === 'type-mismatch') {
      this.logger.error('Resources cannot change type', { cid: clientId, rid: resource.id });
    }
    if (dnsNat !== undefined) {
      const error = record.setupNat(dnsNat.domain, resource.id, dnsNat.resolvedIps, this.acceptedProxies(clientId, dnsNat.proxyIps), this.realIds);
      if (error !== undefined) return { ok: false, error };
    }
    this.addIpRoutes(record, client.ipv4, client.ipv6);
    return { ok: true };
  }

  /** `reject_access`: the client loses the resource; without resources left it is removed immediately. */
  rejectAccess(clientId: string, resourceId: string, now: number): void {
    this.touch(now);
    const client = this.clients.get(clientId.toLowerCase());
    if (client === undefined) return;
    client.removeResource(resourceId.toLowerCase());
    if (client.resources.size === 0) this.removeClient(client.id);
  }

  /** `resource_updated`: new filters for every client holding the resource (addresses and names are ignored). */
  resourceUpdated(description: ResourceDescription): void {
    const resourceId = description.id.toLowerCase();
    const filters = description.type === 'internet' ? [] : description.filters;
    if (description.type !== 'internet') this.warnAboutInvalidFilters(resourceId, filters);
    for (const client of this.clients.values()) {
      if (client.updateFilters(resourceId, description.type, filters) === 'type-mismatch') {
        this.logger.error('Resources cannot change type', { cid: client.id, rid: resourceId });
      }
    }
  }

  /** The connection to the client failed or closed: all its policy state goes. */
  removeClient(clientId: string): void {
    const id = clientId.toLowerCase();
    const client = this.clients.get(id);
    if (client === undefined) return;
    this.clients.delete(id);
    for (const key of client.ipKeysV4) if (this.clientsByV4.get(key) === client) this.clientsByV4.delete(key);
    for (const key of client.ipKeysV6) if (this.clientsByV6.get(key) === client) this.clientsByV6.delete(key);
    this.events.push({ type: 'clientRemoved', clientId: id });
  }

  /** Legacy flows resolve before granting access; the answer comes as a `legacyResolution` event. */
  resolveForLegacyAccess(domain: string, requestId: string, now: number): void {
    this.touch(now);
    this.requestResolution(domain, { kind: 'legacy', requestId, domain }, now);
  }

  /** The answer to a `resolve` event: the union of A and AAAA results, or undefined when both failed. */
  handleDnsResolution(domain: string, ips: readonly IpAddr[] | undefined, now: number): void {
    this.touch(now);
    for (const waiter of this.resolutions.complete(domain, ips, now)) this.finishResolution(waiter, ips);
  }

  // ---- Time ------------------------------------------------------------------------------------------------

  handleTimeout(now: number): void {
    this.touch(now);
    for (const waiter of this.resolutions.expire(now)) this.finishResolution(waiter, undefined);
    if (now < this.nextTick!) return;
    this.nextTick = now + EXPIRY_TICK_MS;
    for (const client of this.clients.values()) {
      for (const resourceId of client.expireResources(now)) this.logger.info('Access to resource expired', { cid: client.id, rid: resourceId });
      client.nat.collectGarbage(now);
    }
    for (const client of [...this.clients.values()]) if (client.resources.size === 0) this.removeClient(client.id);
  }

  pollTimeout(): number | undefined {
    const deadline = this.resolutions.nextDeadline();
    if (this.nextTick === undefined) return deadline;
    return deadline === undefined ? this.nextTick : Math.min(deadline, this.nextTick);
  }

  pollEvent(): GatewayEvent | undefined {
    return this.events.shift();
  }

  pollClientPacket(): ClientPacket | undefined {
    return this.clientPackets.shift();
  }

  // ---- Client -> resource ----------------------------------------------------------------------------------

  /**
   * A decrypted packet from `clientId`. `outerCe`: the carrying UDP datagram was marked Congestion Experienced.
   * The returned verdict object is reused by the next call.
   */
  handleTunnelPacket(clientId: string, bytes: Uint8Array, now: number, outerCe = false): TunnelVerdict {
    const verdict = this.tunnelVerdict;
    verdict.action = TunnelAction.Drop;
    verdict.packet = bytes;
    const packet = this.packet;
    if (packet.parse(bytes) !== undefined) return verdict;
    const client = this.clients.get(clientId);
    if (client === undefined) return verdict;
    if (isP2pControlPacket(packet)) {
      this.handleP2pControl(client, packet, now);
      verdict.action = TunnelAction.Consumed;
      return verdict;
    }
    const v4 = packet.version === 4;
    if (!packet.sourceEquals(v4 ? client.tunV4 : client.tunV6)) return this.reply(makeIcmpDestinationUnreachable(packet, 'prohibited'));
    if (packet.destinationEquals(v4 ? client.gatewayV4 : client.gatewayV6)) return this.toTun(packet, outerCe);
    const toProxy = v4 ? cidrContainsV4(IPV4_PROXY_RANGE, packet.destinationV4) : cidrContainsV6(IPV6_PROXY_RANGE, bytes, packet.destinationOffset);
    if (!client.internetEnabled || toProxy) {
      const engine = v4 ? client.filters.lookupV4(packet.destinationV4) : client.filters.lookupV6(bytes, packet.destinationOffset);
      if (engine === undefined || !engine.permits(packet, true)) return this.reply(makeIcmpDestinationUnreachable(packet, 'prohibited'));
    }
    if (!toProxy) return this.toTun(packet, outerCe);
    const translation = client.translationFor(bytes, packet.destinationOffset, packet.version);
    if (translation === undefined || translation.real.family !== packet.version) {
      return this.reply(makeIcmpDestinationUnreachable(packet, 'unreachable'));
    }
    const l4 = l4Of(packet.transport);
    const value = packet.sourceValue;
    if (l4 === L4.None || value < 0) {
      if (this.logger.enabled(Level.Debug)) this.logger.debug('Unsupported protocol towards a DNS resource', { cid: client.id });
      return verdict;
    }
    const proxy32 = readU32(bytes, packet.destinationOffset + (v4 ? 0 : 12));
    const outside = client.nat.outgoing(l4, value, translation.proxy, proxy32, translation.real, translation.realId, packet.isTcpRst, now);
    if (outside < 0) {
      this.logger.warn('Exhausted NAT', { cid: client.id, dst: formatIp(translation.real) });
      return verdict;
    }
    const checksumMissing = packet.udpChecksumMissing;
    packet.setDestination(translation.real);
    packet.setSourceValue(outside);
    if (checksumMissing) packet.updateChecksums();
    return this.toTun(packet, outerCe);
  }

  // ---- Resource -> client ----------------------------------------------------------------------------------

  /** A packet read from the TUN device. The returned verdict object is reused by the next call. */
  handleTunPacket(bytes: Uint8Array, now: number): TunVerdict {
    const verdict = this.tunVerdict;
    verdict.action = TunAction.Drop;
    verdict.clientId = '';
    verdict.packet = bytes;
    const packet = this.packet;
    if (packet.parse(bytes) !== undefined) return verdict;
    const v4 = packet.version === 4;
    let client: ClientOnGateway | undefined;
    if (v4) {
      const address = packet.destinationV4;
      if (!cidrContainsV4(IPV4_TUNNEL, address)) return verdict;
      client = this.clientsByV4.get(address);
    } else {
      if (!cidrContainsV6(IPV6_TUNNEL, bytes, packet.destinationOffset)) return verdict;
      client = this.clientsByV6.get(readU32(bytes, packet.destinationOffset + 12) & V6_RANGE_HOST_MASK);
    }
    if (client === undefined) return verdict;
    const clientTun = v4 ? client.tunV4 : client.tunV6;
    if (packet.sourceEquals(v4 ? client.gatewayV4 : client.gatewayV6)) return this.toClient(client, bytes);
    const icmpKind = icmpErrorKind(packet);
    if (icmpKind === 'error') {
      const translated = this.translateIcmpError(client, packet);
      if (translated === undefined || packet.parse(translated) !== undefined || !packet.destinationEquals(clientTun)) return verdict;
      return this.toClient(client, translated);
    }
    const l4 = l4Of(packet.transport);
    const value = packet.destinationValue;
    if (icmpKind === 'unsupported' || l4 === L4.None || value < 0) return verdict;
    const srcId = v4 ? packet.sourceV4 : this.realIds.lookupV6(bytes, packet.sourceOffset);
    if (srcId >= 0) {
      const key = natKey(packet.version, l4, value, srcId);
      const session = client.nat.lookupOutside(key);
      if (session !== undefined) {
        session.lastSeen = now;
        const checksumMissing = packet.udpChecksumMissing;
        packet.setSource(session.proxy);
        packet.setDestinationValue(session.insideValue);
        if (checksumMissing) packet.updateChecksums();
        if (packet.isTcpRst) client.nat.end(session);
      } else if (client.nat.isExpired(key)) {
        return verdict;
      }
    }
    if (!packet.destinationEquals(clientTun)) return verdict;
    const fromProxy = v4 ? cidrContainsV4(IPV4_PROXY_RANGE, packet.sourceV4) : cidrContainsV6(IPV6_PROXY_RANGE, bytes, packet.sourceOffset);
    if (!client.internetEnabled || fromProxy) {
      const engine = v4 ? client.filters.lookupV4(packet.sourceV4) : client.filters.lookupV6(bytes, packet.sourceOffset);
      if (engine === undefined || !engine.permits(packet, false)) return verdict;
    }
    return this.toClient(client, bytes);
  }

  // ---- Introspection (tests, metrics) ----------------------------------------------------------------------

  hasClient(clientId: string): boolean {
    return this.clients.has(clientId.toLowerCase());
  }

  clientResourceIds(clientId: string): string[] {
    return [...(this.clients.get(clientId.toLowerCase())?.resources.keys() ?? [])];
  }

  natSessionCount(clientId: string): number {
    return this.clients.get(clientId.toLowerCase())?.nat.size ?? 0;
  }

  /** The real IP a client's proxy IP currently translates to. */
  translationOf(clientId: string, proxy: IpAddr): IpAddr | undefined {
    const client = this.clients.get(clientId.toLowerCase());
    if (client === undefined) return undefined;
    return (proxy.family === 4 ? client.translationsV4.get(proxy.value) : client.translationsV6.get(readU32(proxy.bytes, 12)))?.real;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  // ---- Helpers ---------------------------------------------------------------------------------------------

  private touch(now: number): void {
    if (this.nextTick === undefined) this.nextTick = now + EXPIRY_TICK_MS;
  }

  private reply(packet: Uint8Array): TunnelVerdict {
    const verdict = this.tunnelVerdict;
    verdict.action = TunnelAction.ReplyToClient;
    verdict.packet = packet;
    return verdict;
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
  private translateIcmpError(client: ClientOnGateway, error: IpPacket): Uint8Array | undefined {
    const quote = this.quote;
    if (parseIcmpErrorQuote(error, quote) !== undefined) return undefined;
    const dstId = quote.version === 4 ? quote.destinationV4 : this.realIds.lookupV6(quote.bytes, quote.destinationOffset);
    if (dstId < 0) return error.bytes;
    const key = natKey(quote.version, l4Of(quote.transport), quote.sourceValue, dstId);
    const session = client.nat.lookupOutside(key);
    if (session === undefined) return client.nat.isExpired(key) ? undefined : error.bytes;
    return makeTranslatedIcmpError(error, quote, session.proxy, session.insideValue);
  }

  private handleP2pControl(client: ClientOnGateway, packet: IpPacket, now: number): void {
    const eventType = p2pControlEventType(packet);
    if (eventType !== P2P_EVENT_ASSIGNED_IPS) {
      this.logger.debug('Ignoring p2p control event', { cid: client.id, type: eventType });
      return;
    }
    const request = decodeAssignedIpsPacket(packet);
    if (typeof request === 'string') {
      this.logger.debug('Malformed AssignedIps', { cid: client.id, error: request });
      return;
    }
    if (!client.resources.has(request.resource)) {
      this.sendDomainStatus(client.id, request, 'Inactive');
      return;
    }
    this.requestResolution(request.domain, { kind: 'p2p', clientId: client.id, request }, now);
  }

  private requestResolution(domain: string, waiter: Waiter, now: number): void {
    const outcome = this.resolutions.request(domain, waiter, now);
    if (outcome === 'requested') this.events.push({ type: 'resolve', domain });
    else if (outcome === 'dropped') this.logger.warn('Too many concurrent DNS resolutions, dropping request', { domain });
    else if (outcome !== 'joined') this.finishResolution(waiter, outcome);
  }

  private finishResolution(waiter: Waiter, ips: readonly IpAddr[] | undefined): void {
    if (waiter.kind === 'legacy') {
      this.events.push({ type: 'legacyResolution', requestId: waiter.requestId, domain: waiter.domain, ips });
      return;
    }
    const { clientId, request } = waiter;
    const client = this.clients.get(clientId);
    if (client === undefined) {
      this.logger.debug('Client gone before its domain was resolved', { cid: clientId, domain: request.domain });
      return;
    }
    if (ips === undefined) {
      this.sendDomainStatus(clientId, request, 'Inactive');
      return;
    }
    const error = client.setupNat(request.domain, request.resource, ips, this.acceptedProxies(clientId, request.proxyIps), this.realIds);
    if (error !== undefined) this.logger.debug('Failed to set up DNS resource NAT', { cid: clientId, domain: request.domain, error });
    this.sendDomainStatus(clientId, request, error === undefined ? 'Active' : 'Inactive');
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

  private addIpRoutes(client: ClientOnGateway, ipv4: IpAddr, ipv6: IpAddr): void {
    if (ipv4.family === 4 && cidrContains(IPV4_TUNNEL, ipv4)) {
      this.route(this.clientsByV4, client.ipKeysV4, ipv4.value, client);
    }
    if (ipv6.family === 6 && cidrContains(IPV6_TUNNEL, ipv6)) {
      this.route(this.clientsByV6, client.ipKeysV6, readU32(ipv6.bytes, 12) & V6_RANGE_HOST_MASK, client);
    }
  }

  private route(table: Map<number, ClientOnGateway>, keys: number[], key: number, client: ClientOnGateway): void {
    const owner = table.get(key);
    if (owner !== undefined && owner !== client) this.logger.warn('Tunnel IP already owned by another client, broken invariant', { cid: client.id, other: owner.id });
    table.set(key, client);
    if (!keys.includes(key)) keys.push(key);
  }

  private toResource(description: ResourceDescription, expiresAt: number | undefined): Resource | undefined {
    const id = description.id.toLowerCase();
    switch (description.type) {
      case 'internet':
        return { type: 'internet', id, expiresAt };
      case 'cidr': {
        const network = parseCidr(description.address);
        if (network === undefined) return undefined;
        this.warnAboutInvalidFilters(id, description.filters);
        return { type: 'cidr', id, network, filters: description.filters, expiresAt };
      }
      case 'dns':
        this.warnAboutInvalidFilters(id, description.filters);
        return { type: 'dns', id, pattern: description.address, domains: new Map(), filters: description.filters, expiresAt };
    }
  }

  private warnAboutInvalidFilters(resourceId: string, filters: readonly Filter[]): void {
    for (const filter of filters) {
      if (filter.protocol === 'icmp' || filter.portRangeStart <= filter.portRangeEnd) continue;
      this.logger.warn('Ignoring filter with start > end', { rid: resourceId, start: filter.portRangeStart, end: filter.portRangeEnd });
    }
  }
}
