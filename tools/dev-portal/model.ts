// What the development portal knows: resources, clients, policies, relays and gateway records, and how they
// are rendered on the wire (portal-protocol §4). Admin input is checked here so the gateway only ever sees
// shapes the real portal would send.
import { isIP } from 'node:net';

export type Filter =
  | { readonly protocol: 'tcp' | 'udp'; readonly port_range_start: number; readonly port_range_end: number }
  | { readonly protocol: 'icmp' };

export type Resource =
  | { readonly id: string; readonly type: 'cidr' | 'dns'; readonly address: string; readonly name: string; readonly filters: readonly Filter[] }
  | { readonly id: string; readonly type: 'internet'; readonly name: string };

export interface ClientRecord {
  readonly id: string;
  publicKey: string;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface Policy {
  readonly id: string;
  readonly resourceId: string;
  /** Undefined allows every client. */
  readonly clientIds: readonly string[] | undefined;
}

export interface RelayConfig {
  readonly id: string;
  /** `ip:port` or `[ipv6]:port`; one `turn` entry is rendered per address. */
  readonly addresses: readonly string[];
  readonly secret: string;
}

export interface GatewayRecord {
  readonly id: string;
  readonly externalId: string;
  name: string;
  publicKey: string;
  userAgent: string;
  /** From the User-Agent (`Portal.Version.fetch_version`); undefined when it names none. */
  version: string | undefined;
  readonly ipv4: string;
  readonly ipv6: string;
}

export type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** The gateway flavour of a resource description (§4.5): internet resources carry only id and type. */
export function renderResource(resource: Resource): Record<string, unknown> {
  if (resource.type === 'internet') return { id: resource.id, type: 'internet' };
  return {
    id: resource.id,
    type: resource.type,
    address: resource.address,
    name: resource.name,
    filters: resource.filters.map((f) => ({ ...f })),
  };
}

/** Checks an admin resource body; `id` comes from the body or `newId`. */
export function checkResource(body: unknown, newId: () => string): Checked<Resource> {
  if (!isObject(body)) return fail('resource must be an object');
  const id = body['id'] ?? newId();
  if (!isUuid(id)) return fail('id must be a lowercase hyphenated UUID');
  const type = body['type'];
  if (type === 'internet') return { ok: true, value: { id, type, name: stringOr(body['name'], 'Internet') } };
  if (type !== 'cidr' && type !== 'dns') return fail('type must be cidr, dns or internet');
  const address = body['address'];
  if (typeof address !== 'string' || address === '') return fail('address is required');
  if (type === 'cidr') {
    const canonical = canonicalCidr(address);
    if (canonical === undefined) return fail(`address ${address} is not a network in CIDR form with host bits zero`);
  }
  const filters = checkFilters(body['filters'] ?? []);
  if (!filters.ok) return filters;
  return { ok: true, value: { id, type, address, name: stringOr(body['name'], address), filters: filters.value } };
}

export function checkFilters(value: unknown): Checked<Filter[]> {
  if (!Array.isArray(value)) return fail('filters must be an array');
  const filters: Filter[] = [];
  for (const entry of value) {
    if (!isObject(entry)) return fail('a filter must be an object');
    const protocol = entry['protocol'];
    if (protocol === 'icmp') {
      filters.push({ protocol });
      continue;
    }
    if (protocol !== 'tcp' && protocol !== 'udp') return fail('filter protocol must be tcp, udp or icmp');
    const start = entry['port_range_start'] ?? 0;
    const end = entry['port_range_end'] ?? 65535;
    if (!isPort(start) || !isPort(end) || start > end) return fail('port range must be 0 <= start <= end <= 65535');
    filters.push({ protocol, port_range_start: start, port_range_end: end });
  }
  return { ok: true, value: filters };
}

export function checkRelay(body: unknown, newId: () => string): Checked<RelayConfig> {
  if (!isObject(body)) return fail('relay must be an object');
  const id = body['id'] ?? newId();
  if (!isUuid(id)) return fail('id must be a lowercase hyphenated UUID');
  const addresses = body['addresses'];
  if (!Array.isArray(addresses) || addresses.length === 0 || !addresses.every(isSocketAddrText)) {
    return fail('addresses must be a non-empty list of ip:port / [ipv6]:port');
  }
  const secret = body['secret'];
  if (typeof secret !== 'string' || secret === '') return fail('secret is required');
  return { ok: true, value: { id, addresses: addresses as string[], secret } };
}

export function isSocketAddrText(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(value) ?? /^([^:[\]]+):(\d{1,5})$/.exec(value);
  if (!match || Number(match[2]) > 65535) return false;
  return value.startsWith('[') ? isIP(match[1]!) === 6 : isIP(match[1]!) === 4;
}

/** IPv4 entries before IPv6 ones, as the portal renders relays. */
export function addressFamilyOrder(a: string, b: string): number {
  return Number(a.startsWith('[')) - Number(b.startsWith('['));
}

function canonicalCidr(text: string): string | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const family = isIP(address);
  if (family === 4) {
    if (prefix > 32) return undefined;
    const value = address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
    const hostBits = 32 - prefix;
    return hostBits === 0 || value % 2 ** hostBits === 0 ? text : undefined;
  }
  if (family === 6) {
    if (prefix > 128) return undefined;
    const hex = ipv6Hex(address);
    for (let bit = prefix; bit < 128; bit++) {
      if ((parseInt(hex[bit >> 2]!, 16) >> (3 - (bit & 3))) & 1) return undefined;
    }
    return text;
  }
  return undefined;
}

/** 32 hex digits of an IPv6 address already validated by `isIP`. */
function ipv6Hex(address: string): string {
  const url = new URL(`http://[${address}]/`);
  const compressed = url.hostname.slice(1, -1);
  const [head = '', tail] = compressed.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups].map((g) => g.padStart(4, '0')).join('');
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 65535;
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}
