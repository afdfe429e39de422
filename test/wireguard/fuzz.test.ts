import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  INITIATION_OFFSET_MAC1,
  INITIATION_SIZE,
  RESPONSE_OFFSET_MAC1,
  RESPONSE_SIZE,
  initiationSender,
  mac,
  messageType,
  receiverIndex,
} from '../../src/wireguard/index.ts';
import { IP_A, IP_B, drainTransmits, handshake, ipv4, makePair, retransmit, type Pair } from './harness.ts';

/** Valid messages of every type, captured from a real exchange. */
function capture(): { pair: Pair; messages: Uint8Array[] } {
  const pair = makePair({ limitB: 0 });
  const messages: Uint8Array[] = [];
  pair.a.tunnel.initiateHandshake(0);
  const [first] = drainTransmits(pair.a.tunnel);
  messages.push(first!);
  pair.b.tunnel.decapsulate(first!, IP_A, 0);
  const [cookie] = drainTransmits(pair.b.tunnel);
  messages.push(cookie!);
  pair.a.tunnel.decapsulate(cookie!, IP_B, 0);
  const { at, initiation: second } = retransmit(pair.a);
  messages.push(second);
  pair.b.tunnel.decapsulate(second, IP_A, at);
  const [response] = drainTransmits(pair.b.tunnel);
  messages.push(response!);
  pair.a.tunnel.decapsulate(response!, IP_B, at);
  messages.push(...drainTransmits(pair.a.tunnel));
  messages.push(pair.a.tunnel.encapsulate(ipv4(60), at) as Uint8Array);
  return { pair, messages };
}

function established(): Pair {
  const pair = makePair();
  handshake(pair, 0);
  return pair;
}

describe('hostile input', () => {
  test('random bytes never throw and never yield a packet', () => {
    const pair = established();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), fc.constantFrom(1, 2, 3, 4, 0x45), (bytes, first) => {
        if (bytes.length > 0) bytes[0] = first;
        if (bytes.length > 3) bytes.fill(0, 1, 4);
        messageType(bytes);
        receiverIndex(bytes);
        for (const side of [pair.a, pair.b]) {
          const result = side.tunnel.decapsulate(bytes, IP_A, 5);
          assert.equal(typeof result, 'string');
          assert.notEqual(result, 'keepalive');
        }
      }),
      { numRuns: 300 },
    );
  });

  test('mutated handshake, cookie and transport messages never throw and never yield a packet', () => {
    const { messages } = capture();
    fc.assert(
      fc.property(
        fc.nat(messages.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (which, flips, truncate) => {
          const pair = established();
          const original = messages[which]!;
          let mutated = Uint8Array.from(original);
          for (const [at, xor] of flips) mutated[at % mutated.length]! ^= xor;
          if (truncate) mutated = mutated.subarray(0, flips[0]![0] % mutated.length);
          for (const side of [pair.a, pair.b]) {
            const result = side.tunnel.decapsulate(mutated, IP_B, 3);
            assert.equal(typeof result, 'string', `message ${which} yielded plaintext`);
            assert.notEqual(result, 'keepalive');
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('random handshake bodies with a valid MAC1 reach the handshake code and are rejected cleanly', () => {
    const pair = makePair({ limitB: Number.MAX_SAFE_INTEGER });
    pair.b.tunnel.initiateHandshake(0); // so a response has a pending initiation to match against
    const pending = drainTransmits(pair.b.tunnel)[0]!;
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ minLength: INITIATION_SIZE, maxLength: INITIATION_SIZE }), fc.boolean(), (isInitiation, body, aimAtPending) => {
        const size = isInitiation ? INITIATION_SIZE : RESPONSE_SIZE;
        const macAt = isInitiation ? INITIATION_OFFSET_MAC1 : RESPONSE_OFFSET_MAC1;
        const message = body.slice(0, size);
        message.set([isInitiation ? 1 : 2, 0, 0, 0], 0);
        if (!isInitiation && aimAtPending) message.set(pending.subarray(4, 8), 8);
        message.set(mac(pair.b.identity.mac1Key, message.subarray(0, macAt)), macAt);
        const result = pair.b.tunnel.decapsulate(message, IP_A, 1);
        assert.equal(typeof result, 'string');
        assert.ok(['handshakeFailed', 'unexpected'].includes(result as string), String(result));
        if (isInitiation) assert.equal(initiationSender(pair.b.identity, message), undefined);
      }),
      { numRuns: 200 },
    );
  });
});
