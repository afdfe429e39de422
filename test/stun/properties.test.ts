import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  channelDataChannel,
  decodeStunMessage,
  encodeChannelData,
  encodeStunMessage,
  formatIpv4,
  formatIpv6,
  getAttribute,
  shortTermKey,
  verifyFingerprint,
  verifyIntegrity,
} from '../../src/stun/index.ts';
import type { StunAttribute, StunClass, StunMessageInit } from '../../src/stun/index.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';

const RUNS = process.env.CI ? 10_000 : 1_000;

const address: fc.Arbitrary<SocketAddr> = fc.oneof(
  fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 0xffff })).map(([b, port]) => ({
    address: formatIpv4(b, 0),
    port,
    family: 4 as const,
  })),
  fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 0xffff })).map(([b, port]) => ({
    address: formatIpv6(b, 0),
    port,
    family: 6 as const,
  })),
);
const text = fc.string({ maxLength: 100 });
const family = fc.constantFrom(4 as const, 6 as const);

const attribute: fc.Arbitrary<StunAttribute> = fc.oneof(
  fc.record({ kind: fc.constantFrom('xorMappedAddress', 'xorPeerAddress', 'xorRelayedAddress', 'mappedAddress'), address }),
  fc.record({ kind: fc.constantFrom('username', 'realm', 'nonce', 'software'), value: text }),
  fc.record({
    kind: fc.constant('errorCode'),
    code: fc.integer({ min: 300, max: 699 }),
    reason: text,
  }),
  fc.record({ kind: fc.constant('lifetime'), seconds: fc.nat({ max: 0xffffffff }) }),
  fc.record({ kind: fc.constant('requestedTransport'), protocol: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constantFrom('additionalAddressFamily', 'requestedAddressFamily'), family }),
  fc.record({ kind: fc.constant('channelNumber'), channel: fc.integer({ min: 0x4000, max: 0x7fff }) }),
  fc.record({ kind: fc.constant('data'), data: fc.uint8Array({ maxLength: 200 }) }),
  fc.record({ kind: fc.constant('priority'), priority: fc.nat({ max: 0xffffffff }) }),
  fc.record({ kind: fc.constant('useCandidate') }),
  fc.record({ kind: fc.constantFrom('iceControlling', 'iceControlled'), tieBreaker: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ kind: fc.constant('unknownAttributes'), types: fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 5 }) }),
  fc.record({
    kind: fc.constant('unknown'),
    type: fc.integer({ min: 0xc000, max: 0xffff }).filter((t) => t !== 0x8028 && t !== 0x8029 && t !== 0x802a),
    value: fc.uint8Array({ maxLength: 40 }),
  }),
).map((a) => ({ ...a })) as fc.Arbitrary<StunAttribute>;

const message: fc.Arbitrary<StunMessageInit> = fc.record({
  method: fc.integer({ min: 0, max: 0xfff }),
  class: fc.constantFrom<StunClass>('request', 'indication', 'success', 'error'),
  transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  attributes: fc.array(attribute, { maxLength: 8 }),
});

const options = fc.record({ password: fc.option(fc.string({ maxLength: 30 })), fingerprint: fc.boolean() });

test('encoded messages decode to the same method, class, transaction id and attributes', () => {
  fc.assert(
    fc.property(message, options, (init, { password, fingerprint }) => {
      const key = password === null ? undefined : shortTermKey(password);
      const bytes = encodeStunMessage(init, { integrityKey: key, fingerprint });
      const decoded = decodeStunMessage(bytes);
      check(typeof decoded !== 'string', String(decoded));
      assert.equal(decoded.method, init.method);
      assert.equal(decoded.class, init.class);
      assert.deepEqual(decoded.transactionId, init.transactionId);
      assert.deepEqual(decoded.attributes, init.attributes);
      assert.equal(verifyFingerprint(decoded), fingerprint);
      if (key !== undefined) check(verifyIntegrity(decoded, key));
      assert.deepEqual(encodeStunMessage(decoded, { integrityKey: key, fingerprint }), bytes);
    }),
    { numRuns: RUNS },
  );
});

test('any change to a signed message breaks its MESSAGE-INTEGRITY or its decoding', () => {
  fc.assert(
    fc.property(message, fc.nat(), fc.integer({ min: 1, max: 255 }), (init, position, flip) => {
      const key = shortTermKey('pw');
      const bytes = encodeStunMessage(init, { integrityKey: key });
      const index = position % (bytes.length - 20); // the MAC covers everything before it
      const mutated = bytes.slice();
      mutated[index]! ^= flip;
      const decoded = decodeStunMessage(mutated);
      if (typeof decoded !== 'string') check(!verifyIntegrity(decoded, key));
    }),
    { numRuns: RUNS },
  );
});

test('random bytes never make the decoders throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => exerciseDecoders(bytes)),
    { numRuns: RUNS },
  );
});

test('random bytes behind a valid STUN header never make the decoders throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 12, maxLength: 12 }), (body, tid) => {
      const padded = new Uint8Array(20 + (body.length & ~3));
      padded.set(body.subarray(0, padded.length - 20), 20);
      padded.set([0x01, 0x01, (padded.length - 20) >> 8, (padded.length - 20) & 0xff, 0x21, 0x12, 0xa4, 0x42]);
      padded.set(tid, 8);
      exerciseDecoders(padded);
    }),
    { numRuns: RUNS },
  );
});

test('mutated valid messages never make the decoders throw', () => {
  fc.assert(
    fc.property(
      message,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      (init, edits, cut) => {
        const bytes = encodeStunMessage(init, { integrityKey: shortTermKey('x'), fingerprint: true });
        for (const [position, value] of edits) bytes[position % bytes.length] = value;
        exerciseDecoders(bytes);
        exerciseDecoders(bytes.subarray(0, cut % (bytes.length + 1)));
      },
    ),
    { numRuns: RUNS },
  );
});

test('ChannelData frames round-trip and any other length is rejected', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0x4000, max: 0x7fff }), fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 8 }), (channel, payload, extra) => {
      const frame = encodeChannelData(channel, payload);
      assert.equal(channelDataChannel(frame), channel);
      assert.deepEqual(frame.subarray(4), payload);
      const longer = new Uint8Array(frame.length + extra);
      longer.set(frame);
      assert.equal(channelDataChannel(longer), -1);
      if (payload.length > 0) assert.equal(channelDataChannel(frame.subarray(0, frame.length - 1)), -1);
    }),
    { numRuns: RUNS },
  );
});

test('channel numbers outside 0x4000..0x7FFF are not ChannelData', () => {
  assert.equal(channelDataChannel(new Uint8Array([0x3f, 0xff, 0, 0])), -1);
  assert.equal(channelDataChannel(new Uint8Array([0x80, 0x00, 0, 0])), -1);
  assert.equal(channelDataChannel(new Uint8Array([0x40, 0x00, 0, 0])), 0x4000);
});

function exerciseDecoders(bytes: Uint8Array): void {
  const decoded = decodeStunMessage(bytes);
  if (typeof decoded !== 'string') {
    verifyIntegrity(decoded, shortTermKey('x'));
    verifyFingerprint(decoded);
    getAttribute(decoded, 'xorMappedAddress');
  }
  channelDataChannel(bytes);
}

/** assert.ok with a fixed message: without one, node re-reads the source to build it, which takes minutes under tsx. */
function check(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}
