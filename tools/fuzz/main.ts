/**
 * `npm run fuzz`: feeds every parser that reads network or portal input (tools/fuzz/targets.ts)
 * with mutations of real inputs and random bytes, on the compiled build (`dist/`), and prints one
 * line of counts per parser. Any throw is a crash: its input is written to the crash directory
 * (hex, with the parser and the error) and the run exits 1 once every parser has had its turn.
 *
 *   npm run fuzz                                   10^6 inputs per parser, seed 1
 *   npm run fuzz -- --runs 100000 --only dns,stun  fewer inputs, some parsers
 *   npm run fuzz -- --seed 7 --crashes /tmp/crashes
 *
 * Of every 8 inputs, 6 are mutations of a seed (1 to 4 byte-level rounds; for JSON parsers half
 * of them are structural: a value of another type, a key dropped, an array grown, deep nesting),
 * 1 is random bytes and 1 is a seed truncated or extended.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fuzz, type Outcome } from './run.ts';
import { makeTargets } from './targets.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

const runs = Number(argument('--runs', process.env['FZ_FUZZ_RUNS'] ?? '1000000'));
const seed = Number(argument('--seed', '1'));
const only = argument('--only', '').split(',').filter(Boolean);
const crashDir = argument('--crashes', '/tmp/fz-fuzz-crashes');
const dist = argument('--dist', join(ROOT, 'dist'));

const targets = (await makeTargets({ code: dist, extension: '.js', fixtures: join(ROOT, '../shared/fixtures') })).filter((t) => only.length === 0 || only.includes(t.name));
const outcomes: Outcome[] = [];
const started = performance.now();
console.log(`fuzzing ${targets.length} parsers × ${runs.toLocaleString('en')} inputs (seed ${seed}, code under test from ${dist})`);
for (const target of targets) {
  const outcome = fuzz(target, runs, seed, (crash) => {
    mkdirSync(crashDir, { recursive: true });
    const file = join(crashDir, `${target.name}-${crash.index}.txt`);
    writeFileSync(file, `${target.name}\n${crash.error}\n${crash.where}\n${Buffer.from(crash.input).toString('hex')}\n`);
    console.log(`  crash in ${target.name} at input ${crash.index}: ${crash.error} (${file})`);
  });
  outcomes.push(outcome);
  console.log(
    `${outcome.name.padEnd(14)} ${outcome.inputs.toLocaleString('en').padStart(11)} inputs  ${String(outcome.accepted).padStart(8)} accepted  ${String(outcome.rejected).padStart(9)} rejected  ${String(outcome.crashes).padStart(4)} crashes  slowest ${String(outcome.slowestUs).padStart(6)} µs  ${outcome.seconds.toFixed(1).padStart(6)} s`,
  );
}
const crashes = outcomes.reduce((sum, o) => sum + o.crashes, 0);
console.log(`total ${outcomes.reduce((sum, o) => sum + o.inputs, 0).toLocaleString('en')} inputs, ${crashes} crashes, ${((performance.now() - started) / 1000).toFixed(1)} s`);
if (crashes > 0) {
  console.log(`crashing inputs: ${crashDir}`);
  process.exitCode = 1;
}
