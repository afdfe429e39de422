// The storage of every queue without any: read, never written (`set` allocates a queue's own first).
const NO_KEYS: readonly unknown[] = [];
const NO_TIMES: number[] = [];
const NO_SLOTS: ReadonlyMap<unknown, number> = new Map();

/**
 * Deadlines of many owners (connections, clients, allocations) in one indexed binary min-heap.
 *
 * An owner has at most one deadline. Setting, moving and removing it cost O(log n); the earliest
 * deadline is read in O(1); `popDue` hands out only the owners that are due. This is what lets a
 * state machine with thousands of children answer `pollTimeout` and `handleTimeout` without
 * visiting the children that have nothing to do.
 *
 * Nothing here allocates after an owner's first insertion: positions live in a map from owner to
 * slot, and the heap arrays only grow. A queue that never held a deadline (or was cleared) holds no
 * map and no arrays: thousands of connections and clients each own a queue that is mostly empty.
 */
export class DeadlineQueue<K> {
  private keys: K[] = NO_KEYS as K[];
  private times: number[] = NO_TIMES;
  private slots: Map<K, number> = NO_SLOTS as Map<K, number>;
  /** Heap operations performed (a test hook: structural tests count work, not time). */
  operations = 0;

  get size(): number {
    return this.slots.size;
  }

  /** The earliest deadline, or `Infinity` when there is none. */
  peekTime(): number {
    return this.slots.size === 0 ? Infinity : this.times[0]!;
  }

  /** The owner of the earliest deadline. */
  peekKey(): K | undefined {
    return this.slots.size === 0 ? undefined : this.keys[0];
  }

  has(key: K): boolean {
    return this.slots.has(key);
  }

  timeOf(key: K): number | undefined {
    const slot = this.slots.get(key);
    return slot === undefined ? undefined : this.times[slot];
  }

  /** Sets (or moves) `key`'s deadline; `undefined` or `Infinity` removes it. */
  set(key: K, time: number | undefined): void {
    if (time === undefined || time === Infinity) {
      this.delete(key);
      return;
    }
    this.operations++;
    const slot = this.slots.get(key);
    if (slot === undefined) {
      if (this.slots === NO_SLOTS) this.allocate();
      const end = this.slots.size;
      this.keys[end] = key;
      this.times[end] = time;
      this.slots.set(key, end);
      this.siftUp(end);
      return;
    }
    const before = this.times[slot]!;
    if (time === before) return;
    this.times[slot] = time;
    if (time < before) this.siftUp(slot);
    else this.siftDown(slot);
  }

  delete(key: K): boolean {
    const slot = this.slots.get(key);
    if (slot === undefined) return false;
    this.operations++;
    this.slots.delete(key);
    const last = this.slots.size;
    if (slot !== last) {
      this.move(last, slot);
      this.siftDown(slot);
      this.siftUp(slot);
    }
    this.keys.length = last;
    this.times.length = last;
    return true;
  }

  /**
   * Removes and returns the owner of the earliest deadline if it is at or before `now`, otherwise
   * `undefined`. Drain with `while ((key = queue.popDue(now)) !== undefined)`.
   */
  popDue(now: number): K | undefined {
    if (this.slots.size === 0 || this.times[0]! > now) return undefined;
    const key = this.keys[0]!;
    this.delete(key);
    return key;
  }

  /** Removes every deadline and lets the storage go. */
  clear(): void {
    this.keys = NO_KEYS as K[];
    this.times = NO_TIMES;
    this.slots = NO_SLOTS as Map<K, number>;
  }

  /** Whether the queue holds storage (a test hook: an empty queue holds none until its first `set`). */
  get allocated(): boolean {
    return this.slots !== NO_SLOTS;
  }

  private allocate(): void {
    this.keys = [];
    this.times = [];
    this.slots = new Map();
  }

  private move(from: number, to: number): void {
    const key = this.keys[from]!;
    this.keys[to] = key;
    this.times[to] = this.times[from]!;
    this.slots.set(key, to);
  }

  private siftUp(slot: number): void {
    const key = this.keys[slot]!;
    const time = this.times[slot]!;
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      if (this.times[parent]! <= time) break;
      this.move(parent, slot);
      slot = parent;
    }
    this.keys[slot] = key;
    this.times[slot] = time;
    this.slots.set(key, slot);
  }

  private siftDown(slot: number): void {
    const size = this.slots.size;
    const key = this.keys[slot]!;
    const time = this.times[slot]!;
    for (;;) {
      const left = 2 * slot + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && this.times[right]! < this.times[left]! ? right : left;
      if (this.times[child]! >= time) break;
      this.move(child, slot);
      slot = child;
    }
    this.keys[slot] = key;
    this.times[slot] = time;
    this.slots.set(key, slot);
  }
}
