/**
 * A first-in first-out queue on a growable ring: `push` and `shift` are O(1) and allocate nothing
 * once the ring has grown to the queue's working size (an array's `shift()` moves every element).
 * Shifted slots are cleared so the queue keeps nothing alive.
 *
 * The ring is allocated on the first `push`: thousands of connections each own a few queues that
 * stay empty for their whole life, and an empty queue holds no slots.
 */
export class RingQueue<T> {
  private slots: (T | undefined)[];
  private head = 0;
  private count = 0;

  /** `initialCapacity`: the ring's size at the first `push` (rounded up to a power of two). */
  constructor(initialCapacity = 8) {
    let log2 = 0;
    while (1 << log2 < initialCapacity && log2 < MAX_LOG2) log2++;
    this.slots = unallocated(log2);
  }

  get length(): number {
    return this.count;
  }

  /** Slots held (a test hook: 0 until the first push). */
  get capacity(): number {
    return this.slots.length;
  }

  push(item: T): void {
    if (this.count === this.slots.length) this.grow();
    this.slots[(this.head + this.count) & (this.slots.length - 1)] = item;
    this.count++;
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.slots[this.head];
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) & (this.slots.length - 1);
    this.count--;
    return item;
  }

  /** The oldest item without removing it. */
  peek(): T | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  /** Empties the queue and lets its ring go (the next `push` allocates one of the size it had). */
  clear(): void {
    const size = this.slots.length;
    if (size !== 0) this.slots = unallocated(31 - Math.clz32(size));
    this.head = 0;
    this.count = 0;
  }

  private grow(): void {
    const old = this.slots;
    const size = old.length === 0 ? 1 << UNALLOCATED.indexOf(old as never[]) : old.length * 2;
    const next = new Array<T | undefined>(size).fill(undefined);
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) & (old.length - 1)];
    this.slots = next;
    this.head = 0;
  }
}

const MAX_LOG2 = 30;

/**
 * The shared empty rings of unallocated queues, one per size of first allocation (index: its log2): an
 * empty queue stores no number of its own, its ring's identity says what to grow to. Never written to (a
 * queue writes only after `grow` replaced the ring).
 */
const UNALLOCATED: readonly never[][] = Array.from({ length: MAX_LOG2 + 1 }, () => []);

function unallocated<T>(log2: number): T[] {
  return UNALLOCATED[log2]! as T[];
}
