import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixturePath } from '../support/env.ts';
import {
  channelDataChannel,
  CHANNEL_DATA_HEADER_LENGTH,
  decodeStunMessage,
  encodeChannelData,
  encodeStunMessage,
  getAttribute,
  shortTermKey,
  StunMethod,
  verifyFingerprint,
  verifyIntegrity,
} from '../../src/stun/index.ts';
import type { StunMessage } from '../../src/stun/index.ts';

test('the minimal BINDING request fixture decodes and re-encodes byte-exactly', () => {
  const [bytes] = readHexFixture('stun_binding_request_minimal.hex');
  const message = decode(bytes!);
  assert.equal(message.method, StunMethod.Binding);
  assert.equal(message.class, 'request');
  assert.equal(Buffer.from(message.transactionId).toString('hex'), '0123456789abcdef01234567');
  assert.equal(message.attributes.length, 0);
  assert.deepEqual(encodeStunMessage(message), bytes);
});

test('the str0m ICE check fixture verifies with its password and re-encodes byte-exactly', () => {
  const [bytes] = readHexFixture('ice_binding_request_shortterm.hex');
  const message = decode(bytes!);
  assert.equal(getAttribute(message, 'username')?.value, 'p9KA:SQAt');
  assert.equal(getAttribute(message, 'priority')?.priority, 1853824767);
  assert.equal(getAttribute(message, 'iceControlling')?.tieBreaker, 0x6eeec6e97d18395cn);
  check(getAttribute(message, 'useCandidate'));
  assert.deepEqual(getAttribute(message, 'unknown'), {
    kind: 'unknown',
    type: 0xc057,
    value: new Uint8Array([0x00, 0x01, 0x00, 0x0a]),
  });
  const key = shortTermKey('xJcE9AQAR7kczUDVOXRUCl');
  check(verifyIntegrity(message, key));
  check(verifyFingerprint(message));
  assert.deepEqual(encodeStunMessage(message, { integrityKey: key, fingerprint: true }), bytes);
});

test('the ChannelData fixture unwraps to the forwarded BINDING success, which carries a valid FINGERPRINT', () => {
  const [framed, inner] = readHexFixture('channel_data_wrapping_ice_binding_response.hex');
  assert.equal(channelDataChannel(framed!), 0x4001);
  const payload = framed!.subarray(CHANNEL_DATA_HEADER_LENGTH);
  assert.deepEqual(payload, inner);
  assert.deepEqual(encodeChannelData(0x4001, inner!), framed);
  const message = decode(payload);
  assert.equal(message.class, 'success');
  assert.deepEqual(getAttribute(message, 'xorMappedAddress')?.address, {
    address: '172.28.0.105',
    port: 38871,
    family: 4,
  });
  check(verifyFingerprint(message));
  assert.notEqual(message.integrityOffset, undefined);
});

test('the ChannelData fixture is rejected when padded or truncated', () => {
  const [framed] = readHexFixture('channel_data_wrapping_ice_binding_response.hex');
  const padded = new Uint8Array(framed!.length + 4);
  padded.set(framed!);
  assert.equal(channelDataChannel(padded), -1);
  assert.equal(channelDataChannel(framed!.subarray(0, framed!.length - 1)), -1);
});

function decode(bytes: Uint8Array): StunMessage {
  const message = decodeStunMessage(bytes);
  check(typeof message !== 'string', `decode failed: ${String(message)}`);
  return message;
}

function readHexFixture(name: string): Uint8Array[] {
  return readFileSync(fixturePath('connectivity', name), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => new Uint8Array(Buffer.from(line, 'hex')));
}

/** assert.ok with a fixed message: without one, node re-reads the source to build it, which takes minutes under tsx. */
function check(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}
