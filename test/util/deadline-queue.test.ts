import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DeadlineQueue } from '../../src/util/deadline-queue.ts';

const runs = process.env['CI'] ? 500 : 100;

describe('DeadlineQueue', () => {
  test('hands out due owners in deadline order and leaves the others', () => {
    const queue = new DeadlineQueue<string>();
    queue.set('b', 20);
    queue.set('a', 10);
    queue.set('c', 30);
    assert.equal(queue.peekTime(), 10);
    assert.equal(queue.popDue(25), 'a');
    assert.equal(queue.popDue(25), 'b');
    assert.equal(queue.popDue(25), undefined);
    assert.equal(queue.size, 1);
    assert.equal(queue.peekKey(), 'c');
  });

  test('moving a deadline later or earlier, and removing it with undefined or Infinity', () => {
    const queue = new DeadlineQueue<number>();
    queue.set(1, 10);
    queue.set(2, 20);
    queue.set(1, 30);
    assert.equal(queue.peekKey(), 2);
    queue.set(1, 5);
    assert.equal(queue.peekKey(), 1);
    queue.set(1, undefined);
    queue.set(2, Infinity);
    assert.equal(queue.size, 0);
    assert.equal(queue.peekTime(), Infinity);
  });

  test('behaves like a map of deadlines under any sequence of set, delete and popDue', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 20 }), time: fc.integer({ min: 0, max: 100 }) }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 20 }) }),
      fc.record({ kind: fc.constant('pop' as const), now: fc.integer({ min: 0, max: 100 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const queue = new DeadlineQueue<number>();
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === 'set') {
            queue.set(o.key, o.time);
            model.set(o.key, o.time);
          } else if (o.kind === 'delete') {
            assert.equal(queue.delete(o.key), model.delete(o.key));
          } else {
            const key = queue.popDue(o.now);
            const earliest = Math.min(...model.values());
            if (key === undefined) {
              assert.ok(model.size === 0 || earliest > o.now, 'nothing due was withheld');
            } else {
              assert.equal(model.get(key), earliest, 'the earliest deadline comes first');
              assert.ok(earliest <= o.now, 'only due owners are handed out');
              model.delete(key);
            }
          }
          assert.equal(queue.size, model.size);
          assert.equal(queue.peekTime(), model.size === 0 ? Infinity : Math.min(...model.values()));
          for (const [key, time] of model) assert.equal(queue.timeOf(key), time);
        }
      }),
      { numRuns: runs },
    );
  });
});

describe('DeadlineQueue memory', () => {
  test('holds no storage until the first deadline, and none after clear; queues never share entries', () => {
    const a = new DeadlineQueue<string>();
    const b = new DeadlineQueue<string>();
    assert.equal(a.allocated, false);
    assert.equal(a.peekTime(), Infinity);
    assert.equal(a.delete('x'), false);
    a.set('x', undefined);
    assert.equal(a.allocated, false);
    a.set('x', 5);
    assert.equal(a.allocated, true);
    assert.equal(b.has('x'), false);
    assert.equal(b.size, 0);
    b.set('y', 3);
    assert.equal(a.timeOf('y'), undefined);
    a.clear();
    assert.equal(a.allocated, false);
    assert.equal(a.size, 0);
    a.set('z', 1);
    assert.equal(a.popDue(2), 'z');
    assert.equal(b.popDue(3), 'y');
    assert.equal(new DeadlineQueue<string>().size, 0);
  });

  test('reuses entry ids: churn through few owners never grows the storage', () => {
    const queue = new DeadlineQueue<object>();
    const owners = [{}, {}, {}];
    for (let round = 0; round < 10_000; round++) {
      for (const [i, owner] of owners.entries()) queue.set(owner, round * 10 + ((i * 7 + round) % 5));
      queue.popDue(round * 10 + 2);
      if (round % 3 === 0) queue.delete(owners[round % 3]!);
    }
    const storage = queue as unknown as { keyOf: unknown[]; heapIds: unknown[]; heapTimes: unknown[]; positionOf: unknown[] };
    for (const array of [storage.keyOf, storage.heapIds, storage.heapTimes, storage.positionOf]) assert.ok(array.length <= owners.length, `storage grew to ${array.length}`);
  });
});
