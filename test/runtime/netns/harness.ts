import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Namespaces created here are named `fzrt-<tag>-<pid>` so parallel runs never collide. */
export function createNamespace(tag: string): string {
  const name = `fzrt-${tag}-${process.pid}`;
  ip('netns', 'add', name);
  ip('-n', name, 'link', 'set', 'lo', 'up');
  return name;
}

export function deleteNamespace(name: string): void {
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
}

/**
 * Runs `test/runtime/netns/<script>` with node + tsx inside the namespace (a process cannot
 * easily move itself into another netns) and returns its exit status and output.
 */
export function runInNamespace(
  namespace: string,
  script: string,
  args: readonly string[] = [],
  timeoutMs = 30_000,
  options: { privateEmptyDevNet?: boolean } = {},
): SpawnSyncReturns<string> {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const node = [process.execPath, '--import', 'tsx', path, ...args];
  // A private mount namespace with an empty tmpfs on /dev/net: the host's device node is untouched.
  const command = options.privateEmptyDevNet
    ? ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs -o mode=0755 fzrt /dev/net && exec "$@"', 'sh', ...node]
    : node;
  return spawnSync('ip', ['netns', 'exec', namespace, ...command], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, RUST_LOG: process.env['RUST_LOG'] ?? 'off' },
  });
}

/** Formats a child's result for an assertion message. */
export function describeRun(run: SpawnSyncReturns<string>): string {
  return `status=${run.status} signal=${run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** The last stdout line of a script, parsed as its JSON report. */
export function reportOf<T>(run: SpawnSyncReturns<string>): T {
  const lines = run.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? 'null') as T;
}

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${result.stderr}`);
}
