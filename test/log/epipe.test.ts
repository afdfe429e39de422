import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

// Logs a line every few milliseconds for a while after its stdout reader has gone, then exits 0.
const CHILD = `
import { createLogger } from './src/log/index.ts';
const log = createLogger('firezone_gateway');
let n = 0;
const timer = setInterval(() => {
  log.info('line', { n: n++ });
  if (n === 200) { clearInterval(timer); process.stderr.write('survived\\n'); }
}, 2);
`;

test('logging goes on quietly when the reader of stdout goes away (EPIPE)', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  await once(child.stdout, 'data');
  child.stdout.destroy();
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, stderr);
  assert.match(stderr, /survived/);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
});
