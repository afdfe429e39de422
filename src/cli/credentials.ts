import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ioErrorMessage } from './io-error.ts';

export type ReadFile = (path: string) => Uint8Array;

/**
 * The token when neither the argument nor `FIREZONE_TOKEN` gives one, as 1.6.0 reads it: the
 * systemd credential `$CREDENTIALS_DIRECTORY/FIREZONE_TOKEN` (`LoadCredential=` in the unit), its
 * content trimmed of surrounding whitespace. Without the variable, or when the file cannot be read,
 * start-up fails with the reference's message.
 */
export function readSystemdCredential(
  name: string,
  env: Readonly<Record<string, string | undefined>>,
  readFile: ReadFile = readFileSync,
): string {
  const context = `Failed to read \`${name}\` systemd credential`;
  const directory = env['CREDENTIALS_DIRECTORY'];
  if (directory === undefined) throw new Error(context, { cause: new Error('`CREDENTIALS_DIRECTORY` not provided') });
  let bytes: Uint8Array;
  try {
    bytes = readFile(join(directory, name));
  } catch (error) {
    throw new Error(context, { cause: new Error(ioErrorMessage(error)) });
  }
  const text = decodeUtf8(bytes);
  if (text === undefined) throw new Error(context, { cause: new Error('stream did not contain valid UTF-8') });
  return trimWhitespace(text);
}

export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** Rust's `str::trim`: Unicode White_Space at both ends (a byte-order mark is kept). */
export function trimWhitespace(text: string): string {
  return text.replace(/^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/gu, '');
}
