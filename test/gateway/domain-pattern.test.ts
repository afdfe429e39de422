import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixturePath } from '../support/env.ts';
import { matchesDomainPattern } from '../../src/gateway/domain-pattern.ts';

interface PatternVector {
  readonly pattern: string;
  readonly domain: string;
  readonly case: string;
  readonly matches: boolean;
}

const vectors = JSON.parse(readFileSync(fixturePath('packets', 'dns-pattern-and-truncation-vectors.json'), 'utf8')) as {
  pattern_matches: PatternVector[];
};

describe('domain pattern matching', () => {
  for (const v of vectors.pattern_matches) {
    test(`${v.case}: ${v.pattern} ${v.matches ? 'matches' : 'does not match'} ${v.domain}`, () => {
      assert.equal(matchesDomainPattern(v.pattern, v.domain), v.matches);
    });
  }

  test('spec examples', () => {
    assert.equal(matchesDomainPattern('*.example.com', 'foo.bar.example.com'), false);
    assert.equal(matchesDomainPattern('**.example.com', 'a.b.example.com'), true);
    assert.equal(matchesDomainPattern('?.httpbin', 'download.httpbin'), false);
    assert.equal(matchesDomainPattern('?.httpbin', 'a.httpbin'), true);
  });

  test('is case-insensitive and ignores a trailing dot', () => {
    assert.equal(matchesDomainPattern('App.Example.COM', 'app.example.com.'), true);
    assert.equal(matchesDomainPattern('*.example.com', 'FOO.EXAMPLE.COM'), true);
  });

  test('character classes', () => {
    assert.equal(matchesDomainPattern('app[0-9].corp', 'app7.corp'), true);
    assert.equal(matchesDomainPattern('app[!0-9].corp', 'app7.corp'), false);
    assert.equal(matchesDomainPattern('app[!0-9].corp', 'appx.corp'), true);
  });

  test('invalid patterns never match', () => {
    assert.equal(matchesDomainPattern('a**.example.com', 'a.example.com'), false);
    assert.equal(matchesDomainPattern('app[.example.com', 'app.example.com'), false);
  });

  test('a bare remainder is matched only for a leading *.', () => {
    assert.equal(matchesDomainPattern('app.*.example.com', 'app.example.com'), false);
    assert.equal(matchesDomainPattern('*.example.com', 'xexample.com'), false);
  });
});
