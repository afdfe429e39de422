/**
 * The reference model: which (client, destination, protocol, port) the gateway must let through, written
 * from the spec (gateway-core §3.1–§3.3, with the 1.6.0 changes of gateway-1.6 §3) with its own tiny address
 * arithmetic, independent of src/.
 */

export type Protocol = 'tcp' | 'udp' | 'icmp';

export type ModelFilter = { readonly protocol: 'tcp' | 'udp'; readonly start: number; readonly end: number } | { readonly protocol: 'icmp' };

export interface ResourceDef {
  readonly id: string;
  readonly type: 'cidr' | 'internet' | 'dns';
  /** `cidr`: a canonical network; `dns`: a name pattern. */
  readonly address: string;
}

export interface Grant {
  filters: readonly ModelFilter[];
  /** Monotonic ms; undefined = never. */
  expiresAt: number | undefined;
}

/** What the gateway must do with one packet, as far as the model can tell. */
export type Expectation = 'allow' | 'deny' | 'unknown';

/**
 * A client packet's fate. `deny`: ICMP prohibited; `unreachable`: ICMP network/address unreachable (a proxy IP
 * without an address of its family, or a range the Internet resource does not reach); `drop`: nothing at all.
 */
export type Verdict = { readonly kind: 'allow'; readonly translatedTo: string | undefined } | { readonly kind: 'deny' | 'unknown' | 'unreachable' | 'drop' };

/** A DNS proxy IP of a client: the domain it was announced for, the resources, and the real address (if any). */
interface Translation {
  readonly domain: string;
  readonly resources: ReadonlySet<string>;
  readonly real: string | undefined;
}

/** The gateway's DNS forwarder port on its tunnel addresses. */
const TUN_DNS_PORT = 53535;

/** How long a packet may take from the client's encapsulate to the gateway's verdict (rekeys included). */
export const MAX_TRANSIT_MS = 2_000;
/** An expired grant is gone at its deadline, give or take the event loop's timer: this much after, certainly. */
export const TICK_SLACK_MS = 1_100;

export class ReferenceModel {
  /** What the gateway was told: client -> resource -> grant. A client without grants has no record there. */
  readonly grants = new Map<string, Map<string, Grant>>();
  /** client -> proxy IP -> translation; `uncertain` where the model cannot tell what the gateway holds. */
  private readonly translations = new Map<string, Map<bigint, Translation | 'uncertain'>>();
  /** Clients whose DNS-resource state on the gateway the model cannot know (see `authorize`). */
  private readonly dnsUncertain = new Set<string>();
  /** Clients re-authorized after one of their grants was due: until this time a GOODBYE for the old grant may arrive. */
  private readonly goodbyeRaceUntil = new Map<string, number>();
  /**
   * Unanswered AssignedIps the client may still deliver (its tunnel holds them for a handshake) until `until`: one
   * that reaches the gateway after a later authorization sets up NAT the model did not see at the time.
   */
  private readonly dnsInFlight = new Map<string, { readonly domain: string; readonly proxies: readonly string[]; readonly until: number }[]>();

  constructor(readonly resources: ReadonlyMap<string, ResourceDef>, readonly gatewayTun: { readonly v4: string; readonly v6: string }) {}

  authorize(clientId: string, resourceId: string, filters: readonly ModelFilter[], expiresAt: number | undefined, now: number): void {
    let held = this.grants.get(clientId);
    if (held === undefined) this.grants.set(clientId, (held = new Map()));
    // The gateway may already have expired a grant past its expiry, and with it maybe the whole client record:
    // what it knows of DNS names (translations, resolved addresses) is no longer certain.
    // If every grant had come due, the gateway may have closed the client with a GOODBYE that is still on its way.
    for (const grant of held.values()) {
      if (grant.expiresAt === undefined || now < grant.expiresAt) continue;
      this.dnsUncertain.add(clientId);
      this.goodbyeRaceUntil.set(clientId, now + MAX_TRANSIT_MS);
    }
    this.settleDnsInFlight(clientId, now);
    const existing = held.get(resourceId);
    if (existing !== undefined) {
      existing.filters = filters;
      existing.expiresAt = expiresAt;
    } else {
      held.set(resourceId, { filters, expiresAt });
    }
  }

  reject(clientId: string, resourceId: string): void {
    const held = this.grants.get(clientId);
    if (held === undefined || !held.delete(resourceId)) return;
    // The gateway removes a client rejected down to nothing at once (and closes its connection with GOODBYE).
    if (held.size === 0) this.forget(clientId);
  }

  resourceUpdated(resourceId: string, filters: readonly ModelFilter[]): void {
    for (const held of this.grants.values()) {
      const grant = held.get(resourceId);
      if (grant !== undefined) grant.filters = filters;
    }
  }

  /** `init` with `authorizations`: everything not listed goes, for every client; an emptied client goes at once. */
  retain(listed: ReadonlySet<string>): void {
    for (const [clientId, held] of [...this.grants]) {
      for (const resourceId of [...held.keys()]) if (!listed.has(`${clientId}/${resourceId}`)) held.delete(resourceId);
      if (held.size === 0) this.forget(clientId);
    }
  }

  /**
   * The client's record is gone: it said GOODBYE, or lost its last resource. (A failed connection is not a reason:
   * 1.6.0 keeps the peer state, so a client that connects again keeps its authorizations.)
   */
  forget(clientId: string): void {
    this.grants.delete(clientId);
    this.translations.delete(clientId);
    this.dnsUncertain.delete(clientId);
  }

  /** Drops grants that have certainly expired by `now`; a client left without grants is gone. */
  expire(now: number): void {
    for (const [clientId, held] of [...this.grants]) {
      for (const [resourceId, grant] of [...held]) {
        if (grant.expiresAt !== undefined && now >= grant.expiresAt + TICK_SLACK_MS) held.delete(resourceId);
      }
      if (held.size === 0) this.forget(clientId);
    }
  }

  /**
   * What the gateway answers to AssignedIps: `none` when it does not know the client. `resolved` is undefined
   * when resolution fails.
   */
  domainStatus(clientId: string, resourceId: string, domain: string, resolved: readonly string[] | undefined, now: number): 'Active' | 'Inactive' | 'none' | 'unknown' {
    const presence = this.clientPresence(clientId, now, now + MAX_TRANSIT_MS);
    if (presence !== 'present') return presence === 'absent' ? 'none' : 'unknown';
    const grant = this.grants.get(clientId)?.get(resourceId);
    if (grant === undefined) return 'Inactive';
    if (grant.expiresAt !== undefined && now + MAX_TRANSIT_MS >= grant.expiresAt) return 'unknown';
    const def = this.resources.get(resourceId);
    if (def === undefined || def.type !== 'dns' || !matchesPattern(def.address, domain) || resolved === undefined) return 'Inactive';
    return 'Active';
  }

  /**
   * An AssignedIps whose outcome the model cannot know (its answer was lost or cannot be told apart): the gateway
   * may or may not have reset the client's translations (a renumbering) and set up these proxies.
   */
  dnsMaybe(clientId: string, domain: string, proxies: readonly string[]): void {
    const table = this.table(clientId);
    if (proxies.some((proxy) => this.mayReset(table, domain, proxy))) for (const key of table.keys()) table.set(key, 'uncertain');
    for (const [key, entry] of table) if (entry !== 'uncertain' && entry.domain === domain.toLowerCase()) table.set(key, 'uncertain');
    for (const proxy of proxies) table.set(toBigInt(proxy), 'uncertain');
  }

  /**
   * The gateway certainly ran its NAT set-up for the AssignedIps (1.6.0 `setup_nat`): when one of `proxies` belongs
   * to another domain, all of the client's translations (and NAT sessions) go first. `active`: the name matched and
   * the proxies were set up: the i-th proxy of a family (sorted) maps to the (i mod n)-th sorted address of that
   * family, or to nothing; the domain's earlier proxies not listed now go.
   */
  dnsSetUp(clientId: string, resourceId: string, domain: string, proxies: readonly string[], resolved: readonly string[], active: boolean, now: number): void {
    const table = this.table(clientId);
    const name = domain.toLowerCase();
    const resets = proxies.some((proxy) => {
      const entry = table.get(toBigInt(proxy));
      return entry !== undefined && entry !== 'uncertain' && entry.domain !== name;
    });
    if (resets) {
      table.clear();
      // A late AssignedIps may still arrive after this reset.
      this.settleDnsInFlight(clientId, now);
    } else if (proxies.some((proxy) => this.mayReset(table, name, proxy))) for (const key of table.keys()) table.set(key, 'uncertain');
    if (!active) return;
    const wanted = new Set(proxies.map(toBigInt));
    for (const [key, entry] of table) {
      if (wanted.has(key)) continue;
      if (entry === 'uncertain') continue;
      if (entry.domain === name) table.delete(key);
    }
    const sorted = (ips: readonly string[]): string[] => [...new Set(ips)].sort((a, b) => (toBigInt(a) < toBigInt(b) ? -1 : toBigInt(a) > toBigInt(b) ? 1 : 0));
    const targets = { 4: sorted(resolved.filter((ip) => !ip.includes(':'))), 6: sorted(resolved.filter((ip) => ip.includes(':'))) };
    const next = { 4: 0, 6: 0 };
    for (const proxy of sorted(proxies)) {
      const family = proxy.includes(':') ? 6 : 4;
      const list = targets[family];
      const real = list.length === 0 ? undefined : list[next[family]++ % list.length]!;
      const key = toBigInt(proxy);
      const old = table.get(key);
      if (old === 'uncertain') continue;
      const resources = new Set(old?.resources ?? []);
      resources.add(resourceId);
      table.set(key, { domain: name, resources, real });
    }
  }

  /** An AssignedIps without an answer: until `until` it may still reach the gateway and take effect. */
  dnsMayArrive(clientId: string, domain: string, proxies: readonly string[], until: number): void {
    let pending = this.dnsInFlight.get(clientId);
    if (pending === undefined) this.dnsInFlight.set(clientId, (pending = []));
    pending.push({ domain, proxies, until });
  }

  /** A late AssignedIps may take effect under a new grant or after a reset: its proxies become uncertain. */
  private settleDnsInFlight(clientId: string, now: number): void {
    const pending = this.dnsInFlight.get(clientId);
    if (pending === undefined) return;
    const live = pending.filter((request) => now < request.until);
    for (const request of live) this.dnsMaybe(clientId, request.domain, request.proxies);
    if (live.length === 0) this.dnsInFlight.delete(clientId);
    else this.dnsInFlight.set(clientId, live);
  }

  private table(clientId: string): Map<bigint, Translation | 'uncertain'> {
    let table = this.translations.get(clientId);
    if (table === undefined) this.translations.set(clientId, (table = new Map()));
    return table;
  }

  /** Whether `proxy` may belong to a domain other than `domain` on the gateway. */
  private mayReset(table: Map<bigint, Translation | 'uncertain'>, domain: string, proxy: string): boolean {
    const entry = table.get(toBigInt(proxy));
    return entry !== undefined && (entry === 'uncertain' || entry.domain !== domain.toLowerCase());
  }

  /** Grants certainly in force during [from, until]; `undefined` when some grant of the client is mid-expiry. */
  private liveGrants(clientId: string, from: number, until: number): Grant[] | undefined {
    const held = this.grants.get(clientId);
    if (held === undefined) return [];
    const live: Grant[] = [];
    for (const [resourceId, grant] of held) {
      void resourceId;
      if (grant.expiresAt === undefined || until < grant.expiresAt) live.push(grant);
      else if (from < grant.expiresAt + TICK_SLACK_MS) return undefined;
    }
    return live;
  }

  private grantsWithDefs(clientId: string, from: number, until: number): { def: ResourceDef; grant: Grant }[] | undefined {
    const held = this.grants.get(clientId);
    if (held === undefined) return [];
    const live = this.liveGrants(clientId, from, until);
    if (live === undefined) return undefined;
    const out: { def: ResourceDef; grant: Grant }[] = [];
    for (const [resourceId, grant] of held) {
      if (!live.includes(grant)) continue;
      const def = this.resources.get(resourceId);
      if (def !== undefined) out.push({ def, grant });
    }
    return out;
  }

  /** Whether a GOODBYE reaching the client at `now` may be the one for grants that expired as it was re-authorized. */
  goodbyeMayOvertakeAuthorization(clientId: string, now: number): boolean {
    const until = this.goodbyeRaceUntil.get(clientId);
    return until !== undefined && now <= until;
  }

  /** Whether the gateway certainly holds a record of the client (then a denied packet gets an ICMP reply). */
  clientPresence(clientId: string, from: number, until: number): 'present' | 'absent' | 'unknown' {
    const live = this.liveGrants(clientId, from, until);
    if (live === undefined) return 'unknown';
    if (live.length > 0) return 'present';
    const held = this.grants.get(clientId);
    if (held !== undefined && held.size > 0) return 'unknown';
    return 'absent';
  }

  /** Client -> resource, sent at `sentAt`. `source` is the packet's source address (maybe spoofed). */
  outbound(clientId: string, clientTun: { v4: string; v6: string }, source: string, destination: string, protocol: Protocol, port: number, sentAt: number): Verdict {
    if (isMulticast(destination)) return { kind: 'drop' };
    const until = sentAt + MAX_TRANSIT_MS;
    const presence = this.clientPresence(clientId, sentAt, until);
    if (presence !== 'present') return { kind: presence === 'absent' ? 'drop' : 'unknown' };
    const family = destination.includes(':') ? 6 : 4;
    if (!sameIp(source, family === 4 ? clientTun.v4 : clientTun.v6)) return { kind: 'deny' };
    // The gateway's own address serves its DNS forwarder and answers echo; nothing else (issue 17).
    if (sameIp(destination, family === 4 ? this.gatewayTun.v4 : this.gatewayTun.v6)) {
      return protocol === 'icmp' || port === TUN_DNS_PORT ? { kind: 'allow', translatedTo: undefined } : { kind: 'deny' };
    }
    if (inTunnelRange(destination)) return { kind: 'deny' };
    const held = this.grantsWithDefs(clientId, sentAt, until);
    if (held === undefined) return { kind: 'unknown' };
    if (inProxyRange(destination)) return this.throughProxy(clientId, held, destination, protocol, port);
    if (held.some((h) => h.def.type === 'internet')) return internetRejects(destination) ? { kind: 'unreachable' } : { kind: 'allow', translatedTo: undefined };
    return permits(held, destination, protocol, port) ? { kind: 'allow', translatedTo: undefined } : { kind: 'deny' };
  }

  /** Through a proxy IP: its DNS resources' filters (prohibited), then its address (network unreachable). */
  private throughProxy(clientId: string, held: readonly { def: ResourceDef; grant: Grant }[], proxy: string, protocol: Protocol, port: number): Verdict {
    if (this.dnsUncertain.has(clientId)) return { kind: 'unknown' };
    const translation = this.translations.get(clientId)?.get(toBigInt(proxy));
    if (translation === undefined) return { kind: 'deny' };
    if (translation === 'uncertain') return { kind: 'unknown' };
    const owners = held.filter((h) => translation.resources.has(h.def.id));
    const lingering = [...translation.resources].some((id) => this.grants.get(clientId)?.has(id) && !owners.some((o) => o.def.id === id));
    if (!owners.some((o) => listPermits(o.grant.filters, protocol, port))) return lingering ? { kind: 'unknown' } : { kind: 'deny' };
    if (translation.real === undefined) return { kind: 'unreachable' };
    return { kind: 'allow', translatedTo: translation.real };
  }

  /** Resource -> client: the same stateless rules on the source address and source port. */
  inbound(clientId: string, source: string, protocol: Protocol, sourcePort: number, sentAt: number): Expectation {
    const until = sentAt + MAX_TRANSIT_MS;
    const family = source.includes(':') ? 6 : 4;
    if (sameIp(source, family === 4 ? this.gatewayTun.v4 : this.gatewayTun.v6)) {
      const presence = this.clientPresence(clientId, sentAt, until);
      return presence === 'present' ? 'allow' : presence === 'absent' ? 'deny' : 'unknown';
    }
    if (inTunnelRange(source)) return 'deny';
    const held = this.grantsWithDefs(clientId, sentAt, until);
    if (held === undefined) return 'unknown';
    if (inProxyRange(source)) {
      const verdict = this.throughProxy(clientId, held, source, protocol, sourcePort);
      return verdict.kind === 'allow' || verdict.kind === 'unreachable' ? 'allow' : verdict.kind === 'unknown' ? 'unknown' : 'deny';
    }
    if (held.some((h) => h.def.type === 'internet')) return internetRejects(source) ? 'deny' : 'allow';
    return permits(held, source, protocol, sourcePort) ? 'allow' : 'deny';
  }

  /** The resources the gateway must hold for the client right now, or undefined while one is mid-expiry. */
  certainResources(clientId: string, now: number): string[] | undefined {
    const held = this.grants.get(clientId);
    if (held === undefined) return [];
    const live: string[] = [];
    for (const [resourceId, grant] of held) {
      if (grant.expiresAt !== undefined && now >= grant.expiresAt) return undefined;
      live.push(resourceId);
    }
    return live.sort();
  }
}

/**
 * Spec §3.2/§3.3 (1.6.0) for addresses outside the proxy ranges without the Internet resource: some CIDR network
 * containing the address permits the packet.
 */
function permits(held: readonly { def: ResourceDef; grant: Grant }[], address: string, protocol: Protocol, port: number): boolean {
  const ip = toBigInt(address);
  const bits = address.includes(':') ? 128 : 32;
  return held.some((h) => {
    if (h.def.type !== 'cidr') return false;
    const net = parseNetwork(h.def.address);
    return net.bits === bits && contains(net, ip) && listPermits(h.grant.filters, protocol, port);
  });
}

/** Spec §3.5: what the Internet resource does not reach (tunnel and proxy ranges are decided before). */
export function internetRejects(address: string): boolean {
  const ranges = address.includes(':')
    ? ['::1/128', '::ffff:0:0/96', 'fc00::/7', 'fe80::/10', 'ff00::/8']
    : ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', '169.254.0.0/16', '100.64.0.0/10', '224.0.0.0/4', '240.0.0.0/4'];
  const ip = toBigInt(address);
  return ranges.some((range) => {
    const net = parseNetwork(range);
    return net.bits === (address.includes(':') ? 128 : 32) && contains(net, ip);
  });
}

export function isMulticast(address: string): boolean {
  return address.includes(':') ? address.toLowerCase().startsWith('ff') : Number(address.split('.')[0]) >= 224 && Number(address.split('.')[0]) <= 239;
}

export function inTunnelRange(address: string): boolean {
  const ip = toBigInt(address);
  return address.includes(':') ? contains(parseNetwork('fd00:2021:1111::/107'), ip) : contains(parseNetwork('100.64.0.0/11'), ip);
}

function listPermits(list: readonly ModelFilter[], protocol: Protocol, port: number): boolean {
  if (list.length === 0) return true;
  return list.some((f) => (f.protocol === 'icmp' ? protocol === 'icmp' : f.protocol === protocol && port >= f.start && port <= f.end));
}

/** `*.example.com`: one label, or the bare parent; other patterns are exact names here. */
function matchesPattern(pattern: string, domain: string): boolean {
  const name = domain.toLowerCase();
  if (!pattern.startsWith('*.')) return name === pattern.toLowerCase();
  const parent = pattern.slice(2).toLowerCase();
  if (name === parent) return true;
  return name.endsWith(`.${parent}`) && !name.slice(0, -parent.length - 1).includes('.');
}

interface Network {
  readonly bits: 32 | 128;
  readonly base: bigint;
  readonly prefix: number;
}

export function parseNetwork(text: string): Network {
  const [address, prefix] = text.split('/') as [string, string];
  return { bits: address.includes(':') ? 128 : 32, base: toBigInt(address), prefix: Number(prefix) };
}

function contains(net: Network, ip: bigint): boolean {
  const shift = BigInt(net.bits - net.prefix);
  return ip >> shift === net.base >> shift;
}

export function sameIp(a: string, b: string): boolean {
  return a.includes(':') === b.includes(':') && toBigInt(a) === toBigInt(b);
}

export function inProxyRange(address: string): boolean {
  const ip = toBigInt(address);
  return address.includes(':') ? contains(parseNetwork('fd00:2021:1111:8000::/107'), ip) : contains(parseNetwork('100.96.0.0/11'), ip);
}

export function toBigInt(address: string): bigint {
  if (!address.includes(':')) return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (dotted !== null) {
    const v4 = toBigInt(dotted[2]!);
    return toBigInt(`${dotted[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`);
  }
  const [head, tail] = address.includes('::') ? (address.split('::') as [string, string]) : [address, undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}
