import { REPLAY_WINDOW } from './constants.ts';

const WORD_BITS = 32;
/** Words of a ring: the window plus one word of slack (RFC 6479). */
export const REPLAY_WORDS = (REPLAY_WINDOW + WORD_BITS) / WORD_BITS;
const WORD_MASK = REPLAY_WORDS - 1;

// The sliding replay window of RFC 6479: a ring of bit words in which whole words are cleared as
// the window advances, so an update costs O(1) amortised. The ring is REPLAY_WORDS words at
// `base` of storage its owner keeps; `next` is one past the highest counter accepted so far.
// The word that holds `next - 1` is not read from the ring: its owner keeps it as `top` (its
// ring slot is stale until the window moves past it), so that counters arriving in order, which
// land in that word, leave the ring alone; the ring is written once per 32 of them.

/** The word holding the highest accepted counter (-1 before any). */
function topWord(next: number): number {
  return next === 0 ? -1 : Math.floor((next - 1) / WORD_BITS);
}

/** Whether `counter` could be accepted: new, and not older than the window. No state change. */
export function replayCheck(words: Uint32Array, base: number, next: number, top: number, counter: number): boolean {
  if (counter >= next) return true;
  if (counter + REPLAY_WINDOW < next) return false;
  const word = Math.floor(counter / WORD_BITS);
  const bits = word === topWord(next) ? top : words[base + (word & WORD_MASK)]!;
  return (bits & (1 << (counter & 31))) === 0;
}

/**
 * Marks a counter that passed `replayCheck` as seen; returns the new `top`. The new `next` is
 * the larger of `next` and counter + 1.
 */
export function replayMark(words: Uint32Array, base: number, next: number, top: number, counter: number): number {
  const word = Math.floor(counter / WORD_BITS);
  const bit = 1 << (counter & 31);
  const current = topWord(next);
  if (word === current) return top | bit;
  if (counter < next) {
    words[base + (word & WORD_MASK)]! |= bit;
    return top;
  }
  // The window moves to a later word: the old top goes into its slot, the words in between are
  // cleared, and the new top word starts empty (its own slot is stale from now on).
  if (current >= 0) words[base + (current & WORD_MASK)] = top;
  const advance = Math.min(word - current, REPLAY_WORDS);
  for (let i = 1; i < advance; i++) words[base + ((word - advance + i) & WORD_MASK)] = 0;
  return bit;
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
  #top = 0;

  check(counter: number): boolean {
    return replayCheck(this.#words, 0, this.#next, this.#top, counter);
  }

  /** Marks `counter` as seen; returns false if it was a replay or too old. */
  update(counter: number): boolean {
    if (!replayCheck(this.#words, 0, this.#next, this.#top, counter)) return false;
    this.#top = replayMark(this.#words, 0, this.#next, this.#top, counter);
    if (counter >= this.#next) this.#next = counter + 1;
    return true;
  }
}
