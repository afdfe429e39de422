const EMPTY = -1;
const GOLDEN = 0x9e37_79b1;
const MIN_BITS = 4;

/**
 * A map from non-negative 31-bit integers (the tunnels' 24-bit indices) to values, for the data
 * path: keys and values interleaved in one array, open addressing with linear probing, at most
 * half full. A lookup of a random key reads one cache line of the table, where a Map reads a
 * bucket and then an entry elsewhere in its store.
 */
export class IndexTable<T> {
  /** Key, value, key, value, ...; a free pair has the key EMPTY. */
  #slots: (number | T | undefined)[];
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
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    for (let pair = this.#home(key); ; pair = (pair + 1) & mask) {
      const found = slots[2 * pair];
      if (found === key) return slots[2 * pair + 1] as T;
      if (found === EMPTY) return undefined;
    }
  }

  set(key: number, value: T): void {
    if (!Number.isInteger(key) || key < 0 || key > 0x7fff_ffff) throw new RangeError(`not a table key: ${key}`);
    const pair = this.#find(key);
    if (this.#slots[2 * pair] === key) {
      this.#slots[2 * pair + 1] = value;
      return;
    }
    if (2 * (this.#size + 1) > 1 << this.#bits) {
      this.#grow();
      this.set(key, value);
      return;
    }
    this.#slots[2 * pair] = key;
    this.#slots[2 * pair + 1] = value;
    this.#size++;
  }

  /** Removes `key`; whether it was there. Later keys of its probe run move back into the gap (no tombstones). */
  delete(key: number): boolean {
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    let hole = this.#find(key);
    if (slots[2 * hole] !== key) return false;
    for (let pair = (hole + 1) & mask; ; pair = (pair + 1) & mask) {
      const moving = slots[2 * pair];
      if (moving === EMPTY) break;
      const home = this.#home(moving as number);
      // A key stays where it is while its home lies cyclically in (hole, pair].
      const staysPut = hole < pair ? home > hole && home <= pair : home > hole || home <= pair;
      if (staysPut) continue;
      slots[2 * hole] = moving;
      slots[2 * hole + 1] = slots[2 * pair + 1];
      hole = pair;
    }
    slots[2 * hole] = EMPTY;
    slots[2 * hole + 1] = undefined;
    this.#size--;
    return true;
  }

  #home(key: number): number {
    return Math.imul(key, GOLDEN) >>> (32 - this.#bits);
  }

  /** The pair holding `key`, or the free pair where it would go. */
  #find(key: number): number {
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    let pair = this.#home(key);
    while (slots[2 * pair] !== key && slots[2 * pair] !== EMPTY) pair = (pair + 1) & mask;
    return pair;
  }

  #grow(): void {
    const old = this.#slots;
    this.#bits++;
    this.#slots = emptySlots(1 << this.#bits);
    this.#size = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== EMPTY) this.set(old[i] as number, old[i + 1] as T);
  }
}

function emptySlots(pairs: number): (number | undefined)[] {
  const slots: (number | undefined)[] = [];
  for (let i = 0; i < pairs; i++) slots.push(EMPTY, undefined);
  return slots;
}
