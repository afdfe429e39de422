import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseCandidate } from '../../src/ice/index.ts';
import { MAX_IDLE } from '../../src/snownet/index.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { fixturePath } from '../support/env.ts';
import { Scenario, ipv4UdpPacket } from './harness.ts';

configureLogging({ filter: LogFilter.parse('off') });

function failures(agent: Scenario['gateway']): string[] {
  return agent.events.flatMap((e) => (e.kind === 'connectionFailed' ? [e.reason] : []));
}

describe('connectivity node', () => {
  test('(a) direct: connects host to host and carries data both ways', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client, 'ping'), 'client to gateway');
    assert.ok(s.deliver(s.gateway, 'pong'), 'gateway to client');
    const path = s.client.node.connectionPath('gateway');
    assert.equal(path?.kind, 'direct');
    assert.equal(path?.kind === 'direct' && path.destination.address, '203.0.113.2');
    const received = s.gateway.received.at(-1)!;
    assert.equal(received.connection, 'client');
    assert.equal(new TextDecoder().decode(received.packet.subarray(28)), 'ping');
    assert.ok(s.net.now < 2_000, `connected within 2 s (took ${s.net.now} ms)`);
  });

  test('(b) both behind port-preserving NATs: connects through server-reflexive candidates', () => {
    const s = new Scenario({ clientNat: 'port-preserving', gatewayNat: 'port-preserving' });
    s.connect();
    assert.ok(s.deliver(s.client, 'through nat'));
    assert.ok(s.deliver(s.gateway, 'back through nat'));
    s.net.runUntil(s.net.now + 5_000);
    const path = s.gateway.node.connectionPath('client');
    assert.equal(path?.kind, 'direct');
    assert.equal(path?.destination.address, '198.51.100.1', 'the client NAT public address');
  });

  test('(c) symmetric NATs: only the relay path works, and data flows through it', () => {
    const s = new Scenario({ clientNat: 'symmetric', gatewayNat: 'symmetric' });
    s.connect();
    assert.ok(s.deliver(s.client, 'relayed', 10_000));
    assert.ok(s.deliver(s.gateway, 'relayed back', 10_000));
    const kinds = [s.client.node.connectionPath('gateway')?.kind, s.gateway.node.connectionPath('client')?.kind];
    assert.ok(kinds.includes('relay'), `a relayed path: ${kinds.join(',')}`);
    assert.ok(s.relay.stats.relayedToPeer > 0);
  });

  test('the gateway never sends data before the client nominated a path', () => {
    const s = new Scenario();
    s.connect();
    const packet = ipv4UdpPacket('10.0.0.1', '100.64.0.1', new Uint8Array(10));
    assert.equal(s.gateway.node.encapsulate('client', packet, s.net.now), undefined);
    assert.equal(s.gateway.node.stats.encapsulateDropped, 1);
  });

  test('re-authorization with the same credentials keeps the tunnel; new credentials replace it', () => {
    const s = new Scenario();
    s.connect('a');
    assert.ok(s.deliver(s.client));
    const established = () => s.gateway.events.filter((e) => e.kind === 'connectionEstablished').length;
    const before = established();
    const again = s.gateway.node.upsertConnection('client', {
      localCredentials: { ufrag: 'ga', password: 'gateway-password-a-xxx' },
      remoteCredentials: { ufrag: 'ca', password: 'client-password-a-xxxx' },
      remotePublicKey: s.client.node.publicKey,
      presharedKey: s.presharedKey,
    }, s.net.now);
    assert.equal(again, 'reused');
    assert.ok(s.deliver(s.client, 'still the same tunnel'));
    assert.equal(established(), before, 'no new WireGuard session');

    s.connect('b');
    assert.equal(s.gateway.node.connectionState('client'), 'connecting', 'replaced');
    assert.ok(s.deliver(s.client, 'new tunnel'));
    assert.equal(established(), before + 1);
  });

  test("a connection's owner comes back with each packet from it; a replaced connection starts without one", () => {
    const s = new Scenario();
    s.connect('a');
    assert.ok(s.deliver(s.client));
    assert.equal(s.gateway.received.at(-1)!.owner, undefined);
    const owner = { peer: 'client' };
    s.gateway.node.setConnectionOwner('client', owner);
    s.gateway.node.setConnectionOwner('nobody', owner);
    assert.ok(s.deliver(s.client, 'owned'));
    assert.equal(s.gateway.received.at(-1)!.owner, owner);

    s.connect('b');
    assert.ok(s.deliver(s.client, 'new tunnel'));
    assert.equal(s.gateway.received.at(-1)!.owner, undefined);
  });

  test('a relay removed mid-connection fails relayed connections and invalidates its candidates', () => {
    const s = new Scenario({ clientNat: 'symmetric', gatewayNat: 'symmetric' });
    s.connect();
    assert.ok(s.deliver(s.client, 'relayed', 10_000));
    s.net.runUntil(s.net.now + 3_000);
    const side = s.gateway.node.connectionPath('client')?.kind === 'relay' ? s.gateway : s.client;
    assert.equal(side.node.connectionPath(side.peerId)?.kind, 'relay');
    side.node.updateRelays(['relay-1'], [], s.net.now);
    side.drainEvents(s.net.now);
    s.net.runUntil(s.net.now + 100);
    assert.deepEqual(failures(side), ['relayGone']);
    assert.equal(side.node.hasConnection(side.peerId), false);
  });

  test('removing a relay withdraws its candidates from connecting peers', () => {
    const s = new Scenario();
    s.connect();
    s.gateway.signalling = false;
    s.gateway.node.updateRelays(['relay-1'], [], s.net.now);
    s.gateway.drainEvents(s.net.now);
    const invalidated = s.gateway.events.filter((e) => e.kind === 'invalidatedIceCandidates');
    const strings = invalidated.flatMap((e) => (e.kind === 'invalidatedIceCandidates' ? e.candidates : []));
    assert.ok(strings.some((c) => c.includes('typ relay')), strings.join('\n'));
  });

  test('idle after 20 s without packets; traffic makes it active again', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client));
    s.net.runUntil(s.net.now + MAX_IDLE + 1_000);
    assert.equal(s.gateway.node.connectionState('client'), 'idle');
    assert.ok(s.deliver(s.client, 'wake up'));
    assert.equal(s.gateway.node.connectionState('client'), 'connected');
  });

  test('a peer that disappears makes the connection fail within the ICE timeout (the gateway waits about 10 min)', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client));
    s.net.setOnline('client', false);
    const start = s.net.now;
    assert.ok(s.net.runUntilCondition(() => failures(s.gateway).length > 0, 700_000, 1_000));
    const elapsed = s.net.now - start;
    // Whichever comes first: the server ICE timeout (about 615 s) or WireGuard giving up without a session (540 s).
    assert.ok(elapsed >= 530_000 && elapsed <= 632_000, `the gateway failed after ${elapsed} ms`);

    const t = new Scenario();
    t.connect();
    assert.ok(t.deliver(t.client));
    t.net.setOnline('gateway', false);
    const since = t.net.now;
    assert.ok(t.net.runUntilCondition(() => failures(t.client).length > 0, 30_000, 100));
    assert.ok(t.net.now - since <= 20_000, `the client failed after ${t.net.now - since} ms`);
  });

  test('a connection without remote candidates fails after 10 s', () => {
    const s = new Scenario();
    s.net.runUntil(500);
    s.gateway.node.upsertConnection('lonely', {
      localCredentials: { ufrag: 'gx', password: 'gateway-password-x-xxx' },
      remoteCredentials: { ufrag: 'cx', password: 'client-password-x-xxxx' },
      remotePublicKey: s.client.node.publicKey,
      presharedKey: new Uint8Array(32),
    }, s.net.now);
    s.net.runUntil(s.net.now + 9_900);
    assert.equal(s.gateway.node.hasConnection('lonely'), true);
    s.net.runUntil(s.net.now + 200);
    assert.deepEqual(failures(s.gateway), ['noRemoteCandidates']);
  });

  test('closing the node releases its relay allocations', () => {
    const s = new Scenario();
    s.net.runUntil(500);
    assert.equal(s.relay.allocationCount(), 2);
    s.gateway.node.close(s.net.now);
    s.net.runUntil(s.net.now + 100);
    assert.equal(s.relay.allocationCount(), 1, 'the gateway deleted its allocation (REFRESH with LIFETIME 0)');
    assert.deepEqual(s.gateway.node.relayIds(), []);
  });

  test('the last relay failing asks the portal for a new set (noRelays), once; working relays never do', () => {
    const noRelays = (s: Scenario) => s.gateway.events.filter((e) => e.kind === 'noRelays').length;
    const working = new Scenario();
    working.net.runUntil(10_000);
    assert.equal(noRelays(working), 0);

    const refusing = new Scenario({ relay: { password: () => 'not-the-password' } });
    refusing.net.runUntil(10_000);
    assert.deepEqual(refusing.gateway.node.relayIds(), [], 'the relay that refused us is gone');
    assert.equal(noRelays(refusing), 1);
  });

  test('without relays, a connection cannot be created', () => {
    const s = new Scenario();
    s.gateway.node.updateRelays(['relay-1'], [], 0);
    const result = s.gateway.node.upsertConnection('c', {
      localCredentials: { ufrag: 'g', password: 'p'.repeat(22) },
      remoteCredentials: { ufrag: 'c', password: 'q'.repeat(22) },
      remotePublicKey: s.client.node.publicKey,
      presharedKey: new Uint8Array(32),
    }, 0);
    assert.equal(result, 'noTurnServers');
  });

  test('candidate events carry strings in the reference format, sorted and de-duplicated', () => {
    const s = new Scenario();
    s.connect();
    const batches = s.gateway.events.filter((e) => e.kind === 'newIceCandidates');
    assert.ok(batches.length > 0);
    for (const batch of batches) {
      if (batch.kind !== 'newIceCandidates') continue;
      assert.deepEqual([...batch.candidates], [...new Set(batch.candidates)].sort());
      for (const c of batch.candidates) {
        assert.match(c, /^candidate:\S+ 1 udp \d+ \S+ \d+ typ (host|srflx|relay)( raddr \S+ rport \d+)?( ufrag \S+)?$/);
        assert.notEqual(typeof parseCandidate(c), 'string');
      }
    }
    const fixture = readFileSync(fixturePath('connectivity', 'ice_candidate_strings.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('candidate:'));
    for (const line of fixture) assert.notEqual(typeof parseCandidate(line), 'string', line);
  });

  test('oversize datagrams and garbage are dropped or counted, never thrown', () => {
    const s = new Scenario();
    s.connect();
    const local = { address: '203.0.113.2', port: 52625, family: 4 as const };
    const from = { address: '198.51.100.77', port: 9, family: 4 as const };
    assert.equal(s.gateway.node.decapsulate(local, from, new Uint8Array(1317), s.net.now), 'dropped');
    assert.equal(s.gateway.node.decapsulate(local, from, new Uint8Array([0xde, 0xad]), s.net.now), 'unknownFormat');
    const channelData = new Uint8Array([0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4]);
    assert.equal(s.gateway.node.decapsulate(local, from, channelData, s.net.now), 'dropped', 'ChannelData not from a relay');
    const initiation = new Uint8Array(148);
    initiation[0] = 1;
    assert.equal(s.gateway.node.decapsulate(local, from, initiation, s.net.now), 'dropped', 'WireGuard from an unknown sender');
    for (let i = 0; i < 2000; i++) {
      const junk = new Uint8Array(1 + (i % 200));
      s.rng.fill(junk);
      if (i % 3 === 0) junk[0] = 0x40 + (i % 16);
      s.gateway.node.decapsulate(local, from, junk, s.net.now);
    }
  });
});
