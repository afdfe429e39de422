import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { systemRandom } from '../../src/util/random.ts';

test('systemRandom hands out every pooled byte once, across refills, for any mix of request sizes', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 60 }), (lengths) => {
      // A pool of 256 bytes refills every few requests; requests above 32 bytes bypass it.
      const rng = systemRandom(256);
      const seen: Uint8Array[] = [];
      for (const length of lengths) {
        const out = new Uint8Array(length);
        rng.fill(out);
        seen.push(out);
      }
      // 16 random bytes repeat by chance with probability 2^-128: a repeat means a byte range was reused.
      const keys = seen.filter((s) => s.length >= 16).map((s) => Buffer.from(s).toString('hex'));
      assert.equal(new Set(keys).size, keys.length);
    }),
  );
});

test('systemRandom words are uniform enough and in range', () => {
  const rng = systemRandom(64);
  const buckets = new Array<number>(16).fill(0);
  for (let i = 0; i < 16_000; i++) {
    const word = rng.u32();
    assert.ok(Number.isInteger(word) && word >= 0 && word < 2 ** 32);
    buckets[word >>> 28]!++;
    const float = rng.float();
    assert.ok(float >= 0 && float < 1);
  }
  // Each of 16 buckets expects 1,000; a bucket below 800 or above 1,200 is a 6-sigma event.
  for (const count of buckets) assert.ok(count > 800 && count < 1_200, `bucket count ${count}`);
});

test('systemRandom fills large requests directly and small ones with fresh bytes each time', () => {
  const rng = systemRandom(64);
  const big = new Uint8Array(1_000);
  rng.fill(big);
  assert.ok(big.some((b) => b !== 0));
  const a = new Uint8Array(8);
  const b = new Uint8Array(8);
  rng.fill(a);
  rng.fill(b);
  assert.notDeepEqual(a, b);
});
