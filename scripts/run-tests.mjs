#!/usr/bin/env node
// Runs the test suite with node's built-in runner through tsx.
// Usage: node scripts/run-tests.mjs [path ...]   (folders or files under test/, default: all of test/)
// Interop, e2e and simulation suites decide for themselves whether they can run here
// (root, namespaces, Debian tools) and skip with a message otherwise.
import { readdirSync, statSync } from 'node:fs';
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

const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', ...files],
  { cwd: root, stdio: 'inherit', env: process.env },
);
process.exit(result.status ?? 1);
