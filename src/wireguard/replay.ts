import { REPLAY_WINDOW } from './constants.ts';

const WORD_BITS = 32;
const WORDS = (REPLAY_WINDOW + WORD_BITS) / WORD_BITS;
const WORD_MASK = WORDS - 1;

/**
 * The sliding replay window of RFC 6479: a ring of bit words in which whole words are
 * cleared as the window advances, so an update costs O(1) amortised.
 */
export class ReplayWindow {
  readonly #bits = new Uint32Array(WORDS);
  /** One past the highest counter accepted so far. */
  #next = 0;

  /** Whether `counter` could be accepted: new, and not older than the window. No state change. */
  check(counter: number): boolean {
    if (counter >= this.#next) return true;
    if (counter + REPLAY_WINDOW < this.#next) return false;
    return (this.#bits[Math.floor(counter / WORD_BITS) & WORD_MASK]! & (1 << (counter & 31))) === 0;
  }

  /** Marks `counter` as seen; returns false if it was a replay or too old. */
  update(counter: number): boolean {
    if (!this.check(counter)) return false;
    if (counter >= this.#next) {
      const currentWord = Math.floor((this.#next - 1) / WORD_BITS);
      const targetWord = Math.floor(counter / WORD_BITS);
      const advance = Math.min(targetWord - (this.#next === 0 ? -1 : currentWord), WORDS);
      for (let i = 1; i <= advance; i++) {
        this.#bits[(targetWord - advance + i) & WORD_MASK] = 0;
      }
      this.#next = counter + 1;
    }
    this.#bits[Math.floor(counter / WORD_BITS) & WORD_MASK]! |= 1 << (counter & 31);
    return true;
  }
}
