import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = `${root}dist/bin/firezone-gateway.js`;

/** A Node.js older than 24 on this machine (Debian 12 ships 18; some images carry 20). */
function olderNode(): { path: string; version: string } | undefined {
  for (const path of ['/usr/bin/node', '/usr/bin/nodejs', '/usr/local/bin/node']) {
    if (!existsSync(path)) continue;
    const version = spawnSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    if (Number(version.split('.')[0]) < 24) return { path, version };
  }
  return undefined;
}

const older = olderNode();
const skip = !existsSync(entry) ? 'needs the built gateway (npm run build)' : older === undefined ? 'no Node.js older than 24 on this machine' : undefined;

test('on an older Node.js the compiled entry point says what it needs and exits 1', { skip }, () => {
  const result = spawnSync(older!.path, [entry, '--version'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(result.status, 1, result.stderr);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, new RegExp(`^firezone-gateway needs Node\\.js 24 or newer, but runs on Node\\.js v${older!.version.replace(/\./g, '\\.')} `));
  assert.match(result.stderr, /release executable/);
});
