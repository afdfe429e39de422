import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const GATEWAY_ID_PATH = '/var/lib/firezone/gateway_id';

export const ID_ERROR_MESSAGE =
  "Couldn't read FIREZONE_ID or write it to disk: Please provide it through the env variable or provide rw access to /var/lib/firezone/";

export type IdSource = 'env' | 'file' | 'generated';

export interface ResolvedId {
  readonly id: string;
  readonly source: IdSource;
}

export interface IdStore {
  readonly path: string;
  /** Returns the file content, or undefined when it does not exist. */
  read(): string | undefined;
  /** Writes the file atomically (replacing an empty or corrupt one). */
  write(content: string): void;
}

/**
 * The gateway's stable identity: FIREZONE_ID, else the persisted id, else a new one that is
 * persisted. Unlike the reference (which reads the file raw and so changes identity on the
 * second start of a self-generated id), the file is trimmed and both the plain form and the
 * JSON `{"id":"..."}` form the reference writes are accepted, so the id is the same on every
 * start. An empty or unreadable-as-id file is replaced rather than fatal.
 */
export function resolveGatewayId(envId: string | undefined, store: IdStore = fileIdStore()): ResolvedId {
  if (envId !== undefined && envId !== '') return { id: envId, source: 'env' };
  let content: string | undefined;
  try {
    content = store.read();
  } catch (cause) {
    throw new Error(ID_ERROR_MESSAGE, { cause });
  }
  const persisted = content === undefined ? undefined : parsePersistedId(content);
  if (persisted !== undefined) return { id: persisted, source: 'file' };

  const id = generateGatewayId();
  try {
    store.write(JSON.stringify({ id }));
  } catch (cause) {
    throw new Error(ID_ERROR_MESSAGE, { cause });
  }
  return { id, source: 'generated' };
}

/** The id in a persisted file: JSON `{"id":"..."}` or the plain text, trimmed; undefined if none. */
export function parsePersistedId(content: string): string | undefined {
  const text = content.trim();
  if (text === '') return undefined;
  if (text.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed !== null && typeof parsed === 'object') {
        const id = (parsed as { id?: unknown }).id;
        return typeof id === 'string' && id.trim() !== '' ? id.trim() : undefined;
      }
    } catch {
      // Not JSON after all: an id may legitimately start with '{' (a braced UUID).
    }
  }
  return text;
}

/** hex(sha256(random UUIDv4 string)): 64 lowercase hex characters, as the reference generates. */
export function generateGatewayId(uuid: string = randomUUID()): string {
  return createHash('sha256').update(uuid).digest('hex');
}

export function fileIdStore(path: string = GATEWAY_ID_PATH): IdStore {
  return {
    path,
    read() {
      try {
        return readFileSync(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    write(content) {
      const dir = dirname(path);
      if (mkdirSync(dir, { recursive: true }) !== undefined) chmodSync(dir, 0o770);
      const temporary = `${path}.${process.pid}.tmp`;
      writeFileSync(temporary, content, { mode: 0o640 });
      chmodSync(temporary, 0o640);
      renameSync(temporary, path);
    },
  };
}
