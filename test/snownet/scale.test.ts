// Structure, not the clock: with a thousand connections the node does work only for the
// connections an input concerns. Work is counted through the node's observer hook.
import { strict as assert } from 'node:assert';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { Fleet, FLEET_GATEWAY_IP, GATEWAY_CONNECTION } from '../support/fleet.ts';
import { ipv4UdpPacket } from './harness.ts';

const CLIENTS = 1_000;

class VisitCounter {
  readonly visits: string[] = [];
  readonly deadlineReads: string[] = [];
  connectionVisited(connection: string): void {
    this.visits.push(connection);
  }
  deadlineRead(connection: string): void {
    this.deadlineReads.push(connection);
  }
  take(): string[] {
    return this.visits.splice(0);
  }
}

describe(`a gateway node with ${CLIENTS} idle connections`, () => {
  const counter = new VisitCounter();
  let fleet: Fleet;

  before(() => {
    configureLogging({ filter: LogFilter.parse('error') });
    fleet = new Fleet({ clients: CLIENTS, gateway: 'node', observer: counter });
    assert.ok(fleet.connectSpread(10_000, 60_000), `only ${fleet.connectedCount()} of ${CLIENTS} connected`);
    // Idle after 20 s without packets.
    fleet.net.runUntil(fleet.net.now + 21_000);
    const idle = fleet.clients.filter((c) => fleet.gateway.connectionState(c.id) === 'idle').length;
    assert.equal(idle, CLIENTS);
    counter.take();
  });

  test('a timer fire visits exactly the connections that are due, and few are due at a time', () => {
    const fires: { due: number; visited: number }[] = [];
    fleet.gatewayProbe = (input, run) => {
      if (input.kind !== 'timer') return run();
      const due = new Set<string>();
      for (const client of fleet.clients) if ((fleet.gateway.connectionDeadline(client.id) ?? Infinity) <= input.now) due.add(client.id);
      counter.take();
      run();
      const visited = counter.take();
      assert.equal(new Set(visited).size, visited.length, 'no connection is visited twice in one fire');
      for (const id of visited) assert.ok(due.has(id), `${id} was visited but not due`);
      for (const id of due) assert.ok(visited.includes(id), `${id} was due but not visited`);
      fires.push({ due: due.size, visited: visited.length });
    };
    const start = fleet.net.now;
    fleet.net.runUntil(start + 30_000);
    fleet.gatewayProbe = undefined;

    assert.ok(fires.length > 0);
    const visits = fires.reduce((sum, f) => sum + f.visited, 0);
    const busiest = Math.max(...fires.map((f) => f.visited));
    // Idle connections check their pairs every 25 s: a few visits per connection per 30 s. The
    // clients arrived over 10 s, so a fire serves a small batch (deadlines far ahead share a 100 ms
    // grid), never all of them.
    assert.ok(visits <= CLIENTS * 8, `${visits} visits in 30 s`);
    assert.ok(busiest < CLIENTS / 4, `a fire visited ${busiest} connections`);
  });

  test('every datagram the network delivers touches at most the one connection it belongs to', () => {
    let datagrams = 0;
    fleet.gatewayProbe = (input, run) => {
      if (input.kind !== 'datagram') return run();
      counter.take();
      run();
      const visited = counter.take();
      datagrams++;
      assert.ok(visited.length <= 1, `a datagram visited ${visited.length} connections`);
      const sender = fleet.clients.find((c) => c.ip === input.from.address);
      if (sender !== undefined && visited.length === 1) assert.equal(visited[0], sender.id);
    };
    fleet.net.runUntil(fleet.net.now + 10_000);
    fleet.gatewayProbe = undefined;
    assert.ok(datagrams > 100, `only ${datagrams} datagrams`);
  });

  test('a WireGuard packet from one client is decrypted by its connection alone, waking it from idle', () => {
    const client = fleet.client(CLIENTS / 2);
    const packet = ipv4UdpPacket(client.tunV4, '10.0.0.1', new TextEncoder().encode('ping'));
    const transmit = client.agent.seal(packet, fleet.net.now);
    fleet.net.wake(client.name);
    assert.ok(transmit !== undefined);
    counter.take();
    const result = fleet.gateway.decapsulate(transmit.destination, { address: client.ip, port: 52625, family: 4 }, transmit.payload, fleet.net.now);
    fleet.net.wake('gateway');
    assert.notEqual(typeof result, 'string');
    assert.deepEqual(counter.take(), [client.id]);
    assert.equal(fleet.gateway.connectionState(client.id), 'connected');
    assert.equal(client.node.connectionState(GATEWAY_CONNECTION), 'connected');
  });

  test("a stream of data from one client reads that connection's deadline once, and its keepalive still comes on time", () => {
    const client = fleet.client(CLIENTS / 4);
    const from = { address: client.ip, port: 52625, family: 4 } as const;
    const start = fleet.net.now;
    const reads: number[] = [];
    for (let i = 0; i < 50; i++) {
      const transmit = client.agent.seal(ipv4UdpPacket(client.tunV4, '10.0.0.1', new TextEncoder().encode(`ping ${i}`)), start + i * 10);
      assert.ok(transmit !== undefined);
      counter.deadlineReads.splice(0);
      assert.notEqual(typeof fleet.gateway.decapsulate(transmit.destination, from, transmit.payload, start + i * 10), 'string');
      reads.push(counter.deadlineReads.filter((id) => id === client.id).length);
    }
    fleet.net.wake(client.name);
    fleet.net.wake('gateway');
    // The first packet wakes the idle connection and starts the tunnel's keepalive timer; the
    // others move no deadline earlier, so the (cold) ICE agent is not asked again.
    assert.equal(reads[0], 1);
    assert.deepEqual(reads.slice(1), new Array<number>(49).fill(0));
    const deadline = fleet.gateway.connectionDeadline(client.id);
    assert.ok(deadline !== undefined && deadline <= start + 10_000, `queued deadline ${deadline}, keepalive due at ${start + 10_000}`);

    // The gateway answered nothing: 10 s after the last packet it sends the client a keepalive
    // (the timer wakes the connection early, at the first packet's deadline, and finds the exact one).
    const received = client.agent.received;
    const keepalives: number[] = [];
    const handle = client.agent.handleDatagram.bind(client.agent);
    client.agent.handleDatagram = (source, destination, payload, now) => {
      if (source.address === FLEET_GATEWAY_IP && payload.length === 32 && payload[0] === 4) keepalives.push(now);
      handle(source, destination, payload, now);
    };
    try {
      fleet.net.runUntil(start + 10_800);
    } finally {
      client.agent.handleDatagram = handle;
    }
    assert.equal(client.agent.received, received, 'no packet reached the client');
    assert.ok(keepalives.length >= 1, 'no keepalive from the gateway');
    const due = start + 490 + 10_000;
    assert.ok(keepalives[0]! >= due && keepalives[0]! <= due + 200, `keepalive ${keepalives[0]! - due} ms after it was due`);
  });

  test("prefetching a data message reads its connection's owner and changes nothing", () => {
    const client = fleet.client(CLIENTS / 8);
    assert.equal(fleet.gateway.connectionState(client.id), 'idle');
    const owner = { client: client.id };
    fleet.gateway.setConnectionOwner(client.id, owner);
    const transmit = client.agent.seal(ipv4UdpPacket(client.tunV4, '10.0.0.1', new TextEncoder().encode('ahead')), fleet.net.now);
    fleet.net.wake(client.name);
    assert.ok(transmit !== undefined);
    counter.take();
    assert.equal(fleet.gateway.prefetch(transmit.payload), owner);
    assert.equal(fleet.gateway.prefetch(transmit.payload), owner);
    assert.deepEqual(counter.take(), [], 'a prefetch is not work for the connection');
    assert.equal(fleet.gateway.connectionState(client.id), 'idle', 'a prefetch does not wake the connection');
    // The message itself is still new to the connection (no counter was spent).
    const result = fleet.gateway.decapsulate(transmit.destination, { address: client.ip, port: 52625, family: 4 }, transmit.payload, fleet.net.now);
    fleet.net.wake('gateway');
    assert.notEqual(typeof result, 'string');
    assert.equal(fleet.gateway.connectionState(client.id), 'connected');
    // Anything else (handshakes, STUN, short or random bytes) has no owner to read.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const read = fleet.gateway.prefetch(bytes);
        assert.ok(read === undefined || read === owner);
      }),
    );
    assert.equal(fleet.gateway.prefetch(new Uint8Array(148).fill(1, 0, 1)), undefined);
  });

  test('asking for the next deadline does no per-connection work', () => {
    counter.take();
    for (let i = 0; i < 1_000; i++) fleet.gateway.pollTimeout();
    assert.deepEqual(counter.take(), []);
  });
});
