/**
 * The reference model: which (client, destination, protocol, port) the gateway must let through, written
 * from the spec (gateway-core §3.1–§3.3) with its own tiny address arithmetic, independent of src/.
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
  /** DNS resources: every address a domain of it resolved to (they act as host routes for CIDR filters). */
  readonly resolved: Set<bigint>;
}

/** What the gateway must do with one packet, as far as the model can tell. */
export type Expectation = 'allow' | 'deny' | 'unknown';

/** A client packet's fate; `unreachable`: ICMP network/address unreachable (a proxy IP translated across families). */
export type Verdict = { readonly kind: 'allow'; readonly translatedTo: string | undefined } | { readonly kind: 'deny' | 'unknown' | 'unreachable' };

/** A DNS proxy IP of a client and the real address it stands for. */
interface Translation {
  readonly resourceId: string;
  readonly real: string;
}

/** How long a packet may take from the client's encapsulate to the gateway's verdict (rekeys included). */
export const MAX_TRANSIT_MS = 2_000;
/** Expired grants and empty client records go at the next expiry tick: up to this long after. */
export const TICK_SLACK_MS = 1_100;

export class ReferenceModel {
  /** What the gateway was told: client -> resource -> grant. */
  readonly grants = new Map<string, Map<string, Grant>>();
  /** Since when a client has had no grants (its record may linger until the next tick). */
  readonly emptiedAt = new Map<string, number>();
  /** client -> proxy IP -> translation; `uncertain` where the gateway may keep an older one. */
  private readonly translations = new Map<string, Map<bigint, Translation | 'uncertain'>>();
  /** Clients whose DNS-resource state on the gateway the model cannot know (see `authorize`). */
  private readonly dnsUncertain = new Set<string>();

  constructor(readonly resources: ReadonlyMap<string, ResourceDef>, readonly gatewayTun: { readonly v4: string; readonly v6: string }) {}

  authorize(clientId: string, resourceId: string, filters: readonly ModelFilter[], expiresAt: number | undefined, now: number): void {
    let held = this.grants.get(clientId);
    if (held === undefined) this.grants.set(clientId, (held = new Map()));
    // The gateway may already have expired a grant past its expiry, and with it maybe the whole client record:
    // what it knows of DNS names (translations, resolved addresses) is no longer certain.
    for (const grant of held.values()) if (grant.expiresAt !== undefined && now >= grant.expiresAt) this.dnsUncertain.add(clientId);
    const existing = held.get(resourceId);
    if (existing !== undefined) {
      existing.filters = filters;
      existing.expiresAt = expiresAt;
    } else {
      held.set(resourceId, { filters, expiresAt, resolved: new Set() });
    }
    this.emptiedAt.delete(clientId);
  }

  reject(clientId: string, resourceId: string): void {
    const held = this.grants.get(clientId);
    if (held === undefined || !held.delete(resourceId)) return;
    // The gateway removes a client rejected down to nothing at once.
    if (held.size === 0) this.forget(clientId);
  }

  resourceUpdated(resourceId: string, filters: readonly ModelFilter[]): void {
    for (const held of this.grants.values()) {
      const grant = held.get(resourceId);
      if (grant !== undefined) grant.filters = filters;
    }
  }

  /** `init` with `authorizations`: everything not listed goes, for every client. */
  retain(listed: ReadonlySet<string>, now: number): void {
    for (const [clientId, held] of this.grants) {
      for (const resourceId of [...held.keys()]) if (!listed.has(`${clientId}/${resourceId}`)) held.delete(resourceId);
      if (held.size === 0) this.markEmpty(clientId, now);
    }
  }

  /** The connection to the client failed: the gateway forgets the client. */
  forget(clientId: string): void {
    this.grants.delete(clientId);
    this.emptiedAt.delete(clientId);
    this.translations.delete(clientId);
    this.dnsUncertain.delete(clientId);
  }

  /** Drops grants that have certainly expired by `now` (the gateway has had a tick since). */
  expire(now: number): void {
    for (const [clientId, held] of this.grants) {
      for (const [resourceId, grant] of [...held]) {
        if (grant.expiresAt !== undefined && now >= grant.expiresAt + TICK_SLACK_MS) held.delete(resourceId);
      }
      if (held.size === 0) this.markEmpty(clientId, now);
    }
    for (const [clientId, since] of [...this.emptiedAt]) {
      if (now < since + TICK_SLACK_MS) continue;
      this.emptiedAt.delete(clientId);
      if (!this.grants.has(clientId)) {
        this.translations.delete(clientId);
        this.dnsUncertain.delete(clientId);
      }
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

  /** An AssignedIps whose answer was lost: the gateway may or may not have set up these proxies. */
  dnsMaybe(clientId: string, resourceId: string, proxies: readonly string[], resolved: readonly string[]): void {
    const grant = this.grants.get(clientId)?.get(resourceId);
    if (grant !== undefined) for (const ip of resolved) grant.resolved.add(toBigInt(ip));
    let table = this.translations.get(clientId);
    if (table === undefined) this.translations.set(clientId, (table = new Map()));
    for (const proxy of proxies) table.set(toBigInt(proxy), 'uncertain');
  }

  /** An `Active` answer: proxies map round-robin onto the resolved addresses, sorted, per family (falling back to the other). */
  dnsActive(clientId: string, resourceId: string, proxies: readonly string[], resolved: readonly string[]): void {
    const grant = this.grants.get(clientId)?.get(resourceId);
    if (grant === undefined) return;
    for (const ip of resolved) grant.resolved.add(toBigInt(ip));
    let table = this.translations.get(clientId);
    if (table === undefined) this.translations.set(clientId, (table = new Map()));
    const sorted = (ips: readonly string[]): string[] => [...new Set(ips)].sort((a, b) => (toBigInt(a) < toBigInt(b) ? -1 : toBigInt(a) > toBigInt(b) ? 1 : 0));
    const realV4 = sorted(resolved.filter((ip) => !ip.includes(':')));
    const realV6 = sorted(resolved.filter((ip) => ip.includes(':')));
    const targets = { 4: realV4.length > 0 ? realV4 : realV6, 6: realV6.length > 0 ? realV6 : realV4 };
    const next = { 4: 0, 6: 0 };
    for (const proxy of sorted(proxies)) {
      const family = proxy.includes(':') ? 6 : 4;
      const list = targets[family];
      if (list.length === 0) continue;
      const real = list[next[family]++ % list.length]!;
      const key = toBigInt(proxy);
      const old = table.get(key);
      // The gateway leaves a proxy with a live NAT session alone: a change of owner is not certain.
      const changed = old !== undefined && (old === 'uncertain' || old.resourceId !== resourceId || old.real !== real);
      table.set(key, changed ? 'uncertain' : { resourceId, real });
    }
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

  /** Whether the gateway certainly holds a record of the client (then a denied packet gets an ICMP reply). */
  clientPresence(clientId: string, from: number, until: number): 'present' | 'absent' | 'unknown' {
    const live = this.liveGrants(clientId, from, until);
    if (live === undefined) return 'unknown';
    if (live.length > 0) return 'present';
    const held = this.grants.get(clientId);
    if ((held !== undefined && held.size > 0) || this.emptiedAt.has(clientId)) return 'unknown';
    return 'absent';
  }

  /** Client -> resource, sent at `sentAt`. `source` is the packet's source address (maybe spoofed). */
  outbound(clientId: string, clientTun: { v4: string; v6: string }, source: string, destination: string, protocol: Protocol, port: number, sentAt: number): Verdict {
    const until = sentAt + MAX_TRANSIT_MS;
    const presence = this.clientPresence(clientId, sentAt, until);
    if (presence !== 'present') return { kind: presence === 'absent' ? 'deny' : 'unknown' };
    const family = destination.includes(':') ? 6 : 4;
    if (!sameIp(source, family === 4 ? clientTun.v4 : clientTun.v6)) return { kind: 'deny' };
    if (sameIp(destination, family === 4 ? this.gatewayTun.v4 : this.gatewayTun.v6)) return { kind: 'allow', translatedTo: undefined };
    const held = this.grantsWithDefs(clientId, sentAt, until);
    if (held === undefined) return { kind: 'unknown' };
    if (inProxyRange(destination)) return this.throughProxy(clientId, held, destination, protocol, port);
    const verdict = permits(held, destination, protocol, port, this.dnsUncertain.has(clientId));
    return verdict === 'allow' ? { kind: 'allow', translatedTo: undefined } : { kind: verdict };
  }

  private throughProxy(clientId: string, held: readonly { def: ResourceDef; grant: Grant }[], proxy: string, protocol: Protocol, port: number): Verdict {
    if (this.dnsUncertain.has(clientId)) return { kind: 'unknown' };
    const translation = this.translations.get(clientId)?.get(toBigInt(proxy));
    if (translation === undefined) return { kind: 'deny' };
    if (translation === 'uncertain') return { kind: 'unknown' };
    const owner = held.find((h) => h.def.id === translation.resourceId);
    if (owner === undefined) return this.grants.get(clientId)?.has(translation.resourceId) ? { kind: 'unknown' } : { kind: 'deny' };
    if (!listPermits(owner.grant.filters, protocol, port)) return { kind: 'deny' };
    if (translation.real.includes(':') !== proxy.includes(':')) return { kind: 'unreachable' };
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
    const held = this.grantsWithDefs(clientId, sentAt, until);
    if (held === undefined) return 'unknown';
    if (inProxyRange(source)) {
      const verdict = this.throughProxy(clientId, held, source, protocol, sourcePort);
      return verdict.kind === 'allow' || verdict.kind === 'unreachable' ? 'allow' : verdict.kind;
    }
    return permits(held, source, protocol, sourcePort, this.dnsUncertain.has(clientId));
  }

  /** The resources the gateway must hold for the client right now, or undefined while one is mid-expiry. */
  certainResources(clientId: string, now: number): string[] | undefined {
    const held = this.grants.get(clientId);
    if (held === undefined) return this.emptiedAt.has(clientId) ? undefined : [];
    const live: string[] = [];
    for (const [resourceId, grant] of held) {
      if (grant.expiresAt !== undefined && now >= grant.expiresAt) return undefined;
      live.push(resourceId);
    }
    return live.sort();
  }

  private markEmpty(clientId: string, now: number): void {
    this.grants.delete(clientId);
    const table = this.translations.get(clientId);
    // Until the record is gone a re-authorization could revive them.
    if (table !== undefined) for (const key of table.keys()) table.set(key, 'uncertain');
    if (!this.emptiedAt.has(clientId)) this.emptiedAt.set(clientId, now);
  }
}

/**
 * Spec §3.2/§3.3 for addresses outside the proxy ranges: the Internet resource permits everything; else the
 * filters of every CIDR network containing the address, and where the most specific one is a host route, those of
 * DNS resources that resolved to exactly that address.
 */
function permits(held: readonly { def: ResourceDef; grant: Grant }[], address: string, protocol: Protocol, port: number, dnsUncertain: boolean): Expectation {
  const ip = toBigInt(address);
  const bits = address.includes(':') ? 128 : 32;
  if (held.some((h) => h.def.type === 'internet')) return 'allow';
  const networks = held
    .filter((h) => h.def.type === 'cidr')
    .map((h) => ({ ...h, net: parseNetwork(h.def.address) }))
    .filter((h) => h.net.bits === bits && contains(h.net, ip));
  if (networks.length === 0) return 'deny';
  // Every network containing the address also contains the most specific one, so all of them contribute.
  if (networks.some((n) => listPermits(n.grant.filters, protocol, port))) return 'allow';
  if (!networks.some((n) => n.net.prefix === bits)) return 'deny';
  const dns = held.filter((h) => h.def.type === 'dns');
  if (dns.some((h) => h.grant.resolved.has(ip) && listPermits(h.grant.filters, protocol, port))) return 'allow';
  return dnsUncertain && dns.length > 0 ? 'unknown' : 'deny';
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
  const [head, tail] = address.includes('::') ? (address.split('::') as [string, string]) : [address, undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}
