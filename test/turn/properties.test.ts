import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Allocation } from '../../src/turn/index.ts';
import { decodeStunMessage, encodeStunMessage, longTermKey } from '../../src/stun/index.ts';
import type { StunMessage } from '../../src/stun/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';

const RUNS = process.env.CI ? 10_000 : 500;
const RELAY = socketAddr('203.0.113.1', 3478);
const LOCAL = socketAddr('10.0.0.2', 52625);
const KEY = longTermKey('u', 'firezone', 'p');

configureLogging({ filter: LogFilter.parse('off') });

test('random and mutated datagrams from the relay never throw, and deadlines always move past now', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          kind: fc.constantFrom('random', 'mutatedResponse', 'response', 'time'),
          bytes: fc.uint8Array({ maxLength: 120 }),
          position: fc.nat(),
          value: fc.integer({ min: 0, max: 255 }),
          step: fc.integer({ min: 0, max: 400_000 }),
          code: fc.constantFrom(0, 401, 437, 438, 420, 403),
        }),
        { maxLength: 30 },
      ),
      (steps) => {
        const allocation = new Allocation(
          { server: { v4: RELAY }, username: 'u', password: 'p', software: 's', rng: seededRandom(3) },
          0,
        );
        let now = 0;
        let lastRequest: StunMessage | undefined;
        for (const step of steps) {
          for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) {
            const decoded = decodeStunMessage(t.payload);
            if (typeof decoded !== 'string' && decoded.class === 'request') lastRequest = decoded;
          }
          while (allocation.pollEvent() !== undefined);
          switch (step.kind) {
            case 'random':
              allocation.handleInput(step.bytes, RELAY, LOCAL, now);
              break;
            case 'response':
            case 'mutatedResponse': {
              if (lastRequest === undefined) break;
              const response = respond(lastRequest, step.code);
              if (step.kind === 'mutatedResponse') response[step.position % response.length] = step.value;
              allocation.handleInput(response, RELAY, LOCAL, now);
              break;
            }
            case 'time': {
              now += step.step;
              allocation.handleTimeout(now);
              const next = allocation.pollTimeout();
              check(next === undefined || next > now, `deadline ${next} not after ${now}`);
              break;
            }
          }
        }
      },
    ),
    { numRuns: RUNS },
  );
});

function respond(request: StunMessage, code: number): Uint8Array {
  return encodeStunMessage(
    {
      method: request.method,
      class: code === 0 ? 'success' : 'error',
      transactionId: request.transactionId,
      attributes:
        code === 0
          ? [
              { kind: 'xorMappedAddress', address: socketAddr('198.51.100.1', 1) },
              { kind: 'xorRelayedAddress', address: socketAddr('203.0.113.1', 50000) },
              { kind: 'lifetime', seconds: 600 },
            ]
          : [
              { kind: 'errorCode', code, reason: '' },
              { kind: 'nonce', value: 'n' },
              { kind: 'realm', value: 'firezone' },
            ],
    },
    { integrityKey: KEY },
  );
}

/** assert.ok with a fixed message: without one, node re-reads the source to build it, which takes minutes under tsx. */
function check(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}
