import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  finishChecksum,
  foldSum,
  internetChecksum,
  sumWords,
  updateChecksum16,
  updateChecksum32,
  updateChecksumBytes,
} from '../../src/ip/index.ts';
import { numRuns } from './runs.ts';

describe('Internet checksum', () => {
  test('RFC 1071 §3 example: the folded sum of 00 01 f2 03 f4 f5 f6 f7 is 0xddf2', () => {
    const bytes = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
    assert.equal(foldSum(sumWords(bytes, 0, bytes.length)), 0xddf2);
    assert.equal(internetChecksum(bytes, 0, bytes.length), 0x220d);
  });

  test('an odd trailing byte is padded with zero', () => {
    assert.equal(sumWords(Uint8Array.of(0x12, 0x34, 0x56), 0, 3), 0x1234 + 0x5600);
  });

  test('a buffer carrying its own checksum sums to zero', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 200 }), (data) => {
        const bytes = new Uint8Array(data.length + (data.length & 1) + 2);
        bytes.set(data, 2);
        const checksum = internetChecksum(bytes, 0, bytes.length);
        bytes[0] = checksum >>> 8;
        bytes[1] = checksum & 0xff;
        assert.equal(finishChecksum(sumWords(bytes, 0, bytes.length)), 0);
      }),
      { numRuns: numRuns(1000) },
    );
  });
});

describe('incremental update (RFC 1624)', () => {
  test('RFC 1624 §4 example: eqn. 3 gives 0x0000 where eqn. 2 gave 0xffff', () => {
    assert.equal(updateChecksum16(0xdd2f, 0x5555, 0x3285), 0x0000);
  });

  test('16-bit, 32-bit and byte-range updates equal recomputation', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 24, maxLength: 120 }),
        fc.nat(),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.constantFrom(2, 4, 16),
        (data, at, replacement, width) => {
          const bytes = data.slice(0, data.length & ~1);
          const offset = (at % ((bytes.length - width) / 2 + 1)) * 2;
          const before = internetChecksum(bytes, 0, bytes.length);
          const old = bytes.slice(offset, offset + width);
          let incremental: number;
          if (width === 2) {
            incremental = updateChecksum16(before, (old[0]! << 8) | old[1]!, (replacement[0]! << 8) | replacement[1]!);
          } else if (width === 4) {
            const value = (r: Uint8Array): number => ((r[0]! << 24) | (r[1]! << 16) | (r[2]! << 8) | r[3]!) >>> 0;
            incremental = updateChecksum32(before, value(old), value(replacement));
          } else {
            incremental = updateChecksumBytes(before, old, 0, replacement, 0, 16);
          }
          bytes.set(replacement.subarray(0, width), offset);
          const full = internetChecksum(bytes, 0, bytes.length);
          // 0x0000 and 0xffff are both ones'-complement zero; a buffer of all-zero words is the only way
          // a full computation yields 0xffff, and then the incremental result may be the other zero.
          if (full === 0xffff) assert.ok(incremental === 0xffff || incremental === 0);
          else assert.equal(incremental, full);
        },
      ),
      { numRuns: numRuns(2000) },
    );
  });
});
