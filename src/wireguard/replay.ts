import { REPLAY_WINDOW } from './constants.ts';

const WORD_BITS = 32;
/** Words of a ring: the window plus one word of slack (RFC 6479). */
export const REPLAY_WORDS = (REPLAY_WINDOW + WORD_BITS) / WORD_BITS;
const WORD_MASK = REPLAY_WORDS - 1;

// The sliding replay window of RFC 6479: a ring of bit words in which whole words are cleared as
// the window advances, so an update costs O(1) amortised. The ring is REPLAY_WORDS words at
// `base` of storage its owner keeps; `next` is one past the highest counter accepted so far.

/** Whether `counter` could be accepted: new, and not older than the window. No state change. */
export function replayCheck(words: Uint32Array, base: number, next: number, counter: number): boolean {
  if (counter >= next) return true;
  if (counter + REPLAY_WINDOW < next) return false;
  return (words[base + (Math.floor(counter / WORD_BITS) & WORD_MASK)]! & (1 << (counter & 31))) === 0;
}

/** Marks a counter that passed `replayCheck` as seen; returns the new `next`. */
export function replayMark(words: Uint32Array, base: number, next: number, counter: number): number {
  if (counter >= next) {
    const currentWord = Math.floor((next - 1) / WORD_BITS);
    const targetWord = Math.floor(counter / WORD_BITS);
    const advance = Math.min(targetWord - (next === 0 ? -1 : currentWord), REPLAY_WORDS);
    for (let i = 1; i <= advance; i++) words[base + ((targetWord - advance + i) & WORD_MASK)] = 0;
    next = counter + 1;
  }
  words[base + (Math.floor(counter / WORD_BITS) & WORD_MASK)]! |= 1 << (counter & 31);
  return next;
}

/**
 * The replay rings of many sessions in one growing array (a Uint32Array per session would cost
 * ~200 B of heap besides its 256 bytes). A ring is named by its word offset; the array is
 * replaced when it grows, so read `words` at each use. It keeps the size of its busiest moment.
 */
export class ReplayRings {
  #words: Uint32Array;
  readonly #free: number[] = [];
  #handedOut = 0;

  constructor(initialRings = 4) {
    this.#words = new Uint32Array(Math.max(1, initialRings) * REPLAY_WORDS);
  }

  get words(): Uint32Array {
    return this.#words;
  }

  /** Rings in use. */
  get inUse(): number {
    return this.#handedOut - this.#free.length;
  }

  /** A zeroed ring's offset in `words`. */
  acquire(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) {
      this.#words.fill(0, reused, reused + REPLAY_WORDS);
      return reused;
    }
    const base = this.#handedOut * REPLAY_WORDS;
    if (base === this.#words.length) {
      const grown = new Uint32Array(this.#words.length * 2);
      grown.set(this.#words);
      this.#words = grown;
    }
    this.#handedOut++;
    return base;
  }

  /** Returns a ring; its owner must not touch it again. */
  release(base: number): void {
    this.#free.push(base);
  }
}

/** A standalone replay window over its own ring. */
export class ReplayWindow {
  readonly #words = new Uint32Array(REPLAY_WORDS);
  #next = 0;

  check(counter: number): boolean {
    return replayCheck(this.#words, 0, this.#next, counter);
  }

  /** Marks `counter` as seen; returns false if it was a replay or too old. */
  update(counter: number): boolean {
    if (!replayCheck(this.#words, 0, this.#next, counter)) return false;
    this.#next = replayMark(this.#words, 0, this.#next, counter);
    return true;
  }
}
