// Two tunnels wired to each other in virtual time, for the WireGuard unit tests.
import { seededRandom } from '../../src/util/random.ts';
import {
  RateLimiter,
  staticIdentity,
  Tunnel,
  type DecapsulateResult,
  type StaticIdentity,
  type TransportCipher,
  type TunnelEvent,
} from '../../src/wireguard/index.ts';

export const IP_A = '10.0.0.1';
export const IP_B = '10.0.0.2';

export function key(fill: number): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = (fill + i * 7) & 0xff;
  return out;
}

export const PRIVATE_A = key(1);
export const PRIVATE_B = key(2);
export const PSK = key(3);

export interface Side {
  readonly identity: StaticIdentity;
  readonly limiter: RateLimiter;
  readonly tunnel: Tunnel;
}

export interface Pair {
  readonly a: Side;
  readonly b: Side;
}

export interface PairOptions {
  readonly pskA?: Uint8Array;
  readonly pskB?: Uint8Array;
  readonly limitA?: number;
  readonly limitB?: number;
  readonly now?: number;
  /** Makes each side's transport cipher (node:crypto when absent). */
  readonly cipher?: () => TransportCipher;
}

export function makePair(options: PairOptions = {}): Pair {
  const now = options.now ?? 0;
  const idA = staticIdentity(PRIVATE_A);
  const idB = staticIdentity(PRIVATE_B);
  return {
    a: makeSide(idA, idB.publicKey, options.pskA ?? PSK, 0x0a0a0a, 11, now, options.limitA, options.cipher?.()),
    b: makeSide(idB, idA.publicKey, options.pskB ?? PSK, 0x0b0b0b, 22, now, options.limitB, options.cipher?.()),
  };
}

export function makeSide(
  identity: StaticIdentity,
  peer: Uint8Array,
  presharedKey: Uint8Array,
  index: number,
  seed: number,
  now: number,
  limit?: number,
  cipher?: TransportCipher,
): Side {
  const limiter = new RateLimiter(identity, seededRandom(seed + 1), now, limit);
  const tunnel = new Tunnel({ local: identity, peer, presharedKey, index, rng: seededRandom(seed), rateLimiter: limiter, now, ...(cipher ? { cipher } : {}) });
  return { identity, limiter, tunnel };
}

export function drainTransmits(tunnel: Tunnel): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let t = tunnel.pollTransmit(); t !== undefined; t = tunnel.pollTransmit()) out.push(t);
  return out;
}

export function drainEvents(tunnel: Tunnel): TunnelEvent[] {
  const out: TunnelEvent[] = [];
  for (let e = tunnel.pollEvent(); e !== undefined; e = tunnel.pollEvent()) out.push(e);
  return out;
}

/** Delivers every pending transmit of `from` to `to`; returns what `to` made of each. */
export function deliver(from: Side, to: Side, fromIp: string, now: number): DecapsulateResult[] {
  return drainTransmits(from.tunnel).map((d) => to.tunnel.decapsulate(d, fromIp, now));
}

/** Runs a full handshake started by `a`; returns the time after it. */
export function handshake(pair: Pair, now: number): number {
  pair.a.tunnel.initiateHandshake(now);
  deliver(pair.a, pair.b, IP_A, now);
  deliver(pair.b, pair.a, IP_B, now);
  deliver(pair.a, pair.b, IP_A, now); // the confirming keepalive
  drainEvents(pair.a.tunnel);
  drainEvents(pair.b.tunnel);
  return now;
}

/** A minimal IPv4 packet of `length` bytes whose payload bytes are `fill`. */
export function ipv4(length: number, fill = 0xab): Uint8Array {
  const packet = new Uint8Array(length).fill(fill);
  packet[0] = 0x45;
  packet[2] = length >> 8;
  packet[3] = length & 0xff;
  return packet;
}

/** Calls handleTimeout at every deadline up to `until`; returns the datagrams produced. */
export function advance(side: Side, from: number, until: number): { at: number; datagram: Uint8Array }[] {
  const out: { at: number; datagram: Uint8Array }[] = [];
  let now = from;
  for (let guard = 0; guard < 10_000; guard++) {
    const next = side.tunnel.pollTimeout();
    if (next === undefined || next > until) return out;
    now = Math.max(now, next);
    side.tunnel.handleTimeout(now);
    for (const datagram of drainTransmits(side.tunnel)) out.push({ at: now, datagram });
    const after = side.tunnel.pollTimeout();
    if (after !== undefined && after <= now) throw new Error(`deadline did not move past ${now}`);
  }
  throw new Error('timer loop did not settle');
}

/** Asserts that a decapsulate result is exactly `expected`. */
export function assertPacket(result: unknown, expected: Uint8Array): void {
  if (!(result instanceof Uint8Array)) throw new Error(`expected a packet, got ${String(result)}`);
  if (Buffer.compare(Buffer.from(result.buffer, result.byteOffset, result.length), Buffer.from(expected)) !== 0) {
    throw new Error('packet content differs');
  }
}

/** Fires the pending initiation's retransmission; returns when, and the new initiation. */
export function retransmit(side: Side): { at: number; initiation: Uint8Array } {
  const at = side.tunnel.pollTimeout()!;
  side.tunnel.handleTimeout(at);
  const [initiation] = drainTransmits(side.tunnel);
  if (initiation === undefined || initiation[0] !== 1) throw new Error('no retransmission');
  return { at, initiation };
}
