// ICE candidates: priorities and foundations as the reference computes them, and the SDP
// `candidate:` attribute value (without `a=`) in the reference's exact format.
//
//   candidate:{foundation} 1 udp {priority} {ip} {port} typ {host|srflx|prflx|relay}[ raddr {ip} rport {port}][ ufrag {ufrag}]
//
// Parsing accepts what str0m accepts: protocol udp|tcp|ssltcp|tls in any case, then optional
// ` tcptype X`, ` raddr IP rport P`, ` generation X`, ` network-id X`, ` ufrag X`, ` network-cost X`
// in that order only; anything after is ignored.
import { canonicalSocketIp } from '../ip/index.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import { COMPONENT_ID, FALLBACK_LOCAL_PREFERENCE, TYPE_PREFERENCE } from './constants.ts';

export type CandidateKind = 'host' | 'srflx' | 'prflx' | 'relay';
export type CandidateProtocol = 'udp' | 'tcp' | 'ssltcp' | 'tls';

export interface Candidate {
  readonly kind: CandidateKind;
  readonly foundation: string;
  readonly component: number;
  readonly protocol: CandidateProtocol;
  readonly priority: number;
  readonly address: SocketAddr;
  /** Where checks are sent from: the host address for host/srflx/prflx, the relayed address for relay. Remote: = address. */
  readonly base: SocketAddr;
  /** raddr/rport. The reference signals a fake `0.0.0.0 0` / `:: 0` here. */
  readonly related: SocketAddr | undefined;
  readonly ufrag: string | undefined;
}

/** `type_pref << 24 | local_pref << 8 | (256 - component)`, as an unsigned 32-bit number. */
export function candidatePriority(kind: CandidateKind, localPreference: number, component = COMPONENT_ID): number {
  return (TYPE_PREFERENCE[kind] * 0x100_0000 + (localPreference & 0xffff) * 0x100 + (256 - component)) >>> 0;
}

/** The local preference encoded in a priority. */
export function localPreferenceOf(priority: number): number {
  return (priority >>> 8) & 0xffff;
}

/** Priority a candidate gets when it never enters an agent (signalled srflx, remote candidates without one). */
export function fallbackPriority(kind: CandidateKind, family: 4 | 6): number {
  return candidatePriority(kind, FALLBACK_LOCAL_PREFERENCE[family]);
}

/**
 * Opaque foundation shaped like str0m's: 8 hex digits of the priority with its bytes reversed, then a
 * 64-bit hash (hex, no leading zeros) of kind, base IP, related IP and protocol. Peers never interpret it.
 */
export function candidateFoundation(
  kind: CandidateKind,
  priority: number,
  base: SocketAddr,
  related: SocketAddr | undefined,
  protocol: CandidateProtocol,
): string {
  const hashed = `${kind}|${base.address}|${related?.address ?? ''}|${protocol}`;
  const key = `${priority}|${hashed}`;
  const known = recentFoundations.get(key);
  if (known !== undefined) return known;
  const reversed =
    (((priority & 0xff) << 24) | (((priority >>> 8) & 0xff) << 16) | (((priority >>> 16) & 0xff) << 8) | (priority >>> 24)) >>> 0;
  const foundation = detached(reversed.toString(16).padStart(8, '0') + fnv1a64(hashed));
  if (recentFoundations.size >= MAX_RECENT_FOUNDATIONS) recentFoundations.clear();
  recentFoundations.set(key, foundation);
  return foundation;
}

/**
 * Foundations computed lately: every connection of a node pairs the same few local candidates, and
 * sharing their foundation strings saves a string per candidate per connection.
 */
const recentFoundations = new Map<string, string>();
const MAX_RECENT_FOUNDATIONS = 64;

/** The unspecified address the reference puts in raddr/rport of srflx and relay candidates. */
export function fakeRelatedAddress(family: 4 | 6): SocketAddr {
  return family === 4 ? UNSPECIFIED_V4 : UNSPECIFIED_V6;
}

/** The SDP `candidate:` value exactly as the reference formats it. */
export function formatCandidate(candidate: Candidate): string {
  let text =
    `candidate:${candidate.foundation} ${candidate.component} ${candidate.protocol} ${candidate.priority} ` +
    `${candidate.address.address} ${candidate.address.port} typ ${candidate.kind}`;
  if (candidate.related !== undefined) text += ` raddr ${candidate.related.address} rport ${candidate.related.port}`;
  if (candidate.ufrag !== undefined) text += ` ufrag ${candidate.ufrag}`;
  return text;
}

export type CandidateParseError = 'syntax' | 'badComponent' | 'badProtocol' | 'badPriority' | 'badAddress' | 'badKind';

/** Parses an SDP candidate value (an `a=` prefix is tolerated). Never throws. */
export function parseCandidate(text: string): Candidate | CandidateParseError {
  if (typeof text !== 'string' || text.length > 1024) return 'syntax';
  const body = text.startsWith('a=') ? text.slice(2) : text;
  if (!body.startsWith('candidate:')) return 'syntax';
  const tokens = body.slice('candidate:'.length).split(' ');
  if (tokens.length < 7) return 'syntax';
  const [foundation, componentText, protocolText, priorityText, ipText, portText, typ, kindText] = tokens;
  if (foundation === undefined || foundation === '') return 'syntax';
  const component = parseDecimal(componentText, 0xffff);
  if (component === undefined) return 'badComponent';
  const protocol = PROTOCOLS.get(protocolText?.toLowerCase() ?? '');
  if (protocol === undefined) return 'badProtocol';
  const priority = parseDecimal(priorityText, 0xffff_ffff);
  if (priority === undefined) return 'badPriority';
  const address = parseAddress(ipText, portText);
  if (address === undefined) return 'badAddress';
  if (typ !== 'typ') return 'syntax';
  const kind = KINDS.get(kindText ?? '');
  if (kind === undefined) return 'badKind';

  let index = 8;
  let related: SocketAddr | undefined;
  let ufrag: string | undefined;
  if (tokens[index] === 'tcptype' && tokens[index + 1] !== undefined) index += 2;
  if (tokens[index] === 'raddr' && tokens[index + 2] === 'rport') {
    related = parseAddress(tokens[index + 1], tokens[index + 3]);
    if (related === undefined) return 'badAddress';
    index += 4;
  }
  if (tokens[index] === 'generation' && tokens[index + 1] !== undefined) index += 2;
  if (tokens[index] === 'network-id' && tokens[index + 1] !== undefined) index += 2;
  if (tokens[index] === 'ufrag' && tokens[index + 1] !== undefined && tokens[index + 1] !== '') {
    ufrag = detached(tokens[index + 1]!);
    index += 2;
  }
  return {
    kind,
    foundation: detached(foundation),
    component,
    protocol,
    priority,
    address,
    base: address,
    related,
    ufrag,
  };
}

/** Same transport address, kind and related address: what invalidation matches on. */
export function sameCandidate(a: Candidate, b: Candidate): boolean {
  return (
    a.kind === b.kind &&
    a.protocol === b.protocol &&
    sameAddr(a.address, b.address) &&
    sameOptionalAddr(a.related, b.related)
  );
}

/** The constant strings, not the parsed token (a copy per candidate). */
const KINDS = new Map<string, CandidateKind>([
  ['host', 'host'],
  ['srflx', 'srflx'],
  ['prflx', 'prflx'],
  ['relay', 'relay'],
]);

const PROTOCOLS = new Map<string, CandidateProtocol>([
  ['udp', 'udp'],
  ['tcp', 'tcp'],
  ['ssltcp', 'ssltcp'],
  ['tls', 'tls'],
]);

const UNSPECIFIED_V4: SocketAddr = Object.freeze({ address: '0.0.0.0', port: 0, family: 4 });
const UNSPECIFIED_V6: SocketAddr = Object.freeze({ address: '::', port: 0, family: 6 });

function parseDecimal(text: string | undefined, max: number): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= max ? value : undefined;
}

function parseAddress(ipText: string | undefined, portText: string | undefined): SocketAddr | undefined {
  if (ipText === undefined) return undefined;
  const ip = canonicalSocketIp(ipText);
  const port = parseDecimal(portText, 0xffff);
  if (ip === undefined || port === undefined) return undefined;
  if (port === 0 && ip.address === UNSPECIFIED_V4.address) return UNSPECIFIED_V4;
  if (port === 0 && ip.address === UNSPECIFIED_V6.address) return UNSPECIFIED_V6;
  return { address: detached(ip.address), port, family: ip.family };
}

/**
 * A copy of `text` that does not keep a larger string alive: V8 makes substrings of 13 or more
 * characters views of their parent, here the whole signalled candidate line kept for as long as the
 * candidate lives. A JSON round trip yields a fresh flat string, losslessly.
 */
function detached(text: string): string {
  return text.length < 13 ? text : (JSON.parse(JSON.stringify(text)) as string);
}

function sameAddr(a: SocketAddr, b: SocketAddr): boolean {
  return a.port === b.port && a.address === b.address;
}

function sameOptionalAddr(a: SocketAddr | undefined, b: SocketAddr | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return sameAddr(a, b);
}

function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i++) {
    hash ^= BigInt(text.charCodeAt(i) & 0xff);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16);
}
