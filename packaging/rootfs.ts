/**
 * Debian 12 root file systems from mmdebstrap (Debian's registry only), cached under
 * dist/cache/packaging/ keyed by their package list, so a build and the tests of one run make
 * each at most once.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CACHE = join(ROOT, 'dist', 'cache', 'packaging');
export const MIRROR = 'http://deb.debian.org/debian';
export const SUITE = 'bookworm';

export type RootfsKind = 'container' | 'nspawn';

const RECIPES: Record<RootfsKind, { readonly include: readonly string[]; readonly options: readonly string[] }> = {
  // What the entrypoint and the gateway need (iptables for MASQUERADE, iproute2 for `ip -j`),
  // without documentation.
  container: {
    include: ['iptables', 'iproute2'],
    options: [
      '--dpkgopt=path-exclude=/usr/share/doc/*',
      '--dpkgopt=path-include=/usr/share/doc/*/copyright',
      '--dpkgopt=path-exclude=/usr/share/man/*',
      '--dpkgopt=path-exclude=/usr/share/locale/*',
      '--dpkgopt=path-exclude=/usr/share/info/*',
    ],
  },
  // A host that boots systemd, for the Debian package test; the package's dependencies are
  // there already, as the host has no way to the Debian registry from inside the lab.
  nspawn: { include: ['systemd', 'systemd-sysv', 'dbus', 'iproute2', 'iptables', 'procps', 'init-system-helpers'], options: [] },
};

export function rootfsPath(kind: RootfsKind): string {
  const recipe = RECIPES[kind];
  const key = createHash('sha256').update(JSON.stringify([SUITE, MIRROR, recipe])).digest('hex').slice(0, 12);
  return join(CACHE, `${kind}-${SUITE}-${key}.tar`);
}

export function hasMmdebstrap(): boolean {
  try {
    execFileSync('mmdebstrap', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Builds the rootfs tarball unless the cache has it; returns its path. */
export async function buildRootfs(kind: RootfsKind): Promise<string> {
  const path = rootfsPath(kind);
  if (existsSync(path)) return path;
  mkdirSync(CACHE, { recursive: true });
  const recipe = RECIPES[kind];
  const partial = `${path}.partial`;
  rmSync(partial, { force: true });
  execFileSync(
    'mmdebstrap',
    ['--quiet', '--format=tar', '--variant=minbase', `--include=${recipe.include.join(',')}`, ...recipe.options, SUITE, partial, MIRROR],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  renameSync(partial, path);
  return path;
}
