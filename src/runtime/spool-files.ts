// File operations of the flow-log spool, asynchronous so they run on libuv's pool and never on the packet path.
// The spool holds Bearer tokens: directories are created 0700 and files 0600, whatever the umask, and every
// file is written whole under a temporary name, synced and renamed into place, so a reader (or a restart)
// sees either nothing or the complete file.

import { open, mkdir, chmod, rename, unlink, readdir } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;
/** Temporary files start with a dot and end here, so no reader mistakes one for a report or a token. */
const TEMPORARY_SUFFIX = '.tmp';

let temporaryCounter = 0;

/** Creates `dir` and any missing parents with mode 0700 (existing directories are left as they are). */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  if (first === undefined) return;
  // mkdir's mode passes through the umask; set it on each directory this call created.
  const created = relative(first, dir);
  let path = first;
  await chmod(path, DIR_MODE);
  if (created === '') return;
  for (const part of created.split(sep)) {
    path = join(path, part);
    await chmod(path, DIR_MODE);
  }
}

/** Writes `data` to `path` (mode 0600) atomically and durably: temporary file, fsync, rename, fsync of the directory. */
export async function writePrivateFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  const temporary = join(dir, `.${path.slice(dir.length + 1)}.${process.pid}.${temporaryCounter++}${TEMPORARY_SUFFIX}`);
  const handle = await open(temporary, 'wx', FILE_MODE);
  try {
    try {
      await handle.chmod(FILE_MODE);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await syncDirectory(dir);
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is done.
  } finally {
    await handle.close();
  }
}

/** Whether a name is one of our temporary files (left behind by a crash between write and rename). */
export function isTemporaryName(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMPORARY_SUFFIX);
}

/** Removes temporary files a crash left in `dir`; returns how many. */
export async function removeTemporaries(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir)) {
    if (!isTemporaryName(name)) continue;
    await unlink(join(dir, name)).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}

/** Entry names of `dir`; empty when it does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** Failures of the environment (full disk, read-only or unwritable directory) that may pass: retried later. */
export function isTransientFsError(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EACCES' || code === 'EPERM' || code === 'EIO' || code === 'EMFILE' || code === 'ENFILE';
}
