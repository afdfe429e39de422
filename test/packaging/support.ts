/**
 * Shared by the packaging tests: the artifacts of `npm run package` (built here when missing,
 * so one run builds each once), and why a test cannot run on this machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildDeb, buildExecutable, buildImage, isFresh, paths, ROOT, sha256, WORK } from '../../packaging/build.ts';
import { buildRootfs, hasMmdebstrap } from '../../packaging/rootfs.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import { hasCommand, privilegedSkipReason } from '../support/env.ts';

export { paths, ROOT, sha256, WORK };

/** Why the single executable cannot be built here, or undefined. */
export function executableSkipReason(): string | undefined {
  if (!isNativeAddonBuilt()) return 'needs the native addon (npm ci)';
  if (!hasCommand('strip')) return 'needs strip (binutils)';
  return undefined;
}

/** Why a test that runs packaged artifacts in the namespace lab cannot run here, or undefined. */
export function labPackagingSkipReason(...commands: string[]): string | undefined {
  return (
    privilegedSkipReason('ip', 'nft', 'turnserver', 'dnsmasq', 'curl', ...commands) ??
    (hasMmdebstrap() ? undefined : 'needs mmdebstrap (installed by .ci/run)') ??
    executableSkipReason()
  );
}

let executable: Promise<string> | undefined;
let deb: Promise<string> | undefined;
let image: Promise<string> | undefined;

/** Each artifact is reused when `npm run package` or an earlier test built it from this very tree. */
export function ensureExecutable(): Promise<string> {
  return (executable ??= isFresh(paths.executable()) ? Promise.resolve(paths.executable()) : buildExecutable());
}

export function ensureDeb(): Promise<string> {
  return (deb ??= ensureExecutable().then(() => (isFresh(paths.deb()) ? paths.deb() : buildDeb())));
}

export function ensureImage(): Promise<string> {
  return (image ??= ensureExecutable().then(() => (isFresh(paths.image()) ? paths.image() : buildImage())));
}

export { buildRootfs };

/** A fresh copy of a cached rootfs, for one test run. */
export async function extractRootfs(kind: 'nspawn' | 'container', name: string): Promise<string> {
  const tar = await buildRootfs(kind);
  const dir = join(WORK, 'roots', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-C', dir, '--numeric-owner', '-xf', tar]);
  return dir;
}

export function run(command: string, args: readonly string[], options: { input?: string; timeoutMs?: number; allowFailure?: boolean } = {}): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(command, args, { encoding: 'utf8', input: options.input, timeout: options.timeoutMs ?? 60_000, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr: '' };
  } catch (error) {
    const failure = error as { status?: number; stdout?: string; stderr?: string; message: string };
    const result = { code: failure.status ?? -1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? failure.message };
    if (options.allowFailure === true) return result;
    throw new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.stderr}${result.stdout}`);
  }
}

export { waitFor as waitUntil } from '../e2e/stack.ts';

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export { spawn };
