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

interface NetworkRules {
  /** resource id -> its filter list (an empty list permits everything). */
  readonly lists: Map<string, readonly Filter[]>;
  engine: FilterEngine;
  /** Each granting resource with its own rules, in grant order (which resource a packet belongs to). */
  byResource: readonly { readonly id: string; readonly engine: FilterEngine }[];
}

interface Probe {
  packet: IpPacket;
  useDestinationPort: boolean;
}

export class FilterTable {
  private readonly table = new PrefixTable<NetworkRules>();
  private readonly probe: Probe = { packet: undefined as unknown as IpPacket, useDestinationPort: true };
  /** Networks whose rules were rebuilt (a test hook: structural tests count work, not time). */
  networksRebuilt = 0;
  /** The network rules the last `permits*` call found (undefined: none permitted). */
  private matched: NetworkRules | undefined;

  get size(): number {
    return this.table.size;
  }

  /** Grants `network` to `resourceId` with `filters`, replacing what that resource had there. */
  set(network: Cidr, resourceId: string, filters: readonly Filter[]): void {
    let rules = this.table.get(network);
    if (rules === undefined) {
      rules = { lists: new Map(), engine: FilterEngine.PERMIT_ALL, byResource: [] };
      this.table.insert(network, rules);
    }
    rules.lists.set(resourceId, filters);
    this.rebuild(rules);
  }

  /** Withdraws `resourceId`'s grant of `network`. */
  delete(network: Cidr, resourceId: string): void {
    const rules = this.table.get(network);
    if (rules === undefined || !rules.lists.delete(resourceId)) return;
    if (rules.lists.size === 0) {
      this.table.remove(network);
      return;
    }
    this.rebuild(rules);
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
    if (rules === undefined) return undefined;
    const grants = rules.byResource;
    if (grants.length === 1) return grants[0]!.id;
    for (let i = 0; i < grants.length; i++) if (grants[i]!.engine.permits(packet, useDestinationPort)) return grants[i]!.id;
    return undefined;
  }

  /** The resources granting exactly `network` (tests and diagnostics). */
  grantsOf(network: Cidr): string[] {
    return [...(this.table.get(network)?.lists.keys() ?? [])];
  }

  private find(packet: IpPacket, useDestinationPort: boolean, offset: number): boolean {
    const probe = this.probe;
    probe.packet = packet;
    probe.useDestinationPort = useDestinationPort;
    const found = packet.version === 4 ? this.table.findV4(readU32(packet.bytes, offset), permits, probe) : this.table.findV6(packet.bytes, offset, permits, probe);
    this.matched = found;
    return found !== undefined;
  }

  private rebuild(rules: NetworkRules): void {
    this.networksRebuilt++;
    rules.engine = FilterEngine.fromLists([...rules.lists.values()]);
    rules.byResource = [...rules.lists].map(([id, filters]) => ({ id, engine: FilterEngine.fromLists([filters]) }));
  }
}

function permits(rules: NetworkRules, probe: Probe): boolean {
  return rules.engine.permits(probe.packet, probe.useDestinationPort);
}
