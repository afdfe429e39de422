import { constants } from 'node:os';
import { getSystemErrorMessage } from 'node:util';

/** glibc's wording for the errors a start-up file access meets; others fall back to libuv's. */
const MESSAGES: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  EEXIST: 'File exists',
  EROFS: 'Read-only file system',
  ELOOP: 'Too many levels of symbolic links',
  EINVAL: 'Invalid argument',
  ENOSPC: 'No space left on device',
  EIO: 'Input/output error',
};

/**
 * An I/O error as the reference prints one (`No such file or directory (os error 2)`), so
 * messages built from it read the same.
 */
export function ioErrorMessage(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !code.startsWith('E')) return error instanceof Error ? error.message : String(error);
  const errno = (constants.errno as Record<string, number>)[code];
  if (errno === undefined) return error instanceof Error ? error.message : String(error);
  const text = MESSAGES[code] ?? capitalize(getSystemErrorMessage(-errno));
  return `${text} (os error ${errno})`;
}

/** An Error whose message is `context` and whose cause prints as the reference's I/O error. */
export function ioContext(context: string, error: unknown): Error {
  return new Error(context, { cause: new Error(ioErrorMessage(error)) });
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
