// The two transport cipher backends (native addon, node:crypto) are interchangeable: the same
// jobs give the same bytes and the same statuses, whatever the keys, counters, lengths and
// buffer placement.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { NativeTransportCipher } from '../../src/runtime/native-cipher.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import {
  AEAD_BAD_KEY,
  AEAD_BAD_RANGE,
  AEAD_JOB_WORDS,
  AEAD_OK,
  AEAD_UNAUTHENTIC,
  NodeCryptoTransportCipher,
  writeAeadJob,
  type TransportCipher,
} from '../../src/wireguard/index.ts';

const skip = isNativeAddonBuilt() ? undefined : 'the native addon is not built (npm ci builds it)';
const STATUS = 6;

interface Job {
  readonly plaintext: Uint8Array;
  readonly counter: number;
  readonly source: number;
  readonly target: number;
}

/** A batch of seal jobs laid out in one buffer, and the same batch opened back. */
const batchArbitrary = fc
  .record({
    key: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    inPlace: fc.boolean(),
    jobs: fc.array(
      fc.record({
        plaintext: fc.uint8Array({ maxLength: 1500 }),
        counter: fc.oneof(fc.nat({ max: 1000 }), fc.constantFrom(0xffff_ffff, 0x1_0000_0000, 2 ** 53 - 1), fc.maxSafeNat()),
        gap: fc.nat({ max: 40 }),
      }),
      { minLength: 1, maxLength: 24 },
    ),
  })
  .map(({ key, inPlace, jobs }) => {
    let cursor = 0;
    const laidOut: Job[] = jobs.map(({ plaintext, counter, gap }) => {
      const source = cursor + gap;
      cursor = source + plaintext.length + 16;
      return { plaintext, counter, source, target: inPlace ? source : source + 1 };
    });
    return { key, inPlace, jobs: laidOut, size: cursor + 1 };
  });

function sealAll(cipher: TransportCipher, keyId: number, jobs: readonly Job[], size: number, inPlace: boolean) {
  const source = new Uint8Array(size);
  for (const job of jobs) source.set(job.plaintext, job.source);
  const target = inPlace ? source : new Uint8Array(size + 1);
  const words = new Uint32Array(jobs.length * AEAD_JOB_WORDS);
  jobs.forEach((job, i) => writeAeadJob(words, i, keyId, job.counter, job.source, job.plaintext.length, job.target));
  const sealed = cipher.run(false, source, target, words, jobs.length);
  return { target, words, sealed };
}

function openAll(cipher: TransportCipher, keyId: number, jobs: readonly Job[], sealed: Uint8Array) {
  const target = new Uint8Array(sealed.length);
  const words = new Uint32Array(jobs.length * AEAD_JOB_WORDS);
  jobs.forEach((job, i) => writeAeadJob(words, i, keyId, job.counter, job.target, job.plaintext.length + 16, job.source));
  const opened = cipher.run(true, sealed, target, words, jobs.length);
  return { target, words, opened };
}

function statuses(words: Uint32Array, count: number): number[] {
  return Array.from({ length: count }, (_, i) => words[i * AEAD_JOB_WORDS + STATUS]!);
}

describe('transport cipher backends', { skip }, () => {
  test('native and node:crypto seal to identical bytes and open each other', () => {
    fc.assert(
      fc.property(batchArbitrary, ({ key, inPlace, jobs, size }) => {
        const native = new NativeTransportCipher();
        const portable = new NodeCryptoTransportCipher();
        const a = sealAll(native, native.addKey(key, true), jobs, size, inPlace);
        const b = sealAll(portable, portable.addKey(key, true), jobs, size, inPlace);
        assert.equal(a.sealed, jobs.length);
        assert.equal(b.sealed, jobs.length);
        assert.deepEqual(a.target, b.target);
        // Each opens what the other sealed.
        const openedByNative = openAll(native, native.addKey(key, false), jobs, b.target);
        const openedByPortable = openAll(portable, portable.addKey(key, false), jobs, a.target);
        assert.equal(openedByNative.opened, jobs.length);
        assert.deepEqual(openedByNative.target, openedByPortable.target);
        for (const job of jobs) {
          assert.deepEqual(openedByNative.target.subarray(job.source, job.source + job.plaintext.length), job.plaintext);
        }
      }),
      { numRuns: 150 },
    );
  });

  test('a tampered message fails on both with nothing of it written', () => {
    fc.assert(
      fc.property(batchArbitrary, fc.nat(), fc.integer({ min: 1, max: 255 }), ({ key, jobs, size }, at, flip) => {
        const results = [new NativeTransportCipher(), new NodeCryptoTransportCipher()].map((cipher) => {
          const { target } = sealAll(cipher, cipher.addKey(key, true), jobs, size, false);
          const victim = jobs[at % jobs.length]!;
          target[victim.target + (at % (victim.plaintext.length + 16))]! ^= flip;
          return openAll(cipher, cipher.addKey(key, false), jobs, target);
        });
        const [native, portable] = results as [(typeof results)[0], (typeof results)[0]];
        assert.deepEqual(statuses(native.words, jobs.length), statuses(portable.words, jobs.length));
        assert.equal(statuses(native.words, jobs.length).filter((s) => s === AEAD_UNAUTHENTIC).length, 1);
        assert.deepEqual(native.target, portable.target);
      }),
      { numRuns: 60 },
    );
  });

  test('the bytes are ChaCha20-Poly1305 with the WireGuard nonce (4 zero bytes, counter little-endian)', () => {
    const key = new Uint8Array(32).fill(9);
    const plaintext = new TextEncoder().encode('attack at dawn');
    const counter = 0x1_2345_6789;
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setUint32(4, counter >>> 0, true);
    new DataView(nonce.buffer).setUint32(8, Math.floor(counter / 2 ** 32), true);
    const reference = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    const expected = Buffer.concat([reference.update(plaintext), reference.final(), reference.getAuthTag()]);
    const native = new NativeTransportCipher();
    const { target } = sealAll(native, native.addKey(key, true), [{ plaintext, counter, source: 0, target: 0 }], plaintext.length + 16, true);
    assert.deepEqual(Buffer.from(target), expected);
  });

  test('jobs of several keys interleaved in one batch, with keys removed and slots reused between batches, give the same bytes on both', () => {
    const keyArbitrary = fc.uint8Array({ minLength: 32, maxLength: 32 });
    fc.assert(
      fc.property(
        fc.array(keyArbitrary, { minLength: 2, maxLength: 6 }),
        fc.array(fc.record({ key: fc.nat(), counter: fc.nat({ max: 5000 }), length: fc.nat({ max: 200 }) }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.record({ remove: fc.nat(), replacement: keyArbitrary }), { minLength: 1, maxLength: 4 }),
        (raws, jobs, changes) => {
          const ciphers = [new NativeTransportCipher(), new NodeCryptoTransportCipher()];
          const ids = ciphers.map((cipher) => raws.map((raw) => cipher.addKey(raw, true)));
          const run = () =>
            ciphers.map((cipher, c) => {
              const stride = 200 + 16;
              const buffer = new Uint8Array(jobs.length * stride);
              const words = new Uint32Array(jobs.length * AEAD_JOB_WORDS);
              jobs.forEach((job, i) => {
                buffer.fill(i & 0xff, i * stride, i * stride + job.length);
                writeAeadJob(words, i, ids[c]![job.key % raws.length]!, job.counter, i * stride, job.length, i * stride);
              });
              cipher.run(false, buffer, buffer, words, jobs.length);
              return { buffer, statuses: statuses(words, jobs.length) };
            });
          for (const change of [undefined, ...changes]) {
            if (change !== undefined) {
              // The key the last batch used last is the one most likely to be left in a native context.
              const slot = (jobs[jobs.length - 1]!.key + change.remove) % raws.length;
              ciphers.forEach((cipher, c) => {
                cipher.removeKey(ids[c]![slot]!);
                ids[c]![slot] = cipher.addKey(change.replacement, true);
              });
            }
            const [native, portable] = run() as [{ buffer: Uint8Array; statuses: number[] }, { buffer: Uint8Array; statuses: number[] }];
            assert.deepEqual(native.statuses, portable.statuses);
            assert.ok(native.statuses.every((status) => status === AEAD_OK));
            assert.deepEqual(native.buffer, portable.buffer);
          }
        },
      ),
      { numRuns: 80 },
    );
  });

  test('a removed key, a key of the wrong direction and a range outside the buffer fail the same on both', () => {
    for (const cipher of [new NativeTransportCipher(), new NodeCryptoTransportCipher()]) {
      const seal = cipher.addKey(new Uint8Array(32).fill(1), true);
      const open = cipher.addKey(new Uint8Array(32).fill(1), false);
      assert.equal(cipher.keyCount, 2);
      const buffer = new Uint8Array(64);
      const words = new Uint32Array(4 * AEAD_JOB_WORDS);
      writeAeadJob(words, 0, open, 0, 0, 16, 0);
      writeAeadJob(words, 1, seal, 0, 0, 60, 0);
      writeAeadJob(words, 2, seal, 0, 0, 16, 8);
      writeAeadJob(words, 3, seal, 0, 0, 16, 32);
      assert.equal(cipher.run(false, buffer, buffer, words, 4), 1, cipher.kind);
      assert.deepEqual(statuses(words, 4), [AEAD_BAD_KEY, AEAD_BAD_RANGE, AEAD_BAD_RANGE, AEAD_OK], cipher.kind);
      cipher.removeKey(seal);
      cipher.removeKey(seal);
      assert.equal(cipher.keyCount, 1);
      // The slot is reused with a new generation: the old id stays dead.
      const again = cipher.addKey(new Uint8Array(32).fill(2), true);
      assert.notEqual(again, seal);
      writeAeadJob(words, 0, seal, 0, 0, 16, 32);
      assert.equal(cipher.run(false, buffer, buffer, words, 1), 0);
      assert.equal(words[STATUS], AEAD_BAD_KEY);
    }
  });
});
