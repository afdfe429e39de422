import { createHash, createHmac, randomUUID } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { decodeUtf8, trimWhitespace } from './credentials.ts';
import { ioContext } from './io-error.ts';

export const GATEWAY_ID_PATH = '/var/lib/firezone/gateway_id';
export const MACHINE_ID_PATH = '/etc/machine-id';

/** The reference's "app id" for gateways: the HMAC key of the id derived from `/etc/machine-id`. */
export const GATEWAY_APP_ID = '753b38f9f96947ef8083802d5909a372';

export const ID_ERROR_MESSAGE =
  "Couldn't read FIREZONE_ID or write it to disk: Please provide it through the env variable or provide rw access to /var/lib/firezone/";

/**
 * Where the id came from: `env` (FIREZONE_ID), `file` (the JSON id file, as 1.6.0 reads it),
 * `machine-id` (derived from /etc/machine-id), `generated` (new, written to the file), or
 * `legacy-file` (a file 1.6.0 cannot read, whose raw text gateways up to 1.4.17 used as the id).
 */
export type IdSource = 'env' | 'file' | 'machine-id' | 'generated' | 'legacy-file';

export interface ResolvedId {
  readonly id: string;
  readonly source: IdSource;
  /** Something the operator should know about this id, for the start-up log. */
  readonly note?: { readonly level: 'info' | 'warn'; readonly message: string };
}

/** The file system as identity resolution sees it; tests replace it. */
export interface IdHost {
  readonly path: string;
  /** Creates the id file's directory and sets it to 0770; throws the reference's error. */
  prepareDirectory(): void;
  /** The id file's bytes; throws when it is missing or unreadable. */
  readIdFile(): Uint8Array;
  /** Sets the id file to 0640. */
  restrictIdFile(): void;
  /** `/etc/machine-id`'s bytes; throws when it is missing or unreadable. */
  readMachineId(): Uint8Array;
  /**
   * Writes a new id file without replacing an existing one (the reference's no-overwrite write),
   * except a blank one (see resolveGatewayId); throws the reference's error.
   */
  writeIdFile(content: string, replaceBlank: boolean): void;
}

/**
 * The gateway's identity as 1.6.0 resolves it (MAIN6 `get_firezone_id`, `device_id.rs`
 * `get_or_create_gateway`):
 * 1. FIREZONE_ID when not empty;
 * 2. the id file `/var/lib/firezone/gateway_id` as JSON `{"id":"..."}` (its directory is created and
 *    set to 0770 first, the file to 0640);
 * 3. else the lowercase hex HMAC-SHA256 of `/etc/machine-id` (the whole file, newline included)
 *    keyed with the gateway app id, not written anywhere;
 * 4. else `hex(sha256(random UUIDv4))`, written to the id file as JSON.
 *
 * Two differences, both for hosts coming from older gateways: a non-blank id file that is not
 * such JSON was the id itself for gateways up to 1.4.17 (they used the file's raw text), and 1.6.0
 * would silently move such a host to a new identity; it is kept, with a warning. A blank file,
 * fatal for 1.6.0 when there is no machine id, is replaced.
 */
export function resolveGatewayId(envId: string | undefined, host: IdHost = fileIdHost()): ResolvedId {
  if (envId !== undefined && envId !== '') return { id: envId, source: 'env' };
  try {
    return resolveFromHost(host);
  } catch (cause) {
    throw new Error(ID_ERROR_MESSAGE, { cause });
  }
}

function resolveFromHost(host: IdHost): ResolvedId {
  host.prepareDirectory();

  const content = attempt(() => decodeUtf8(host.readIdFile()));
  const fromJson = content === undefined ? undefined : parseIdJson(content);
  if (fromJson !== undefined && attempt(() => (host.restrictIdFile(), true))) {
    const note = fileNote(host);
    return note === undefined ? { id: fromJson, source: 'file' } : { id: fromJson, source: 'file', note };
  }
  if (fromJson === undefined && content !== undefined && trimWhitespace(content) !== '') {
    return {
      id: content,
      source: 'legacy-file',
      note: {
        level: 'warn',
        message:
          `${host.path} is not the JSON id file 1.6.0 reads; its text is used as the Firezone ID, as gateways up to 1.4.17 did, ` +
          'so the portal keeps seeing the same gateway (1.6.0 would ignore the file and take a new id). Set FIREZONE_ID to this value to make it explicit',
      },
    };
  }

  const machineId = attempt(() => host.readMachineId());
  if (machineId !== undefined && decodeUtf8(machineId) !== undefined) {
    return { id: deriveFromMachineId(machineId), source: 'machine-id' };
  }

  const id = generateGatewayId();
  host.writeIdFile(JSON.stringify({ id }), content !== undefined && trimWhitespace(content) === '');
  return { id, source: 'generated' };
}

/**
 * The id in the reference's id file: a JSON object whose `id` is a string (other keys ignored,
 * a repeated `id` rejected, as serde does); undefined for anything else.
 */
export function parseIdJson(content: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  const id = (parsed as { id?: unknown }).id;
  if (typeof id !== 'string') return undefined;
  if ((content.match(/"id"\s*:/g) ?? []).length > 1 && countTopLevelIdKeys(content) > 1) return undefined;
  return id;
}

/** lowercase hex HMAC-SHA256(key = the gateway app id, message = the machine id file's bytes). */
export function deriveFromMachineId(machineId: Uint8Array): string {
  return createHmac('sha256', GATEWAY_APP_ID).update(machineId).digest('hex');
}

/** hex(sha256(random UUIDv4 string)): 64 lowercase hex characters, as the reference generates. */
export function generateGatewayId(uuid: string = randomUUID()): string {
  return createHash('sha256').update(uuid).digest('hex');
}

export function fileIdHost(path: string = GATEWAY_ID_PATH, machineIdPath: string = MACHINE_ID_PATH): IdHost {
  const directory = dirname(path);
  return {
    path,
    prepareDirectory() {
      try {
        mkdirSync(directory, { recursive: true });
      } catch (error) {
        throw ioContext('Failed to create dir for firezone-id', error);
      }
      try {
        chmodSync(directory, 0o770);
      } catch (error) {
        throw ioContext(`Couldn't set permissions on Tunnel service config dir \`${directory}\``, error);
      }
    },
    readIdFile: () => readFileSync(path),
    restrictIdFile: () => chmodSync(path, 0o640),
    readMachineId: () => readFileSync(machineIdPath),
    writeIdFile(content, replaceBlank) {
      const temporary = `${path}.${process.pid}.tmp`;
      try {
        writeFileSync(temporary, content, { mode: 0o640 });
        if (replaceBlank) renameSync(temporary, path);
        else linkSync(temporary, path);
      } catch (error) {
        throw ioContext('Failed to write firezone-id file', error);
      } finally {
        try {
          unlinkSync(temporary);
        } catch {
          // Renamed away, or never written.
        }
      }
      try {
        chmodSync(path, 0o640);
      } catch (error) {
        throw ioContext("Couldn't set permissions on Firezone ID file", error);
      }
    },
  };
}

function fileNote(host: IdHost): ResolvedId['note'] {
  // 1.4.18 and later never write the file on a host with a machine id: this one predates them,
  // and gateways up to 1.4.17 sent the file's JSON text itself as their id from the second start.
  if (attempt(() => host.readMachineId()) === undefined) return undefined;
  return {
    level: 'info',
    message:
      `${host.path} was written by a gateway older than 1.4.18; 1.6.0 and this gateway use the id inside it. ` +
      'Gateways up to 1.4.17 sent the file\'s whole JSON text as their id from their second start on: if the portal shows this gateway as new, set FIREZONE_ID to that text',
  };
}

function attempt<T>(action: () => T): T | undefined {
  try {
    return action();
  } catch {
    return undefined;
  }
}

/** How many times `"id"` is a key of the top-level object (serde rejects a repeated field). */
function countTopLevelIdKeys(content: string): number {
  let depth = 0;
  let count = 0;
  for (let i = 0; i < content.length; i++) {
    const char = content[i]!;
    if (char === '"') {
      let end = i + 1;
      while (end < content.length && content[end] !== '"') end += content[end] === '\\' ? 2 : 1;
      const key = content.slice(i, end + 1);
      if (depth === 1 && /^\s*:/.test(content.slice(end + 1)) && JSON.parse(key) === 'id') count++;
      i = end;
    } else if (char === '{' || char === '[') {
      depth++;
    } else if (char === '}' || char === ']') {
      depth--;
    }
  }
  return count;
}
