import type { RandomSource } from '../util/random.ts';

const MASK_24 = 0xff_ffff;
const LFSR_TAPS = 0xd8_0000;

/**
 * Hands out unique, hard-to-guess 24-bit tunnel indices: a maximal-length 24-bit Galois LFSR
 * from a random seed, masked with a random value. It repeats only after 2^24 − 1 tunnels. A
 * tunnel puts its value in the upper 24 bits of every session index it announces.
 */
export class SessionIndexAllocator {
  readonly #initial: number;
  readonly #mask: number;
  #lfsr: number;
  #exhausted = false;

  constructor(rng: RandomSource) {
    this.#initial = nonZero24(rng);
    this.#mask = nonZero24(rng);
    this.#lfsr = this.#initial;
  }

  /** The next tunnel index, or undefined once all 2^24 − 1 have been used. */
  next(): number | undefined {
    if (this.#exhausted) return undefined;
    const value = ((this.#lfsr - 1) ^ this.#mask) & MASK_24;
    this.#lfsr = (this.#lfsr >>> 1) ^ (this.#lfsr & 1 ? LFSR_TAPS : 0);
    if (this.#lfsr === this.#initial) this.#exhausted = true;
    return value;
  }
}

function nonZero24(rng: RandomSource): number {
  for (;;) {
    const value = rng.u32() & MASK_24;
    if (value !== 0) return value;
  }
}
