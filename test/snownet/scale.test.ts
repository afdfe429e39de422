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

  test("reading a socket read ahead yields its data messages' owners, in order, and changes nothing", () => {
    const clients = [fleet.client(CLIENTS / 8), fleet.client(CLIENTS / 4), fleet.client(CLIENTS / 2)];
    const owners = clients.map((client) => ({ client: client.id }));
    clients.forEach((client, i) => fleet.gateway.setConnectionOwner(client.id, owners[i]));
    const states = clients.map((client) => fleet.gateway.connectionState(client.id));
    const sealed = clients.map((client) => {
      const transmit = client.agent.seal(ipv4UdpPacket(client.tunV4, '10.0.0.1', new TextEncoder().encode('ahead')), fleet.net.now);
      fleet.net.wake(client.name);
      assert.ok(transmit !== undefined);
      return transmit;
    });
    // A data message for a tunnel index nobody holds: its entry is not found.
    const unknown = sealed[0]!.payload.slice();
    unknown[5] = unknown[5]! ^ 0xff;
    const junk = new Uint8Array(148).fill(1, 0, 1);
    const payloads = [sealed[0]!.payload, junk, sealed[1]!.payload, unknown, new Uint8Array(0), sealed[2]!.payload, sealed[0]!.payload];
    const read = { count: payloads.length, payload: (i: number) => payloads[i]! };
    counter.take();
    const found: unknown[] = [];
    assert.equal(fleet.gateway.readAhead(read, found), 4);
    assert.deepEqual(found, [owners[0], owners[1], owners[2], owners[0]]);
    assert.equal(fleet.gateway.readAhead(read, found), 4, 'reading ahead again finds the same');
    assert.deepEqual(counter.take(), [], 'a read-ahead is not work for any connection');
    assert.deepEqual(
      clients.map((client) => fleet.gateway.connectionState(client.id)),
      states,
      'a read-ahead changes no connection',
    );
    // The messages themselves are still new to their connections (no counter was spent).
    sealed.forEach((transmit, i) => {
      const client = clients[i]!;
      const result = fleet.gateway.decapsulate(transmit.destination, { address: client.ip, port: 52625, family: 4 }, transmit.payload, fleet.net.now);
      assert.notEqual(typeof result, 'string');
      assert.equal(fleet.gateway.connectionState(client.id), 'connected');
    });
    fleet.net.wake('gateway');
    // Any bytes, any number of them (beyond the staging it started with): only known owners come out, never an exception.
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(...sealed.map((t) => t.payload))), { maxLength: 100 }), (datagrams) => {
        const out: unknown[] = [];
        const count = fleet.gateway.readAhead({ count: datagrams.length, payload: (i) => datagrams[i]! }, out);
        assert.equal(count, out.length);
        for (const owner of out) assert.ok(owners.includes(owner as { client: string }));
      }),
    );
  });

  test("a datagram's owner goes to the owner read-ahead as soon as its entry is found, and no other owner does", () => {
    const clients = [fleet.client(CLIENTS / 8 + 1), fleet.client(CLIENTS / 4 + 1), fleet.client(CLIENTS / 2 + 1)];
    const owners = clients.map((client) => ({ client: client.id }));
    clients.forEach((client, i) => fleet.gateway.setConnectionOwner(client.id, owners[i]));
    // The third one's owner is taken back: nothing to read ahead for it.
    fleet.gateway.setConnectionOwner(clients[2]!.id, undefined);
    const seen: unknown[] = [];
    fleet.gateway.setOwnerReadAhead((owner) => {
      seen.push(owner);
      return 0;
    });
    const deliver = (client: (typeof clients)[number], tamper = false): void => {
      const transmit = client.agent.seal(ipv4UdpPacket(client.tunV4, '10.0.0.1', new TextEncoder().encode('owner')), fleet.net.now);
      fleet.net.wake(client.name);
      assert.ok(transmit !== undefined);
      const payload = transmit.payload.slice();
      if (tamper) payload[5] = payload[5]! ^ 0xff;
      const result = fleet.gateway.decapsulate(transmit.destination, { address: client.ip, port: 52625, family: 4 }, payload, fleet.net.now);
      assert.equal(typeof result === 'string', tamper);
    };
    try {
      counter.take();
      deliver(clients[0]!);
      assert.deepEqual(seen.splice(0), [owners[0]]);
      deliver(clients[1]!);
      assert.deepEqual(seen.splice(0), [owners[1]]);
      deliver(clients[2]!);
      assert.deepEqual(seen.splice(0), [], 'a connection without an owner reads none ahead');
      deliver(clients[0]!, true);
      assert.deepEqual(seen.splice(0), [], 'an index nobody holds finds no owner');
      assert.deepEqual(new Set(counter.take()), new Set([clients[0]!.id, clients[1]!.id, clients[2]!.id]), 'only the datagrams\' own connections were visited');
    } finally {
      fleet.gateway.setOwnerReadAhead(() => 0);
      fleet.net.wake('gateway');
    }
  });

  test('asking for the next deadline does no per-connection work', () => {
    counter.take();
    for (let i = 0; i < 1_000; i++) fleet.gateway.pollTimeout();
    assert.deepEqual(counter.take(), []);
  });
});
