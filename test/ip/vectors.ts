import { readFileSync } from 'node:fs';
import { fixturePath } from '../support/env.ts';

interface Vector {
  readonly name: string;
  readonly description: string;
  readonly len: number;
  readonly hex: string;
}

let cached: Map<string, Vector> | undefined;

/** The bytes of a vector in `packets/generated-etherparse-vectors.json`, read at test time. */
export function vector(name: string): Uint8Array {
  const found = vectors().get(name);
  if (found === undefined) throw new Error(`no vector ${name}`);
  const bytes = Uint8Array.from(Buffer.from(found.hex, 'hex'));
  if (bytes.length !== found.len) throw new Error(`vector ${name}: ${bytes.length} bytes, expected ${found.len}`);
  return bytes;
}

export function vectorNames(): string[] {
  return [...vectors().keys()];
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function readJsonFixture<T>(...parts: string[]): T {
  return JSON.parse(readFileSync(fixturePath(...parts), 'utf8')) as T;
}

function vectors(): Map<string, Vector> {
  if (cached === undefined) {
    const file = readJsonFixture<{ vectors: Vector[] }>('packets', 'generated-etherparse-vectors.json');
    cached = new Map(file.vectors.map((v) => [v.name, v]));
  }
  return cached;
}
