// The storage of every queue without any: read, never written (`set` allocates a queue's own first).
const NO_KEYS: readonly unknown[] = [];
const NO_NUMBERS: number[] = [];
const NO_IDS: ReadonlyMap<unknown, number> = new Map();

/**
 * Deadlines of many owners (connections, clients, allocations) in one indexed binary min-heap.
 *
 * An owner has at most one deadline. Setting, moving and removing it cost O(log n); the earliest
 * deadline is read in O(1); `popDue` hands out only the owners that are due. This is what lets a
 * state machine with thousands of children answer `pollTimeout` and `handleTimeout` without
 * visiting the children that have nothing to do.
 *
 * An owner gets a small entry id on insertion (the map from owner to id is read once per call);
 * the heap holds ids and times, and each id's heap position sits in an array. So a sift step moves
 * numbers between arrays: it neither updates the map nor touches the owners, whose identity hashes
 * would be cold memory at ten thousand connections. Nothing allocates after an owner's first
 * insertion (ids are reused). A queue that never held a deadline (or was cleared) holds no map and
 * no arrays: thousands of connections and clients each own a queue that is mostly empty.
 */
export class DeadlineQueue<K> {
  private ids: Map<K, number> = NO_IDS as Map<K, number>;
  /** By entry id: the owner (undefined while the id is free) and its position in the heap. */
  private keyOf: (K | undefined)[] = NO_KEYS as K[];
  private positionOf: number[] = NO_NUMBERS;
  /** Entry ids free for reuse. */
  private freeIds: number[] = NO_NUMBERS;
  /** The heap: entry id and deadline by position. */
  private heapIds: number[] = NO_NUMBERS;
  private heapTimes: number[] = NO_NUMBERS;
  private count = 0;
  /** Heap operations performed (a test hook: structural tests count work, not time). */
  operations = 0;

  get size(): number {
    return this.count;
  }

  /** The earliest deadline, or `Infinity` when there is none. */
  peekTime(): number {
    return this.count === 0 ? Infinity : this.heapTimes[0]!;
  }

  /** The owner of the earliest deadline. */
  peekKey(): K | undefined {
    return this.count === 0 ? undefined : this.keyOf[this.heapIds[0]!];
  }

  has(key: K): boolean {
    return this.ids.has(key);
  }

  timeOf(key: K): number | undefined {
    const id = this.ids.get(key);
    return id === undefined ? undefined : this.heapTimes[this.positionOf[id]!];
  }

  /** Sets (or moves) `key`'s deadline; `undefined` or `Infinity` removes it. */
  set(key: K, time: number | undefined): void {
    if (time === undefined || time === Infinity) {
      this.delete(key);
      return;
    }
    this.operations++;
    const id = this.ids.get(key);
    if (id === undefined) {
      this.insert(key, time);
      return;
    }
    const position = this.positionOf[id]!;
    const before = this.heapTimes[position]!;
    if (time === before) return;
    this.heapTimes[position] = time;
    if (time < before) this.siftUp(position);
    else this.siftDown(position);
  }

  delete(key: K): boolean {
    const id = this.ids.get(key);
    if (id === undefined) return false;
    this.operations++;
    this.ids.delete(key);
    this.removeAt(this.positionOf[id]!, id);
    return true;
  }

  /**
   * Removes and returns the owner of the earliest deadline if it is at or before `now`, otherwise
   * `undefined`. Drain with `while ((key = queue.popDue(now)) !== undefined)`.
   */
  popDue(now: number): K | undefined {
    if (this.count === 0 || this.heapTimes[0]! > now) return undefined;
    this.operations++;
    const id = this.heapIds[0]!;
    const key = this.keyOf[id]!;
    this.ids.delete(key);
    this.removeAt(0, id);
    return key;
  }

  /** Removes every deadline and lets the storage go. */
  clear(): void {
    this.ids = NO_IDS as Map<K, number>;
    this.keyOf = NO_KEYS as K[];
    this.positionOf = NO_NUMBERS;
    this.freeIds = NO_NUMBERS;
    this.heapIds = NO_NUMBERS;
    this.heapTimes = NO_NUMBERS;
    this.count = 0;
  }

  /** Whether the queue holds storage (a test hook: an empty queue holds none until its first `set`). */
  get allocated(): boolean {
    return this.ids !== NO_IDS;
  }

  private insert(key: K, time: number): void {
    if (this.ids === NO_IDS) {
      this.ids = new Map();
      this.keyOf = [];
      this.positionOf = [];
      this.freeIds = [];
      this.heapIds = [];
      this.heapTimes = [];
    }
    const id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.keyOf.length;
    this.ids.set(key, id);
    this.keyOf[id] = key;
    const position = this.count++;
    this.heapIds[position] = id;
    this.heapTimes[position] = time;
    this.positionOf[id] = position;
    this.siftUp(position);
  }

  /** Takes entry `id` out of the heap at `position` and frees the id (its owner already left `ids`). */
  private removeAt(position: number, id: number): void {
    this.keyOf[id] = undefined;
    this.freeIds.push(id);
    const last = --this.count;
    if (position === last) return;
    const movedId = this.heapIds[last]!;
    this.place(position, movedId, this.heapTimes[last]!);
    this.siftDown(position);
    this.siftUp(this.positionOf[movedId]!);
  }

  private siftUp(position: number): void {
    const heapIds = this.heapIds;
    const heapTimes = this.heapTimes;
    const id = heapIds[position]!;
    const time = heapTimes[position]!;
    while (position > 0) {
      const parent = (position - 1) >> 1;
      const parentTime = heapTimes[parent]!;
      if (parentTime <= time) break;
      this.place(position, heapIds[parent]!, parentTime);
      position = parent;
    }
    this.place(position, id, time);
  }

  private siftDown(position: number): void {
    const heapIds = this.heapIds;
    const heapTimes = this.heapTimes;
    const size = this.count;
    const id = heapIds[position]!;
    const time = heapTimes[position]!;
    for (;;) {
      const left = 2 * position + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && heapTimes[right]! < heapTimes[left]! ? right : left;
      const childTime = heapTimes[child]!;
      if (childTime >= time) break;
      this.place(position, heapIds[child]!, childTime);
      position = child;
    }
    this.place(position, id, time);
  }

  /** Puts entry `id` with deadline `time` at heap `position`. */
  private place(position: number, id: number, time: number): void {
    this.heapIds[position] = id;
    this.heapTimes[position] = time;
    this.positionOf[id] = position;
  }
}
