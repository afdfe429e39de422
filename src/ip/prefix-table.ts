import type { IpAddr } from './addr.ts';
import { hashWords, readI32 } from './bytes.ts';
import { maskV4 } from './cidr.ts';
import type { Cidr } from './cidr.ts';
import type { IpPacket } from './packet.ts';

/**
 * Longest-prefix-match table over IPv4 and IPv6 networks.
 *
 * One slot per prefix length in use; a lookup probes the lengths in use from longest to shortest, so it
 * costs one probe per distinct length (a handful in practice) and allocates nothing. IPv4 keys are the
 * masked address as an int32 (`| 0`, so V8 keeps keys as small integers and lookups never box a number);
 * IPv6 keys are a 32-bit hash of the masked address (int32 words) with a bucket compared word by word.
 *
 * Thousands of tables (two per client) mostly hold one network or none, so: a table without networks of
 * a family holds shared empty arrays; a length with one network holds that entry itself (a map only from
 * the second); the arrays of lengths and slots are replaced, never written, when a length comes or goes
 * (rare), and a single length's array is shared by every table that has just that length.
 */
export class PrefixTable<T> {
  // The prefix lengths in use, longest first, and each one's slot at the same index.
  private v4Lengths: readonly number[] = NO_LENGTHS;
  private v4Slots: readonly V4Slot<T>[] = NO_SLOTS;
  private v6Lengths: readonly number[] = NO_LENGTHS;
  private v6Slots: readonly V6Slot<T>[] = NO_SLOTS;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Inserts or replaces the value for exactly `cidr`. */
  insert(cidr: Cidr, value: T): void {
    const length = cidr.prefixLength;
    if (cidr.address.family === 4) {
      const key = cidr.address.value | 0;
      const index = this.v4Lengths.indexOf(length);
      if (index < 0) {
        this.addV4Length(length, new V4Entry(key, cidr, value));
        this.count++;
        return;
      }
      const slot = this.v4Slots[index]!;
      if (slot instanceof V4Entry) {
        if (slot.key === key) {
          slot.cidr = cidr;
          slot.value = value;
          return;
        }
        const map = new Map<number, V4Entry<T>>();
        map.set(slot.key, slot);
        map.set(key, new V4Entry(key, cidr, value));
        this.v4Slots = replaced(this.v4Slots, index, map);
        this.count++;
        return;
      }
      const existing = slot.get(key);
      if (existing !== undefined) {
        existing.cidr = cidr;
        existing.value = value;
        return;
      }
      slot.set(key, new V4Entry(key, cidr, value));
      this.count++;
      return;
    }
    const bytes = cidr.address.bytes;
    const entry = new V6Entry(cidr, value, readI32(bytes, 0), readI32(bytes, 4), readI32(bytes, 8), readI32(bytes, 12));
    const index = this.v6Lengths.indexOf(length);
    if (index < 0) {
      this.addV6Length(length, entry);
      this.count++;
      return;
    }
    const slot = this.v6Slots[index]!;
    if (slot instanceof V6Entry) {
      if (slot.sameNetwork(entry)) {
        slot.cidr = cidr;
        slot.value = value;
        return;
      }
      const map = new Map<number, V6Entry<T>[]>();
      addToBucket(map, slot);
      addToBucket(map, entry);
      this.v6Slots = replaced(this.v6Slots, index, map);
      this.count++;
      return;
    }
    const bucket = slot.get(entry.hash());
    const existing = bucket?.find((e) => e.sameNetwork(entry));
    if (existing !== undefined) {
      existing.cidr = cidr;
      existing.value = value;
      return;
    }
    addToBucket(slot, entry);
    this.count++;
  }

  /** The value stored for exactly `cidr` (no prefix matching). */
  get(cidr: Cidr): T | undefined {
    return this.findExact(cidr)?.value;
  }

  remove(cidr: Cidr): boolean {
    const length = cidr.prefixLength;
    if (cidr.address.family === 4) {
      const index = this.v4Lengths.indexOf(length);
      if (index < 0) return false;
      const key = cidr.address.value | 0;
      const slot = this.v4Slots[index]!;
      if (slot instanceof V4Entry) {
        if (slot.key !== key) return false;
        this.removeV4Length(index);
      } else {
        if (!slot.delete(key)) return false;
        if (slot.size === 1) for (const last of slot.values()) this.v4Slots = replaced(this.v4Slots, index, last);
      }
      this.count--;
      return true;
    }
    const index = this.v6Lengths.indexOf(length);
    if (index < 0) return false;
    const bytes = cidr.address.bytes;
    const w0 = readI32(bytes, 0);
    const w1 = readI32(bytes, 4);
    const w2 = readI32(bytes, 8);
    const w3 = readI32(bytes, 12);
    const slot = this.v6Slots[index]!;
    if (slot instanceof V6Entry) {
      if (!slot.hasWords(w0, w1, w2, w3)) return false;
      this.removeV6Length(index);
      this.count--;
      return true;
    }
    const hash = hashWords(w0, w1, w2, w3);
    const bucket = slot.get(hash);
    if (bucket === undefined) return false;
    const at = bucket.findIndex((e) => e.hasWords(w0, w1, w2, w3));
    if (at < 0) return false;
    bucket.splice(at, 1);
    this.count--;
    if (bucket.length === 0) slot.delete(hash);
    if (slot.size === 1) {
      for (const last of slot.values()) if (last.length === 1) this.v6Slots = replaced(this.v6Slots, index, last[0]!);
    }
    return true;
  }

  clear(): void {
    this.v4Lengths = NO_LENGTHS;
    this.v4Slots = NO_SLOTS;
    this.v6Lengths = NO_LENGTHS;
    this.v6Slots = NO_SLOTS;
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
    for (const slot of this.v4Slots) {
      if (slot instanceof V4Entry) yield [slot.cidr, slot.value];
      else for (const entry of slot.values()) yield [entry.cidr, entry.value];
    }
    for (const slot of this.v6Slots) {
      if (slot instanceof V6Entry) {
        yield [slot.cidr, slot.value];
        continue;
      }
      for (const bucket of slot.values()) {
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
    const slots = this.v4Slots;
    for (let i = 0; i < lengths.length; i++) {
      const key = address & maskV4(lengths[i]!);
      const slot = slots[i]!;
      const entry = slot instanceof V4Entry ? (slot.key === key ? slot : undefined) : slot.get(key);
      if (entry !== undefined && accept(entry.value, context)) return entry;
    }
    return undefined;
  }

  private walkV6<C>(bytes: Uint8Array, offset: number, accept: (value: T, context: C) => boolean, context: C): Entry<T> | undefined {
    const lengths = this.v6Lengths;
    if (lengths.length === 0) return undefined;
    const slots = this.v6Slots;
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
      const slot = slots[i]!;
      if (slot instanceof V6Entry) {
        if (slot.hasWords(w0, w1, w2, w3) && accept(slot.value, context)) return slot;
        continue;
      }
      const bucket = slot.get(hashWords(w0, w1, w2, w3));
      if (bucket === undefined) continue;
      for (let j = 0; j < bucket.length; j++) {
        const entry = bucket[j]!;
        if (!entry.hasWords(w0, w1, w2, w3)) continue;
        if (accept(entry.value, context)) return entry;
        break;
      }
    }
    return undefined;
  }

  private findExact(cidr: Cidr): Entry<T> | undefined {
    if (cidr.address.family === 4) {
      const index = this.v4Lengths.indexOf(cidr.prefixLength);
      if (index < 0) return undefined;
      const key = cidr.address.value | 0;
      const slot = this.v4Slots[index]!;
      return slot instanceof V4Entry ? (slot.key === key ? slot : undefined) : slot.get(key);
    }
    const index = this.v6Lengths.indexOf(cidr.prefixLength);
    if (index < 0) return undefined;
    const bytes = cidr.address.bytes;
    const w0 = readI32(bytes, 0);
    const w1 = readI32(bytes, 4);
    const w2 = readI32(bytes, 8);
    const w3 = readI32(bytes, 12);
    const slot = this.v6Slots[index]!;
    if (slot instanceof V6Entry) return slot.hasWords(w0, w1, w2, w3) ? slot : undefined;
    return slot.get(hashWords(w0, w1, w2, w3))?.find((e) => e.hasWords(w0, w1, w2, w3));
  }

  private addV4Length(length: number, slot: V4Slot<T>): void {
    const index = descendingIndex(this.v4Lengths, length);
    this.v4Lengths = withLength(this.v4Lengths, index, length, V4_SINGLE_LENGTHS);
    this.v4Slots = inserted(this.v4Slots, index, slot);
  }

  private removeV4Length(index: number): void {
    this.v4Lengths = withoutLength(this.v4Lengths, index, V4_SINGLE_LENGTHS);
    this.v4Slots = removed(this.v4Slots, index);
  }

  private addV6Length(length: number, slot: V6Slot<T>): void {
    const index = descendingIndex(this.v6Lengths, length);
    this.v6Lengths = withLength(this.v6Lengths, index, length, V6_SINGLE_LENGTHS);
    this.v6Slots = inserted(this.v6Slots, index, slot);
  }

  private removeV6Length(index: number): void {
    this.v6Lengths = withoutLength(this.v6Lengths, index, V6_SINGLE_LENGTHS);
    this.v6Slots = removed(this.v6Slots, index);
  }
}

/**
 * Whether the uint32 IPv4 `address` lies in the /`length` network a `PrefixTable` would key `key` (its address
 * as int32): the test one table slot makes, for a caller keeping a single network in its own fields.
 */
export function inNetworkV4(key: number, length: number, address: number): boolean {
  return (address & maskV4(length)) === key;
}

/** `inNetworkV4` for the IPv6 address at `bytes[offset]` and a network given as four int32 words. */
export function inNetworkV6(w0: number, w1: number, w2: number, w3: number, length: number, bytes: Uint8Array, offset: number): boolean {
  return (
    (readI32(bytes, offset) & wordMask(length, 0)) === w0 &&
    (readI32(bytes, offset + 4) & wordMask(length, 1)) === w1 &&
    (readI32(bytes, offset + 8) & wordMask(length, 2)) === w2 &&
    (readI32(bytes, offset + 12) & wordMask(length, 3)) === w3
  );
}

interface Entry<T> {
  readonly cidr: Cidr;
  readonly value: T;
}

class V4Entry<T> {
  constructor(
    readonly key: number,
    public cidr: Cidr,
    public value: T,
  ) {}
}

class V6Entry<T> {
  constructor(
    public cidr: Cidr,
    public value: T,
    readonly w0: number,
    readonly w1: number,
    readonly w2: number,
    readonly w3: number,
  ) {}

  hasWords(w0: number, w1: number, w2: number, w3: number): boolean {
    return this.w0 === w0 && this.w1 === w1 && this.w2 === w2 && this.w3 === w3;
  }

  sameNetwork(other: V6Entry<T>): boolean {
    return this.hasWords(other.w0, other.w1, other.w2, other.w3);
  }

  hash(): number {
    return hashWords(this.w0, this.w1, this.w2, this.w3);
  }
}

/** A length's networks: the one entry, or a map by key from the second on. */
type V4Slot<T> = V4Entry<T> | Map<number, V4Entry<T>>;
type V6Slot<T> = V6Entry<T> | Map<number, V6Entry<T>[]>;

const NO_LENGTHS: readonly number[] = [];
const NO_SLOTS: readonly never[] = [];
/** `[length]` for each length: the lengths array of a table with one length, shared by all of them. */
const V4_SINGLE_LENGTHS: readonly (readonly number[])[] = Array.from({ length: 33 }, (_, length) => [length]);
const V6_SINGLE_LENGTHS: readonly (readonly number[])[] = Array.from({ length: 129 }, (_, length) => [length]);

function addToBucket<T>(map: Map<number, V6Entry<T>[]>, entry: V6Entry<T>): void {
  const hash = entry.hash();
  const bucket = map.get(hash);
  if (bucket === undefined) map.set(hash, [entry]);
  else bucket.push(entry);
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

function descendingIndex(lengths: readonly number[], length: number): number {
  let index = 0;
  while (index < lengths.length && lengths[index]! > length) index++;
  return index;
}

function withLength(lengths: readonly number[], index: number, length: number, singles: readonly (readonly number[])[]): readonly number[] {
  return lengths.length === 0 ? singles[length]! : inserted(lengths, index, length);
}

function withoutLength(lengths: readonly number[], index: number, singles: readonly (readonly number[])[]): readonly number[] {
  if (lengths.length === 1) return NO_LENGTHS;
  if (lengths.length === 2) return singles[lengths[1 - index]!]!;
  return removed(lengths, index);
}

function inserted<E>(items: readonly E[], index: number, item: E): E[] {
  return items.slice(0, index).concat([item], items.slice(index));
}

function removed<E>(items: readonly E[], index: number): readonly E[] {
  if (items.length === 1) return NO_SLOTS;
  return items.slice(0, index).concat(items.slice(index + 1));
}

function replaced<E>(items: readonly E[], index: number, item: E): E[] {
  const next = items.slice();
  next[index] = item;
  return next;
}
