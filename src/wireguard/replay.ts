import { REPLAY_WINDOW } from './constants.ts';

const WORD_BITS = 32;
/** Words of the ring: the window plus one word of slack (RFC 6479). */
export const REPLAY_WORDS = (REPLAY_WINDOW + WORD_BITS) / WORD_BITS;
const WORD_MASK = REPLAY_WORDS - 1;

// The sliding replay window of RFC 6479: a ring of bit words in which whole words are cleared as
// the window advances, so an update costs O(1) amortised. The ring is storage its owner allocates
// (a session keeps it with its other receive state); `next` is one past the highest counter
// accepted so far.

/** Whether `counter` could be accepted: new, and not older than the window. No state change. */
export function replayCheck(bits: Uint32Array, next: number, counter: number): boolean {
  if (counter >= next) return true;
  if (counter + REPLAY_WINDOW < next) return false;
  return (bits[Math.floor(counter / WORD_BITS) & WORD_MASK]! & (1 << (counter & 31))) === 0;
}

/** Marks a counter that passed `replayCheck` as seen; returns the new `next`. */
export function replayMark(bits: Uint32Array, next: number, counter: number): number {
  if (counter >= next) {
    const currentWord = Math.floor((next - 1) / WORD_BITS);
    const targetWord = Math.floor(counter / WORD_BITS);
    const advance = Math.min(targetWord - (next === 0 ? -1 : currentWord), REPLAY_WORDS);
    for (let i = 1; i <= advance; i++) bits[(targetWord - advance + i) & WORD_MASK] = 0;
    next = counter + 1;
  }
  bits[Math.floor(counter / WORD_BITS) & WORD_MASK]! |= 1 << (counter & 31);
  return next;
}

/** A standalone replay window over its own ring. */
export class ReplayWindow {
  readonly #bits = new Uint32Array(REPLAY_WORDS);
  #next = 0;

  check(counter: number): boolean {
    return replayCheck(this.#bits, this.#next, counter);
  }

  /** Marks `counter` as seen; returns false if it was a replay or too old. */
  update(counter: number): boolean {
    if (!replayCheck(this.#bits, this.#next, counter)) return false;
    this.#next = replayMark(this.#bits, this.#next, counter);
    return true;
  }
}
