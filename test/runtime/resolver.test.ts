import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseHosts, ResolveError, Resolver, systemRecordLookup, type RecordAnswer, type RecordType } from '../../src/runtime/resolver.ts';

type Zone = Record<string, Partial<Record<RecordType, RecordAnswer[]>>>;

function fakeLookup(zone: Zone) {
  const calls: string[] = [];
  const lookup = async (name: string, type: RecordType): Promise<RecordAnswer[]> => {
    calls.push(`${type} ${name}`);
    await new Promise((r) => setImmediate(r));
    const answer = zone[name]?.[type];
    if (answer === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return answer;
  };
  return { lookup, calls };
}

test('A and AAAA are looked up separately; IPv4 first, duplicates removed, names case-insensitive', async () => {
  const { lookup, calls } = fakeLookup({
    'app.corp': {
      A: [
        { address: '10.0.0.1', ttl: 60 },
        { address: '10.0.0.2', ttl: 60 },
        { address: '10.0.0.1', ttl: 60 },
      ],
      AAAA: [{ address: 'fd00::1', ttl: 60 }],
    },
  });
  const resolver = new Resolver({ lookup });
  assert.deepEqual(await resolver.resolve('App.Corp.'), ['10.0.0.1', '10.0.0.2', 'fd00::1']);
  assert.deepEqual(calls.sort(), ['A app.corp', 'AAAA app.corp']);
});

test('a type that fails contributes nothing; both failing is an empty answer, not an error (as 1.6.0)', async () => {
  const { lookup } = fakeLookup({ 'v4only.test': { A: [{ address: '192.0.2.1', ttl: 30 }] } });
  const resolver = new Resolver({ lookup });
  assert.deepEqual(await resolver.resolve('v4only.test'), ['192.0.2.1']);
  assert.deepEqual(await resolver.resolve('missing.test'), []);
});

test('answers are cached for their TTL, per record type; failures are not cached', async () => {
  let now = 0;
  const { lookup, calls } = fakeLookup({ 'a.test': { A: [{ address: '1.1.1.1', ttl: 5 }], AAAA: [{ address: '2001:db8::1', ttl: 300 }] } });
  const resolver = new Resolver({ lookup, clock: () => now });
  await resolver.resolve('a.test');
  now = 4_999;
  await resolver.resolve('a.test');
  assert.equal(calls.length, 2);
  now = 5_000;
  assert.deepEqual(await resolver.resolve('a.test'), ['1.1.1.1', '2001:db8::1']);
  assert.deepEqual(calls.slice(2), ['A a.test'], 'only the expired type is asked again');

  await resolver.resolve('missing.test');
  await resolver.resolve('missing.test');
  assert.equal(calls.filter((c) => c.endsWith('missing.test')).length, 4);
});

test('a TTL of zero is not cached', async () => {
  const { lookup, calls } = fakeLookup({ 'z.test': { A: [{ address: '1.1.1.1', ttl: 0 }], AAAA: [{ address: '::1', ttl: 0 }] } });
  const resolver = new Resolver({ lookup, clock: () => 0 });
  await resolver.resolve('z.test');
  await resolver.resolve('z.test');
  assert.equal(calls.length, 4);
});

test('the cache holds at most cacheSize answers, dropping the least recently used', async () => {
  const zone: Zone = {};
  for (let i = 0; i < 20; i++) zone[`n${i}.test`] = { A: [{ address: `10.0.0.${i}`, ttl: 600 }], AAAA: [{ address: `fd00::${i}`, ttl: 600 }] };
  const { lookup, calls } = fakeLookup(zone);
  const resolver = new Resolver({ lookup, cacheSize: 8, clock: () => 0 });
  for (let i = 0; i < 4; i++) await resolver.resolve(`n${i}.test`);
  await resolver.resolve('n0.test'); // n0 becomes the most recently used
  await resolver.resolve('n4.test'); // evicts n1 (both of its types)
  assert.equal(resolver.cachedCount, 8);
  const before = calls.length;
  await resolver.resolve('n0.test');
  assert.equal(calls.length, before, 'n0 is still cached');
  await resolver.resolve('n1.test');
  assert.equal(calls.length, before + 2, 'n1 was evicted');
});

test('the cache never grows past its size, whatever names are asked', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.stringMatching(/^[a-z]{1,6}$/), { maxLength: 60 }), async (names) => {
      const lookup = async (name: string, type: RecordType): Promise<RecordAnswer[]> => [{ address: type === 'A' ? '10.1.1.1' : 'fd00::1', ttl: name.length }];
      const resolver = new Resolver({ lookup, cacheSize: 16, clock: () => 0 });
      for (const name of names) await resolver.resolve(name);
      assert.ok(resolver.cachedCount <= 16);
    }),
    { numRuns: 50 },
  );
});

test('concurrent lookups of one name are coalesced', async () => {
  const { lookup, calls } = fakeLookup({ 'b.test': { A: [{ address: '2.2.2.2', ttl: 1 }] } });
  const resolver = new Resolver({ lookup });
  const results = await Promise.all([resolver.resolve('b.test'), resolver.resolve('b.test'), resolver.resolve('B.TEST')]);
  assert.equal(calls.length, 2);
  for (const r of results) assert.deepEqual(r, ['2.2.2.2']);
});

test('a resolution that hangs times out', async () => {
  const resolver = new Resolver({ lookup: () => new Promise(() => undefined), timeoutMs: 20 });
  await assert.rejects(resolver.resolve('slow.test'), (e: unknown) => e instanceof ResolveError && e.reason === 'timeout');
  assert.equal(resolver.pendingCount, 0);
});

test('at most maxConcurrent resolutions run at once', async () => {
  const resolver = new Resolver({ lookup: () => new Promise(() => undefined), timeoutMs: 50, maxConcurrent: 2 });
  const first = resolver.resolve('one.test').catch(() => undefined);
  const second = resolver.resolve('two.test').catch(() => undefined);
  await assert.rejects(resolver.resolve('three.test'), (e: unknown) => e instanceof ResolveError && e.reason === 'overloaded');
  await Promise.all([first, second]);
});

test('every lookup is observed with its type and outcome', async () => {
  const seen: string[] = [];
  const { lookup } = fakeLookup({ 'o.test': { A: [{ address: '3.3.3.3', ttl: 9 }] } });
  const resolver = new Resolver({ lookup, observeLookup: (_seconds, type, answered) => seen.push(`${type}:${answered}`) });
  await resolver.resolve('o.test');
  assert.deepEqual(seen.sort(), ['A:true', 'AAAA:false']);
});

test('hosts file: comments, aliases, scoped addresses, case and trailing dots', () => {
  const hosts = parseHosts('127.0.0.1 localhost\n# 10.0.0.9 hidden\n10.0.0.1 App.Corp. app # trailing\nfe80::1%eth0 link.local\nnot-an-ip name\n10.0.0.2 app\n');
  assert.deepEqual(hosts.get('app.corp'), ['10.0.0.1']);
  assert.deepEqual(hosts.get('app'), ['10.0.0.1', '10.0.0.2']);
  assert.deepEqual(hosts.get('link.local'), ['fe80::1']);
  assert.equal(hosts.get('hidden'), undefined);
  assert.equal(hosts.get('name'), undefined);
});

test('the system lookup answers from the hosts file first, per family', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fz-hosts-'));
  try {
    const file = join(dir, 'hosts');
    writeFileSync(file, '192.0.2.7 printer.corp\n2001:db8::7 printer.corp\n');
    const resolver = new Resolver({ lookup: systemRecordLookup({ hostsFile: file }) });
    assert.deepEqual(await resolver.resolve('printer.corp'), ['192.0.2.7', '2001:db8::7']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
