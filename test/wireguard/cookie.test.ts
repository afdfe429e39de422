import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  COOKIE_REPLY_SIZE,
  COOKIE_SECRET_ROTATION,
  INITIATION_OFFSET_MAC2,
  MAC_SIZE,
  RateLimiter,
  messageType,
  staticIdentity,
} from '../../src/wireguard/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { IP_A, IP_B, deliver, drainTransmits, ipv4, makePair, PRIVATE_B, assertPacket, retransmit } from './harness.ts';

function hasMac2(initiation: Uint8Array): boolean {
  return initiation.subarray(INITIATION_OFFSET_MAC2, INITIATION_OFFSET_MAC2 + MAC_SIZE).some((b) => b !== 0);
}

describe('cookies under load', () => {
  test('under load an initiation without MAC2 gets a cookie reply, and the retransmission with MAC2 is answered', () => {
    const { a, b } = makePair({ limitB: 0 });
    a.tunnel.encapsulate(ipv4(40), 0);
    const [first] = drainTransmits(a.tunnel);
    assert.equal(hasMac2(first!), false);

    assert.equal(b.tunnel.decapsulate(first!, IP_A, 0), 'underLoad');
    const [reply] = drainTransmits(b.tunnel);
    assert.equal(reply!.length, COOKIE_REPLY_SIZE);
    assert.equal(messageType(reply!), 3);
    assert.deepEqual(reply!.subarray(4, 8), first!.subarray(4, 8), 'addressed to the initiation sender index');

    assert.equal(a.tunnel.decapsulate(reply!, IP_B, 1), 'cookie');
    const retransmitAt = a.tunnel.pollTimeout()!;
    a.tunnel.handleTimeout(retransmitAt);
    const [second] = drainTransmits(a.tunnel);
    assert.equal(hasMac2(second!), true);

    assert.equal(b.tunnel.decapsulate(second!, IP_A, retransmitAt), 'handshake');
    deliver(b, a, IP_B, retransmitAt);
    const [data] = drainTransmits(a.tunnel);
    assertPacket(b.tunnel.decapsulate(data!, IP_A, retransmitAt), ipv4(40));
  });

  test('an initiator under load answers a response with a cookie; the responder uses it on the next response', () => {
    const { a, b } = makePair({ limitA: 0 });
    a.tunnel.encapsulate(ipv4(40), 0);
    assert.deepEqual(deliver(a, b, IP_A, 0), ['handshake']);
    assert.deepEqual(deliver(b, a, IP_B, 0), ['underLoad']);
    assert.deepEqual(deliver(a, b, IP_A, 0), ['cookie'], 'b accepts the cookie for its response');
    const { at, initiation } = retransmit(a);
    assert.equal(b.tunnel.decapsulate(initiation, IP_A, at), 'handshake');
    assert.deepEqual(deliver(b, a, IP_B, at), ['handshake'], 'the response carries a valid MAC2');
    const [data] = drainTransmits(a.tunnel);
    assertPacket(b.tunnel.decapsulate(data!, IP_A, at), ipv4(40));
  });

  test('a cookie is bound to the source IP', () => {
    const { a, b } = makePair({ limitB: 0 });
    a.tunnel.initiateHandshake(0);
    b.tunnel.decapsulate(drainTransmits(a.tunnel)[0]!, IP_A, 0);
    a.tunnel.decapsulate(drainTransmits(b.tunnel)[0]!, IP_B, 0);
    const { at, initiation: withMac2 } = retransmit(a);
    assert.equal(b.tunnel.decapsulate(withMac2, '192.0.2.77', at), 'underLoad');
  });

  test('a cookie reply that does not match our last MAC1 is rejected', () => {
    const { a, b } = makePair({ limitB: 0 });
    a.tunnel.initiateHandshake(0);
    b.tunnel.decapsulate(drainTransmits(a.tunnel)[0]!, IP_A, 0);
    const [reply] = drainTransmits(b.tunnel);
    const { at } = retransmit(a); // a new MAC1 and sender index
    assert.equal(a.tunnel.decapsulate(reply!, IP_B, at), 'unexpected');
    reply![4]! += 1; // address it to the new index: still sealed to the old MAC1
    assert.equal(a.tunnel.decapsulate(reply!, IP_B, at), 'decryptFailed');
  });

  test('the cookie secret rotates every 128 s, invalidating older cookies', () => {
    const { a, b } = makePair({ limitB: 0 });
    a.tunnel.initiateHandshake(0);
    b.tunnel.decapsulate(drainTransmits(a.tunnel)[0]!, IP_A, 0);
    a.tunnel.decapsulate(drainTransmits(b.tunnel)[0]!, IP_B, 0);
    const { at, initiation: withMac2 } = retransmit(a);
    assert.equal(b.limiter.verify(withMac2, IP_A, at).kind, 'accept');
    assert.equal(b.limiter.verify(withMac2, IP_A, COOKIE_SECRET_ROTATION + 1).kind, 'cookieReply');
  });

  test('the count resets every second: the limit applies per second', () => {
    const identity = staticIdentity(PRIVATE_B);
    const limiter = new RateLimiter(identity, seededRandom(5), 0, 2);
    const { a } = makePair();
    a.tunnel.initiateHandshake(0);
    const initiations: Uint8Array[] = [drainTransmits(a.tunnel)[0]!];
    for (let i = 1; i < 3; i++) initiations.push(retransmit(a).initiation);
    assert.equal(limiter.verify(initiations[0]!, IP_A, 0).kind, 'accept');
    assert.equal(limiter.verify(initiations[1]!, IP_A, 0).kind, 'accept');
    assert.equal(limiter.verify(initiations[2]!, IP_A, 0).kind, 'cookieReply');
    assert.equal(limiter.verify(initiations[0]!, IP_A, 1000).kind, 'accept', 'the limiter does not track replays');
  });

  test('MAC1 is checked even when not under load, and for a key that is not ours', () => {
    const { a } = makePair();
    const other = new RateLimiter(staticIdentity(new Uint8Array(32).fill(9)), seededRandom(6), 0);
    a.tunnel.initiateHandshake(0);
    const [initiation] = drainTransmits(a.tunnel);
    assert.deepEqual(other.verify(initiation!, IP_A, 0), { kind: 'reject', reason: 'badMac1' });
  });
});
