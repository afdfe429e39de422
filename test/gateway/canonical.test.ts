import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Canonical } from '../../src/gateway/canonical.ts';

describe('Canonical', () => {
  test('hands out the first instance of each value, and starts over once full', () => {
    const canonical = new Canonical<{ n: number }>(2);
    const a = { n: 1 };
    assert.equal(canonical.of('a', a), a);
    assert.equal(canonical.of('a', { n: 1 }), a);
    const b = { n: 2 };
    assert.equal(canonical.of('b', b), b);
    const c = { n: 3 };
    assert.equal(canonical.of('c', c), c, 'full: forgets, keeps the new one');
    const a2 = { n: 1 };
    assert.equal(canonical.of('a', a2), a2);
    assert.equal(canonical.of('c', { n: 3 }), c);
  });
});
