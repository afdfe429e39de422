import type { IpAddr } from './addr.ts';
import { hashWords } from './bytes.ts';
import { maskV4 } from './cidr.ts';
import type { Cidr } from './cidr.ts';
import type { IpPacket } from './packet.ts';

/**
 * Longest-prefix-match table over IPv4 and IPv6 networks.
 *
 * One hash map per prefix length in use; a lookup probes the lengths in use from longest to shortest, so it
 * costs one map probe per distinct length (a handful in practice) and allocates nothing. IPv4 keys are the
 * masked address as an int32 (`| 0`, so V8 keeps keys as small integers and lookups never box a number);
 * IPv6 keys are a 32-bit hash of the masked address (int32 words) with a bucket compared word by word.
 */
export class PrefixTable<T> {
  // The prefix lengths in use, longest first, and each one's map at the same index: a table holds a
  // few lengths, and thousands of tables (one per client) must not each carry 162 empty slots.
  private readonly v4Lengths: number[] = [];
  private readonly v4Maps: Map<number, Entry<T>>[] = [];
  private readonly v6Lengths: number[] = [];
  private readonly v6Maps: Map<number, V6Entry<T>[]>[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Inserts or replaces the value for exactly `cidr`. */
  insert(cidr: Cidr, value: T): void {
    const length = cidr.prefixLength;
    if (cidr.address.family === 4) {
      let map = mapOf(this.v4Lengths, this.v4Maps, length);
      if (map === undefined) {
        map = new Map();
        insertDescending(this.v4Lengths, this.v4Maps, length, map);
      }
      const key = cidr.address.value | 0;
      if (!map.has(key)) this.count++;
      map.set(key, { cidr, value });
      return;
    }
    let map = mapOf(this.v6Lengths, this.v6Maps, length);
    if (map === undefined) {
      map = new Map();
      insertDescending(this.v6Lengths, this.v6Maps, length, map);
    }
    const bytes = cidr.address.bytes;
    const w0 = readI32(bytes, 0);
    const w1 = readI32(bytes, 4);
    const w2 = readI32(bytes, 8);
    const w3 = readI32(bytes, 12);
    const hash = hashWords(w0, w1, w2, w3);
    let bucket = map.get(hash);
    if (bucket === undefined) {
      bucket = [];
      map.set(hash, bucket);
    }
    for (const entry of bucket) {
      if (entry.w0 === w0 && entry.w1 === w1 && entry.w2 === w2 && entry.w3 === w3) {
        entry.value = value;
        entry.cidr = cidr;
        return;
      }
    }
    bucket.push({ cidr, value, w0, w1, w2, w3 });
    this.count++;
  }

  /** The value stored for exactly `cidr` (no prefix matching). */
  get(cidr: Cidr): T | undefined {
    return this.findExact(cidr)?.value;
  }

  remove(cidr: Cidr): boolean {
    const length = cidr.prefixLength;
    if (cidr.address.family === 4) {
      const map = mapOf(this.v4Lengths, this.v4Maps, length);
      if (map === undefined || !map.delete(cidr.address.value | 0)) return false;
      this.count--;
      if (map.size === 0) removeLength(this.v4Lengths, this.v4Maps, length);
      return true;
    }
    const map = mapOf(this.v6Lengths, this.v6Maps, length);
    if (map === undefined) return false;
    const bytes = cidr.address.bytes;
    const w0 = readI32(bytes, 0);
    const w1 = readI32(bytes, 4);
    const w2 = readI32(bytes, 8);
    const w3 = readI32(bytes, 12);
    const hash = hashWords(w0, w1, w2, w3);
    const bucket = map.get(hash);
    if (bucket === undefined) return false;
    const index = bucket.findIndex((e) => e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3);
    if (index < 0) return false;
    bucket.splice(index, 1);
    this.count--;
    if (bucket.length === 0) map.delete(hash);
    if (map.size === 0) removeLength(this.v6Lengths, this.v6Maps, length);
    return true;
  }

  clear(): void {
    this.v4Lengths.length = 0;
    this.v4Maps.length = 0;
    this.v6Lengths.length = 0;
    this.v6Maps.length = 0;
    this.count = 0;
  }

  lookup(address: IpAddr): T | undefined {
    return address.family === 4 ? this.lookupV4(address.value) : this.lookupV6(address.bytes, 0);
  }

  /** Longest-prefix match of a uint32 IPv4 address. */
  lookupV4(address: number): T | undefined {
    return this.matchV4(address)?.value;
  }

  /** Longest-prefix match of the IPv6 address at `bytes[offset]` (e.g. straight from a packet header). */
  lookupV6(bytes: Uint8Array, offset: number): T | undefined {
    return this.matchV6(bytes, offset)?.value;
  }

  /** Longest-prefix match of a parsed packet's destination, read in place. */
  lookupDestination(packet: IpPacket): T | undefined {
    return packet.version === 4 ? this.lookupV4(packet.destinationV4) : this.lookupV6(packet.bytes, packet.destinationOffset);
  }

  /** Longest-prefix match of a parsed packet's source, read in place. */
  lookupSource(packet: IpPacket): T | undefined {
    return packet.version === 4 ? this.lookupV4(packet.sourceV4) : this.lookupV6(packet.bytes, packet.sourceOffset);
  }

  /**
   * The value of the longest network containing the uint32 IPv4 `address` for which `accept(value, context)`
   * holds, trying shorter networks while it does not. Allocation-free with a module-level `accept`.
   */
  findV4<C>(address: number, accept: (value: T, context: C) => boolean, context: C): T | undefined {
    return this.walkV4(address, accept, context)?.value;
  }

  /** `findV4` for the IPv6 address at `bytes[offset]`. */
  findV6<C>(bytes: Uint8Array, offset: number, accept: (value: T, context: C) => boolean, context: C): T | undefined {
    return this.walkV6(bytes, offset, accept, context)?.value;
  }

  /** The longest matching network and its value. */
  match(address: IpAddr): { readonly cidr: Cidr; readonly value: T } | undefined {
    return address.family === 4 ? this.matchV4(address.value) : this.matchV6(address.bytes, 0);
  }

  /** Every (network, value), IPv4 first, longer prefixes first. */
  *entries(): IterableIterator<[Cidr, T]> {
    for (const map of this.v4Maps) {
      for (const entry of map.values()) yield [entry.cidr, entry.value];
    }
    for (const map of this.v6Maps) {
      for (const bucket of map.values()) {
        for (const entry of bucket) yield [entry.cidr, entry.value];
      }
    }
  }

  private matchV4(address: number): Entry<T> | undefined {
    return this.walkV4(address, acceptAny, undefined);
  }

  private matchV6(bytes: Uint8Array, offset: number): Entry<T> | undefined {
    return this.walkV6(bytes, offset, acceptAny, undefined);
  }

  /** The entry of the longest network containing `address` whose value `accept` takes. */
  private walkV4<C>(address: number, accept: (value: T, context: C) => boolean, context: C): Entry<T> | undefined {
    const lengths = this.v4Lengths;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i]!;
      const entry = this.v4Maps[i]!.get(address & maskV4(length));
      if (entry !== undefined && accept(entry.value, context)) return entry;
    }
    return undefined;
  }

  private walkV6<C>(bytes: Uint8Array, offset: number, accept: (value: T, context: C) => boolean, context: C): Entry<T> | undefined {
    const lengths = this.v6Lengths;
    if (lengths.length === 0) return undefined;
    const a0 = readI32(bytes, offset);
    const a1 = readI32(bytes, offset + 4);
    const a2 = readI32(bytes, offset + 8);
    const a3 = readI32(bytes, offset + 12);
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i]!;
      const w0 = a0 & wordMask(length, 0);
      const w1 = a1 & wordMask(length, 1);
      const w2 = a2 & wordMask(length, 2);
      const w3 = a3 & wordMask(length, 3);
      const bucket = this.v6Maps[i]!.get(hashWords(w0, w1, w2, w3));
      if (bucket === undefined) continue;
      for (let j = 0; j < bucket.length; j++) {
        const entry = bucket[j]!;
        if (entry.w0 !== w0 || entry.w1 !== w1 || entry.w2 !== w2 || entry.w3 !== w3) continue;
        if (accept(entry.value, context)) return entry;
        break;
      }
    }
    return undefined;
  }

  private findExact(cidr: Cidr): Entry<T> | undefined {
    if (cidr.address.family === 4) return mapOf(this.v4Lengths, this.v4Maps, cidr.prefixLength)?.get(cidr.address.value | 0);
    const map = mapOf(this.v6Lengths, this.v6Maps, cidr.prefixLength);
    if (map === undefined || cidr.address.family !== 6) return undefined;
    const bytes = cidr.address.bytes;
    const w0 = readI32(bytes, 0);
    const w1 = readI32(bytes, 4);
    const w2 = readI32(bytes, 8);
    const w3 = readI32(bytes, 12);
    const bucket = map.get(hashWords(w0, w1, w2, w3));
    return bucket?.find((e) => e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3);
  }
}

interface Entry<T> {
  cidr: Cidr;
  value: T;
}

interface V6Entry<T> extends Entry<T> {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
}

function acceptAny(): boolean {
  return true;
}

/** The int32 mask of 32-bit word `word` of a /`prefixLength` IPv6 network. */
function wordMask(prefixLength: number, word: number): number {
  const bits = prefixLength - 32 * word;
  if (bits >= 32) return -1;
  if (bits <= 0) return 0;
  return maskV4(bits) | 0;
}

function readI32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
}

function mapOf<M>(lengths: readonly number[], maps: readonly M[], length: number): M | undefined {
  const index = lengths.indexOf(length);
  return index < 0 ? undefined : maps[index];
}

function insertDescending<M>(lengths: number[], maps: M[], length: number, map: M): void {
  let index = 0;
  while (index < lengths.length && lengths[index]! > length) index++;
  lengths.splice(index, 0, length);
  maps.splice(index, 0, map);
}

function removeLength<M>(lengths: number[], maps: M[], length: number): void {
  const index = lengths.indexOf(length);
  lengths.splice(index, 1);
  maps.splice(index, 1);
}
