// Per-client DNS-resource NAT: inside (proto, source port / echo id, proxy IP) <-> outside (proto, value, real IP).
// Keys are packed into one safe integer: ((family * 4 + proto) * 65536 + value) * 2^32 + ip32, where ip32 is the
// IPv4 address, the low 32 bits of an IPv6 proxy (proxies lie in one /107) or an interned id of an IPv6 real IP.

import { hashWords, ipEquals, readU32 } from '../ip/index.ts';
import type { IpAddr, Transport } from '../ip/index.ts';
import { NAT_TTL_ICMP_MS, NAT_TTL_TCP_MS, NAT_TTL_UDP_MS } from './constants.ts';

const TWO_POW_32 = 0x1_0000_0000;

/** The protocols the NAT tracks; 0 = not translatable. */
export const enum L4 {
  None = 0,
  Tcp = 1,
  Udp = 2,
  Icmp = 3,
}

export function l4Of(transport: Transport): L4 {
  switch (transport) {
    case 'tcp':
      return L4.Tcp;
    case 'udp':
      return L4.Udp;
    case 'icmpv4':
    case 'icmpv6':
      return L4.Icmp;
    case 'unsupported':
      return L4.None;
  }
}

export function natKey(family: 4 | 6, l4: L4, value: number, ip32: number): number {
  return (((family === 4 ? 0 : 4) + l4) * 65536 + value) * TWO_POW_32 + ip32;
}

export function ttlOf(l4: L4): number {
  return l4 === L4.Tcp ? NAT_TTL_TCP_MS : l4 === L4.Udp ? NAT_TTL_UDP_MS : NAT_TTL_ICMP_MS;
}

/** Small integer ids for IPv6 real IPs so they fit the packed NAT key; IPv4 addresses are their own id. */
export class RealIpIds {
  private readonly buckets = new Map<number, { w0: number; w1: number; w2: number; w3: number; id: number }[]>();
  private next = 0;

  idOf(address: IpAddr): number {
    if (address.family === 4) return address.value;
    const found = this.lookupV6(address.bytes, 0);
    if (found >= 0) return found;
    const b = address.bytes;
    const entry = { w0: readU32(b, 0), w1: readU32(b, 4), w2: readU32(b, 8), w3: readU32(b, 12), id: this.next++ };
    const hash = hashWords(entry.w0, entry.w1, entry.w2, entry.w3);
    const bucket = this.buckets.get(hash);
    if (bucket === undefined) this.buckets.set(hash, [entry]);
    else bucket.push(entry);
    return entry.id;
  }

  /** The id of the IPv6 address at `bytes[offset]`, or -1 if it was never a real IP. */
  lookupV6(bytes: Uint8Array, offset: number): number {
    const w0 = readU32(bytes, offset);
    const w1 = readU32(bytes, offset + 4);
    const w2 = readU32(bytes, offset + 8);
    const w3 = readU32(bytes, offset + 12);
    const bucket = this.buckets.get(hashWords(w0, w1, w2, w3));
    if (bucket === undefined) return -1;
    for (let i = 0; i < bucket.length; i++) {
      const e = bucket[i]!;
      if (e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3) return e.id;
    }
    return -1;
  }
}

export interface NatSession {
  readonly insideKey: number;
  readonly outsideKey: number;
  readonly l4: L4;
  readonly insideValue: number;
  readonly outsideValue: number;
  readonly proxy: IpAddr;
  readonly real: IpAddr;
  lastSeen: number;
}

export class NatTable {
  private readonly byInside = new Map<number, NatSession>();
  private readonly byOutside = new Map<number, NatSession>();
  private readonly expired = new Set<number>();

  get size(): number {
    return this.byInside.size;
  }

  /**
   * Maps an outgoing packet's (l4, value, proxy) to an outside value on `real`, or returns -1 when every value
   * is taken. A TCP RST on an existing session ends it (the RST itself is still translated).
   */
  outgoing(l4: L4, value: number, proxy: IpAddr, proxy32: number, real: IpAddr, realId: number, isTcpRst: boolean, now: number): number {
    const family = proxy.family;
    const insideKey = natKey(family, l4, value, proxy32);
    const existing = this.byInside.get(insideKey);
    if (existing !== undefined && ipEquals(existing.real, real)) {
      existing.lastSeen = now;
      if (isTcpRst) this.end(existing);
      return existing.outsideValue;
    }
    const outsideValue = this.freeOutsideValue(family, l4, value, realId);
    if (outsideValue < 0) return -1;
    if (existing !== undefined) this.byOutside.delete(existing.outsideKey);
    const outsideKey = natKey(family, l4, outsideValue, realId);
    const session: NatSession = { insideKey, outsideKey, l4, insideValue: value, outsideValue, proxy, real, lastSeen: now };
    this.byInside.set(insideKey, session);
    this.byOutside.set(outsideKey, session);
    this.expired.delete(outsideKey);
    return outsideValue;
  }

  /** The session for an outside key (from a reply or an ICMP error's embedded packet). */
  lookupOutside(outsideKey: number): NatSession | undefined {
    return this.byOutside.get(outsideKey);
  }

  isExpired(outsideKey: number): boolean {
    return this.expired.has(outsideKey);
  }

  /** Removes the session and remembers its outside tuple, so late replies are dropped instead of passed. */
  end(session: NatSession): void {
    if (this.byInside.get(session.insideKey) === session) this.byInside.delete(session.insideKey);
    if (this.byOutside.get(session.outsideKey) === session) this.byOutside.delete(session.outsideKey);
    this.expired.add(session.outsideKey);
  }

  collectGarbage(now: number): void {
    for (const session of this.byInside.values()) {
      if (now - session.lastSeen >= ttlOf(session.l4)) this.end(session);
    }
  }

  hasLiveSessionFor(proxy: IpAddr): boolean {
    for (const session of this.byInside.values()) if (ipEquals(session.proxy, proxy)) return true;
    return false;
  }

  private freeOutsideValue(family: 4 | 6, l4: L4, original: number, realId: number): number {
    for (let v = original; v <= 0xffff; v++) if (!this.byOutside.has(natKey(family, l4, v, realId))) return v;
    for (let v = 1; v < original; v++) if (!this.byOutside.has(natKey(family, l4, v, realId))) return v;
    return -1;
  }
}
