import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RingQueue } from '../../src/util/ring-queue.ts';

describe('RingQueue', () => {
  test('hands items out in the order they were pushed, across growth', () => {
    const queue = new RingQueue<number>(2);
    for (let i = 0; i < 5; i++) queue.push(i);
    assert.equal(queue.shift(), 0);
    assert.equal(queue.shift(), 1);
    for (let i = 5; i < 12; i++) queue.push(i);
    const out: number[] = [];
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) out.push(item);
    assert.deepEqual(out, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert.equal(queue.length, 0);
    assert.equal(queue.peek(), undefined);
  });

  test('behaves like an array used as a queue under any sequence of push, shift and clear', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), value: fc.integer() }),
      fc.record({ kind: fc.constant('shift' as const) }),
      fc.record({ kind: fc.constant('clear' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const queue = new RingQueue<number>(1);
        const model: number[] = [];
        for (const o of ops) {
          if (o.kind === 'push') {
            queue.push(o.value);
            model.push(o.value);
          } else if (o.kind === 'shift') {
            assert.equal(queue.shift(), model.shift());
          } else {
            queue.clear();
            model.length = 0;
          }
          assert.equal(queue.length, model.length);
          assert.equal(queue.peek(), model[0]);
        }
      }),
    );
  });
});

describe('RingQueue memory', () => {
  test('holds no slots until the first push, then the initial capacity, and none again after clear', () => {
    const queue = new RingQueue<number>(3);
    assert.equal(queue.capacity, 0);
    assert.equal(queue.shift(), undefined);
    queue.clear();
    assert.equal(queue.capacity, 0);
    queue.push(1);
    assert.equal(queue.capacity, 4);
    for (let i = 2; i <= 5; i++) queue.push(i);
    assert.equal(queue.capacity, 8);
    queue.clear();
    assert.equal(queue.capacity, 0);
    queue.push(7);
    assert.equal(queue.capacity, 8);
    assert.equal(queue.shift(), 7);
    const other = new RingQueue<number>(3);
    other.push(9);
    assert.equal(other.capacity, 4);
    assert.equal(other.shift(), 9);
  });
});
