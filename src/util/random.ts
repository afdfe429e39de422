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

/** Bytes drawn from the operating system at once by `systemRandom`: one call per ~170 STUN transaction ids. */
const SYSTEM_POOL_SIZE = 4096;

/**
 * Cryptographically secure randomness from the operating system. Small requests are served from a
 * pool refilled by one `randomFillSync` when used up: each call into node:crypto costs microseconds
 * (most of a STUN check's randomness cost), whatever its size. Every pooled byte is handed out once
 * and zeroed where it was, so key material does not linger in the pool.
 */
export function systemRandom(poolSize = SYSTEM_POOL_SIZE): RandomSource {
  const pool = new Uint8Array(poolSize);
  let used = poolSize;
  const take = (length: number): number => {
    if (used + length > poolSize) {
      randomFillSync(pool);
      used = 0;
    }
    const at = used;
    used += length;
    return at;
  };
  const u32 = (): number => {
    const at = take(4);
    const value = (pool[at]! | (pool[at + 1]! << 8) | (pool[at + 2]! << 16) | (pool[at + 3]! << 24)) >>> 0;
    pool.fill(0, at, at + 4);
    return value;
  };
  return {
    fill(target) {
      if (target.length > poolSize / 8) {
        randomFillSync(target);
        return;
      }
      const at = take(target.length);
      target.set(pool.subarray(at, at + target.length));
      pool.fill(0, at, at + target.length);
    },
    u32,
    float: () => u32() / 0x1_0000_0000,
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
