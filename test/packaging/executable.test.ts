/**
 * The single executable: one file that runs without Node.js or the checkout, says what it is,
 * and loads its native addon from a private directory even where /tmp-like mounts are noexec.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATEWAY_VERSION } from '../../src/cli/version.ts';
import { hasCommand, isRoot } from '../support/env.ts';
import { ensureExecutable, executableSkipReason, run } from './support.ts';

const skip = executableSkipReason();

describe('single executable', { skip, timeout: 180_000 }, () => {
  let executable = '';
  before(async () => {
    executable = await ensureExecutable();
  });

  test('runs without Node.js on PATH or the checkout, and --version names the implementation, its commit and Node.js', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'fz-sea-'));
    try {
      const result = spawnSync(executable, ['--version'], { cwd, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: cwd, XDG_RUNTIME_DIR: cwd } });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr, '');
      const lines = result.stdout.trimEnd().split('\n');
      assert.equal(lines[0], `firezone-gateway ${GATEWAY_VERSION}`);
      assert.match(lines[1]!, /^TypeScript implementation, commit [0-9a-f]{12}, Node\.js v24\.\d+\.\d+$/);
      // The addon went to the first private directory that can run code, named after its digest.
      const [extracted] = readdirSync(cwd).filter((name) => name.startsWith('firezone-gateway-'));
      assert.ok(extracted !== undefined, readdirSync(cwd).join(','));
      assert.equal(statSync(join(cwd, extracted)).mode & 0o777, 0o700);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  test('a noexec directory is passed over for the next private one', { skip: !isRoot ? 'needs root (mounts in a private mount namespace)' : hasCommand('unshare') ? undefined : 'needs unshare' }, () => {
    const base = mkdtempSync(join(tmpdir(), 'fz-sea-noexec-'));
    try {
      const script = [
        'set -e',
        `mkdir -p ${base}/noexec ${base}/exec`,
        `mount -t tmpfs -o noexec,mode=0700 tmpfs ${base}/noexec`,
        `mount -t tmpfs -o exec,mode=0700 tmpfs ${base}/exec`,
        `RUNTIME_DIRECTORY=${base}/noexec XDG_RUNTIME_DIR=${base}/exec "$0" --version`,
        `ls ${base}/noexec ${base}/exec`,
      ].join('\n');
      const result = run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, executable]);
      assert.match(result.stdout, /^firezone-gateway /m);
      // Written to the noexec mount, refused there, loaded from the next.
      assert.match(result.stdout, new RegExp(`${base}/noexec:\\nfirezone-gateway-[0-9a-f]{16}\\n`));
      assert.match(result.stdout, new RegExp(`${base}/exec:\\nfirezone-gateway-[0-9a-f]{16}\\n`));
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test('the release directory has the official <version>/<arch> layout and SHA-256 sums that check', () => {
    const release = join(executable, '..', '..', '..');
    const sums = readFileSync(join(release, `firezone-gateway_${GATEWAY_VERSION}_x86_64.sha256sum.txt`), 'utf8');
    const check = run('sha256sum', ['-c', '-'], { input: sums.replace(/ {2}/, `  ${release}/`) });
    assert.match(check.stdout, /: OK$/m);
    assert.equal(statSync(join(release, 'firezone-gateway', 'latest', 'x86_64')).ino, statSync(executable).ino);
    assert.match(run('file', ['-L', executable], { allowFailure: true }).stdout || 'ELF', /ELF/);
  });

  test('start-up time and idle memory (printed, not asserted)', (t) => {
    const started = performance.now();
    const result = spawnSync(executable, ['--version'], { encoding: 'utf8' });
    const versionMs = performance.now() - started;
    assert.equal(result.status, 0);
    const time = spawnSync('/usr/bin/time', ['-v', executable, '--version'], { encoding: 'utf8' });
    const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(time.stderr)?.[1];
    t.diagnostic(`--version: ${versionMs.toFixed(0)} ms wall, max RSS ${rss ?? '?'} kB; ${(statSync(executable).size / 1e6).toFixed(1)} MB on disk`);
  });
});
