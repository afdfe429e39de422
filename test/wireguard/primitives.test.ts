import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import {
  REPLAY_WINDOW,
  ReplayRings,
  ReplayWindow,
  SessionIndexAllocator,
  hash,
  hmac,
  kdf2,
  mac,
  staticIdentity,
  dh,
  importPublicKey,
} from '../../src/wireguard/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { isLater, tai64n } from '../../src/wireguard/tai64n.ts';
import { REPLAY_WORDS, replayCheck, replayMark } from '../../src/wireguard/replay.ts';

describe('replay window', () => {
  test('accepts each counter once, in any order within the window', () => {
    const window = new ReplayWindow();
    for (const c of [5, 3, 4, 0, 1, 2]) assert.equal(window.update(c), true, `${c}`);
    for (const c of [0, 1, 2, 3, 4, 5]) assert.equal(window.update(c), false, `${c} again`);
  });

  test('refuses counters older than the window and accepts the oldest one inside it', () => {
    const window = new ReplayWindow();
    assert.equal(window.update(10_000), true);
    // the window spans REPLAY_WINDOW counters ending at the highest one seen
    assert.equal(window.check(10_000 - REPLAY_WINDOW + 1), true);
    assert.equal(window.check(10_000 - REPLAY_WINDOW), false);
    assert.ok(REPLAY_WINDOW >= 1024);
  });

  test('a jump of a few words clears the words it skips, which held counters of the previous lap of the ring', () => {
    const window = new ReplayWindow();
    for (let c = 0; c <= 2100; c++) assert.equal(window.update(c), true);
    assert.equal(window.update(68 * 32), true);
    // Words 66 and 67 share their ring slots with words 2 and 3, whose counters were all seen.
    for (let c = 2101; c < 68 * 32; c++) assert.equal(window.update(c), true, `counter ${c}`);
    for (let c = 68 * 32 - REPLAY_WINDOW; c <= 68 * 32; c++) assert.equal(window.check(c), false, `counter ${c} again`);
  });

  test('a large jump forgets old bits', () => {
    const window = new ReplayWindow();
    window.update(1);
    window.update(100_000);
    assert.equal(window.check(100_000 - 64), true);
    assert.equal(window.check(100_000), false);
  });

  test('matches a set-based model on sequences that mostly climb, with stragglers and jumps across words', () => {
    const step = fc.oneof(
      { arbitrary: fc.integer({ min: 1, max: 3 }), weight: 8 },
      { arbitrary: fc.integer({ min: -70, max: -1 }), weight: 3 },
      { arbitrary: fc.integer({ min: -REPLAY_WINDOW - 40, max: -REPLAY_WINDOW + 40 }), weight: 1 },
      { arbitrary: fc.integer({ min: 20, max: 4 * REPLAY_WINDOW }), weight: 1 },
    );
    fc.assert(
      fc.property(fc.nat(100), fc.array(step, { maxLength: 600 }), (start, steps) => {
        const window = new ReplayWindow();
        const seen = new Set<number>();
        let max = -1;
        let c = start;
        for (const delta of steps) {
          c = Math.max(0, c + delta);
          const expected = !seen.has(c) && (max < 0 || c + REPLAY_WINDOW >= max + 1);
          assert.equal(window.check(c), expected, `check ${c}`);
          assert.equal(window.update(c), expected, `counter ${c}`);
          if (expected) {
            seen.add(c);
            max = Math.max(max, c);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test('matches a set-based model on random sequences', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(5000), { maxLength: 400 }), (counters) => {
        const window = new ReplayWindow();
        const seen = new Set<number>();
        let max = -1;
        for (const c of counters) {
          const expected = !seen.has(c) && (max < 0 || c + REPLAY_WINDOW >= max + 1);
          assert.equal(window.update(c), expected, `counter ${c}`);
          if (expected) {
            seen.add(c);
            max = Math.max(max, c);
          }
        }
      }),
    );
  });
});

describe('replay rings', () => {
  /** A window on a ring of `rings`, as a session keeps it. */
  function windowOn(rings: ReplayRings) {
    const base = rings.acquire();
    let next = 0;
    let top = 0;
    return {
      base,
      update(counter: number): boolean {
        if (!replayCheck(rings.words, base, next, top, counter)) return false;
        top = replayMark(rings.words, base, next, top, counter);
        next = Math.max(next, counter + 1);
        return true;
      },
    };
  }

  test('windows sharing the rings are independent, also across growth', () => {
    const rings = new ReplayRings(1);
    const windows = Array.from({ length: 5 }, () => windowOn(rings));
    assert.equal(new Set(windows.map((w) => w.base)).size, 5);
    assert.equal(rings.inUse, 5);
    assert.ok(rings.words.length >= 5 * REPLAY_WORDS);
    for (const [i, w] of windows.entries()) for (let c = 0; c <= i * 40; c++) assert.equal(w.update(c), true);
    for (const [i, w] of windows.entries()) {
      for (let c = 0; c <= i * 40; c++) assert.equal(w.update(c), false, `window ${i} counter ${c} again`);
      assert.equal(w.update(i * 40 + 1), true);
    }
  });

  test('a released ring comes back zeroed', () => {
    const rings = new ReplayRings(1);
    const first = windowOn(rings);
    for (let c = 0; c < 100; c++) first.update(c);
    rings.release(first.base);
    assert.equal(rings.inUse, 0);
    const second = windowOn(rings);
    assert.equal(second.base, first.base);
    for (let c = 0; c < 100; c++) assert.equal(second.update(c), true);
  });
});

describe('session index allocator', () => {
  test('gives unique 24-bit values', () => {
    const allocator = new SessionIndexAllocator(seededRandom(42));
    const seen = new Set<number>();
    for (let i = 0; i < 100_000; i++) {
      const value = allocator.next()!;
      assert.ok(value >= 0 && value <= 0xff_ffff);
      assert.equal(seen.has(value), false);
      seen.add(value);
    }
  });

  test('different seeds give different sequences', () => {
    const a = new SessionIndexAllocator(seededRandom(1));
    const b = new SessionIndexAllocator(seededRandom(2));
    assert.notEqual(a.next(), b.next());
  });
});

describe('crypto', () => {
  test('BLAKE2s-256 matches the RFC 7693 vector', () => {
    assert.equal(
      Buffer.from(hash(new TextEncoder().encode('abc'))).toString('hex'),
      '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982',
    );
  });

  test('keyed MAC is BLAKE2s with a 16-byte output', () => {
    const key = new Uint8Array(32).fill(1);
    const message = new Uint8Array([1, 2, 3]);
    assert.deepEqual(mac(key, message), blake2s(message, { key, dkLen: 16 }));
  });

  test('KDF2 is HKDF over HMAC-BLAKE2s', () => {
    const ck = new Uint8Array(32).fill(7);
    const input = new Uint8Array(32).fill(8);
    const prk = hmac(ck, input);
    const t1 = hmac(prk, Uint8Array.of(1));
    const t2 = hmac(prk, Uint8Array.of(...t1, 2));
    assert.deepEqual(kdf2(ck, input), [t1, t2]);
    assert.notDeepEqual(hash(input), createHash('sha256').update(input).digest());
  });

  test('X25519 agrees both ways and the RFC 7748 public key vector holds', () => {
    const alice = staticIdentity(Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'));
    assert.equal(
      Buffer.from(alice.publicKey).toString('hex'),
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    const bob = staticIdentity(Buffer.from('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb', 'hex'));
    const shared = dh(alice.privateKey, importPublicKey(bob.publicKey))!;
    assert.equal(Buffer.from(shared).toString('hex'), '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
    assert.deepEqual(dh(bob.privateKey, importPublicKey(alice.publicKey)), shared);
  });

  test('a low-order public key makes DH fail instead of yielding zeros', () => {
    const alice = staticIdentity(new Uint8Array(32).fill(3));
    assert.equal(dh(alice.privateKey, importPublicKey(new Uint8Array(32))), undefined);
  });

  test('TAI64N labels increase with time', () => {
    assert.equal(isLater(tai64n(1_700_000_000_001), tai64n(1_700_000_000_000)), true);
    assert.equal(isLater(tai64n(5), tai64n(5)), false);
  });
});
