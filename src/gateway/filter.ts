import type { IpPacket } from '../ip/index.ts';
import type { Filter } from './types.ts';

/**
 * The rules for one network: either everything, or the union of TCP/UDP port ranges plus an ICMP flag.
 * Port ranges are stored merged and sorted as flat [start, end, start, end, ...] arrays.
 */
export class FilterEngine {
  static readonly PERMIT_ALL = new FilterEngine(true, [], [], false);

  private constructor(
    readonly permitAll: boolean,
    private readonly tcp: readonly number[],
    private readonly udp: readonly number[],
    private readonly icmp: boolean,
  ) {}

  /** An empty contributing list means permit-all; otherwise the union of all lists. Invalid ranges grant nothing. */
  static fromLists(lists: readonly (readonly Filter[])[]): FilterEngine {
    const tcp: [number, number][] = [];
    const udp: [number, number][] = [];
    let icmp = false;
    for (const list of lists) {
      if (list.length === 0) return FilterEngine.PERMIT_ALL;
      for (const filter of list) {
        if (filter.protocol === 'icmp') {
          icmp = true;
          continue;
        }
        if (!isValidRange(filter.portRangeStart, filter.portRangeEnd)) continue;
        (filter.protocol === 'tcp' ? tcp : udp).push([filter.portRangeStart, filter.portRangeEnd]);
      }
    }
    return new FilterEngine(false, mergeRanges(tcp), mergeRanges(udp), icmp);
  }

  /** Client→resource uses the destination port, resource→client the source port. */
  permits(packet: IpPacket, useDestinationPort: boolean): boolean {
    if (this.permitAll) return true;
    switch (packet.transport) {
      case 'tcp':
        return inRanges(this.tcp, useDestinationPort ? packet.destinationPort : packet.sourcePort);
      case 'udp':
        return inRanges(this.udp, useDestinationPort ? packet.destinationPort : packet.sourcePort);
      case 'icmpv4':
      case 'icmpv6':
        return this.icmp;
      case 'unsupported':
        return false;
    }
  }
}

function isValidRange(start: number, end: number): boolean {
  return Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= 0xffff && start <= end;
}

function mergeRanges(ranges: [number, number][]): number[] {
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: number[] = [];
  for (const [start, end] of ranges) {
    const last = merged.length - 1;
    if (last > 0 && start <= merged[last]! + 1) {
      if (end > merged[last]!) merged[last] = end;
      continue;
    }
    merged.push(start, end);
  }
  return merged;
}

function inRanges(ranges: readonly number[], port: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) {
    if (port < ranges[i]!) return false;
    if (port <= ranges[i + 1]!) return true;
  }
  return false;
}
