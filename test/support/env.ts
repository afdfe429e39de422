import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** `../shared/fixtures` beside the checkout, as in CI. */
export const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));

export function fixturePath(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Why a privileged test cannot run here, or undefined when it can. Tests pass the result to
 * `{ skip }` so the runner prints a clear reason.
 */
export function privilegedSkipReason(...commands: string[]): string | undefined {
  if (!isRoot) return 'needs root (network namespaces, TUN); CI runs it as root';
  if (!existsSync('/dev/net/tun') && !isRoot) return 'needs /dev/net/tun';
  const missing = commands.filter((c) => !hasCommand(c));
  if (missing.length > 0) return `needs ${missing.join(', ')} (installed by .ci/run)`;
  return undefined;
}
