/**
 * Which build is running: this TypeScript implementation, its commit and the Node.js under it,
 * for the second `--version` line and the start-up log. The release bundle fills in the commit
 * (esbuild `define`); a checkout asks git once.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

declare const FIREZONE_BUILD_COMMIT: string | undefined;

export const IMPLEMENTATION = 'typescript';

let commit: string | undefined;

export function buildCommit(): string {
  if (commit !== undefined) return commit;
  if (typeof FIREZONE_BUILD_COMMIT === 'string') return (commit = FIREZONE_BUILD_COMMIT);
  try {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    commit = execFileSync('git', ['-C', root, 'rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2_000 }).trim() || 'unknown';
  } catch {
    commit = 'unknown';
  }
  return commit;
}

/** `TypeScript implementation, commit 0123456789ab, Node.js v24.22.3` */
export function implementationLine(): string {
  return `TypeScript implementation, commit ${buildCommit()}, Node.js ${process.version}`;
}
