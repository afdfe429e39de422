/**
 * Firezone's p2p control protocol (gateway-core spec §5): unreliable, idempotent events carried inside the
 * tunnel as IPv6 packets from `::` to `::` with next header 0xFF (hop limit 0 when sent; not checked on
 * receipt, as in the reference). The IP payload is an 8-byte header `[event type, 7 reserved zero bytes]`
 * followed by the event's compact JSON.
 *
 * Events: 0 = AssignedIps (client → gateway), 1 = DomainStatus (gateway → client), 2 = GOODBYE (either way,
 * empty payload: the sender has dropped the connection and the receiver drops its side at once). Others are
 * for the caller to ignore. Decoders validate strictly (UTF-8, JSON shape, UUID, domain name, IP syntax) and return an error
 * value; unknown JSON fields are ignored and an unknown status decodes as Inactive (forward compatibility).
 */
import { formatIp, isUnspecifiedV6, parseIp } from './addr.ts';
import type { IpAddr } from './addr.ts';
import { IPV6_HEADER_LENGTH, IPV6_OFFSET_DESTINATION, IPV6_OFFSET_SOURCE, MAX_IP_SIZE, PROTOCOL_FZ_P2P_CONTROL } from './constants.ts';
import type { IpPacket } from './packet.ts';

export const P2P_EVENT_ASSIGNED_IPS = 0;
export const P2P_EVENT_DOMAIN_STATUS = 1;
export const P2P_EVENT_GOODBYE = 2;
export const P2P_CONTROL_HEADER_LENGTH = 8;
/** Largest event payload that fits a 1280-byte packet. */
export const P2P_CONTROL_MAX_PAYLOAD = MAX_IP_SIZE - IPV6_HEADER_LENGTH - P2P_CONTROL_HEADER_LENGTH;

export interface AssignedIps {
  /** Lowercase hyphenated UUID. */
  readonly resource: string;
  /** Presentation form without the trailing dot (the root stays "."); case as received. */
  readonly domain: string;
  readonly proxyIps: readonly IpAddr[];
}

export type NatStatus = 'Active' | 'Inactive';

export interface DomainStatus {
  readonly resource: string;
  readonly domain: string;
  readonly status: NatStatus;
}

export type P2pDecodeError =
  | 'wrongEventType'
  | 'badUtf8'
  | 'badJson'
  | 'notAnObject'
  | 'badResource'
  | 'badDomain'
  | 'badProxyIps'
  | 'badStatus';

/** IPv6, next header 0xFF, source and destination `::`, and at least the 8-byte control header. */
export function isP2pControlPacket(packet: IpPacket): boolean {
  return (
    packet.version === 6 &&
    packet.protocol === PROTOCOL_FZ_P2P_CONTROL &&
    packet.ipEnd - IPV6_HEADER_LENGTH >= P2P_CONTROL_HEADER_LENGTH &&
    isUnspecifiedV6(packet.bytes, IPV6_OFFSET_SOURCE) &&
    isUnspecifiedV6(packet.bytes, IPV6_OFFSET_DESTINATION)
  );
}

/** The event type of a packet that passed `isP2pControlPacket`. */
export function p2pControlEventType(packet: IpPacket): number {
  return packet.bytes[IPV6_HEADER_LENGTH]!;
}

/** The event payload (a view) of a packet that passed `isP2pControlPacket`. */
export function p2pControlPayload(packet: IpPacket): Uint8Array {
  return packet.bytes.subarray(IPV6_HEADER_LENGTH + P2P_CONTROL_HEADER_LENGTH, packet.ipEnd);
}

/** The control packet for one event; undefined when the payload exceeds `P2P_CONTROL_MAX_PAYLOAD`. */
export function makeP2pControlPacket(eventType: number, payload: Uint8Array): Uint8Array | undefined {
  if (payload.length > P2P_CONTROL_MAX_PAYLOAD) return undefined;
  const packet = new Uint8Array(IPV6_HEADER_LENGTH + P2P_CONTROL_HEADER_LENGTH + payload.length);
  packet[0] = 0x60;
  const payloadLength = P2P_CONTROL_HEADER_LENGTH + payload.length;
  packet[4] = payloadLength >>> 8;
  packet[5] = payloadLength & 0xff;
  packet[6] = PROTOCOL_FZ_P2P_CONTROL;
  packet[7] = 0;
  packet[IPV6_HEADER_LENGTH] = eventType;
  packet.set(payload, IPV6_HEADER_LENGTH + P2P_CONTROL_HEADER_LENGTH);
  return packet;
}

/** The 48-byte GOODBYE packet: the control header `[2, 0, 0, 0, 0, 0, 0, 0]` and no payload. */
export function makeGoodbyePacket(): Uint8Array {
  return makeP2pControlPacket(P2P_EVENT_GOODBYE, EMPTY_PAYLOAD)!;
}

export function makeAssignedIpsPacket(event: AssignedIps): Uint8Array | undefined {
  return makeP2pControlPacket(P2P_EVENT_ASSIGNED_IPS, encodeAssignedIps(event));
}

export function makeDomainStatusPacket(event: DomainStatus): Uint8Array | undefined {
  return makeP2pControlPacket(P2P_EVENT_DOMAIN_STATUS, encodeDomainStatus(event));
}

/** Decodes an AssignedIps event from a control packet (checks the event type). */
export function decodeAssignedIpsPacket(packet: IpPacket): AssignedIps | P2pDecodeError {
  if (p2pControlEventType(packet) !== P2P_EVENT_ASSIGNED_IPS) return 'wrongEventType';
  return decodeAssignedIps(p2pControlPayload(packet));
}

export function decodeDomainStatusPacket(packet: IpPacket): DomainStatus | P2pDecodeError {
  if (p2pControlEventType(packet) !== P2P_EVENT_DOMAIN_STATUS) return 'wrongEventType';
  return decodeDomainStatus(p2pControlPayload(packet));
}

/** `{"resource":…,"domain":…,"proxy_ips":[…]}`, compact, in this field order. */
export function encodeAssignedIps(event: AssignedIps): Uint8Array {
  const json = JSON.stringify({
    resource: event.resource,
    domain: displayDomain(event.domain),
    proxy_ips: event.proxyIps.map(formatIp),
  });
  return encoder.encode(json);
}

/** `{"resource":…,"domain":…,"status":"Active"|"Inactive"}`, compact, in this field order. */
export function encodeDomainStatus(event: DomainStatus): Uint8Array {
  const json = JSON.stringify({ resource: event.resource, domain: displayDomain(event.domain), status: event.status });
  return encoder.encode(json);
}

export function decodeAssignedIps(payload: Uint8Array): AssignedIps | P2pDecodeError {
  const object = parseJsonObject(payload);
  if (typeof object === 'string') return object;
  const resource = parseUuid(object['resource']);
  if (resource === undefined) return 'badResource';
  const domain = parseDomainName(object['domain']);
  if (domain === undefined) return 'badDomain';
  const list = object['proxy_ips'];
  if (!Array.isArray(list)) return 'badProxyIps';
  const proxyIps: IpAddr[] = [];
  for (const item of list as unknown[]) {
    const ip = typeof item === 'string' ? parseIp(item) : undefined;
    if (ip === undefined) return 'badProxyIps';
    proxyIps.push(ip);
  }
  return { resource, domain, proxyIps };
}

export function decodeDomainStatus(payload: Uint8Array): DomainStatus | P2pDecodeError {
  const object = parseJsonObject(payload);
  if (typeof object === 'string') return object;
  const resource = parseUuid(object['resource']);
  if (resource === undefined) return 'badResource';
  const domain = parseDomainName(object['domain']);
  if (domain === undefined) return 'badDomain';
  const status = object['status'];
  if (typeof status !== 'string') return 'badStatus';
  return { resource, domain, status: status === 'Active' ? 'Active' : 'Inactive' };
}

/**
 * Accepts what the `uuid` crate parses (hyphenated, simple, braced, `urn:uuid:`; any case) and returns the
 * lowercase hyphenated form.
 */
export function parseUuid(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  let text = value;
  if (text.length === 45 && text.slice(0, 9).toLowerCase() === 'urn:uuid:') text = text.slice(9);
  else if (text.length === 38 && text.startsWith('{') && text.endsWith('}')) text = text.slice(1, -1);
  let hex: string;
  if (text.length === 36) {
    if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(text)) return undefined;
    hex = text.replaceAll('-', '');
  } else if (text.length === 32 && value.length === 32) {
    if (!/^[0-9a-fA-F]{32}$/.test(text)) return undefined;
    hex = text;
  } else {
    return undefined;
  }
  hex = hex.toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A domain name in presentation form, with or without the trailing dot; returned without it (the root is
 * "."). Labels of 1-63 printable ASCII characters, at most 253 characters overall; escapes are not supported.
 */
export function parseDomainName(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return undefined;
  if (value === '.') return value;
  const name = value.endsWith('.') ? value.slice(0, -1) : value;
  if (name.length === 0 || name.length > 253) return undefined;
  for (const label of name.split('.')) {
    if (label.length === 0 || label.length > 63) return undefined;
    if (!/^[\x21-\x5b\x5d-\x7e]+$/.test(label)) return undefined;
  }
  return name;
}

const EMPTY_PAYLOAD = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function parseJsonObject(payload: Uint8Array): Record<string, unknown> | P2pDecodeError {
  let text: string;
  try {
    text = decoder.decode(payload);
  } catch {
    return 'badUtf8';
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'badJson';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'notAnObject';
  return value as Record<string, unknown>;
}

function displayDomain(domain: string): string {
  return domain.length > 1 && domain.endsWith('.') ? domain.slice(0, -1) : domain;
}
