import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { stunHmacSha1, stunHmacSha1Matches } from '../../src/stun/hmac-sha1.ts';

const RUNS = process.env.CI ? 10_000 : 2_000;

/** What RFC 8489 §14.5 asks, through node:crypto: bytes 2-3 of the message replaced by the length field. */
function reference(key: Uint8Array, message: Uint8Array, end: number, lengthField: number): Buffer {
  const covered = Uint8Array.from(message.subarray(0, end));
  covered[2] = lengthField >>> 8;
  covered[3] = lengthField & 0xff;
  return createHmac('sha1', key).update(covered).digest();
}

const keys = fc.uint8Array({ minLength: 0, maxLength: 100 });
const messages = fc.uint8Array({ minLength: 4, maxLength: 1_200 });

test('the STUN HMAC-SHA1 equals node:crypto for any key, message length (either side of every block boundary and of the scratch size) and length field', () => {
  fc.assert(
    fc.property(keys, messages, fc.nat(0xffff), fc.nat(40), (key, message, lengthField, offset) => {
      const out = new Uint8Array(offset + 20 + 3).fill(0xee);
      stunHmacSha1(key, message, message.length, lengthField, out, offset);
      assert.deepEqual(Buffer.from(out.subarray(offset, offset + 20)), reference(key, message, message.length, lengthField));
      assert.ok(out.subarray(0, offset).every((b) => b === 0xee) && out.subarray(offset + 20).every((b) => b === 0xee), 'writes only its 20 bytes');
    }),
    { numRuns: RUNS },
  );
});

test('the STUN HMAC-SHA1 of every message length from 4 to 200 (padding at each boundary)', () => {
  const key = new TextEncoder().encode('an-ice-password-of-22c');
  for (let length = 4; length <= 200; length++) {
    const message = Uint8Array.from({ length }, (_, i) => (i * 31 + length) & 0xff);
    const out = new Uint8Array(20);
    stunHmacSha1(key, message, length, length - 20, out, 0);
    assert.deepEqual(Buffer.from(out), reference(key, message, length, length - 20), `length ${length}`);
  }
});

test('the match accepts exactly the right MAC and leaves the message as it was', () => {
  fc.assert(
    fc.property(keys, messages, fc.nat(19), fc.integer({ min: 1, max: 255 }), (key, message, flipAt, flip) => {
      const before = Uint8Array.from(message);
      const mac = new Uint8Array(reference(key, message, message.length, 0x1234));
      assert.equal(stunHmacSha1Matches(key, message, message.length, 0x1234, mac, 0), true);
      mac[flipAt]! ^= flip;
      assert.equal(stunHmacSha1Matches(key, message, message.length, 0x1234, mac, 0), false);
      assert.deepEqual(message, before);
    }),
    { numRuns: RUNS },
  );
});
