/**
 * Structural mutations of JSON text for the portal parsers: one value somewhere in the tree
 * replaced by a value of another kind, a key dropped or added, an array emptied, grown or
 * repeated, a string made long or odd, a number made huge, negative or fractional, deep nesting.
 * Deterministic from a seeded RandomSource.
 */
import type { RandomSource } from '../../src/util/random.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const ODD_STRINGS = ['', ' ', '\u0000', '🙂', '::', '0.0.0.0', '255.255.255.255:65535', '[::1]:0', 'fd00::/0', '10.0.0.0/33', '*.*', '?', '-1', 'null', 'a'.repeat(300), '00000000-0000-0000-0000-000000000000', 'not-a-uuid', 'candidate:1 1 UDP 1 1.1.1.1 1 typ host'];
const ODD_NUMBERS = [0, -1, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, Number.MAX_SAFE_INTEGER + 2, 65536, 4_294_967_296];

/** A structurally mutated copy of `input` (JSON text); the byte-level fallback is left to the caller. */
export function mutateJson(rng: RandomSource, input: Uint8Array, maxLength: number): Uint8Array {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(input));
  } catch {
    return input.slice();
  }
  const rounds = 1 + (rng.u32() % 3);
  for (let round = 0; round < rounds; round++) value = mutateTree(rng, value, 0);
  const text = encoder.encode(JSON.stringify(value) ?? 'null');
  return text.length > maxLength ? text.subarray(0, maxLength).slice() : text;
}

function mutateTree(rng: RandomSource, value: unknown, depth: number): unknown {
  // Walk down to a random node, then change it.
  if (depth < 8 && (rng.u32() % 3) !== 0) {
    if (Array.isArray(value) && value.length > 0) {
      const copy = value.slice();
      const i = rng.u32() % copy.length;
      copy[i] = mutateTree(rng, copy[i], depth + 1);
      return copy;
    }
    if (isRecord(value)) {
      const keys = Object.keys(value);
      if (keys.length > 0) {
        const key = keys[rng.u32() % keys.length]!;
        return { ...value, [key]: mutateTree(rng, value[key], depth + 1) };
      }
    }
  }
  return changeNode(rng, value);
}

function changeNode(rng: RandomSource, value: unknown): unknown {
  switch (rng.u32() % 10) {
    case 0:
      return anyValue(rng, 0);
    case 1:
      return null;
    case 2:
      if (isRecord(value)) {
        const keys = Object.keys(value);
        if (keys.length === 0) return value;
        const drop = keys[rng.u32() % keys.length]!;
        const { [drop]: _dropped, ...rest } = value;
        return rest;
      }
      return anyValue(rng, 0);
    case 3:
      if (isRecord(value)) return { ...value, [ODD_STRINGS[rng.u32() % ODD_STRINGS.length]!]: anyValue(rng, 0) };
      return [value];
    case 4:
      if (Array.isArray(value)) return value.length === 0 ? [anyValue(rng, 0)] : Array.from({ length: 1 + (rng.u32() % 40) }, (_, i) => value[i % value.length]);
      return [];
    case 5:
      if (Array.isArray(value)) return [];
      return {};
    case 6:
      return ODD_STRINGS[rng.u32() % ODD_STRINGS.length];
    case 7:
      return ODD_NUMBERS[rng.u32() % ODD_NUMBERS.length];
    case 8:
      if (typeof value === 'string' && value.length > 0) {
        const i = rng.u32() % value.length;
        return value.slice(0, i) + String.fromCharCode(rng.u32() % 0x250) + value.slice(i + 1);
      }
      return typeof value === 'number' ? -value : !value;
    default: {
      let nested: unknown = value;
      const levels = 1 + (rng.u32() % 64);
      for (let i = 0; i < levels; i++) nested = (rng.u32() & 1) === 0 ? [nested] : { a: nested };
      return nested;
    }
  }
}

function anyValue(rng: RandomSource, depth: number): unknown {
  switch (rng.u32() % (depth > 2 ? 4 : 6)) {
    case 0:
      return ODD_STRINGS[rng.u32() % ODD_STRINGS.length];
    case 1:
      return ODD_NUMBERS[rng.u32() % ODD_NUMBERS.length];
    case 2:
      return (rng.u32() & 1) === 0;
    case 3:
      return null;
    case 4:
      return Array.from({ length: rng.u32() % 4 }, () => anyValue(rng, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: rng.u32() % 4 }, (_, i) => [`k${i}`, anyValue(rng, depth + 1)]));
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
