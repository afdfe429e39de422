import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeStunMessage,
  encodeStunMessage,
  getAttribute,
  longTermKey,
  shortTermKey,
  StunMethod,
  verifyFingerprint,
  verifyIntegrity,
} from '../../src/stun/index.ts';
import type { StunMessage } from '../../src/stun/index.ts';

// RFC 5769 §2 sample messages (public RFC data). Vectors 2.1-2.3 pad with 0x20 on purpose.
const SHORT_TERM_PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';

const SAMPLE_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);

const SAMPLE_IPV4_RESPONSE = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);

const SAMPLE_IPV6_RESPONSE = hex(`
  01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
  00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
  80 28 00 04 c8 fb 0b 4c`);

const SAMPLE_LONG_TERM_REQUEST = hex(`
  00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
  00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
  00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
  00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
  00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66`);

test('RFC 5769 sample request decodes and verifies with the short-term key', () => {
  const message = decode(SAMPLE_REQUEST);
  assert.equal(message.method, StunMethod.Binding);
  assert.equal(message.class, 'request');
  assert.deepEqual(getAttribute(message, 'software'), { kind: 'software', value: 'STUN test client' });
  assert.deepEqual(getAttribute(message, 'priority'), { kind: 'priority', priority: 0x6e0001ff });
  assert.deepEqual(getAttribute(message, 'iceControlled'), { kind: 'iceControlled', tieBreaker: 0x932ff9b151263b36n });
  assert.deepEqual(getAttribute(message, 'username'), { kind: 'username', value: 'evtj:h6vY' });
  check(verifyIntegrity(message, shortTermKey(SHORT_TERM_PASSWORD)));
  check(!verifyIntegrity(message, shortTermKey('wrong')));
  check(verifyFingerprint(message));
});

test('RFC 5769 IPv4 response decodes the XOR-MAPPED-ADDRESS and verifies', () => {
  const message = decode(SAMPLE_IPV4_RESPONSE);
  assert.equal(message.class, 'success');
  assert.deepEqual(getAttribute(message, 'xorMappedAddress')?.address, { address: '192.0.2.1', port: 32853, family: 4 });
  assert.deepEqual(getAttribute(message, 'software'), { kind: 'software', value: 'test vector' });
  check(verifyIntegrity(message, shortTermKey(SHORT_TERM_PASSWORD)));
  check(verifyFingerprint(message));
});

test('RFC 5769 IPv6 response decodes the XOR-MAPPED-ADDRESS and verifies', () => {
  const message = decode(SAMPLE_IPV6_RESPONSE);
  assert.deepEqual(getAttribute(message, 'xorMappedAddress')?.address, {
    address: '2001:db8:1234:5678:11:2233:4455:6677',
    port: 32853,
    family: 6,
  });
  check(verifyIntegrity(message, shortTermKey(SHORT_TERM_PASSWORD)));
  check(verifyFingerprint(message));
});

test('RFC 5769 long-term request verifies with MD5(username:realm:SASLprep(password))', () => {
  const message = decode(SAMPLE_LONG_TERM_REQUEST);
  const username = getAttribute(message, 'username')?.value;
  assert.equal(username, '\u30de\u30c8\u30ea\u30c3\u30af\u30b9');
  assert.deepEqual(getAttribute(message, 'nonce')?.value, 'f//499k954d6OL34oL9FSTvy64sA');
  assert.deepEqual(getAttribute(message, 'realm')?.value, 'example.org');
  assert.equal(message.fingerprintOffset, undefined);
  check(verifyIntegrity(message, longTermKey(username!, 'example.org', 'TheMatrIX')));
  check(!verifyIntegrity(message, longTermKey(username!, 'example.org', 'TheMatrix')));
});

for (const [name, bytes, padding, key] of [
  ['sample request', SAMPLE_REQUEST, 0x20, shortTermKey(SHORT_TERM_PASSWORD)],
  ['IPv4 response', SAMPLE_IPV4_RESPONSE, 0x20, shortTermKey(SHORT_TERM_PASSWORD)],
  ['IPv6 response', SAMPLE_IPV6_RESPONSE, 0x20, shortTermKey(SHORT_TERM_PASSWORD)],
  [
    'long-term request',
    SAMPLE_LONG_TERM_REQUEST,
    0,
    longTermKey('\u30de\u30c8\u30ea\u30c3\u30af\u30b9', 'example.org', 'TheMatrIX'),
  ],
] as const) {
  test(`RFC 5769 ${name} re-encodes byte-exactly, including MESSAGE-INTEGRITY and FINGERPRINT`, () => {
    const message = decode(bytes);
    const encoded = encodeStunMessage(message, {
      integrityKey: key,
      fingerprint: message.fingerprintOffset !== undefined,
      padding,
    });
    assert.equal(Buffer.from(encoded).toString('hex'), Buffer.from(bytes).toString('hex'));
  });
}

function decode(bytes: Uint8Array): StunMessage {
  const message = decodeStunMessage(bytes);
  check(typeof message !== 'string', `decode failed: ${String(message)}`);
  return message;
}

function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

/** assert.ok with a fixed message: without one, node re-reads the source to build it, which takes minutes under tsx. */
function check(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}
