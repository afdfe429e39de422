// The node's connections by tunnel index: an open-addressing table that must behave as a Map.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IndexTable } from '../../src/snownet/index-table.ts';

type Operation = { readonly kind: 'set' | 'delete' | 'get'; readonly key: number };

describe('IndexTable', () => {
  test('agrees with a Map through any sequence of sets, deletes and lookups', () => {
    // Few distinct keys, so that probe runs collide, wrap around the table and are cut by deletes.
    const key = fc.oneof(fc.nat({ max: 40 }), fc.nat({ max: 0xff_ffff }), fc.constant(0));
    const operation = fc.record({ kind: fc.constantFrom<Operation['kind']>('set', 'set', 'delete', 'get'), key });
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 300 }), (operations) => {
        const table = new IndexTable<{ key: number; version: number }>();
        const reference = new Map<number, { key: number; version: number }>();
        operations.forEach(({ kind, key }, version) => {
          if (kind === 'set') {
            const value = { key, version };
            table.set(key, value);
            reference.set(key, value);
          } else if (kind === 'delete') {
            assert.equal(table.delete(key), reference.delete(key));
          }
          assert.equal(table.get(key), reference.get(key));
          assert.equal(table.size, reference.size);
        });
        for (const [key, value] of reference) assert.equal(table.get(key), value);
      }),
      { numRuns: 300 },
    );
  });

  test('holds ten thousand tunnel indices and forgets each one deleted', () => {
    const table = new IndexTable<number>();
    const keys = Array.from({ length: 10_000 }, (_, i) => (Math.imul(i + 1, 0x2545_f491) >>> 8) & 0xff_ffff);
    const unique = [...new Set(keys)];
    for (const key of unique) table.set(key, key * 2);
    for (const key of unique) assert.equal(table.get(key), key * 2);
    for (const key of unique.slice(0, 5_000)) assert.ok(table.delete(key));
    for (const [i, key] of unique.entries()) assert.equal(table.get(key), i < 5_000 ? undefined : key * 2);
    assert.equal(table.size, unique.length - 5_000);
  });

  test('refuses keys it cannot hold', () => {
    const table = new IndexTable<string>();
    for (const key of [-1, 1.5, 2 ** 31, Number.NaN]) assert.throws(() => table.set(key, 'x'), RangeError);
  });
});
