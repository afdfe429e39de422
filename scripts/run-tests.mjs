#!/usr/bin/env node
// Runs the test suite with node's built-in runner through tsx.
// Usage: node scripts/run-tests.mjs [path ...]   (folders or files under test/, default: all of test/)
// Interop, e2e and simulation suites decide for themselves whether they can run here
// (root, namespaces, Debian tools) and skip with a message otherwise.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const testRoot = join(root, 'test');
const suites = process.argv.slice(2);

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const roots = suites.length === 0 ? [testRoot] : suites.map((s) => join(testRoot, s));
const files = roots
  .flatMap((path) => (statSync(path).isDirectory() ? collect(path, []) : [path]))
  .map((f) => relative(root, f));
if (files.length === 0) {
  console.error(`no test files under ${roots.map((r) => relative(root, r)).join(', ')}`);
  process.exit(1);
}

// Human-readable output on stdout; a TAP copy to count results for the closing summary line.
const tapDir = mkdtempSync(join(tmpdir(), 'fz-tests-'));
const tapFile = join(tapDir, 'results.tap');
const result = spawnSync(
  process.execPath,
  [
    '--import', 'tsx', '--test',
    // A hung test fails after 10 minutes instead of holding the whole run (no test needs half of that on CI).
    '--test-timeout=600000',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: process.env },
);
let summary = '';
try {
  const tap = readFileSync(tapFile, 'utf8');
  const count = (name) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
  summary = `${count('pass')} passed, ${count('fail') + count('cancelled')} failed, ${count('skipped')} skipped`;
} catch {
  // No TAP output: the runner itself failed; its exit status says so.
}
rmSync(tapDir, { recursive: true, force: true });
if (summary) console.log(`\n${summary}`);
process.exit(result.status ?? 1);
