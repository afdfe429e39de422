// Two tunnels over a lossy, reordering, duplicating virtual network. Invariants: nothing throws,
// every delivered packet is one the other side sent, intact, and delivered at most once;
// deadlines always move forward; once the network heals, traffic flows again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { IP_A, IP_B, ipv4, makePair, type Side } from './harness.ts';

interface InFlight {
  readonly at: number;
  readonly to: 'a' | 'b';
  readonly bytes: Uint8Array;
}

interface NetworkConditions {
  readonly loss: number;
  readonly duplicate: number;
  readonly maxDelay: number;
}

class Simulation {
  readonly sides: Record<'a' | 'b', Side>;
  readonly delivered: Record<'a' | 'b', Set<number>> = { a: new Set(), b: new Set() };
  readonly sent: Record<'a' | 'b', Set<number>> = { a: new Set(), b: new Set() };
  now = 0;
  #inFlight: InFlight[] = [];
  #nextId = 1;
  readonly #rng: RandomSource;

  constructor(seed: number) {
    const pair = makePair();
    this.sides = { a: pair.a, b: pair.b };
    this.#rng = seededRandom(seed);
  }

  send(from: 'a' | 'b', conditions: NetworkConditions): void {
    const id = this.#nextId++;
    this.sent[from].add(id);
    const result = this.sides[from].tunnel.encapsulate(packetWithId(id), this.now);
    if (result instanceof Uint8Array) this.#transmit(from, result, conditions);
    this.#drain(from, conditions);
  }

  /** Runs every network delivery and timer up to `until`. */
  runUntil(until: number, conditions: NetworkConditions): void {
    for (let guard = 0; guard < 100_000; guard++) {
      const nextDelivery = this.#inFlight.reduce((m, f) => Math.min(m, f.at), Infinity);
      const nextA = this.sides.a.tunnel.pollTimeout() ?? Infinity;
      const nextB = this.sides.b.tunnel.pollTimeout() ?? Infinity;
      const next = Math.min(nextDelivery, nextA, nextB);
      if (next > until) {
        this.now = until;
        return;
      }
      this.now = Math.max(this.now, next);
      if (next === nextDelivery) {
        const index = this.#inFlight.findIndex((f) => f.at === nextDelivery);
        const [flight] = this.#inFlight.splice(index, 1);
        this.#receive(flight!, conditions);
      } else {
        const name = next === nextA ? 'a' : 'b';
        this.sides[name].tunnel.handleTimeout(this.now);
        const after = this.sides[name].tunnel.pollTimeout();
        assert.ok(after === undefined || after > this.now, `deadline of ${name} stuck at ${this.now}`);
        this.#drain(name, conditions);
      }
    }
    assert.fail('simulation did not settle');
  }

  #receive(flight: InFlight, conditions: NetworkConditions): void {
    const result = this.sides[flight.to].tunnel.decapsulate(flight.bytes, flight.to === 'a' ? IP_B : IP_A, this.now);
    if (result instanceof Uint8Array) {
      const id = idOf(result);
      const from = flight.to === 'a' ? 'b' : 'a';
      assert.ok(this.sent[from].has(id), `packet ${id} was never sent by ${from}`);
      assert.equal(this.delivered[flight.to].has(id), false, `packet ${id} delivered twice`);
      assert.equal(Buffer.compare(Buffer.from(result), Buffer.from(packetWithId(id))), 0, 'content intact');
      this.delivered[flight.to].add(id);
    }
    this.#drain(flight.to, conditions);
  }

  #drain(from: 'a' | 'b', conditions: NetworkConditions): void {
    const tunnel = this.sides[from].tunnel;
    for (let d = tunnel.pollTransmit(); d !== undefined; d = tunnel.pollTransmit()) this.#transmit(from, d, conditions);
    while (tunnel.pollEvent() !== undefined);
  }

  #transmit(from: 'a' | 'b', bytes: Uint8Array, conditions: NetworkConditions): void {
    if (this.#rng.float() < conditions.loss) return;
    const copies = this.#rng.float() < conditions.duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = 1 + Math.floor(this.#rng.float() * conditions.maxDelay);
      this.#inFlight.push({ at: this.now + delay, to: from === 'a' ? 'b' : 'a', bytes });
    }
  }
}

function packetWithId(id: number): Uint8Array {
  const packet = ipv4(40 + (id % 50), id & 0xff);
  new DataView(packet.buffer).setUint32(20, id);
  return packet;
}

function idOf(packet: Uint8Array): number {
  return new DataView(packet.buffer, packet.byteOffset, packet.byteLength).getUint32(20);
}

const HEALTHY: NetworkConditions = { loss: 0, duplicate: 0, maxDelay: 20 };

test('over a hostile network packets are delivered intact and at most once, and traffic recovers', () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.record({
        loss: fc.double({ min: 0, max: 0.5, noNaN: true }),
        duplicate: fc.double({ min: 0, max: 0.3, noNaN: true }),
        maxDelay: fc.integer({ min: 1, max: 300 }),
      }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 20_000 }), fc.constantFrom<'a' | 'b'>('a', 'b')), {
        minLength: 1,
        maxLength: 60,
      }),
      (seed, conditions, gaps) => {
        const sim = new Simulation(seed);
        for (const [gap, from] of gaps) {
          sim.runUntil(sim.now + gap, conditions);
          sim.send(from, conditions);
        }
        sim.runUntil(sim.now + 1000, conditions);

        // Healed: within 30 s (one no-reply timeout plus a handshake) everything gets through.
        for (let second = 0; second < 30; second++) {
          sim.send('a', HEALTHY);
          sim.send('b', HEALTHY);
          sim.runUntil(sim.now + 1000, HEALTHY);
        }
        const lastA = sim.sent.a.size;
        const lastB = sim.sent.b.size;
        for (let second = 0; second < 10; second++) {
          sim.send('a', HEALTHY);
          sim.send('b', HEALTHY);
          sim.runUntil(sim.now + 1000, HEALTHY);
        }
        const tail = (from: 'a' | 'b', skip: number): number[] => [...sim.sent[from]].slice(skip);
        for (const id of tail('a', lastA)) assert.ok(sim.delivered.b.has(id), `a -> b packet ${id} after healing`);
        for (const id of tail('b', lastB)) assert.ok(sim.delivered.a.has(id), `b -> a packet ${id} after healing`);
      },
    ),
    { numRuns: Number(process.env['WG_SIM_RUNS'] ?? 25) },
  );
});
