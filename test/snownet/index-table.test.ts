// The node's connections by tunnel index: an open-addressing table that must behave as a Map.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IndexTable, READ_AHEAD_HINTS } from '../../src/snownet/index-table.ts';

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

  test("an entry's hints move with it through growth and deletes, and a new value starts without any", () => {
    type Step = { readonly kind: 'set' | 'delete' | 'hint'; readonly key: number; readonly which: number };
    const key = fc.oneof(fc.nat({ max: 40 }), fc.nat({ max: 0xff_ffff }));
    const step = fc.record({ kind: fc.constantFrom<Step['kind']>('set', 'delete', 'hint', 'hint'), key, which: fc.nat({ max: READ_AHEAD_HINTS - 1 }) });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 300 }), (steps) => {
        const table = new IndexTable<number>();
        const hints = new Map<number, unknown[]>();
        steps.forEach(({ kind, key, which }, version) => {
          if (kind === 'set') {
            table.set(key, version);
            hints.set(key, new Array<unknown>(READ_AHEAD_HINTS).fill(undefined));
          } else if (kind === 'delete') {
            table.delete(key);
            hints.delete(key);
          } else {
            const at = table.find(key);
            assert.equal(at === -1, !hints.has(key));
            if (at === -1) return;
            const hint = { version };
            table.setHint(at, key, which, hint);
            hints.get(key)![which] = hint;
          }
        });
        for (const [key, expected] of hints) {
          const at = table.find(key);
          assert.notEqual(at, -1);
          assert.equal(table.valueAt(at), table.get(key));
          for (let which = 0; which < READ_AHEAD_HINTS; which++) assert.equal(table.hint(at, which), expected[which]);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a hint set through a stale position lands nowhere', () => {
    const table = new IndexTable<string>();
    table.set(7, 'seven');
    const at = table.find(7);
    table.delete(7);
    table.set(8, 'eight');
    table.setHint(at, 7, 0, 'stale');
    const eight = table.find(8);
    assert.equal(table.hint(eight, 0), undefined);
    assert.equal(table.get(7), undefined);
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
