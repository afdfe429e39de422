/**
 * Which gateway connection a packet read from the TUN device goes to: the longest matching
 * route among those the client installed for its resources. Reads the destination straight out
 * of the packet; a test client holds a handful of routes, so a list is enough.
 */
import { cidrContainsV4, cidrContainsV6, formatCidr, parseCidr, type Cidr } from '../../src/ip/cidr.ts';
import { readU32 } from '../../src/ip/bytes.ts';

export interface Route {
  readonly cidr: Cidr;
  readonly gatewayId: string;
  readonly resourceId: string;
}

export class RouteTable {
  private readonly routes: Route[] = [];

  /** Adds or re-targets a route; returns false for text that is not a CIDR or a bare address. */
  add(cidrOrIp: string, gatewayId: string, resourceId: string): Cidr | undefined {
    const cidr = parseRouteTarget(cidrOrIp);
    if (cidr === undefined) return undefined;
    const key = formatCidr(cidr);
    const index = this.routes.findIndex((r) => formatCidr(r.cidr) === key);
    const route = { cidr, gatewayId, resourceId };
    if (index >= 0) this.routes[index] = route;
    else this.routes.push(route);
    this.routes.sort((a, b) => b.cidr.prefixLength - a.cidr.prefixLength);
    return cidr;
  }

  /** Removes the routes of a resource; returns them. */
  removeResource(resourceId: string): Route[] {
    const removed = this.routes.filter((r) => r.resourceId === resourceId);
    for (const route of removed) this.routes.splice(this.routes.indexOf(route), 1);
    return removed;
  }

  routesOf(resourceId: string): Route[] {
    return this.routes.filter((r) => r.resourceId === resourceId);
  }

  hasGateway(gatewayId: string): boolean {
    return this.routes.some((r) => r.gatewayId === gatewayId);
  }

  /** The gateway for an IP packet, by destination; undefined when no route matches or it is not IP. */
  gatewayFor(packet: Uint8Array): string | undefined {
    const version = (packet[0] ?? 0) >>> 4;
    if (version === 4 && packet.length >= 20) {
      const destination = readU32(packet, 16);
      for (const route of this.routes) if (cidrContainsV4(route.cidr, destination)) return route.gatewayId;
      return undefined;
    }
    if (version === 6 && packet.length >= 40) {
      for (const route of this.routes) if (cidrContainsV6(route.cidr, packet, 24)) return route.gatewayId;
    }
    return undefined;
  }
}

export function parseRouteTarget(text: string): Cidr | undefined {
  if (text.includes('/')) return parseCidr(text, { truncate: true });
  return parseCidr(`${text}/${text.includes(':') ? 128 : 32}`);
}
