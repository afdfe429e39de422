import { randomFillSync } from 'node:crypto';

/**
 * The only source of randomness the sans-IO core may use. The IO shell passes
 * `systemRandom()`; tests and the simulation pass `seededRandom(seed)`.
 */
export interface RandomSource {
  /** Fills `target` with random bytes. */
  fill(target: Uint8Array): void;
  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number;
  /** A float in [0, 1). */
  float(): number;
}

export function randomBytes(rng: RandomSource, length: number): Uint8Array {
  const out = new Uint8Array(length);
  rng.fill(out);
  return out;
}

/** Cryptographically secure randomness from the operating system. */
export function systemRandom(): RandomSource {
  const word = new Uint32Array(1);
  return {
    fill(target) {
      randomFillSync(target);
    },
    u32() {
      randomFillSync(word);
      return word[0]!;
    },
    float() {
      randomFillSync(word);
      return word[0]! / 0x1_0000_0000;
    },
  };
}

/** Deterministic randomness (splitmix32) for tests and simulations. Not for keys in production. */
export function seededRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  return {
    fill(target) {
      for (let i = 0; i < target.length; i += 4) {
        const v = next();
        for (let j = 0; j < 4 && i + j < target.length; j++) target[i + j] = (v >>> (8 * j)) & 0xff;
      }
    },
    u32: next,
    float: () => next() / 0x1_0000_0000,
  };
}
