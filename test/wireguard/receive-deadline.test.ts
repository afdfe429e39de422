// The node re-reads a tunnel's deadline after received data only when `receiveDeadlineAdded` and
// `receiveDeadline` say the data may have moved it earlier. Here two tunnels are driven through random traffic, loss and
// timers by a model of that node: it must never hold a deadline later than the tunnel's own, or a
// keepalive, rekey or retransmission would fire late.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { KEEPALIVE_TIMEOUT, messageType, type Tunnel } from '../../src/wireguard/index.ts';
import { IP_A, IP_B, handshake, ipv4, makePair, type Side } from './harness.ts';

/** What the node keeps for one tunnel: the deadline in its queue, moved as the node moves it. */
class ModelNode {
  scheduledAt = Infinity;
  reads = 0;

  constructor(readonly side: Side) {}

  get tunnel(): Tunnel {
    return this.side.tunnel;
  }

  /** After anything but received data: the deadline is read, and only ever moved earlier. */
  touch(): void {
    this.reads++;
    this.scheduledAt = Math.min(this.scheduledAt, this.tunnel.pollTimeout() ?? Infinity);
  }

  /** After received data: read only when the tunnel says the data may have moved it earlier. */
  receivedData(): void {
    // The flag the node reads first must say exactly whether there is a deadline to compare.
    assert.equal(this.tunnel.receiveDeadlineAdded, this.tunnel.receiveDeadline !== Infinity);
    if (this.tunnel.receiveDeadlineAdded && this.tunnel.receiveDeadline < this.scheduledAt) this.touch();
  }

  /** A timer fire: the exact next deadline. */
  fire(now: number): void {
    this.tunnel.handleTimeout(now);
    this.reads++;
    this.scheduledAt = this.tunnel.pollTimeout() ?? Infinity;
  }

  /** The node's deadline is never later than the tunnel's (reading it is a touch the node would accept). */
  check(label: string): void {
    const actual = this.tunnel.pollTimeout() ?? Infinity;
    assert.ok(this.scheduledAt <= actual, `${label}: queued ${this.scheduledAt}, tunnel due at ${actual}`);
  }
}

type Step = { kind: 'send'; from: 0 | 1; packets: number } | { kind: 'wait'; ms: number } | { kind: 'loss'; on: boolean };

const step: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('send' as const), from: fc.constantFrom(0 as const, 1 as const), packets: fc.integer({ min: 1, max: 4 }) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 40_000 }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('loss' as const), on: fc.boolean() }), weight: 1 },
);

describe('receiveDeadline', () => {
  test('a node that re-reads the deadline only when it says so never holds one later than the tunnel', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const pair = makePair();
        const nodes = [new ModelNode(pair.a), new ModelNode(pair.b)] as const;
        const ips = [IP_A, IP_B] as const;
        let now = handshake(pair, 0);
        for (const node of nodes) node.touch();
        let lossy = false;

        /** Hands every datagram `from` has to the other side (unless lost), which reacts as the node does. */
        const deliver = (from: 0 | 1, datagram: Uint8Array): void => {
          if (lossy && messageType(datagram) === 4) return;
          const to = nodes[1 - from]!;
          const result = to.tunnel.decapsulate(datagram, ips[from], now);
          if (result instanceof Uint8Array) to.receivedData();
          else to.touch();
          while (to.tunnel.pollEvent() !== undefined);
          to.check(`after a datagram at ${now}`);
        };
        const flush = (from: 0 | 1): void => {
          for (let datagram = nodes[from].tunnel.pollTransmit(); datagram !== undefined; datagram = nodes[from].tunnel.pollTransmit()) deliver(from, datagram);
        };

        for (const s of steps) {
          if (s.kind === 'loss') lossy = s.on;
          else if (s.kind === 'send') {
            const sender = nodes[s.from];
            for (let i = 0; i < s.packets; i++) {
              const sealed = sender.tunnel.encapsulate(ipv4(40, i), now);
              sender.touch();
              if (sealed instanceof Uint8Array) deliver(s.from, sealed);
            }
            flush(s.from);
            flush((1 - s.from) as 0 | 1);
          } else {
            const until = now + s.ms;
            for (;;) {
              const due = nodes[0].scheduledAt <= nodes[1].scheduledAt ? 0 : 1;
              const at = nodes[due].scheduledAt;
              if (at > until) break;
              now = Math.max(now, at);
              nodes[due].fire(now);
              flush(due);
              flush((1 - due) as 0 | 1);
            }
            now = until;
          }
          for (const node of nodes) node.check(`after ${s.kind} at ${now}`);
        }
      }),
      { numRuns: 150 },
    );
  });

  test('a stream of data re-reads the deadline once, when the first packet starts the keepalive timer', () => {
    const pair = makePair();
    handshake(pair, 0);
    const node = new ModelNode(pair.b);
    node.touch();
    const readsBefore = node.reads;
    for (let at = 1_000; at < 2_000; at += 10) {
      const datagram = pair.a.tunnel.encapsulate(ipv4(40), at);
      assert.ok(datagram instanceof Uint8Array);
      assert.ok(pair.b.tunnel.decapsulate(datagram, IP_A, at) instanceof Uint8Array);
      if (at === 1_000) assert.equal(pair.b.tunnel.receiveDeadline, 1_000 + KEEPALIVE_TIMEOUT);
      node.receivedData();
    }
    assert.equal(node.reads - readsBefore, 1);
    node.check('after the stream');
  });
});
