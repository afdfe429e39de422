import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WarningLimiter } from '../../src/util/warning-limiter.ts';

test('one warning per kind per interval, with the count held back since the last', () => {
  const limiter = new WarningLimiter<'a' | 'b'>(1_000);
  assert.equal(limiter.allow('a', 0), 0);
  assert.equal(limiter.allow('a', 10), undefined);
  assert.equal(limiter.allow('a', 999), undefined);
  assert.equal(limiter.allow('b', 500), 0, 'kinds are limited apart');
  assert.equal(limiter.allow('a', 1_000), 2);
  assert.equal(limiter.allow('a', 1_500), undefined);
  assert.equal(limiter.allow('a', 2_100), 1);
});
