/**
 * The native addon travels inside the single executable as an asset. It is written once to a
 * private directory (0700, owned by us, named after its SHA-256) and loaded from there, trying
 * the next directory when one refuses to map code (a `noexec` mount such as many a /tmp).
 *
 * `src/runtime/native.ts` finds the addon relative to its own module URL; the bundle maps
 * `import.meta.url` to `globalThis.__FIREZONE_MODULE_URL__`, which is set here to a URL from
 * which that relative path lands on the extracted file. Loading it here first puts it in the
 * module cache, so the runtime's own load is the same module, not a second `dlopen`.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const ADDON_ASSET = 'firezone_native.node';
/** Where `native.ts` looks, relative to its module: `../../build/Release/firezone_native.node`. */
const ADDON_RELATIVE = join('build', 'Release', ADDON_ASSET);
const MODULE_RELATIVE = join('dist', 'runtime', 'native.js');

export interface ExtractedAddon {
  readonly path: string;
  readonly moduleUrl: string;
}

/** Private directories in order of preference; the first that takes and runs the addon wins. */
export function candidateDirectories(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = [
    env.RUNTIME_DIRECTORY?.split(':')[0],
    env.XDG_RUNTIME_DIR,
    '/run/firezone-gateway',
    env.STATE_DIRECTORY?.split(':')[0],
    '/var/lib/firezone',
    tmpdir(),
    join(homedir(), '.cache', 'firezone-gateway'),
  ];
  return [...new Set(dirs.filter((dir): dir is string => dir !== undefined && dir !== ''))];
}

export function extractAndLoadAddon(bytes: Uint8Array, directories: readonly string[] = candidateDirectories()): ExtractedAddon {
  const digest = createHash('sha256').update(bytes).digest('hex');
  const failures: string[] = [];
  for (const base of directories) {
    try {
      const root = join(base, `firezone-gateway-${digest.slice(0, 16)}`);
      privateDirectory(base, root);
      privateDirectory(root, join(root, 'build'));
      privateDirectory(join(root, 'build'), join(root, 'build', 'Release'));
      const path = join(root, ADDON_RELATIVE);
      if (!hasContent(path, digest)) writeAtomically(path, bytes);
      const moduleUrl = pathToFileURL(join(root, MODULE_RELATIVE)).href;
      createRequire(moduleUrl)(path);
      return { path, moduleUrl };
    } catch (error) {
      failures.push(`${base}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    }
  }
  throw new Error(`Failed to load the native addon: no private directory where it can be written and run (${failures.join('; ')})`);
}

function privateDirectory(parent: string, dir: string): void {
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const stat = lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || stat.isSymbolicLink()) throw new Error(`${dir} is not a directory`);
  if (uid !== undefined && stat.uid !== uid) throw new Error(`${dir} belongs to uid ${stat.uid}, not to us`);
  if ((stat.mode & 0o022) !== 0) throw new Error(`${dir} is writable by others`);
}

function hasContent(path: string, digest: string): boolean {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex') === digest;
  } catch {
    return false;
  }
}

function writeAtomically(path: string, bytes: Uint8Array): void {
  const temporary = `${path}.${process.pid}.tmp`;
  const fd = openSync(temporary, 'w', 0o500);
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
}
