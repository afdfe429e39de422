import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { ResolveError, Resolver } from '../../src/runtime/resolver.ts';

function fakeLookup(answers: Record<string, LookupAddress[]>) {
  const calls: string[] = [];
  const lookup = async (name: string): Promise<LookupAddress[]> => {
    calls.push(name);
    await new Promise((r) => setImmediate(r));
    const answer = answers[name];
    if (answer === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return answer;
  };
  return { lookup, calls };
}

test('IPv6 first, duplicates removed, names case-insensitive', async () => {
  const { lookup } = fakeLookup({
    'app.corp': [
      { address: '10.0.0.1', family: 4 },
      { address: 'fd00::1', family: 6 },
      { address: '10.0.0.2', family: 4 },
      { address: '10.0.0.1', family: 4 },
    ],
  });
  const resolver = new Resolver({ lookup });
  assert.deepEqual(await resolver.resolve('App.Corp.'), ['fd00::1', '10.0.0.1', '10.0.0.2']);
});

test('successes are cached 30 s; failures are not cached', async () => {
  let now = 0;
  const { lookup, calls } = fakeLookup({ 'a.test': [{ address: '1.1.1.1', family: 4 }] });
  const resolver = new Resolver({ lookup, clock: () => now });
  await resolver.resolve('a.test');
  now = 29_999;
  await resolver.resolve('a.test');
  assert.equal(calls.length, 1);
  now = 30_000;
  await resolver.resolve('a.test');
  assert.equal(calls.length, 2);

  await assert.rejects(resolver.resolve('missing.test'), (e: unknown) => e instanceof ResolveError && e.reason === 'failed');
  await assert.rejects(resolver.resolve('missing.test'));
  assert.equal(calls.filter((c) => c === 'missing.test').length, 2);
});

test('concurrent lookups of one name are coalesced', async () => {
  const { lookup, calls } = fakeLookup({ 'b.test': [{ address: '2.2.2.2', family: 4 }] });
  const resolver = new Resolver({ lookup });
  const results = await Promise.all([resolver.resolve('b.test'), resolver.resolve('b.test'), resolver.resolve('B.TEST')]);
  assert.equal(calls.length, 1);
  for (const r of results) assert.deepEqual(r, ['2.2.2.2']);
});

test('a query that hangs times out', async () => {
  const resolver = new Resolver({ lookup: () => new Promise(() => undefined), timeoutMs: 20 });
  await assert.rejects(resolver.resolve('slow.test'), (e: unknown) => e instanceof ResolveError && e.reason === 'timeout');
  assert.equal(resolver.pendingCount, 0);
});

test('at most maxConcurrent queries run at once', async () => {
  const resolver = new Resolver({ lookup: () => new Promise(() => undefined), timeoutMs: 50, maxConcurrent: 2 });
  const first = resolver.resolve('one.test').catch(() => undefined);
  const second = resolver.resolve('two.test').catch(() => undefined);
  await assert.rejects(resolver.resolve('three.test'), (e: unknown) => e instanceof ResolveError && e.reason === 'overloaded');
  await Promise.all([first, second]);
});

test('the system resolver answers for localhost', async () => {
  const addresses = await new Resolver().resolve('localhost');
  assert.ok(addresses.some((a) => a === '127.0.0.1' || a === '::1'), addresses.join(','));
});
