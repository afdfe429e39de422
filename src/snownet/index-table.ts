const EMPTY = -1;
const GOLDEN = 0x9e37_79b1;
const MIN_BITS = 4;
/** Words per entry: key, value and three read-ahead hints (40 bytes with Node's 8-byte slots). */
const STRIDE = 5;
export const READ_AHEAD_HINTS = STRIDE - 2;

/**
 * A map from non-negative 31-bit integers (the tunnels' 24-bit indices) to values, for the data
 * path: entries interleaved in one array, open addressing with linear probing, at most half full.
 * A lookup of a random key reads one entry (one line, or two adjacent ones), where a Map reads a bucket and then
 * an entry elsewhere in its store.
 *
 * Each entry also carries three read-ahead hints: objects the caller will read next for this key
 * (the connection's tunnel, its last session and its owner). With them beside the value, those
 * objects are requested at once, side by side with it, instead of one after another as each pointer
 * is followed; at thousands of clients each such wait is a cache miss. A hint is never trusted:
 * a stale one costs a wasted read, nothing else.
 */
export class IndexTable<T> {
  /** Key, value, the hints, key, ...; a free entry has the key EMPTY. */
  #slots: unknown[];
  #bits: number;
  #size = 0;

  constructor() {
    this.#bits = MIN_BITS;
    this.#slots = emptySlots(1 << MIN_BITS);
  }

  get size(): number {
    return this.#size;
  }

  get(key: number): T | undefined {
    const at = this.find(key);
    return at === -1 ? undefined : (this.#slots[at + 1] as T);
  }

  /** Where `key`'s entry is, for `valueAt` and the hints (valid until the table next changes), or -1. */
  find(key: number): number {
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    for (let entry = this.#home(key); ; entry = (entry + 1) & mask) {
      const found = slots[STRIDE * entry];
      if (found === key) return STRIDE * entry;
      if (found === EMPTY) return -1;
    }
  }

  valueAt(at: number): T {
    return this.#slots[at + 1] as T;
  }

  hint(at: number, which: number): unknown {
    return this.#slots[at + 2 + which];
  }

  /** Sets a hint of `key`'s entry, found at `at` by `find` (nothing if the entry has moved since). */
  setHint(at: number, key: number, which: number, hint: unknown): void {
    if (this.#slots[at] === key) this.#slots[at + 2 + which] = hint;
  }

  /** Maps `key` to `value`; a new value starts without hints. */
  set(key: number, value: T): void {
    if (!Number.isInteger(key) || key < 0 || key > 0x7fff_ffff) throw new RangeError(`not a table key: ${key}`);
    const entry = this.#place(key);
    const slots = this.#slots;
    if (slots[STRIDE * entry] !== key) {
      if (2 * (this.#size + 1) > 1 << this.#bits) {
        this.#grow();
        this.set(key, value);
        return;
      }
      slots[STRIDE * entry] = key;
      this.#size++;
    }
    slots[STRIDE * entry + 1] = value;
    for (let h = 2; h < STRIDE; h++) slots[STRIDE * entry + h] = undefined;
  }

  /** Removes `key`; whether it was there. Later keys of its probe run move back into the gap (no tombstones). */
  delete(key: number): boolean {
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    let hole = this.#place(key);
    if (slots[STRIDE * hole] !== key) return false;
    for (let entry = (hole + 1) & mask; ; entry = (entry + 1) & mask) {
      const moving = slots[STRIDE * entry];
      if (moving === EMPTY) break;
      const home = this.#home(moving as number);
      // A key stays where it is while its home lies cyclically in (hole, entry].
      const staysPut = hole < entry ? home > hole && home <= entry : home > hole || home <= entry;
      if (staysPut) continue;
      for (let w = 0; w < STRIDE; w++) slots[STRIDE * hole + w] = slots[STRIDE * entry + w];
      hole = entry;
    }
    slots[STRIDE * hole] = EMPTY;
    for (let w = 1; w < STRIDE; w++) slots[STRIDE * hole + w] = undefined;
    this.#size--;
    return true;
  }

  #home(key: number): number {
    return Math.imul(key, GOLDEN) >>> (32 - this.#bits);
  }

  /** The entry holding `key`, or the free entry where it would go. */
  #place(key: number): number {
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    let entry = this.#home(key);
    while (slots[STRIDE * entry] !== key && slots[STRIDE * entry] !== EMPTY) entry = (entry + 1) & mask;
    return entry;
  }

  #grow(): void {
    const old = this.#slots;
    this.#bits++;
    this.#slots = emptySlots(1 << this.#bits);
    this.#size = 0;
    for (let i = 0; i < old.length; i += STRIDE) {
      if (old[i] === EMPTY) continue;
      this.set(old[i] as number, old[i + 1] as T);
      const at = this.find(old[i] as number);
      for (let h = 2; h < STRIDE; h++) this.#slots[at + h] = old[i + h];
    }
  }
}

function emptySlots(entries: number): unknown[] {
  const slots: unknown[] = [];
  for (let i = 0; i < entries; i++) {
    slots.push(EMPTY);
    for (let w = 1; w < STRIDE; w++) slots.push(undefined);
  }
  return slots;
}
