/**
 * `npm run package`: builds the release artifacts into dist/release/ from the checkout, with
 * nothing but the Node.js in .node/ (or on PATH), npm packages and Debian tools:
 *
 *   dist/release/
 *     firezone-gateway/<version>/x86_64           the single executable, laid out like the
 *     firezone-gateway/latest/x86_64              official download URLs <version>/<arch>
 *     firezone-gateway_<version>_x86_64           the same file under the GitHub asset name
 *     firezone-gateway_<version>_x86_64.sha256sum.txt
 *     firezone-gateway_<version>_amd64.deb
 *     firezone-gateway-image_<version>_amd64.oci.tar   OCI layout tarball (podman/docker load)
 *     kubernetes/firezone-gateway.yaml
 *     gateway-systemd-install.sh
 *     SHA256SUMS
 *
 * Usage: node --import tsx packaging/build.ts [executable|deb|image|all ...]
 * Steps reuse what an earlier step of the same run built (the executable, the cached rootfs).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { GATEWAY_VERSION } from '../src/cli/version.ts';
import { buildOciImage, sha256File } from './oci.ts';
import { buildRootfs } from './rootfs.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const RELEASE = join(ROOT, 'dist', 'release');
export const WORK = join(ROOT, 'dist', 'packaging');
export const ADDON = join(ROOT, 'build', 'Release', 'firezone_native.node');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface Target {
  /** `uname -m` and the official download URL's name. */
  readonly arch: 'x86_64' | 'aarch64';
  readonly debArch: 'amd64' | 'arm64';
}

export const X86_64: Target = { arch: 'x86_64', debArch: 'amd64' };

export const paths = {
  executable: (target: Target = X86_64) => join(RELEASE, 'firezone-gateway', GATEWAY_VERSION, target.arch),
  deb: (target: Target = X86_64) => join(RELEASE, `firezone-gateway_${GATEWAY_VERSION}_${target.debArch}.deb`),
  image: (target: Target = X86_64) => join(RELEASE, `firezone-gateway-image_${GATEWAY_VERSION}_${target.debArch}.oci.tar`),
};

/** Runs a tool; its stderr (postject's many LIEF warnings, for one) is shown only when it fails. */
function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  try {
    return execFileSync(command, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '');
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr.slice(-4000)}`, { cause: error });
  }
}

function step(name: string): void {
  process.stderr.write(`package: ${name}\n`);
}

/**
 * What the artifacts are built from: the commit plus any uncommitted change. An artifact whose
 * stamp matches is reused (by later steps and by the tests of the same run).
 */
export function inputsStamp(): string {
  const hash = createHash('sha256');
  const inputs = ['src', 'packaging', 'package-lock.json'];
  for (const args of [['rev-parse', 'HEAD'], ['diff', 'HEAD', '--', ...inputs], ['status', '--porcelain', '--untracked-files=all', '--', ...inputs]]) {
    try {
      hash.update(run('git', args));
    } catch {
      hash.update(String(Date.now()));
    }
  }
  hash.update(readFileSync(ADDON));
  return hash.digest('hex');
}

function stampPath(artifact: string): string {
  return join(WORK, 'stamps', `${relative(RELEASE, artifact).replace(/\//g, '_')}.stamp`);
}

export function isFresh(artifact: string): boolean {
  try {
    return existsSync(artifact) && readFileSync(stampPath(artifact), 'utf8') === inputsStamp();
  } catch {
    return false;
  }
}

function stamp(artifact: string): void {
  mkdirSync(join(WORK, 'stamps'), { recursive: true });
  writeFileSync(stampPath(artifact), inputsStamp());
}

export function commit(): string {
  try {
    return run('git', ['rev-parse', '--short=12', 'HEAD']).trim();
  } catch {
    return 'unknown';
  }
}

/** The Node.js binary the executable is made of: the one running this script (24.x). */
function nodeBinary(): string {
  return process.execPath;
}

export async function buildExecutable(target: Target = X86_64): Promise<string> {
  if (target.arch !== 'x86_64') throw new Error(`no ${target.arch} build on this machine`);
  if (!existsSync(ADDON)) throw new Error(`${ADDON} is missing: run npm ci (or npm run build:native) first`);
  const work = join(WORK, 'sea', target.arch);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });

  step('bundle (esbuild)');
  const bundle = join(work, 'gateway.cjs');
  await build({
    entryPoints: [join(ROOT, 'packaging', 'sea', 'main.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
    // ws's optional accelerators; it falls back to JavaScript without them.
    external: ['bufferutil', 'utf-8-validate'],
    define: {
      FIREZONE_BUILD_COMMIT: JSON.stringify(commit()),
      'import.meta.url': 'globalThis.__FIREZONE_MODULE_URL__',
    },
  });

  step('single executable application');
  const blob = join(work, 'sea-prep.blob');
  const config = join(work, 'sea-config.json');
  writeFileSync(
    config,
    JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, assets: { 'firezone_native.node': ADDON } }),
  );
  run(nodeBinary(), ['--experimental-sea-config', config]);
  const output = join(work, 'firezone-gateway');
  copyFileSync(nodeBinary(), output);
  chmodSync(output, 0o755);
  // Node's debug information is most of its size; the blob goes in after, so strip comes first.
  run('strip', ['--strip-all', output]);
  run(nodeBinary(), [join(ROOT, 'node_modules', 'postject', 'dist', 'cli.js'), output, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);

  const destination = paths.executable(target);
  mkdirSync(dirname(destination), { recursive: true });
  rmSync(destination, { force: true });
  copyFileSync(output, destination);
  chmodSync(destination, 0o755);
  const latest = join(RELEASE, 'firezone-gateway', 'latest', target.arch);
  mkdirSync(dirname(latest), { recursive: true });
  rmSync(latest, { force: true });
  symlinkSync(relative(dirname(latest), destination), latest);
  const asset = join(RELEASE, `firezone-gateway_${GATEWAY_VERSION}_${target.arch}`);
  rmSync(asset, { force: true });
  linkSync(destination, asset);
  writeFileSync(`${asset}.sha256sum.txt`, `${await sha256(asset)}  ${relative(RELEASE, asset)}\n`);
  stamp(destination);
  return destination;
}

const DEBIAN = join(ROOT, 'packaging', 'debian');

export async function buildDeb(target: Target = X86_64): Promise<string> {
  const executable = paths.executable(target);
  if (!isFresh(executable)) await buildExecutable(target);
  step('Debian package (dpkg-deb)');
  const stage = join(WORK, 'deb', target.debArch);
  rmSync(stage, { recursive: true, force: true });
  const put = (source: string, destination: string, mode: number): void => {
    const path = join(stage, destination);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    copyFileSync(source, path);
    chmodSync(path, mode);
  };
  put(executable, 'usr/bin/firezone-gateway', 0o755);
  put(join(DEBIAN, 'firezone'), 'usr/bin/firezone', 0o755);
  put(join(DEBIAN, 'firezone-gateway-init'), 'usr/bin/firezone-gateway-init', 0o755);
  put(join(DEBIAN, 'firezone-gateway.service'), 'lib/systemd/system/firezone-gateway.service', 0o644);
  put(join(DEBIAN, 'firezone-gateway.sysusers'), 'usr/lib/sysusers.d/firezone-gateway.conf', 0o644);
  put(join(DEBIAN, 'firezone-gateway.tmpfiles'), 'usr/lib/tmpfiles.d/firezone-gateway.conf', 0o644);
  put(join(DEBIAN, 'copyright'), 'usr/share/doc/firezone-gateway/copyright', 0o644);
  put(join(DEBIAN, 'lintian-overrides'), 'usr/share/lintian/overrides/firezone-gateway', 0o644);
  const changelog = join(stage, 'usr/share/doc/firezone-gateway/changelog');
  writeFileSync(
    changelog,
    `firezone-gateway (${GATEWAY_VERSION}) stable; urgency=medium\n\n  * Release ${GATEWAY_VERSION} (TypeScript implementation, commit ${commit()}).\n\n -- Firezone Gateway (TypeScript) maintainers <maintainers@example.org>  ${debianDate()}\n`,
  );
  run('gzip', ['-9n', changelog]);
  for (const page of ['firezone-gateway.8', 'firezone.8', 'firezone-gateway-init.8']) {
    const path = join(stage, 'usr/share/man/man8', page);
    mkdirSync(dirname(path), { recursive: true });
    copyFileSync(join(DEBIAN, 'man', page), path);
    chmodSync(path, 0o644);
    run('gzip', ['-9n', path]);
  }

  const control = join(stage, 'DEBIAN');
  mkdirSync(control, { recursive: true });
  for (const script of ['postinst', 'prerm', 'postrm']) put(join(DEBIAN, script), `DEBIAN/${script}`, 0o755);
  const installedSize = Math.ceil(directorySize(stage, control) / 1024);
  writeFileSync(
    join(control, 'control'),
    [
      'Package: firezone-gateway',
      `Version: ${GATEWAY_VERSION}`,
      `Architecture: ${target.debArch}`,
      'Maintainer: Firezone Gateway (TypeScript) maintainers <maintainers@example.org>',
      `Installed-Size: ${installedSize}`,
      'Depends: libc6 (>= 2.28), libgcc-s1, libstdc++6 (>= 5.2), iproute2, iptables, procps, systemd',
      'Section: net',
      'Priority: optional',
      'Homepage: https://www.firezone.dev',
      'Description: Gateway for the Firezone zero-trust access product',
      ' A TypeScript implementation of the Firezone Gateway, as one executable that',
      ' carries its own Node.js runtime. It connects to the Firezone portal, accepts',
      ' WireGuard tunnels from Firezone clients and forwards their traffic to the',
      ' resources they are allowed to reach. The service is installed but not',
      ' enabled: "firezone gateway authenticate", then',
      ' "firezone gateway enable-service".',
      '',
    ].join('\n'),
  );
  const deb = paths.deb(target);
  mkdirSync(RELEASE, { recursive: true });
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z3', '--build', stage, deb]);
  stamp(deb);
  return deb;
}

export async function buildImage(target: Target = X86_64): Promise<string> {
  const executable = paths.executable(target);
  if (!isFresh(executable)) await buildExecutable(target);
  step('container rootfs (mmdebstrap)');
  const rootfs = await buildRootfs('container');
  step('OCI image');
  const image = paths.image(target);
  await buildOciImage({
    rootfsTar: rootfs,
    output: image,
    arch: target.debArch,
    files: [
      { source: executable, path: 'usr/bin/firezone-gateway', mode: 0o755 },
      { source: join(ROOT, 'packaging', 'container', 'docker-init.sh'), path: 'usr/bin/docker-init.sh', mode: 0o755 },
    ],
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8', 'TERM=xterm', 'RUST_LOG=info'],
      Entrypoint: ['docker-init.sh'],
      Cmd: ['firezone-gateway'],
      WorkingDir: '/',
      Labels: {
        'org.opencontainers.image.title': 'firezone-gateway',
        'org.opencontainers.image.version': GATEWAY_VERSION,
        'org.opencontainers.image.revision': commit(),
        'org.opencontainers.image.description': 'Firezone Gateway, TypeScript implementation',
      },
      Healthcheck: {
        Test: ['CMD', 'firezone-gateway-health'],
        Interval: 10_000_000_000,
        Timeout: 5_000_000_000,
        StartPeriod: 60_000_000_000,
        Retries: 3,
      },
    },
    extraFiles: [{ path: 'usr/bin/firezone-gateway-health', content: HEALTH_SCRIPT, mode: 0o755 }],
  });
  stamp(image);
  return image;
}

/** The image's HEALTHCHECK: `/healthz` on the configured address, without curl in the image. */
const HEALTH_SCRIPT = `#!/bin/bash
# HEALTHCHECK: GET /healthz on HEALTH_CHECK_ADDR (default 0.0.0.0:8080) answers 200.
addr=\${HEALTH_CHECK_ADDR:-0.0.0.0:8080}
host=\${addr%:*}
port=\${addr##*:}
case "$host" in 0.0.0.0|'') host=127.0.0.1 ;; '[::]') host=::1 ;; \\[*\\]) host=\${host#[}; host=\${host%]} ;; esac
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in 'HTTP/1.1 200'*) exit 0 ;; *) exit 1 ;; esac
`;

export function copyExtras(): void {
  mkdirSync(join(RELEASE, 'kubernetes'), { recursive: true });
  for (const name of readdirSync(join(ROOT, 'packaging', 'kubernetes'))) {
    copyFileSync(join(ROOT, 'packaging', 'kubernetes', name), join(RELEASE, 'kubernetes', name));
  }
  copyFileSync(join(ROOT, 'packaging', 'install', 'gateway-systemd-install.sh'), join(RELEASE, 'gateway-systemd-install.sh'));
  chmodSync(join(RELEASE, 'gateway-systemd-install.sh'), 0o755);
}

export async function writeSums(): Promise<void> {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const stat = statSync(path);
      if (stat.isDirectory()) walk(path);
      else if (name !== 'SHA256SUMS') files.push(path);
    }
  };
  walk(RELEASE);
  const lines = await Promise.all(files.map(async (file) => `${await sha256(file)}  ${relative(RELEASE, file)}`));
  writeFileSync(join(RELEASE, 'SHA256SUMS'), lines.join('\n') + '\n');
}

export const sha256 = sha256File;

function directorySize(dir: string, skip: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (path === skip) continue;
    const stat = statSync(path);
    total += stat.isDirectory() ? directorySize(path, skip) : stat.size;
  }
  return total;
}

function debianDate(): string {
  const date = spawnSync('date', ['-R', '-d', `@${Number(run('git', ['log', '-1', '--format=%ct']).trim() || Date.now() / 1000)}`], { encoding: 'utf8' });
  return date.stdout.trim();
}

export function readVersion(): string {
  return GATEWAY_VERSION;
}

async function main(): Promise<void> {
  const wanted = new Set(process.argv.slice(2));
  const all = wanted.size === 0 || wanted.has('all');
  const started = performance.now();
  if (all || wanted.has('executable')) await buildExecutable();
  if (all || wanted.has('deb')) await buildDeb();
  if (all || wanted.has('image')) await buildImage();
  copyExtras();
  await writeSums();
  process.stderr.write(`package: done in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  for (const line of readFileSync(join(RELEASE, 'SHA256SUMS'), 'utf8').trim().split('\n')) {
    const file = join(RELEASE, line.split('  ')[1]!);
    process.stdout.write(`${(statSync(file).size / 1e6).toFixed(1).padStart(8)} MB  ${relative(ROOT, file)}\n`);
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
