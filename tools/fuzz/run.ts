/**
 * The fuzz loop of `npm run fuzz`, shared with its smoke test: `runs` inputs for one target, of
 * every 8 inputs 6 mutations of a seed (1 to 4 byte-level rounds; for JSON targets half of them
 * structural), 1 random bytes and 1 a seed truncated or mutated. A throw is a crash.
 */
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { mutate, randomBytesOf } from '../attacker/mutate.ts';
import { mutateJson } from './json-mutate.ts';
import type { FuzzTarget } from './targets.ts';

export interface Crash {
  readonly index: number;
  readonly input: Uint8Array;
  readonly error: string;
  /** The top of the stack, which tells distinct crashes apart. */
  readonly where: string;
}

export interface Outcome {
  readonly name: string;
  readonly inputs: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly crashes: number;
  /** The first crash at each distinct place (20 at most). */
  readonly distinct: readonly Crash[];
  readonly slowestUs: number;
  readonly seconds: number;
}

export function fuzz(target: FuzzTarget, runs: number, seed: number, onCrash: (crash: Crash) => void = () => undefined): Outcome {
  const rng = seededRandom(seed * 7919 + hash(target.name));
  const seeds = target.seeds.length > 0 ? target.seeds : [new Uint8Array(0)];
  let accepted = 0;
  let rejected = 0;
  let crashes = 0;
  let slowest = 0;
  const distinct: Crash[] = [];
  const places = new Set<string>();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) {
    const input = nextInput(rng, target, seeds, i);
    const kept = input.slice();
    const before = performance.now();
    try {
      if (target.run(input, i)) accepted++;
      else rejected++;
    } catch (error) {
      crashes++;
      const where = error instanceof Error ? (error.stack ?? '').split('\n').slice(1, 4).join(' | ') : '';
      if (!places.has(where) && places.size < 20) {
        places.add(where);
        const crash = { index: i, input: kept, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error), where };
        distinct.push(crash);
        onCrash(crash);
      }
    }
    const took = performance.now() - before;
    if (took > slowest) slowest = took;
  }
  return { name: target.name, inputs: runs, accepted, rejected, crashes, distinct, slowestUs: Math.round(slowest * 1000), seconds: (performance.now() - t0) / 1000 };
}

function nextInput(rng: RandomSource, target: FuzzTarget, seeds: readonly Uint8Array[], i: number): Uint8Array {
  const pick = seeds[rng.u32() % seeds.length]!;
  switch (i & 7) {
    case 0:
      return randomBytesOf(rng, rng.u32() % Math.min(target.maxLength, 1500));
    case 1:
      return (rng.u32() & 1) === 0 ? pick.slice(0, rng.u32() % (pick.length + 1)) : mutate(rng, pick, target.maxLength);
    default:
      if (target.mutateJson === true && (i & 1) === 0) return mutateJson(rng, pick, target.maxLength);
      return mutate(rng, pick, target.maxLength);
  }
}

function hash(text: string): number {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) >>> 0;
  return h;
}
