/**
 * Zod schemas for the types shared by the portal messages (spec portal-protocol §4). Wire names
 * are snake_case; the parsed values are camelCase unions with a `kind` field. Typing is strict
 * as in the reference: one invalid field makes the whole message invalid. Unknown extra keys are
 * ignored.
 */
import { z } from 'zod';
import { parseSocketAddr, type SocketAddr } from '../util/socket-addr.ts';
import { parseUuidText } from './login-url.ts';
import { isCanonicalCidr, isIpText, isIpv4Text, isIpv6Text } from './ip-text.ts';

export type ClientId = string & { readonly __brand: 'ClientId' };
export type ResourceId = string & { readonly __brand: 'ResourceId' };
export type RelayId = string & { readonly __brand: 'RelayId' };

/** A 32-byte key from the portal: X25519 public key or WireGuard preshared key. */
export interface Key {
  /** Standard base64 with padding (44 chars), as on the wire. */
  readonly base64: string;
  readonly bytes: Uint8Array;
}

export interface IceCredentials {
  readonly username: string;
  readonly password: string;
}

export type Filter =
  | { readonly kind: 'tcp' | 'udp'; readonly portRangeStart: number; readonly portRangeEnd: number }
  | { readonly kind: 'icmp' };

export type ResourceDescription =
  | {
      readonly kind: 'cidr';
      readonly id: ResourceId;
      /** Canonical network, e.g. `172.20.0.0/16`. */
      readonly address: string;
      readonly name: string;
      readonly filters: readonly Filter[];
    }
  | {
      readonly kind: 'dns';
      readonly id: ResourceId;
      /** The domain pattern, e.g. `*.corp` or `?.httpbin`. */
      readonly address: string;
      readonly name: string;
      readonly filters: readonly Filter[];
    }
  | { readonly kind: 'internet'; readonly id: ResourceId };

export type Relay =
  | {
      readonly kind: 'turn';
      readonly id: RelayId;
      readonly addr: SocketAddr;
      readonly username: string;
      readonly password: string;
      /** Unix seconds. */
      readonly expiresAt: number;
    }
  | { readonly kind: 'stun'; readonly id: RelayId; readonly addr: SocketAddr };

export interface Interface {
  readonly ipv4: string;
  readonly ipv6: string;
  readonly upstreamDns: readonly SocketAddr[];
  readonly searchDomain: string | undefined;
}

export const KEY_LENGTH = 32;

const uuidText = z.string().transform((text, ctx) => {
  const uuid = parseUuidText(text);
  if (uuid === undefined) {
    ctx.addIssue({ code: 'custom', message: 'not a UUID' });
    return z.NEVER;
  }
  return uuid;
});

export const clientIdSchema = uuidText.transform((id) => id as ClientId);
export const resourceIdSchema = uuidText.transform((id) => id as ResourceId);
export const relayIdSchema = uuidText.transform((id) => id as RelayId);
export const flowIdSchema = uuidText;

export const keySchema = z.string().transform((text, ctx): Key => {
  const bytes = decodeKey(text);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: 'not a padded standard base64 32-byte key' });
    return z.NEVER;
  }
  return { base64: text, bytes };
});

export const ipv4Schema = z.string().refine(isIpv4Text, 'not an IPv4 address');
export const ipv6Schema = z.string().refine(isIpv6Text, 'not an IPv6 address');
export const ipSchema = z.string().refine(isIpText, 'not an IP address');

export const socketAddrSchema = z.string().transform((text, ctx): SocketAddr => {
  const addr = parseSocketAddr(text);
  if (addr === undefined || (addr.family === 6 && addr.address.includes('%'))) {
    ctx.addIssue({ code: 'custom', message: 'not a socket address' });
    return z.NEVER;
  }
  return addr;
});

/** Unix seconds as an integer. */
export const unixSecondsSchema = z.number().int();

export const iceCredentialsSchema = z.object({ username: z.string(), password: z.string() });

const port = z.number().int().min(0).max(0xffff);
const portRange = {
  port_range_start: port.optional(),
  port_range_end: port.optional(),
};

export const filterSchema = z
  .discriminatedUnion('protocol', [
    z.object({ protocol: z.literal('tcp'), ...portRange }),
    z.object({ protocol: z.literal('udp'), ...portRange }),
    z.object({ protocol: z.literal('icmp') }),
  ])
  .transform((filter): Filter => {
    if (filter.protocol === 'icmp') return { kind: 'icmp' };
    return {
      kind: filter.protocol,
      portRangeStart: filter.port_range_start ?? 0,
      portRangeEnd: filter.port_range_end ?? 0xffff,
    };
  });

export const resourceDescriptionSchema = z
  .discriminatedUnion('type', [
    z.object({
      type: z.literal('cidr'),
      id: resourceIdSchema,
      address: z.string().refine(isCanonicalCidr, 'not a canonical network'),
      name: z.string(),
      filters: z.array(filterSchema),
    }),
    z.object({
      type: z.literal('dns'),
      id: resourceIdSchema,
      address: z.string(),
      name: z.string(),
      filters: z.array(filterSchema),
    }),
    z.object({ type: z.literal('internet'), id: resourceIdSchema }),
  ])
  .transform((resource): ResourceDescription => {
    switch (resource.type) {
      case 'cidr':
      case 'dns':
        return { kind: resource.type, id: resource.id, address: resource.address, name: resource.name, filters: resource.filters };
      case 'internet':
        return { kind: 'internet', id: resource.id };
    }
  });

export const relaySchema = z
  .discriminatedUnion('type', [
    z.object({
      type: z.literal('turn'),
      id: relayIdSchema,
      addr: socketAddrSchema,
      username: z.string(),
      password: z.string(),
      expires_at: unixSecondsSchema,
    }),
    z.object({ type: z.literal('stun'), id: relayIdSchema, addr: socketAddrSchema }),
  ])
  .transform((relay): Relay => {
    if (relay.type === 'stun') return { kind: 'stun', id: relay.id, addr: relay.addr };
    return {
      kind: 'turn',
      id: relay.id,
      addr: relay.addr,
      username: relay.username,
      password: relay.password,
      expiresAt: relay.expires_at,
    };
  });

const dnsServerSchema = z
  .object({ protocol: z.literal('ip_port'), address: socketAddrSchema })
  .transform((server) => server.address);

export const interfaceSchema = z
  .object({
    ipv4: ipv4Schema,
    ipv6: ipv6Schema,
    upstream_dns: z.array(dnsServerSchema).optional(),
    search_domain: z.string().nullish(),
  })
  .transform(
    (iface): Interface => ({
      ipv4: iface.ipv4,
      ipv6: iface.ipv6,
      upstreamDns: iface.upstream_dns ?? [],
      searchDomain: iface.search_domain ?? undefined,
    }),
  );

/** Decodes padded standard base64 of exactly 32 bytes; undefined for anything else. */
export function decodeKey(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  // Rejects non-zero trailing bits, as the reference's canonical decoder does.
  if (bytes.length !== KEY_LENGTH || bytes.toString('base64') !== text) return undefined;
  return new Uint8Array(bytes);
}

export function encodeKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
