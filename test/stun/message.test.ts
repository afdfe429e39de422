import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeStunMessage,
  encodeStunMessage,
  formatIpv6,
  getAttribute,
  getAttributes,
  shortTermKey,
  StunMethod,
  unknownComprehensionRequired,
  verifyIntegrity,
  writeIpAddress,
} from '../../src/stun/index.ts';
import type { StunAttribute } from '../../src/stun/index.ts';

const TID = new Uint8Array(12).fill(7);

test('a message with trailing bytes after the declared length is rejected', () => {
  const bytes = encode([{ kind: 'lifetime', seconds: 600 }]);
  const longer = new Uint8Array(bytes.length + 4);
  longer.set(bytes);
  assert.equal(decodeStunMessage(longer), 'badLength');
});

test('a length field that is not a multiple of 4 is rejected', () => {
  const bytes = encode([]);
  const odd = new Uint8Array(22);
  odd.set(bytes);
  odd[3] = 2;
  assert.equal(decodeStunMessage(odd), 'badLength');
});

test('a wrong magic cookie and set top bits are rejected', () => {
  const bytes = encode([]);
  bytes[4] = 0;
  assert.equal(decodeStunMessage(bytes), 'badCookie');
  const top = encode([]);
  top[0] = 0x40;
  assert.equal(decodeStunMessage(top), 'notStun');
  assert.equal(decodeStunMessage(new Uint8Array(19)), 'tooShort');
});

test('an attribute running past the end is rejected', () => {
  const bytes = encode([{ kind: 'software', value: 'abcd' }]);
  bytes[23] = 9;
  assert.equal(decodeStunMessage(bytes), 'truncatedAttribute');
});

test('a known attribute with a wrong length rejects the message', () => {
  const bytes = encode([{ kind: 'lifetime', seconds: 600 }]);
  bytes[23] = 3;
  assert.equal(decodeStunMessage(bytes), 'badAttribute');
});

test('unknown attributes are kept and comprehension-required ones are listed', () => {
  const bytes = encode([
    { kind: 'unknown', type: 0x0033, value: new Uint8Array([1]) },
    { kind: 'unknown', type: 0xc057, value: new Uint8Array([1, 2, 3, 4]) },
  ]);
  const message = decodeStunMessage(bytes);
  check(typeof message !== 'string');
  assert.deepEqual(unknownComprehensionRequired(message), [0x0033]);
});

test('attributes between MESSAGE-INTEGRITY and FINGERPRINT are ignored, and FINGERPRINT must be last', () => {
  const signed = encodeStunMessage(
    { method: StunMethod.Binding, class: 'request', transactionId: TID, attributes: [{ kind: 'priority', priority: 1 }] },
    { integrityKey: shortTermKey('pw') },
  );
  const withExtra = new Uint8Array(signed.length + 8);
  withExtra.set(signed);
  withExtra.set([0x00, 0x0d, 0x00, 0x04, 0, 0, 0, 9], signed.length);
  withExtra[3] = withExtra.length - 20;
  const message = decodeStunMessage(withExtra);
  check(typeof message !== 'string');
  assert.equal(getAttribute(message, 'lifetime'), undefined);
  check(verifyIntegrity(message, shortTermKey('pw')));

  const fingerprinted = encodeStunMessage({ method: 1, class: 'request', transactionId: TID, attributes: [] }, { fingerprint: true });
  const afterFingerprint = new Uint8Array(fingerprinted.length + 8);
  afterFingerprint.set(fingerprinted);
  afterFingerprint.set([0x00, 0x0d, 0x00, 0x04, 0, 0, 0, 9], fingerprinted.length);
  afterFingerprint[3] = afterFingerprint.length - 20;
  assert.equal(decodeStunMessage(afterFingerprint), 'fingerprintNotLast');
});

test('two XOR-RELAYED-ADDRESS attributes of a dual-stack allocation are both returned in order', () => {
  const message = decodeStunMessage(
    encode([
      { kind: 'xorRelayedAddress', address: { address: '198.51.100.1', port: 50000, family: 4 } },
      { kind: 'xorRelayedAddress', address: { address: '2001:db8::1', port: 50000, family: 6 } },
      { kind: 'lifetime', seconds: 600 },
    ]),
  );
  check(typeof message !== 'string');
  assert.deepEqual(
    getAttributes(message, 'xorRelayedAddress').map((a) => a.address.address),
    ['198.51.100.1', '2001:db8::1'],
  );
});

test('error codes encode class and number and decode back', () => {
  const bytes = encode([{ kind: 'errorCode', code: 438, reason: 'Stale Nonce' }]);
  assert.deepEqual([...bytes.subarray(24, 28)], [0, 0, 4, 38]);
  const message = decodeStunMessage(bytes);
  check(typeof message !== 'string');
  assert.deepEqual(getAttribute(message, 'errorCode'), { kind: 'errorCode', code: 438, reason: 'Stale Nonce' });
});

test('IPv6 addresses are formatted like inet_ntop', () => {
  for (const [input, expected] of [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1'],
    ['fe80:0:0:0:1:0:0:0', 'fe80::1:0:0:0'],
    ['::10.0.0.1', '::10.0.0.1'],
    ['::0.0.1.0', '::100'],
    ['0:0:0:1:0:0:0:0', '0:0:0:1::'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
  ] as const) {
    const bytes = new Uint8Array(16);
    check(writeIpAddress(input, 6, bytes, 0), input);
    assert.equal(formatIpv6(bytes, 0), expected, input);
  }
  check(!writeIpAddress('1::2::3', 6, new Uint8Array(16), 0));
  check(!writeIpAddress('1.2.3', 4, new Uint8Array(4), 0));
});

test('encoding an address that is not an IP is a programmer error', () => {
  assert.throws(() => encode([{ kind: 'xorPeerAddress', address: { address: 'example.com', port: 1, family: 4 } }]));
});

function encode(attributes: StunAttribute[]): Uint8Array {
  return encodeStunMessage({ method: StunMethod.Allocate, class: 'success', transactionId: TID, attributes });
}

/** assert.ok with a fixed message: without one, node re-reads the source to build it, which takes minutes under tsx. */
function check(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}

test('an attribute longer than the 16-bit length field cannot be encoded, whether written in place or not', () => {
  const transactionId = new Uint8Array(12);
  for (const attribute of [
    { kind: 'software' as const, value: 'a'.repeat(0x10000) },
    { kind: 'data' as const, data: new Uint8Array(0x10000) },
  ]) {
    assert.throws(() => encodeStunMessage({ method: StunMethod.Binding, class: 'indication', transactionId, attributes: [attribute] }), TypeError);
  }
});
