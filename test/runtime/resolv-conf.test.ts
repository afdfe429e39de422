import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseResolvConf, readResolvConf } from '../../src/runtime/resolv-conf.ts';

describe('resolv.conf', () => {
  test('takes the nameserver lines in order and ignores everything else', () => {
    const result = parseResolvConf(
      '# comment\nsearch example.com\nnameserver 10.0.0.2\noptions ndots:2\nnameserver  2001:db8::53 \n; x\nnameserver 10.0.0.2\n',
    );
    assert.deepEqual(result, { ok: true, nameservers: ['10.0.0.2', '2001:db8::53'] });
  });

  test('keeps a scoped IPv6 nameserver', () => {
    assert.deepEqual(parseResolvConf('nameserver fe80::1%eth0\n'), { ok: true, nameservers: ['fe80::1%eth0'] });
  });

  test('an invalid nameserver address makes the file invalid', () => {
    const result = parseResolvConf('nameserver not-an-ip\n');
    assert.equal(result.ok, false);
  });

  test('an empty file yields no nameservers', () => {
    assert.deepEqual(parseResolvConf(''), { ok: true, nameservers: [] });
  });

  test('reading reports the reference error strings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fzrt-resolv-'));
    try {
      const path = join(dir, 'resolv.conf');
      assert.match(((await readResolvConf(path)) as { error: string }).error, /^Failed to read /);
      writeFileSync(path, 'nameserver 1.2.3\n');
      assert.match(((await readResolvConf(path)) as { error: string }).error, /^Failed to parse /);
      writeFileSync(path, 'nameserver 1.2.3.4\n');
      assert.deepEqual(await readResolvConf(path), { ok: true, nameservers: ['1.2.3.4'] });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
