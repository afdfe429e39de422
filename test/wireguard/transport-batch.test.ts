// Batched data messages: the Tunnel keeps the protocol (counters, replay window, session
// confirmation) while a batch carries the AEAD; batched and one-by-one give the same results.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NativeTransportCipher } from '../../src/runtime/native-cipher.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import { NodeCryptoTransportCipher, OpenBatch, SealBatch, type TransportCipher, type Tunnel } from '../../src/wireguard/index.ts';
import { deliver, drainEvents, drainTransmits, handshake, IP_A, IP_B, ipv4, makePair, type Pair } from './harness.ts';

const backends: { name: string; make: () => TransportCipher; skip?: string }[] = [
  { name: 'node:crypto', make: () => new NodeCryptoTransportCipher() },
  { name: 'native', make: () => new NativeTransportCipher(), ...(isNativeAddonBuilt() ? {} : { skip: 'the native addon is not built' }) },
];

/** Seals `packets` on `from` through a batch; returns copies of the datagrams in order. */
function sealBatched(from: Tunnel, packets: readonly Uint8Array[], batch: SealBatch, now: number): Uint8Array[] {
  for (const packet of packets) assert.equal(typeof from.encapsulateInto(packet, now, batch), 'number');
  const out: Uint8Array[] = [];
  for (let slot = batch.next(); slot !== -1; slot = batch.next()) {
    assert.ok(batch.sealed(slot));
    out.push(batch.datagram(slot).slice());
  }
  return out;
}

/** Opens `datagrams` on `to` through a batch; returns per datagram a packet copy or the outcome. */
function openBatched(to: Tunnel, datagrams: readonly Uint8Array[], batch: OpenBatch, now: number): (Uint8Array | string)[] {
  // One receive buffer, as a socket ring would be.
  const ring = new Uint8Array(datagrams.length * 1400);
  const views = datagrams.map((d, i) => {
    ring.set(d, i * 1400);
    return ring.subarray(i * 1400, i * 1400 + d.length);
  });
  const out: (Uint8Array | string)[] = [];
  const pendingAt: number[] = [];
  for (const view of views) {
    const result = to.decapsulate(view, IP_A, now, batch);
    if (result === 'pending') pendingAt.push(out.length);
    out.push(typeof result === 'string' ? result : result.slice());
  }
  let next = 0;
  for (let slot = batch.next(now); slot !== -1; slot = batch.next(now)) {
    const outcome = batch.outcome(slot);
    out[pendingAt[next++]!] = typeof outcome === 'number' ? batch.packet(slot).slice() : outcome;
  }
  assert.equal(next, pendingAt.length);
  return out;
}

/** A pair with a finished handshake; side a's keys are in `a`, side b's in `b`. */
function connected(make: () => TransportCipher): Pair & { ciphers: { a: TransportCipher; b: TransportCipher } } {
  const ciphers = { a: make(), b: make() };
  const queue = [ciphers.a, ciphers.b];
  const pair = makePair({ cipher: () => queue.shift()! });
  handshake(pair, 0);
  return { ...pair, ciphers };
}

for (const backend of backends) {
  describe(`transport batches (${backend.name})`, { skip: backend.skip }, () => {
    test('a batch of packets sealed together opens, in a batch, to the same packets', () => {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 20, max: 1280 }), { minLength: 1, maxLength: 300 }), (lengths) => {
          const pair = connected(backend.make);
          const packets = lengths.map((length, i) => ipv4(length, i & 0xff));
          const seal = new SealBatch(pair.ciphers.a, 4);
          const datagrams: Uint8Array[] = [];
          for (let i = 0; i < packets.length; i += seal.capacity) {
            datagrams.push(...sealBatched(pair.a.tunnel, packets.slice(i, i + seal.capacity), seal, 1));
          }
          const opened = openBatched(pair.b.tunnel, datagrams.slice(0, 256), new OpenBatch(pair.ciphers.b), 1);
          assert.deepEqual(opened, packets.slice(0, 256));
        }),
        { numRuns: 20 },
      );
    });

    test('batched sealing gives the bytes one-by-one sealing gives', () => {
      const batched = connected(backend.make);
      const single = connected(backend.make);
      const packets = [ipv4(20), ipv4(1280, 7), ipv4(577, 9)];
      const viaBatch = sealBatched(batched.a.tunnel, packets, new SealBatch(batched.ciphers.a, 0), 1);
      const oneByOne = packets.map((p) => (single.a.tunnel.encapsulate(p, 1) as Uint8Array).slice());
      assert.deepEqual(viaBatch, oneByOne);
    });

    test('a replayed message in the same batch is refused once authenticated, the original is kept', () => {
      const pair = connected(backend.make);
      const [datagram] = sealBatched(pair.a.tunnel, [ipv4(100)], new SealBatch(pair.ciphers.a, 0), 1);
      const opened = openBatched(pair.b.tunnel, [datagram!, datagram!, datagram!], new OpenBatch(pair.ciphers.b), 1);
      assert.deepEqual(opened, [ipv4(100), 'replayed', 'replayed']);
      assert.deepEqual(openBatched(pair.b.tunnel, [datagram!], new OpenBatch(pair.ciphers.b), 1), ['replayed']);
    });

    test('a forged message in a batch is dropped without touching the replay window or its neighbours', () => {
      const pair = connected(backend.make);
      const datagrams = sealBatched(pair.a.tunnel, [ipv4(60, 1), ipv4(60, 2), ipv4(60, 3)], new SealBatch(pair.ciphers.a, 0), 1);
      const forged = datagrams[1]!.slice();
      forged[forged.length - 1]! ^= 1;
      const opened = openBatched(pair.b.tunnel, [datagrams[0]!, forged, datagrams[2]!], new OpenBatch(pair.ciphers.b), 1);
      assert.deepEqual(opened, [ipv4(60, 1), 'decryptFailed', ipv4(60, 3)]);
      // The genuine message with the forged one's counter is still accepted.
      assert.deepEqual(openBatched(pair.b.tunnel, [datagrams[1]!], new OpenBatch(pair.ciphers.b), 1), [ipv4(60, 2)]);
    });

    test('a handshake message in the middle of a batch lets the data before it finish first', () => {
      const cipherB = backend.make();
      const queue = [backend.make(), cipherB];
      const pair = makePair({ cipher: () => queue.shift()! });
      pair.a.tunnel.initiateHandshake(0);
      deliver(pair.a, pair.b, IP_A, 0);
      deliver(pair.b, pair.a, IP_B, 0);
      // The initiator's first data message confirms the responder's session; a new initiation follows.
      const [confirming] = drainTransmits(pair.a.tunnel);
      pair.a.tunnel.initiateHandshake(0);
      const batch = new OpenBatch(cipherB);
      assert.equal(pair.b.tunnel.decapsulate(confirming!, IP_A, 0, batch), 'pending');
      assert.equal(batch.unopened, 1);
      const [initiation] = drainTransmits(pair.a.tunnel);
      assert.equal(pair.b.tunnel.decapsulate(initiation!, IP_A, 0, batch), 'handshake');
      assert.equal(batch.unopened, 0, 'opened before the handshake was handled');
      assert.equal(batch.outcome(batch.next(0)), 'keepalive');
      assert.deepEqual(drainEvents(pair.b.tunnel), [{ kind: 'sessionEstablished' }]);
    });

    test('keys live in the cipher exactly as long as their sessions', () => {
      const cipher = backend.make();
      const pair = makePair({ cipher: () => cipher });
      for (let i = 0; i < 12; i++) handshake(pair, i);
      // Each side keeps at most SESSION_RING_SIZE (8) sessions of two keys.
      assert.ok(cipher.keyCount <= 2 * 2 * 8, `${cipher.keyCount} keys`);
      pair.a.tunnel.close();
      pair.b.tunnel.close();
      assert.equal(cipher.keyCount, 0);
      assert.equal(pair.a.tunnel.encapsulate(ipv4(40), 20), 'queued');
    });

    test('a full seal batch says so instead of growing', () => {
      const pair = connected(backend.make);
      const batch = new SealBatch(pair.ciphers.a, 0, 2);
      assert.equal(typeof pair.a.tunnel.encapsulateInto(ipv4(40), 1, batch), 'number');
      assert.equal(typeof pair.a.tunnel.encapsulateInto(ipv4(40), 1, batch), 'number');
      assert.equal(pair.a.tunnel.encapsulateInto(ipv4(40), 1, batch), 'batchFull');
      assert.equal(pair.a.tunnel.encapsulateInto(new Uint8Array(2000), 1, new SealBatch(pair.ciphers.a, 0)), 'batchFull');
    });
  });
}
