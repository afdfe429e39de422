// Candidates of an ICE-less connection and their SDP form (spec gateway-1.6 §3.9, "Signalling").
//
//   candidate:<foundation> 1 udp <priority> <ip> <port> typ host|srflx|relay[ raddr <base-ip> rport <base-port>]
//
// The strings travel in `ice_candidates` / `broadcast_ice_candidates` like ICE candidates, but
// nothing in them is negotiated: the foundation is a 64-bit FNV-1a hash of the candidate's
// identity (kind, address, base), printed in decimal; the priority only orders host > srflx > relay.
// srflx and relay candidates carry their base socket in raddr/rport so that the string round-trips.
//
// Parsing accepts what the reference accepts: `candidate:` then fields separated by runs of ASCII
// whitespace; foundation, component and priority are not interpreted; the transport must be udp in
// any case; raddr and rport may sit anywhere after the type, in either order; a host candidate's
// raddr/rport must parse but is ignored. Peer-reflexive does not exist here (it collapses to srflx).
import { canonicalSocketIp, formatIp, parseIp } from '../../ip/index.ts';
import { sameSocketAddr, type SocketAddr } from '../../util/socket-addr.ts';

export type PathCandidateKind = 'host' | 'srflx' | 'relay';

/**
 * `address` is where the peer reaches the candidate. `base` is the local socket behind it: the
 * address itself for host, the socket the mapping belongs to for srflx, the socket that talks to
 * the relay for relay. Structurally the same as the TURN client's `LocalCandidate`.
 */
export interface PathCandidate {
  readonly kind: PathCandidateKind;
  readonly address: SocketAddr;
  readonly base: SocketAddr;
}

export type PathCandidateParseError = 'malformed' | 'unsupportedTransport' | 'unknownType' | 'missingBase' | 'invalidAddress';

/** Longest candidate line accepted; the reference's own lines stay under 150 characters. */
export const MAX_CANDIDATE_LINE = 512;

/** Type preferences of the SDP priority (`type_pref << 24 | 0xffff << 8 | 255`). */
const TYPE_PREFERENCE: Readonly<Record<PathCandidateKind, number>> = { host: 126, srflx: 100, relay: 0 };

/** The kind byte hashed into the foundation. */
const KIND_CODE: Readonly<Record<PathCandidateKind, number>> = { host: 0, srflx: 1, relay: 2 };

/** Rank of a kind, smaller is better: host < srflx < relay. */
export const KIND_RANK: Readonly<Record<PathCandidateKind, number>> = { host: 0, srflx: 1, relay: 2 };

export function hostCandidate(address: SocketAddr): PathCandidate {
  return { kind: 'host', address, base: address };
}

export function serverReflexiveCandidate(address: SocketAddr, base: SocketAddr): PathCandidate {
  return { kind: 'srflx', address, base };
}

export function relayCandidate(address: SocketAddr, base: SocketAddr): PathCandidate {
  return { kind: 'relay', address, base };
}

/**
 * The local end of the pairs a local candidate forms: where we send from. A relay candidate sends
 * from its relayed address (through the relay); host and srflx from the local socket.
 */
export function sendSocket(candidate: PathCandidate): SocketAddr {
  return candidate.kind === 'srflx' ? candidate.base : candidate.address;
}

/** A relay candidate whose relayed address has the family of the socket that reaches the relay. */
export function isFamilyMatched(candidate: PathCandidate): boolean {
  return candidate.kind !== 'relay' || candidate.address.family === candidate.base.family;
}

export function samePathCandidate(a: PathCandidate, b: PathCandidate): boolean {
  return a.kind === b.kind && sameSocketAddr(a.address, b.address) && sameSocketAddr(a.base, b.base);
}

export function pathCandidatePriority(kind: PathCandidateKind): number {
  return (TYPE_PREFERENCE[kind] * 0x100_0000 + 0xffff * 0x100 + 255) >>> 0;
}

/**
 * 64-bit FNV-1a (offset 0xcbf29ce484222325, prime 0x100000001b3) over the kind byte, the address
 * octets and big-endian port, and for srflx/relay the base octets and port; unsigned decimal.
 */
export function pathCandidateFoundation(candidate: PathCandidate): string {
  let hash = fnvByte(FNV_OFFSET, KIND_CODE[candidate.kind]);
  hash = fnvSocket(hash, candidate.address);
  if (candidate.kind !== 'host') hash = fnvSocket(hash, candidate.base);
  return hash.toString(10);
}

export function formatPathCandidate(candidate: PathCandidate): string {
  const { address } = candidate;
  let text =
    `candidate:${pathCandidateFoundation(candidate)} 1 udp ${pathCandidatePriority(candidate.kind)} ` +
    `${displayIp(address)} ${address.port} typ ${candidate.kind}`;
  if (candidate.kind !== 'host') text += ` raddr ${displayIp(candidate.base)} rport ${candidate.base.port}`;
  return text;
}

/** Parses a candidate line of this mode. Never throws. */
export function parsePathCandidate(text: string): PathCandidate | PathCandidateParseError {
  if (typeof text !== 'string' || text.length > MAX_CANDIDATE_LINE || !text.startsWith(PREFIX)) return 'malformed';
  const fields = splitAsciiWhitespace(text.slice(PREFIX.length));
  if (fields.length < 3) return 'malformed';
  if (fields[2]!.toLowerCase() !== 'udp') return 'unsupportedTransport';
  if (fields.length < 6) return 'malformed';
  const address = parseSocket(fields[4]!, fields[5]!);
  if (address === undefined) return 'invalidAddress';
  if (fields[6] !== 'typ' || fields.length < 8) return 'malformed';
  const type = fields[7]!;

  let base: SocketAddr | undefined;
  const raddr = fields.indexOf('raddr', 8);
  if (raddr !== -1) {
    const ip = fields[raddr + 1];
    const rport = fields.indexOf('rport', 8);
    const port = rport === -1 ? undefined : fields[rport + 1];
    if (ip === undefined || port === undefined) return 'malformed';
    base = parseSocket(ip, port);
    if (base === undefined) return 'invalidAddress';
  }

  switch (type) {
    case 'host':
      return hostCandidate(address);
    case 'srflx':
      return base === undefined ? 'missingBase' : serverReflexiveCandidate(address, base);
    case 'relay':
      return base === undefined ? 'missingBase' : relayCandidate(address, base);
    default:
      return 'unknownType';
  }
}

const PREFIX = 'candidate:';
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const U64 = 0xffffffffffffffffn;

function fnvByte(hash: bigint, byte: number): bigint {
  return ((hash ^ BigInt(byte)) * FNV_PRIME) & U64;
}

function fnvSocket(hash: bigint, socket: SocketAddr): bigint {
  const ip = parseIp(socket.address)!;
  if (ip.family === 4) {
    for (let shift = 24; shift >= 0; shift -= 8) hash = fnvByte(hash, (ip.value >>> shift) & 0xff);
  } else {
    for (const byte of ip.bytes) hash = fnvByte(hash, byte);
  }
  hash = fnvByte(hash, socket.port >>> 8);
  return fnvByte(hash, socket.port & 0xff);
}

/** The address as the reference prints it (Rust's `Display`), whatever form the socket layer reported. */
function displayIp(socket: SocketAddr): string {
  const ip = parseIp(socket.address);
  return ip === undefined ? socket.address : formatIp(ip);
}

/** Rust's `split_ascii_whitespace`: runs of space, tab, LF, FF or CR separate fields. */
function splitAsciiWhitespace(text: string): string[] {
  const fields: string[] = [];
  let start = -1;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : 0x20;
    const isSpace = code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d;
    if (isSpace) {
      if (start !== -1) fields.push(text.slice(start, i));
      start = -1;
    } else if (start === -1) {
      start = i;
    }
  }
  return fields;
}

/** An IP literal and a port as Rust's `IpAddr` and `u16` parsers accept them (a leading `+` included). */
function parseSocket(ipText: string, portText: string): SocketAddr | undefined {
  const ip = canonicalSocketIp(ipText);
  if (ip === undefined || !/^\+?\d+$/.test(portText)) return undefined;
  const port = Number(portText.startsWith('+') ? portText.slice(1) : portText);
  if (port > 0xffff) return undefined;
  return { address: ip.address, port, family: ip.family };
}
