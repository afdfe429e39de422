import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  INITIATION_SIZE,
  KEEPALIVE_TIMEOUT,
  MAX_QUEUED_PACKETS,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_ATTEMPT_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  RESPONSE_SIZE,
  TRANSPORT_MIN_SIZE,
  messageType,
  receiverIndex,
  staticIdentity,
  initiationSender,
  NodeCryptoTransportCipher,
  RateLimiter,
  ReplayRings,
  Tunnel,
} from '../../src/wireguard/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import {
  IP_A,
  IP_B,
  advance,
  deliver,
  drainEvents,
  drainTransmits,
  handshake,
  ipv4,
  key,
  makePair,
  makeSide,
  PRIVATE_A,
  PRIVATE_B,
  PSK,
  assertPacket,
} from './harness.ts';

describe('handshake', () => {
  test('a packet sent without a session is queued and delivered once the handshake completes', () => {
    const { a, b } = makePair();
    const packet = ipv4(100);

    assert.equal(a.tunnel.encapsulate(packet, 0), 'queued');
    const [initiation] = drainTransmits(a.tunnel);
    assert.equal(initiation!.length, INITIATION_SIZE);
    assert.equal(messageType(initiation!), 1);

    assert.equal(b.tunnel.decapsulate(initiation!, IP_A, 10), 'handshake');
    const [response] = drainTransmits(b.tunnel);
    assert.equal(response!.length, RESPONSE_SIZE);
    assert.equal(receiverIndex(response!), initiation![4]! | (initiation![5]! << 8) | (initiation![6]! << 16) | ((initiation![7]! << 24) >>> 0));

    assert.equal(a.tunnel.decapsulate(response!, IP_B, 20), 'handshake');
    assert.deepEqual(drainEvents(a.tunnel), [{ kind: 'sessionEstablished' }]);
    const [data] = drainTransmits(a.tunnel);
    assert.equal(data!.length, packet.length + TRANSPORT_MIN_SIZE);

    assertPacket(b.tunnel.decapsulate(data!, IP_A, 30), packet);
    assert.deepEqual(drainEvents(b.tunnel), [{ kind: 'sessionEstablished' }]);
  });

  test('the initiator confirms the session with a keepalive when nothing is queued', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    deliver(a, b, IP_A, 0);
    deliver(b, a, IP_B, 0);
    const [keepalive] = drainTransmits(a.tunnel);
    assert.equal(keepalive!.length, TRANSPORT_MIN_SIZE);
    assert.equal(b.tunnel.decapsulate(keepalive!, IP_A, 1), 'keepalive');
    assert.equal(b.tunnel.hasSession(1), true);
  });

  test('the responder does not send on a session before the initiator confirmed it', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    deliver(a, b, IP_A, 0);
    assert.equal(b.tunnel.hasSession(0), false);
    assert.equal(b.tunnel.encapsulate(ipv4(40), 0), 'queued');
    deliver(b, a, IP_B, 0); // response, and b's own initiation
    const confirm = drainTransmits(a.tunnel);
    for (const d of confirm) b.tunnel.decapsulate(d, IP_A, 1);
    // b's queued packet goes out on the confirmed session
    const out = drainTransmits(b.tunnel).filter((d) => messageType(d) === 4 && d.length > TRANSPORT_MIN_SIZE);
    assert.equal(out.length, 1);
    assertPacket(a.tunnel.decapsulate(out[0]!, IP_B, 2), ipv4(40));
  });

  test('data flows both ways after a handshake started by either side', () => {
    for (const initiatorIsA of [true, false]) {
      const pair = makePair();
      const [x, y] = initiatorIsA ? [pair.a, pair.b] : [pair.b, pair.a];
      handshake({ a: x, b: y }, 0);
      const one = x.tunnel.encapsulate(ipv4(60, 1), 1);
      const two = y.tunnel.encapsulate(ipv4(61, 2), 1);
      assert.ok(one instanceof Uint8Array && two instanceof Uint8Array);
      assertPacket(y.tunnel.decapsulate(one, IP_A, 2), ipv4(60, 1));
      assertPacket(x.tunnel.decapsulate(two, IP_B, 2), ipv4(61, 2));
    }
  });

  test('simultaneous initiations from both sides end with working sessions', () => {
    const { a, b } = makePair();
    assert.equal(a.tunnel.encapsulate(ipv4(30, 1), 0), 'queued');
    assert.equal(b.tunnel.encapsulate(ipv4(31, 2), 0), 'queued');
    for (let round = 0; round < 4; round++) {
      const toB = drainTransmits(a.tunnel);
      const toA = drainTransmits(b.tunnel);
      const gotB = toB.map((d) => b.tunnel.decapsulate(d, IP_A, round));
      const gotA = toA.map((d) => a.tunnel.decapsulate(d, IP_B, round));
      if (gotB.some((r) => r instanceof Uint8Array) && gotA.some((r) => r instanceof Uint8Array)) return;
    }
    assert.fail('queued packets were not delivered');
  });

  test('a wrong preshared key fails the handshake and nothing is delivered', () => {
    const { a, b } = makePair({ pskB: key(99) });
    a.tunnel.encapsulate(ipv4(50), 0);
    assert.equal(deliver(a, b, IP_A, 0)[0], 'handshake');
    assert.deepEqual(deliver(b, a, IP_B, 0), ['handshakeFailed']);
    assert.equal(a.tunnel.hasSession(0), false);
    assert.deepEqual(drainTransmits(a.tunnel), []);
  });

  test('an initiation from a key other than the configured peer is rejected', () => {
    const { b } = makePair();
    const stranger = makeSide(staticIdentity(key(77)), b.identity.publicKey, PSK, 0x0c0c0c, 33, 0);
    stranger.tunnel.initiateHandshake(0);
    assert.deepEqual(deliver(stranger, b, '10.0.0.9', 0), ['wrongPeer']);
    assert.deepEqual(drainTransmits(b.tunnel), []);
  });

  test('initiationSender names the static key inside an initiation addressed to us', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    const [initiation] = drainTransmits(a.tunnel);
    assert.deepEqual(initiationSender(b.identity, initiation!), a.identity.publicKey);
    assert.equal(initiationSender(a.identity, initiation!), undefined, 'not addressed to a');
    assert.equal(initiationSender(b.identity, initiation!.subarray(0, 100)), undefined);
  });

  test('a replayed initiation is rejected by its timestamp', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    const [initiation] = drainTransmits(a.tunnel);
    assert.equal(b.tunnel.decapsulate(initiation!, IP_A, 0), 'handshake');
    assert.equal(b.tunnel.decapsulate(initiation!, IP_A, 1), 'staleTimestamp');
  });

  test('a handshake message with a bad MAC1 is dropped before any crypto', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    const [initiation] = drainTransmits(a.tunnel);
    initiation![120]! ^= 1;
    assert.equal(b.tunnel.decapsulate(initiation!, IP_A, 0), 'badMac1');
    assert.deepEqual(drainTransmits(b.tunnel), []);
  });

  test('a response nobody asked for is dropped', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    deliver(a, b, IP_A, 0);
    const [response] = drainTransmits(b.tunnel);
    assert.equal(a.tunnel.decapsulate(response!, IP_B, 0), 'handshake');
    assert.equal(a.tunnel.decapsulate(response!, IP_B, 1), 'unexpected');
  });

  test('session indices carry the tunnel index in the upper 24 bits and a counter in the low 8', () => {
    const { a, b } = makePair();
    a.tunnel.initiateHandshake(0);
    a.tunnel.initiateHandshake(1); // no-op: one is in flight
    const [first] = drainTransmits(a.tunnel);
    a.tunnel.handleTimeout(a.tunnel.pollTimeout()!);
    const [second] = drainTransmits(a.tunnel);
    const sender = (m: Uint8Array): number => new DataView(m.buffer, m.byteOffset).getUint32(4, true);
    assert.equal(sender(first!), (0x0a0a0a << 8) | 1);
    assert.equal(sender(second!), (0x0a0a0a << 8) | 2);
    b.tunnel.decapsulate(second!, IP_A, 2);
    const [response] = drainTransmits(b.tunnel);
    assert.equal(sender(response!) >>> 0, ((0x0b0b0b << 8) | 1) >>> 0);
  });

  test('sessions keep indices with the top bit set as signed 32-bit values, and data flows both ways on them', () => {
    const idA = staticIdentity(PRIVATE_A);
    const idB = staticIdentity(PRIVATE_B);
    const a = makeSide(idA, idB.publicKey, PSK, 0xf0f0f0, 11, 0);
    const b = makeSide(idB, idA.publicKey, PSK, 0xe0e0e0, 22, 0);
    handshake({ a, b }, 0);
    // Signed, so that V8 keeps them in the session object as small integers rather than boxed numbers.
    assert.equal(a.tunnel.sessionHint!.localIndex, (0xf0f0f0 << 8) | 1);
    assert.equal(a.tunnel.sessionHint!.remoteIndex, (0xe0e0e0 << 8) | 1);
    assert.ok(a.tunnel.sessionHint!.localIndex < 0);
    for (let i = 0; i < 3; i++) {
      const one = a.tunnel.encapsulate(ipv4(60, i), 1);
      const two = b.tunnel.encapsulate(ipv4(61, i), 1);
      assert.ok(one instanceof Uint8Array && two instanceof Uint8Array);
      assert.equal(new DataView(one.buffer, one.byteOffset).getUint32(4, true), ((0xe0e0e0 << 8) | 1) >>> 0);
      assertPacket(b.tunnel.decapsulate(one, IP_A, 2), ipv4(60, i));
      assertPacket(a.tunnel.decapsulate(two, IP_B, 2), ipv4(61, i));
    }
  });
});

describe('transport', () => {
  test('a duplicate is dropped as a replay', () => {
    const pair = makePair();
    handshake(pair, 0);
    const d = pair.a.tunnel.encapsulate(ipv4(40), 1) as Uint8Array;
    assert.ok(pair.b.tunnel.decapsulate(d, IP_A, 1) instanceof Uint8Array);
    assert.equal(pair.b.tunnel.decapsulate(d, IP_A, 1), 'replayed');
  });

  test('reordering inside the window is accepted; a counter older than the window is not', () => {
    const pair = makePair();
    handshake(pair, 0);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 2100; i++) sent.push(pair.a.tunnel.encapsulate(ipv4(20), 1) as Uint8Array);
    // keepalive was counter 0; sent[i] carries counter i + 1
    assert.ok(pair.b.tunnel.decapsulate(sent[2099]!, IP_A, 2) instanceof Uint8Array);
    assert.ok(pair.b.tunnel.decapsulate(sent[2099 - 1000]!, IP_A, 2) instanceof Uint8Array);
    assert.ok(pair.b.tunnel.decapsulate(sent[2099 - 2000]!, IP_A, 2) instanceof Uint8Array);
    assert.equal(pair.b.tunnel.decapsulate(sent[10]!, IP_A, 2), 'replayed');
  });

  test('tunnels sharing replay rings keep separate windows and return every ring when sessions go', () => {
    const rings = new ReplayRings(1);
    const idA = staticIdentity(key(1));
    const idB = staticIdentity(key(2));
    const side = (identity: typeof idA, peer: Uint8Array, index: number, seed: number) => {
      const rateLimiter = new RateLimiter(identity, seededRandom(seed + 1), 0);
      return { identity, limiter: rateLimiter, tunnel: new Tunnel({ local: identity, peer, presharedKey: PSK, index, rng: seededRandom(seed), rateLimiter, now: 0, replayRings: rings }) };
    };
    const pairs = [0, 1].map((i) => ({ a: side(idA, idB.publicKey, 0x100 + i, 10 + i), b: side(idB, idA.publicKey, 0x200 + i, 20 + i) }));
    for (let round = 0; round < 10; round++) for (const pair of pairs) handshake(pair, round);
    // Each tunnel keeps at most SESSION_RING_SIZE (8) sessions, each with one ring.
    assert.ok(rings.inUse <= 4 * 8, `${rings.inUse} rings`);
    const sent = pairs.map((pair) => Array.from({ length: 3 }, () => pair.a.tunnel.encapsulate(ipv4(40), 10) as Uint8Array));
    for (const [i, pair] of pairs.entries()) {
      for (const d of sent[i]!) assert.ok(pair.b.tunnel.decapsulate(d, IP_A, 10) instanceof Uint8Array);
      for (const d of sent[i]!) assert.equal(pair.b.tunnel.decapsulate(d, IP_A, 10), 'replayed');
    }
    for (const pair of pairs) {
      pair.a.tunnel.close();
      pair.b.tunnel.close();
    }
    assert.equal(rings.inUse, 0);
  });

  test('a tampered transport message is dropped without output', () => {
    const pair = makePair();
    handshake(pair, 0);
    const d = pair.a.tunnel.encapsulate(ipv4(40), 1) as Uint8Array;
    d[30]! ^= 0x80;
    assert.equal(pair.b.tunnel.decapsulate(d, IP_A, 1), 'decryptFailed');
    d[30]! ^= 0x80;
    assert.ok(pair.b.tunnel.decapsulate(d, IP_A, 1) instanceof Uint8Array, 'the counter was not consumed');
  });

  test('an unknown receiver index is dropped', () => {
    const pair = makePair();
    handshake(pair, 0);
    const d = pair.a.tunnel.encapsulate(ipv4(40), 1) as Uint8Array;
    d[4]! ^= 0x01;
    assert.equal(pair.b.tunnel.decapsulate(d, IP_A, 1), 'unknownSession');
  });

  test('data for the current session is taken until newer handshakes push that session out of the ring', () => {
    const pair = makePair();
    handshake(pair, 0);
    // Initiations from other tunnels of the same peer: each gives the responder a new unconfirmed session.
    const initiate = (round: number) => {
      const other = makeSide(pair.a.identity, pair.b.identity.publicKey, PSK, 0x0c0c00 + round, 40 + round, 10 * round);
      other.tunnel.initiateHandshake(10 * round);
      assert.deepEqual(deliver(other, pair.b, IP_A, 10 * round), ['handshake']);
    };
    for (let round = 1; round < 8; round++) initiate(round);
    assertPacket(pair.b.tunnel.decapsulate(pair.a.tunnel.encapsulate(ipv4(20, 1), 80) as Uint8Array, IP_A, 80), ipv4(20, 1));
    // The eighth new session takes the current one's slot: the current session is released.
    initiate(8);
    assert.equal(pair.b.tunnel.decapsulate(pair.a.tunnel.encapsulate(ipv4(20, 2), 90) as Uint8Array, IP_A, 90), 'unknownSession');
  });

  test('decrypted packets are cut to their IP length and non-IP payloads are dropped', () => {
    const pair = makePair();
    handshake(pair, 0);
    const padded = new Uint8Array(64);
    padded.set(ipv4(48));
    const out = pair.b.tunnel.decapsulate(pair.a.tunnel.encapsulate(padded, 1) as Uint8Array, IP_A, 1);
    assert.ok(out instanceof Uint8Array);
    assert.equal(out.length, 48);
    const notIp = new Uint8Array(40).fill(0x20);
    assert.equal(pair.b.tunnel.decapsulate(pair.a.tunnel.encapsulate(notIp, 1) as Uint8Array, IP_A, 1), 'notIp');
  });

  test('headroom leaves free bytes before the datagram in the same buffer', () => {
    const idA = staticIdentity(key(1));
    const idB = staticIdentity(key(2));
    const limiterA = new RateLimiter(idA, seededRandom(1), 0);
    const limiterB = new RateLimiter(idB, seededRandom(2), 0);
    const a = new Tunnel({ local: idA, peer: idB.publicKey, presharedKey: PSK, index: 1, rng: seededRandom(3), rateLimiter: limiterA, now: 0, headroom: 4 });
    const b = new Tunnel({ local: idB, peer: idA.publicKey, presharedKey: PSK, index: 2, rng: seededRandom(4), rateLimiter: limiterB, now: 0 });
    handshake({ a: { identity: idA, limiter: limiterA, tunnel: a }, b: { identity: idB, limiter: limiterB, tunnel: b } }, 0);
    const d = a.encapsulate(ipv4(40), 1) as Uint8Array;
    assert.equal(d.length, 40 + TRANSPORT_MIN_SIZE);
    assert.ok(d.byteOffset >= 4);
    const framed = new Uint8Array(d.buffer, d.byteOffset - 4, d.length + 4);
    assert.equal(framed[4], 4, 'the WireGuard header follows the free bytes');
    assertPacket(b.decapsulate(d, IP_A, 1), ipv4(40));
  });

  test('the queue holds at most 256 packets', () => {
    const { a } = makePair();
    for (let i = 0; i < MAX_QUEUED_PACKETS; i++) assert.equal(a.tunnel.encapsulate(ipv4(20), 0), 'queued');
    assert.equal(a.tunnel.encapsulate(ipv4(20), 0), 'queueFull');
  });
});

describe('timers', () => {
  test('an unanswered initiation is retransmitted after REKEY_TIMEOUT plus jitter', () => {
    const { a } = makePair();
    a.tunnel.encapsulate(ipv4(20), 0);
    drainTransmits(a.tunnel);
    const deadline = a.tunnel.pollTimeout()!;
    assert.ok(deadline >= REKEY_TIMEOUT && deadline < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX, `${deadline}`);
    a.tunnel.handleTimeout(deadline - 1);
    assert.deepEqual(drainTransmits(a.tunnel), []);
    a.tunnel.handleTimeout(deadline);
    const [again] = drainTransmits(a.tunnel);
    assert.equal(messageType(again!), 1);
    assert.ok(a.tunnel.pollTimeout()! > deadline);
  });

  test('tunnels of one node sharing its cipher and rings keep their own timers', () => {
    const identity = staticIdentity(key(1));
    const rateLimiter = new RateLimiter(identity, seededRandom(1), 0);
    const shared = { local: identity, presharedKey: PSK, rng: seededRandom(2), rateLimiter, now: 0, cipher: new NodeCryptoTransportCipher(), replayRings: new ReplayRings() };
    const peer = staticIdentity(key(2)).publicKey;
    const deadlines = [1_000, REKEY_TIMEOUT, 1_000].map((rekeyTimeout, index) => {
      const tunnel = new Tunnel({ ...shared, peer, index, rekeyTimeout });
      tunnel.initiateHandshake(0);
      return tunnel.pollTimeout()! - rekeyTimeout;
    });
    for (const jitter of deadlines) assert.ok(jitter >= 0 && jitter < REKEY_TIMEOUT_JITTER_MAX, `${jitter}`);
  });

  test('handshakes give up after REKEY_ATTEMPT_TIME with connectionExpired and drop the queue', () => {
    const { a, b } = makePair();
    a.tunnel.encapsulate(ipv4(20), 0);
    drainTransmits(a.tunnel);
    const sent = advance(a, 0, REKEY_ATTEMPT_TIME + 1000);
    assert.equal(sent.length, 2, 'retransmits at ~5 s and ~10 s');
    assert.ok(sent.every((s) => messageType(s.datagram) === 1));
    assert.deepEqual(drainEvents(a.tunnel), [{ kind: 'connectionExpired' }]);
    assert.equal(a.tunnel.isHandshaking(), false);
    // the queue is gone: a later handshake delivers nothing but the keepalive
    handshake({ a, b }, REKEY_ATTEMPT_TIME + 2000);
    assert.deepEqual(drainTransmits(a.tunnel), []);
  });

  test('the initiator rekeys when it sends on a session older than REKEY_AFTER_TIME', () => {
    const pair = makePair();
    handshake(pair, 0);
    const at = REKEY_AFTER_TIME + 1000;
    assert.ok(pair.a.tunnel.encapsulate(ipv4(20), at) instanceof Uint8Array, 'still usable');
    const sent = advance(pair.a, at, at + REKEY_TIMEOUT_JITTER_MAX);
    assert.equal(sent.length, 1);
    assert.equal(messageType(sent[0]!.datagram), 1);
  });

  test('the responder never rekeys on send', () => {
    const pair = makePair();
    handshake(pair, 0);
    const at = REKEY_AFTER_TIME + 1000;
    assert.ok(pair.b.tunnel.encapsulate(ipv4(20), at) instanceof Uint8Array);
    const sent = advance(pair.b, at, at + 2000);
    assert.ok(sent.every((s) => messageType(s.datagram) !== 1));
  });

  test('the initiator rekeys on receive once the session is 165 s old', () => {
    const pair = makePair();
    handshake(pair, 0);
    const d = pair.b.tunnel.encapsulate(ipv4(20), 1000) as Uint8Array;
    pair.a.tunnel.decapsulate(d, IP_B, 1000);
    const sent = advance(pair.a, 1000, 166_000).filter((s) => messageType(s.datagram) === 1);
    assert.ok(sent.length >= 1);
    assert.ok(sent[0]!.at >= 165_000 && sent[0]!.at < 165_000 + REKEY_TIMEOUT_JITTER_MAX, `${sent[0]!.at}`);
  });

  test('transport messages on a session older than REJECT_AFTER_TIME are refused', () => {
    const pair = makePair();
    handshake(pair, 0);
    const late = pair.a.tunnel.encapsulate(ipv4(20), 160_000) as Uint8Array;
    assert.equal(pair.b.tunnel.decapsulate(late, IP_A, REJECT_AFTER_TIME), 'expired');
    assert.equal(pair.a.tunnel.hasSession(REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT), false, 'initiator stops sending at 170 s');
    assert.equal(pair.b.tunnel.hasSession(REJECT_AFTER_TIME - 1), true, 'responder sends until 180 s');
  });

  test('a peer that received data and sent nothing answers with a keepalive after KEEPALIVE_TIMEOUT', () => {
    const pair = makePair();
    handshake(pair, 0);
    pair.b.tunnel.decapsulate(pair.a.tunnel.encapsulate(ipv4(20), 1000) as Uint8Array, IP_A, 1000);
    const sent = advance(pair.b, 1000, 30_000);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.at, 1000 + KEEPALIVE_TIMEOUT);
    assert.equal(sent[0]!.datagram.length, TRANSPORT_MIN_SIZE);
    assert.equal(pair.a.tunnel.decapsulate(sent[0]!.datagram, IP_B, 11_000), 'keepalive');
  });

  test('no keepalive is sent when data went back in time', () => {
    const pair = makePair();
    handshake(pair, 0);
    pair.b.tunnel.decapsulate(pair.a.tunnel.encapsulate(ipv4(20), 1000) as Uint8Array, IP_A, 1000);
    pair.b.tunnel.encapsulate(ipv4(20), 5000);
    assert.deepEqual(advance(pair.b, 5000, 14_000), []);
  });

  test('data sent without any reply for KEEPALIVE + REKEY_TIMEOUT starts a new handshake', () => {
    const pair = makePair();
    handshake(pair, 0);
    pair.b.tunnel.encapsulate(ipv4(20), 2000);
    const sent = advance(pair.b, 2000, 2000 + 15_000 + REKEY_TIMEOUT_JITTER_MAX);
    assert.equal(sent.length, 1);
    assert.equal(messageType(sent[0]!.datagram), 1);
    assert.ok(sent[0]!.at >= 17_000);
  });

  test('handleTimeout always moves the deadline past now', () => {
    const pair = makePair();
    handshake(pair, 0);
    pair.a.tunnel.encapsulate(ipv4(20), 10);
    const sent = advance(pair.a, 10, 600_000);
    assert.ok(sent.length > 0);
  });

  test('with no session for 540 s the connection expires', () => {
    const { a } = makePair();
    advance(a, 0, 541_000);
    assert.deepEqual(drainEvents(a.tunnel), [{ kind: 'connectionExpired' }]);
  });

  test('a forced handshake in the middle of traffic replaces the session without loss', () => {
    const pair = makePair();
    handshake(pair, 0);
    const before = pair.a.tunnel.encapsulate(ipv4(20, 1), 10) as Uint8Array;
    assert.equal(pair.a.tunnel.isHandshaking(), false);
    pair.a.tunnel.initiateHandshake(11);
    deliver(pair.a, pair.b, IP_A, 12);
    const during = pair.a.tunnel.encapsulate(ipv4(20, 2), 12) as Uint8Array;
    deliver(pair.b, pair.a, IP_B, 13);
    const after = drainTransmits(pair.a.tunnel);
    assert.ok(pair.b.tunnel.decapsulate(before, IP_A, 14) instanceof Uint8Array);
    assert.ok(pair.b.tunnel.decapsulate(during, IP_A, 14) instanceof Uint8Array);
    for (const d of after) assert.equal(pair.b.tunnel.decapsulate(d, IP_A, 14), 'keepalive');
    const next = pair.a.tunnel.encapsulate(ipv4(20, 3), 15) as Uint8Array;
    assert.notEqual(receiverIndex(next), receiverIndex(before));
    assertPacket(pair.b.tunnel.decapsulate(next, IP_A, 15), ipv4(20, 3));
  });
});
