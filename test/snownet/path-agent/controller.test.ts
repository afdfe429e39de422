import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BOOTSTRAP_RETRANSMIT_LADDER, ICELESS_REKEY_TIMEOUT } from '../../../src/snownet/path-agent/index.ts';
import { messageType } from '../../../src/wireguard/index.ts';
import {
  CLIENT_HOST,
  CLIENT_RELAYED,
  GATEWAY_HOST,
  GATEWAY_RELAYED,
  host,
  ipv4Packet,
  makePeers,
  withCandidates,
  pathKey,
  relay,
  samePair,
  type Peer,
} from './harness.ts';

const RELAY_PAIRS = [
  { local: CLIENT_HOST, remote: GATEWAY_RELAYED },
  { local: CLIENT_RELAYED, remote: GATEWAY_HOST },
  { local: CLIENT_RELAYED, remote: GATEWAY_RELAYED },
];
const DIRECT = { local: CLIENT_HOST, remote: GATEWAY_HOST };

describe('path agent, controlling side', () => {
  test('the bootstrap initiation goes out on every pair involving a relay, and not host to host', () => {
    const { client } = withCandidates();
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);

    const initiations = client.planned.filter((t) => messageType(t.payload) === 1);
    assert.deepEqual(initiations.map((t) => pathKey(t.local, t.remote)).sort(), RELAY_PAIRS.map((p) => pathKey(p.local, p.remote)).sort());
    assert.ok(initiations.every((t) => t.payload === initiations[0]!.payload), 'the same bytes everywhere');
  });

  test('each relay pair retransmits after 50, 50, 50, 100, 200, 400, 800 and 1600 ms, once', () => {
    const { client } = withCandidates();
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    // Only the ladder: WireGuard's own retransmission (2 s) is left out by firing the agent alone.
    for (let guard = 0; guard < 100; guard++) {
      const next = client.agent.pollTimeout();
      if (next === undefined) break;
      client.agent.handleTimeout(next);
      client.drain(next);
    }

    const times = client.planned.filter((t) => samePair(t, RELAY_PAIRS[0]!)).map((t) => t.at);
    let at = 0;
    const expected = [0, ...BOOTSTRAP_RETRANSMIT_LADDER.map((gap) => (at += gap))];
    assert.deepEqual(times, expected);
    assert.equal(client.agent.pollTimeout(), undefined, 'the ladder ran once and stopped');
  });

  test("WireGuard's own retransmission is fanned out once more, without re-arming the ladder", () => {
    const { client } = withCandidates();
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    runTimers(client, 3_300);

    const onPair = client.planned.filter((t) => samePair(t, RELAY_PAIRS[1]!));
    assert.equal(onPair.length, 1 + BOOTSTRAP_RETRANSMIT_LADDER.length + 1);
    const fresh = onPair.filter((t) => t.payload !== onPair[0]!.payload);
    assert.equal(fresh.length, 2, "the tunnel's new initiation, then the ladder's last step carrying it");
    assert.ok(fresh[0]!.at >= ICELESS_REKEY_TIMEOUT && fresh[0]!.at < ICELESS_REKEY_TIMEOUT + 334, `the tunnel's retransmit at ${fresh[0]!.at}`);
    assert.equal(fresh[1]!.at, 3_250);
    assert.equal(client.agent.stats.bootstrapRetransmits, 3 * BOOTSTRAP_RETRANSMIT_LADDER.length);
  });

  test('a relay pair that appears during the bootstrap gets the initiation at once', () => {
    const { client } = makePeers();
    client.agent.addLocalCandidate(host(CLIENT_HOST.address), 0);
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    assert.equal(client.planned.length, 0, 'no pair yet');

    client.agent.addRemoteCandidate(relay(GATEWAY_RELAYED, GATEWAY_HOST), 30);
    client.drain(30);
    assert.equal(client.planned.length, 1);
    assert.ok(samePair(client.planned[0], RELAY_PAIRS[0]!));
    assert.equal(client.agent.pollTimeout(), 30 + BOOTSTRAP_RETRANSMIT_LADDER[0]!);
  });

  test('the response ends the bootstrap: the ladder stops and copies of the response are dropped', () => {
    const { client, gateway, wire } = withCandidates();
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    wire.run(25);

    const responses = client.inbound.filter((i) => i.type === 2);
    assert.equal(responses.filter((r) => r.result === 'handshake').length, 1);
    assert.equal(responses.filter((r) => r.result === 'duplicate').length, 2, 'the answers to the two other copies');
    const retransmitsBefore = client.agent.stats.bootstrapRetransmits;
    wire.run(5_000);
    assert.equal(client.agent.stats.bootstrapRetransmits, retransmitsBefore);
    assert.ok(gateway.agent.stats.responsesReplayed >= 2);
  });

  test('both ends settle on the direct pair by probing, and data flows on it', () => {
    const { client, gateway, wire } = withCandidates();
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    wire.run(2_000);

    assert.ok(samePair(client.agent.primary(), DIRECT));
    assert.ok(samePair(gateway.agent.primary(), { local: GATEWAY_HOST, remote: CLIENT_HOST }));
    const sent = client.sent.length;
    assert.ok(client.sendData(ipv4Packet(80), wire.now));
    assert.ok(samePair(client.sent[sent], DIRECT));
    wire.run(wire.now + 20);
    assert.equal(gateway.delivered.length, 1);
  });

  test('with the direct path cut, both ends stay on a relay pair and data still flows', () => {
    const { client, gateway, wire } = withCandidates();
    wire.cut.add(pathKey(CLIENT_HOST, GATEWAY_HOST));
    wire.cut.add(pathKey(GATEWAY_HOST, CLIENT_HOST));
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    wire.run(20_000);

    const primary = client.agent.primary();
    assert.ok(primary !== undefined && !samePair(primary, DIRECT));
    assert.ok(client.sendData(ipv4Packet(80), wire.now));
    wire.run(wire.now + 20);
    assert.equal(gateway.delivered.length, 1);
  });
});


function runTimers(peer: Peer, until: number): void {
  for (let guard = 0; guard < 10_000; guard++) {
    const next = peer.pollTimeout();
    if (next > until) return;
    peer.handleTimeout(next);
  }
}
