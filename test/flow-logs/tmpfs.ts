// A small tmpfs for tests that need a full or read-only filesystem. Needs root (mount); the test is skipped
// with the reason otherwise.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { isRoot } from '../support/env.ts';

export function mountTmpfs(t: TestContext, sizeKb: number): { readonly path: string } | undefined {
  if (!isRoot) {
    t.skip('needs root to mount a tmpfs; CI runs it as root');
    return undefined;
  }
  const path = mkdtempSync(join(tmpdir(), `fz-tmpfs-${process.pid}-`));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=0700`, 'tmpfs', path], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    rmdirSync(path);
    t.skip(`cannot mount a tmpfs here: ${mounted.stderr.trim()}`);
    return undefined;
  }
  t.after(() => {
    spawnSync('umount', ['-l', path]);
    rmdirSync(path);
  });
  return { path: join(path, 'flow_logs') };
}

/** Remounts the tmpfs holding `spool` (the path `mountTmpfs` returned) read-only or read-write. */
export function remount(spool: string, mode: 'ro' | 'rw'): void {
  const mountPoint = join(spool, '..');
  const result = spawnSync('mount', ['-o', `remount,${mode}`, mountPoint], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`remount ${mode} failed: ${result.stderr}`);
}
