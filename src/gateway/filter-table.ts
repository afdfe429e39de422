// One client's filters by network, kept up to date one resource at a time.
//
// Each network holds the filter lists of the resources that grant it (a CIDR resource its network, a DNS
// resource the host routes of its proxy IPs) and their union. A packet is allowed when some network
// containing the address allows it: the longest first, then shorter ones (1.6.0's routing table picks the
// entry whose filter permits the protocol before the most specific one). So a resource change touches only
// its own networks, and an allowed packet usually costs one lookup.

import { PrefixTable, readU32 } from '../ip/index.ts';
import type { Cidr, IpPacket } from '../ip/index.ts';
import { FilterEngine } from './filter.ts';
import type { Filter } from './types.ts';

/** One resource's grant of a network: its filter list (empty: everything) and the rules made from it. */
class Grant {
  constructor(
    readonly resourceId: string,
    readonly filters: readonly Filter[],
    readonly engine: FilterEngine,
  ) {}
}

/** A network granted by several resources: each grant, in grant order, and the union of their rules. */
class SharedNetwork {
  constructor(
    readonly grants: readonly Grant[],
    readonly engine: FilterEngine,
  ) {}
}

/** What a network allows: a network held by one resource (nearly all) is just its grant. */
export type NetworkRules = Grant | SharedNetwork;

interface Probe {
  packet: IpPacket;
  useDestinationPort: boolean;
}

/** The argument of `permits` during a lookup (lookups are synchronous; one serves every table). */
const probe: Probe = { packet: undefined as unknown as IpPacket, useDestinationPort: true };

export class FilterTable {
  private readonly table = new PrefixTable<NetworkRules>();
  /** Networks whose rules were rebuilt (a test hook: structural tests count work, not time). */
  networksRebuilt = 0;
  /** The network rules the last `permits*` call found (undefined: none permitted). */
  private matched: NetworkRules | undefined;

  get size(): number {
    return this.table.size;
  }

  /** Grants `network` to `resourceId` with `filters`, replacing what that resource had there. */
  set(network: Cidr, resourceId: string, filters: readonly Filter[]): void {
    const grant = grantOf(resourceId, filters);
    const grants = grantsIn(this.table.get(network));
    const index = grants.findIndex((g) => g.resourceId === resourceId);
    this.rebuild(network, index < 0 ? [...grants, grant] : grants.map((g, i) => (i === index ? grant : g)));
  }

  /** Withdraws `resourceId`'s grant of `network`. */
  delete(network: Cidr, resourceId: string): void {
    const grants = grantsIn(this.table.get(network));
    const index = grants.findIndex((g) => g.resourceId === resourceId);
    if (index < 0) return;
    if (grants.length === 1) {
      this.matched = undefined;
      this.table.remove(network);
      return;
    }
    this.rebuild(
      network,
      grants.filter((_, i) => i !== index),
    );
  }

  clear(): void {
    this.matched = undefined;
    this.table.clear();
  }

  /** Client -> resource: some network containing the destination allows the packet (destination port). */
  permitsOutbound(packet: IpPacket): boolean {
    return this.find(packet, true, packet.destinationOffset);
  }

  /** Resource -> client: some network containing the source allows the packet (source port). */
  permitsInbound(packet: IpPacket): boolean {
    return this.find(packet, false, packet.sourceOffset);
  }

  /** Whether the last `permitsOutbound` / `permitsInbound` call permitted its packet. */
  get lastPermitted(): boolean {
    return this.matched !== undefined;
  }

  /**
   * The resource the packet of the last `permitsOutbound` (useDestinationPort) or `permitsInbound` call, which
   * permitted it, belongs to (flow attribution): the first resource granting the network found whose own
   * filters permit it. No second lookup: the network is the one that call found.
   */
  lastResourceOf(packet: IpPacket, useDestinationPort: boolean): string | undefined {
    const rules = this.matched;
    return rules === undefined ? undefined : resourceOfRules(rules, packet, useDestinationPort);
  }

  /** The one network and its rules when the table holds just one (undefined otherwise). */
  sole(): { readonly network: Cidr; readonly rules: NetworkRules } | undefined {
    if (this.table.size !== 1) return undefined;
    for (const [network, rules] of this.table.entries()) return { network, rules };
    return undefined;
  }

  /** The resources granting exactly `network` (tests and diagnostics). */
  grantsOf(network: Cidr): string[] {
    return grantsIn(this.table.get(network)).map((g) => g.resourceId);
  }

  private find(packet: IpPacket, useDestinationPort: boolean, offset: number): boolean {
    probe.packet = packet;
    probe.useDestinationPort = useDestinationPort;
    const found = packet.version === 4 ? this.table.findV4(readU32(packet.bytes, offset), permits, probe) : this.table.findV6(packet.bytes, offset, permits, probe);
    this.matched = found;
    return found !== undefined;
  }

  private rebuild(network: Cidr, grants: readonly Grant[]): void {
    this.networksRebuilt++;
    this.matched = undefined;
    const rules = grants.length === 1 ? grants[0]! : new SharedNetwork(grants, FilterEngine.fromLists(grants.map((g) => g.filters)));
    this.table.insert(network, rules);
  }
}

/** The first resource among those granting a network (`rules`) whose own filters permit the packet. */
export function resourceOfRules(rules: NetworkRules, packet: IpPacket, useDestinationPort: boolean): string | undefined {
  if (rules instanceof Grant) return rules.resourceId;
  const grants = rules.grants;
  for (let i = 0; i < grants.length; i++) if (grants[i]!.engine.permits(packet, useDestinationPort)) return grants[i]!.resourceId;
  return undefined;
}

const NO_GRANTS: readonly Grant[] = [];

/** Each filter list's rules, made once per list: clients given the same (shared) list share its rules. */
const engines = new WeakMap<readonly Filter[], FilterEngine>();

function engineOf(filters: readonly Filter[]): FilterEngine {
  let engine = engines.get(filters);
  if (engine === undefined) {
    engine = FilterEngine.fromLists([filters]);
    engines.set(filters, engine);
  }
  return engine;
}

/** Resources per filter list whose grants are shared before that list's sharing starts over. */
const MAX_SHARED_GRANTS = 4096;
/** Each (filter list, resource) pair's grant, made once: every client given the resource shares it. */
const grants = new WeakMap<readonly Filter[], Map<string, Grant>>();

function grantOf(resourceId: string, filters: readonly Filter[]): Grant {
  let byResource = grants.get(filters);
  if (byResource === undefined) {
    byResource = new Map();
    grants.set(filters, byResource);
  }
  let grant = byResource.get(resourceId);
  if (grant === undefined) {
    if (byResource.size >= MAX_SHARED_GRANTS) byResource.clear();
    grant = new Grant(resourceId, filters, engineOf(filters));
    byResource.set(resourceId, grant);
  }
  return grant;
}

function grantsIn(rules: NetworkRules | undefined): readonly Grant[] {
  if (rules === undefined) return NO_GRANTS;
  return rules instanceof Grant ? [rules] : rules.grants;
}

function permits(rules: NetworkRules, probe: Probe): boolean {
  return rules.engine.permits(probe.packet, probe.useDestinationPort);
}
