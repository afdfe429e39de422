/**
 * Byte mutations for fuzzing, deterministic from a seeded RandomSource: bit flips, byte
 * overwrites with interesting values, truncation, extension, chunk duplication and removal,
 * and 16/32-bit length-like fields set to boundary values. Used by the red-team datagram fuzzer
 * and by `npm run fuzz`.
 */
import type { RandomSource } from '../../src/util/random.ts';
import { concat } from './raw.ts';

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x20, 0x10];
const INTERESTING_16 = [0, 1, 0x7fff, 0x8000, 0xffff, 0x00ff, 0x0100, 1280, 1500, 65535 - 8];

/** A mutated copy of `input` (never longer than `maxLength`). */
export function mutate(rng: RandomSource, input: Uint8Array, maxLength = 1500): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const rounds = 1 + (rng.u32() % 4);
  for (let round = 0; round < rounds; round++) bytes = mutateOnce(rng, bytes, maxLength);
  return bytes;
}

function mutateOnce(rng: RandomSource, bytes: Uint8Array, maxLength: number): Uint8Array {
  const at = (): number => (bytes.length === 0 ? 0 : rng.u32() % bytes.length);
  switch (rng.u32() % 9) {
    case 0: {
      if (bytes.length === 0) return bytes;
      const i = at();
      bytes[i] = bytes[i]! ^ (1 << (rng.u32() % 8));
      return bytes;
    }
    case 1: {
      if (bytes.length === 0) return bytes;
      bytes[at()] = INTERESTING_8[rng.u32() % INTERESTING_8.length]!;
      return bytes;
    }
    case 2: {
      if (bytes.length < 2) return bytes;
      const i = rng.u32() % (bytes.length - 1);
      const value = INTERESTING_16[rng.u32() % INTERESTING_16.length]!;
      bytes[i] = value >>> 8;
      bytes[i + 1] = value & 0xff;
      return bytes;
    }
    case 3:
      return bytes.subarray(0, rng.u32() % (bytes.length + 1)).slice();
    case 4: {
      const extra = new Uint8Array(Math.min(maxLength - bytes.length, 1 + (rng.u32() % 64)));
      if (extra.length <= 0) return bytes;
      rng.fill(extra);
      return concat(bytes, extra);
    }
    case 5: {
      if (bytes.length === 0) return bytes;
      const start = at();
      const end = Math.min(bytes.length, start + 1 + (rng.u32() % 32));
      return concat(bytes.subarray(0, start), bytes.subarray(end));
    }
    case 6: {
      if (bytes.length === 0) return bytes;
      const start = at();
      const chunk = bytes.subarray(start, Math.min(bytes.length, start + 1 + (rng.u32() % 32)));
      const joined = concat(bytes.subarray(0, start), chunk, bytes.subarray(start));
      return joined.length > maxLength ? joined.subarray(0, maxLength).slice() : joined;
    }
    case 7: {
      const i = at();
      const run = bytes.subarray(i, Math.min(bytes.length, i + 1 + (rng.u32() % 16)));
      run.fill(rng.u32() & 0xff);
      return bytes;
    }
    default: {
      if (bytes.length < 4) return bytes;
      const i = rng.u32() % (bytes.length - 3);
      const value = rng.u32();
      bytes[i] = value >>> 24;
      bytes[i + 1] = (value >>> 16) & 0xff;
      bytes[i + 2] = (value >>> 8) & 0xff;
      bytes[i + 3] = value & 0xff;
      return bytes;
    }
  }
}

/** `length` random bytes. */
export function randomBytesOf(rng: RandomSource, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  rng.fill(bytes);
  return bytes;
}
