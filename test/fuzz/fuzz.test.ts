/**
 * Smoke test of `npm run fuzz` (tools/fuzz): every parser target runs a few thousand inputs on the
 * sources without a crash, each accepts some of them (the seeds are real messages, so a target
 * that rejects everything is wired wrong), and a parser that throws is reported as a crash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { fuzz } from '../../tools/fuzz/run.ts';
import { makeTargets } from '../../tools/fuzz/targets.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RUNS = 3_000;

test('every parser target takes fuzzed input without a crash and accepts some of it', async () => {
  const targets = await makeTargets({ code: `${ROOT}src`, extension: '.ts', fixtures: `${ROOT}../shared/fixtures` });
  assert.deepEqual(
    targets.map((t) => t.name),
    ['ip-packet', 'p2p-control', 'stun', 'turn', 'wireguard', 'dns', 'phoenix-frame', 'portal-json', 'ice-candidate'],
  );
  for (const target of targets) {
    assert.ok(target.seeds.length > 0, `${target.name} has seeds`);
    const outcome = fuzz(target, RUNS, 1);
    assert.deepEqual(outcome.distinct.map((c) => `${c.error} at ${c.where}`), [], `${target.name} crashed`);
    assert.equal(outcome.accepted + outcome.rejected, RUNS);
    if (target.name !== 'wireguard') assert.ok(outcome.accepted > 0, `${target.name} accepted none of ${RUNS} inputs`);
    else assert.ok(target.seeds.every((s) => s.length > 0), 'wireguard seeds are real messages');
  }
});

test('a parser that throws is counted and its input kept', () => {
  const outcome = fuzz({ name: 'thrower', seeds: [new Uint8Array([1, 2, 3])], maxLength: 16, run: (input) => { if (input.length > 2 && input[0] === 1) throw new RangeError('boom'); return true; } }, 500, 1);
  assert.ok(outcome.crashes > 0);
  assert.equal(outcome.distinct.length, 1);
  assert.equal(outcome.distinct[0]!.error, 'RangeError: boom');
  assert.equal(outcome.distinct[0]!.input[0], 1);
});
