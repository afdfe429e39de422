import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { didYouMean, jaro } from '../../src/cli/clap.ts';
import { parseHumanDuration } from '../../src/cli/humantime.ts';
import { readSystemdCredential } from '../../src/cli/credentials.ts';
import { raiseSocketBufferLimits } from '../../src/cli/inc-buf.ts';
import { errorChain } from '../../src/log/index.ts';

describe('clap suggestions', () => {
  test('Jaro similarity as strsim computes it', () => {
    assert.equal(jaro('', ''), 1);
    assert.equal(jaro('', 'a'), 0);
    assert.equal(jaro('abc', 'abc'), 1);
    assert.ok(Math.abs(jaro('Friedrich Nietzsche', 'Jean-Paul Sartre') - 0.392) < 0.001);
    assert.ok(Math.abs(jaro('martha', 'marhta') - 0.944) < 0.001);
  });

  test('did-you-mean keeps candidates above 0.7, most similar last', () => {
    assert.deepEqual(didYouMean('tst', ['test', 'possible', 'values']), ['test']);
    assert.deepEqual(didYouMean('te', ['test', 'temp', 'possible', 'values']), ['test', 'temp']);
    assert.deepEqual(didYouMean('hahaahahah', ['test', 'possible', 'values']), []);
  });
});

describe('human durations (humantime 2.x)', () => {
  const ok: Array<[string, bigint]> = [
    ['0', 0n],
    ['1ns', 1n],
    ['1µs', 1_000n],
    ['17nsec', 17n],
    ['1 0s', 10_000_000_000n],
    ['1.5h', 5_400_000_000_000n],
    ['0.5s', 500_000_000n],
    ['2h 37min', 9_420_000_000_000n],
    ['1year', 31_557_600_000_000_000n],
  ];
  for (const [text, nanos] of ok) {
    test(`${JSON.stringify(text)} = ${nanos} ns`, () => assert.deepEqual(parseHumanDuration(text), { ok: true, nanos }));
  }
  const errors: Array<[string, string]> = [
    ['', 'value was empty'],
    ['  ', 'value was empty'],
    ['1.s', 'invalid character at 1'],
    ['1h x', 'expected number at 3'],
    ['1.5ns', 'number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)'],
    ['18446744073709551616s', 'number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)'],
  ];
  for (const [text, error] of errors) {
    test(`${JSON.stringify(text)}: ${error}`, () => assert.deepEqual(parseHumanDuration(text), { ok: false, error }));
  }
});

describe('the systemd credential', () => {
  test('trimmed of surrounding whitespace, from $CREDENTIALS_DIRECTORY/<name>', () => {
    const read = (path: string) => {
      assert.equal(path, '/run/credentials/x/FIREZONE_TOKEN');
      return Buffer.from('\n  tok en\r\n');
    };
    assert.equal(readSystemdCredential('FIREZONE_TOKEN', { CREDENTIALS_DIRECTORY: '/run/credentials/x' }, read), 'tok en');
  });

  test('failures in the reference\'s words', () => {
    const fail = (env: Record<string, string>, read: (path: string) => Uint8Array) => {
      try {
        readSystemdCredential('FIREZONE_TOKEN', env, read);
      } catch (error) {
        return errorChain(error);
      }
      return assert.fail('expected an error');
    };
    const never = () => assert.fail('not read');
    assert.equal(fail({}, never), 'Failed to read `FIREZONE_TOKEN` systemd credential: `CREDENTIALS_DIRECTORY` not provided');
    const denied = () => {
      throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    };
    assert.equal(fail({ CREDENTIALS_DIRECTORY: '/c' }, denied), 'Failed to read `FIREZONE_TOKEN` systemd credential: Permission denied (os error 13)');
    assert.equal(fail({ CREDENTIALS_DIRECTORY: '/c' }, () => Buffer.from([0xff, 0xfe])), 'Failed to read `FIREZONE_TOKEN` systemd credential: stream did not contain valid UTF-8');
  });
});

describe('raising the socket buffer limits', () => {
  test('both written, each outcome logged', () => {
    const lines: string[] = [];
    const written: string[] = [];
    raiseSocketBufferLimits({ info: (line) => lines.push(line) }, (path, value) => {
      if (path.endsWith('wmem_max')) throw Object.assign(new Error('EROFS'), { code: 'EROFS' });
      written.push(`${path}=${value}`);
    });
    assert.deepEqual(written, ['/proc/sys/net/core/rmem_max=16777216']);
    assert.deepEqual(lines, ['Set `core.rmem_max` to 16777216', 'Failed to increase `core.wmem_max`: Read-only file system (os error 30)']);
  });
});
