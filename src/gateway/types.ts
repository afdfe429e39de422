import type { IpAddr } from '../ip/index.ts';

/** A portal filter (already validated; ports default to 0 and 65535). */
export type Filter =
  | { readonly protocol: 'tcp' | 'udp'; readonly portRangeStart: number; readonly portRangeEnd: number }
  | { readonly protocol: 'icmp' };

export type ResourceDescription =
  | { readonly type: 'cidr'; readonly id: string; readonly address: string; readonly filters: readonly Filter[] }
  | { readonly type: 'dns'; readonly id: string; readonly address: string; readonly filters: readonly Filter[] }
  | { readonly type: 'internet'; readonly id: string };

/** The client part of `authorize_flow` the policy core needs (keys and ICE credentials belong to the node). */
export interface ClientInfo {
  readonly id: string;
  readonly ipv4: IpAddr;
  readonly ipv6: IpAddr;
}

export interface TunnelInterface {
  readonly ipv4: IpAddr;
  readonly ipv6: IpAddr;
}

export interface Authorization {
  readonly clientId: string;
  readonly resourceId: string;
}

/** Legacy `request_connection`/`allow_access` DNS payload once resolved. */
export interface DnsNatRequest {
  readonly domain: string;
  readonly proxyIps: readonly IpAddr[];
  readonly resolvedIps: readonly IpAddr[];
}

export type DomainStatus = 'Active' | 'Inactive';
