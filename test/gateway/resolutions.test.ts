import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolutions } from '../../src/gateway/resolutions.ts';
import { ip } from './support.ts';

test('at most 1000 names are resolved at once; more are refused until one completes', () => {
  const resolutions = new Resolutions<number>();
  for (let i = 0; i < 1000; i++) assert.equal(resolutions.request(`n${i}.corp`, i, 0), 'requested');
  assert.equal(resolutions.request('n0.corp', 1, 0), 'joined', 'joining an existing request is still fine');
  assert.equal(resolutions.request('extra.corp', 2, 0), 'full');
  assert.deepEqual(resolutions.complete('n0.corp', [ip('10.0.0.1')], 5), [0, 1]);
  assert.equal(resolutions.request('extra.corp', 2, 6), 'requested');
});

test('a late answer after the deadline reaches nobody but is cached', () => {
  const resolutions = new Resolutions<string>();
  resolutions.request('late.corp', 'w', 0);
  assert.deepEqual(resolutions.expire(10_000), ['w']);
  assert.deepEqual(resolutions.complete('late.corp', [ip('10.0.0.9')], 11_000), []);
  assert.deepEqual(resolutions.request('LATE.corp', 'x', 12_000), [ip('10.0.0.9')]);
  assert.equal(resolutions.nextDeadline(), undefined);
});

test('stale cache entries and missed deadlines go oldest first, without visiting the fresh ones', () => {
  const resolutions = new Resolutions<string>();
  resolutions.complete('a.corp', [ip('10.0.0.1')], 0);
  resolutions.complete('b.corp', [ip('10.0.0.2')], 20_000);
  resolutions.request('c.corp', 'c', 25_000);
  assert.equal(resolutions.nextDeadline(), 35_000);
  assert.deepEqual(resolutions.expire(30_000), []);
  assert.equal(resolutions.request('a.corp', 'a', 30_000), 'requested', 'a.corp is stale');
  assert.deepEqual(resolutions.request('b.corp', 'b', 30_000), [ip('10.0.0.2')]);
  assert.deepEqual(resolutions.expire(35_000), ['c']);
  assert.equal(resolutions.nextDeadline(), 40_000);
});
