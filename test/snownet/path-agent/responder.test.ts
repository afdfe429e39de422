import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_PEER_REFLEXIVE,
  MAX_REMOTE_PER_KIND,
  PRIMARY_KEEPALIVE,
  PROBE_BUDGET,
  RESPONDER_DEDUP_TTL,
  makeProbeReply,
  makeProbeRequest,
  parseProbe,
} from '../../../src/snownet/path-agent/index.ts';
import { socketAddr } from '../../../src/util/socket-addr.ts';
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
  probesOn,
  samePair,
  srflx,
  type Peer,
} from './harness.ts';

const DIRECT = { local: GATEWAY_HOST, remote: CLIENT_HOST };
const RELAY_TO_RELAY = { local: GATEWAY_RELAYED, remote: CLIENT_RELAYED };
const RELAY_TO_HOST = { local: GATEWAY_RELAYED, remote: CLIENT_HOST };
const HOST_TO_RELAY = { local: GATEWAY_HOST, remote: CLIENT_RELAYED };

describe('path agent, responder', () => {
  test('an initiation is answered on the pair it arrived on, which becomes the preliminary primary', () => {
    const { client, gateway } = withCandidates();
    const initiation = clientInitiation(client);

    assert.equal(gateway.receive(initiation, RELAY_TO_RELAY, 100), 'handshake');

    const answers = gateway.sent.filter((s) => messageType(s.datagram) === 2);
    assert.equal(answers.length, 1);
    assert.ok(samePair(answers[0], RELAY_TO_RELAY), 'the response goes back on the arrival pair');
    assert.ok(samePair(gateway.agent.primary(), RELAY_TO_RELAY));
    assert.deepEqual(gateway.events.map((e) => pathKey(e.local, e.remote)), [pathKey(GATEWAY_RELAYED, CLIENT_RELAYED)]);
  });

  test('copies of an initiation on other pairs within 10 s get the cached response there, without WireGuard', () => {
    const { client, gateway } = withCandidates();
    const initiation = clientInitiation(client);
    gateway.receive(initiation, RELAY_TO_RELAY, 100);
    const decapsulations = gateway.tunnel.decapsulations;

    assert.equal(gateway.receive(initiation, RELAY_TO_HOST, 101), 'replayed');
    assert.equal(gateway.receive(initiation, HOST_TO_RELAY, 100 + RESPONDER_DEDUP_TTL - 1), 'replayed');

    assert.equal(gateway.tunnel.decapsulations, decapsulations, 'WireGuard never saw the copies');
    const answers = gateway.sent.filter((s) => messageType(s.datagram) === 2);
    assert.deepEqual(answers.map((a) => pathKey(a.local, a.remote)), [RELAY_TO_RELAY, RELAY_TO_HOST, HOST_TO_RELAY].map((p) => pathKey(p.local, p.remote)));
    assert.ok(answers.every((a) => Buffer.from(a.datagram).equals(Buffer.from(answers[0]!.datagram))), 'the same response bytes');
    assert.ok(samePair(gateway.agent.primary(), RELAY_TO_RELAY), 'a copy does not move the primary');
  });

  test('the cached response expires after 10 s (a deadline of its own) and a late copy is dropped', () => {
    const { client, gateway } = withCandidates();
    const initiation = clientInitiation(client);
    gateway.receive(initiation, RELAY_TO_RELAY, 100);
    assert.ok(gateway.agent.pollTimeout()! <= 100 + RESPONDER_DEDUP_TTL);

    gateway.handleTimeout(100 + RESPONDER_DEDUP_TTL);
    const sent = gateway.sent.length;
    assert.equal(gateway.receive(initiation, RELAY_TO_HOST, 100 + RESPONDER_DEDUP_TTL + 1), 'duplicate');
    assert.equal(gateway.sent.filter((s, i) => i >= sent && messageType(s.datagram) === 2).length, 0);
  });

  test('an initiation WireGuard rejects changes nothing', () => {
    const { gateway } = withCandidates();
    const stranger = makePeers({ clientKey: new Uint8Array(32).fill(77) }).client;
    stranger.tunnel.inner.initiateHandshake(0);
    const initiation = stranger.tunnel.inner.pollTransmit()!;

    assert.equal(gateway.receive(initiation, RELAY_TO_RELAY, 100), 'wrongPeer');
    assert.equal(gateway.agent.primary(), undefined);
    assert.equal(gateway.sent.length, 0);
    assert.equal(gateway.agent.pollTimeout(), undefined, 'no session: nothing to probe');
  });

  test('under load the cookie reply goes back on the arrival pair and establishes nothing', () => {
    const { client, gateway } = withCandidates({ gatewayRateLimit: 0 });
    const result = gateway.receive(clientInitiation(client), RELAY_TO_HOST, 100);

    assert.equal(result, 'underLoad');
    assert.equal(gateway.sent.length, 1);
    assert.equal(messageType(gateway.sent[0]!.datagram), 3);
    assert.ok(samePair(gateway.sent[0], RELAY_TO_HOST));
    assert.equal(gateway.agent.primary(), undefined);
  });

  test('a re-key initiation never moves the primary, even when it arrives on a better pair', () => {
    const { client, gateway, wire } = withCandidates();
    wire.cut.add(pathKey(CLIENT_HOST, GATEWAY_HOST));
    wire.cut.add(pathKey(GATEWAY_HOST, CLIENT_HOST));
    client.tunnel.inner.initiateHandshake(0);
    client.drain(0);
    wire.run(15_000);
    const primary = gateway.agent.primary();
    assert.ok(primary !== undefined && !samePair(primary, DIRECT));

    client.tunnel.inner.initiateHandshake(wire.now);
    const rekey = client.tunnel.inner.pollTransmit()!;
    assert.equal(gateway.receive(rekey, DIRECT, wire.now), 'handshake');

    assert.ok(samePair(gateway.agent.primary(), primary));
    assert.ok(samePair(gateway.sent.at(-1), DIRECT), 'the answer still goes where the initiation came from');
  });
});

describe('path agent, probing', () => {
  test('once a session exists every pair probes at 0, 200, 500 and 1000 ms, then every second', () => {
    const { gateway } = established();
    advance(gateway, 100, 3_200);
    const times = probesOn(gateway, DIRECT).map((s) => s.at - 100);
    assert.deepEqual(times.slice(0, 6), [0, 200, 500, 1000, 2000, 3000]);
  });

  test('a pair other than the primary goes quiet after 12 probes; the primary keeps one every 25 s', () => {
    const { gateway } = established();
    // No replies: the preliminary primary (relay to relay) stays; the other pairs spend their budget.
    advance(gateway, 100, 100 + 60_000);

    assert.equal(probesOn(gateway, DIRECT).length, PROBE_BUDGET);
    assert.equal(probesOn(gateway, RELAY_TO_HOST).length, PROBE_BUDGET);
    const keepalives = probesOn(gateway, RELAY_TO_RELAY).slice(PROBE_BUDGET).map((s) => s.at);
    assert.ok(keepalives.length >= 1);
    const lastBudgetProbe = probesOn(gateway, RELAY_TO_RELAY)[PROBE_BUDGET - 1]!.at;
    assert.equal(keepalives[0], lastBudgetProbe + PRIMARY_KEEPALIVE);
  });

  test('without a primary every pair keeps probing, and the probes awaiting replies stay bounded', () => {
    const { client, gateway } = withCandidates();
    respond(client, gateway);
    gateway.agent.addRemoteCandidate(host('198.51.100.9'), 100); // a new candidate clears the primary
    assert.equal(gateway.agent.primary(), undefined);

    advance(gateway, 100, 100 + 120_000);
    assert.ok(probesOn(gateway, DIRECT).length > 3 * PROBE_BUDGET);
    // A late reply to a probe older than one budget is no longer matched.
    const early = probesOn(gateway, DIRECT)[0]!;
    const probe = parseProbe(early.payload)!;
    gateway.receive(sealedFromClient(gateway, makeProbeReply(probe.id, probe.seq), client), DIRECT, 120_200);
    assert.equal(gateway.agent.stats.probeRepliesMatched, 0);
  });

  test('a probe reply promotes a pair of a better bucket at once', () => {
    const { client, gateway } = withCandidates();
    respond(client, gateway);
    const probe = parseProbe(probesOn(gateway, DIRECT)[0]!.payload)!;

    gateway.receive(sealedFromClient(gateway, makeProbeReply(probe.id, probe.seq), client), DIRECT, 180);

    assert.ok(samePair(gateway.agent.primary(), DIRECT));
    assert.equal(gateway.agent.pairRtt(GATEWAY_HOST, CLIENT_HOST), 80);
  });

  test('a reply on a worse bucket never demotes the primary', () => {
    const { client, gateway } = withCandidates();
    respond(client, gateway);
    reply(gateway, client, DIRECT, 0, 150);
    assert.ok(samePair(gateway.agent.primary(), DIRECT));

    reply(gateway, client, RELAY_TO_RELAY, 0, 105);
    assert.ok(samePair(gateway.agent.primary(), DIRECT), 'a faster relay pair does not displace a direct one');
  });

  test('within one bucket a faster pair wins only by more than max(10 ms, 20 %) of the primary RTT', () => {
    const { client, gateway } = withCandidates();
    const second = socketAddr('198.51.100.3', 52625);
    gateway.agent.addRemoteCandidate(host(second.address), 0);
    const other = { local: GATEWAY_HOST, remote: second };
    respond(client, gateway);

    reply(gateway, client, DIRECT, 0, 200); // 100 ms
    assert.ok(samePair(gateway.agent.primary(), DIRECT));
    reply(gateway, client, other, 1, 300 + 85); // 85 ms: within 20 ms of 100
    assert.ok(samePair(gateway.agent.primary(), DIRECT), '15 ms faster is jitter');
    reply(gateway, client, other, 2, 600 + 60); // smoothed (85 + 60) / 2 = 72.5 ms: 27.5 ms faster
    assert.ok(samePair(gateway.agent.primary(), other), 'a clear win moves the primary');
  });

  test('below 50 ms the hysteresis floor of 10 ms applies', () => {
    const { client, gateway } = withCandidates();
    const second = socketAddr('198.51.100.3', 52625);
    gateway.agent.addRemoteCandidate(host(second.address), 0);
    const other = { local: GATEWAY_HOST, remote: second };
    respond(client, gateway);

    reply(gateway, client, DIRECT, 0, 130); // 30 ms
    reply(gateway, client, other, 1, 300 + 21); // 21 ms: 9 ms faster
    assert.ok(samePair(gateway.agent.primary(), DIRECT));
    reply(gateway, client, other, 2, 600 + 17); // smoothed 19 ms: 11 ms faster
    assert.ok(samePair(gateway.agent.primary(), other));
  });

  test('a reply carrying another id or an unknown sequence number is ignored', () => {
    const { client, gateway } = withCandidates();
    respond(client, gateway);
    const probe = parseProbe(probesOn(gateway, DIRECT)[0]!.payload)!;

    gateway.receive(sealedFromClient(gateway, makeProbeReply((probe.id + 1) & 0xffff, probe.seq), client), DIRECT, 150);
    gateway.receive(sealedFromClient(gateway, makeProbeReply(probe.id, probe.seq + 7), client), DIRECT, 150);

    assert.equal(gateway.agent.stats.probeRepliesMatched, 0);
    assert.ok(samePair(gateway.agent.primary(), RELAY_TO_RELAY));
  });

  test('an echo request is answered on its arrival pair with its id and sequence, never reaching the TUN', () => {
    const { client, gateway } = withCandidates();
    respond(client, gateway);
    const sent = gateway.sent.length;

    const result = gateway.receive(sealedFromClient(gateway, makeProbeRequest(0x1234, 0x0042), client), HOST_TO_RELAY, 150);

    assert.equal(result, 'probe');
    assert.equal(gateway.delivered.length, 0);
    const answer = gateway.sent.slice(sent).find((s) => s.kind === 'probe' && parseProbe(s.payload)?.kind === 'reply');
    assert.ok(answer !== undefined && samePair(answer, HOST_TO_RELAY));
    assert.deepEqual(parseProbe(answer.payload), { kind: 'reply', id: 0x1234, seq: 0x0042 });
  });

  test('an echo request on a quiet, unmeasured pair restarts its probing (a triggered check)', () => {
    const { gateway, client } = established();
    advance(gateway, 100, 100 + 30_000);
    const before = probesOn(gateway, DIRECT).length;
    assert.equal(before, PROBE_BUDGET);

    gateway.receive(sealedFromClient(gateway, makeProbeRequest(7, 1), client), DIRECT, 30_200);
    advance(gateway, 30_200, 30_300);
    assert.equal(probesOn(gateway, DIRECT).length, before + 1);
  });

  test('ordinary packets pass through to the caller; peer data resets the peer re-key count', () => {
    const { client, gateway } = established();
    const packet = ipv4Packet(60);
    const result = gateway.receive(sealedFromClient(gateway, packet, client), RELAY_TO_RELAY, 310);
    assert.ok(result instanceof Uint8Array);
    assert.deepEqual(gateway.delivered.at(-1), packet);
  });
});

describe('path agent, distress', () => {
  test('one unanswered re-key is not distress; the second clears the primary and probes every pair again', () => {
    const { gateway } = established();
    advance(gateway, 100, 20_000);
    const primary = gateway.agent.primary();
    assert.ok(primary !== undefined);

    gateway.agent.handleOutbound(initiationOf(gateway, 20_000), 20_000);
    assert.ok(samePair(gateway.agent.primary(), primary), 'the first re-key rides the primary');
    assert.ok(samePair(lastWireguard(gateway), primary));

    const probes = gateway.agent.stats.probesSent;
    gateway.agent.handleOutbound(initiationOf(gateway, 22_000), 22_000);
    assert.equal(gateway.agent.primary(), undefined);
    gateway.handleTimeout(22_000);
    assert.ok(gateway.agent.stats.probesSent >= probes + 4, 'all four pairs probe again');
  });

  test('an answered re-key resets the count', () => {
    const { gateway, wire } = bootstrapped();
    const primary = gateway.agent.primary();
    const handshakes = () => gateway.inbound.filter((i) => i.result === 'handshake').length;
    const before = handshakes();
    gateway.tunnel.inner.initiateHandshake(wire.now);
    gateway.drain(wire.now);
    assert.equal(messageType(lastWireguard(gateway)!.datagram), 1, 'one re-key on the primary');
    wire.run(wire.now + 100);
    assert.equal(handshakes(), before + 1, 'the client answered it');

    gateway.agent.handleOutbound(initiationOf(gateway, wire.now), wire.now);
    assert.ok(samePair(gateway.agent.primary(), primary!), 'a later re-key counts from one again');
  });

  test('a second peer initiation without peer data in between clears the primary; data in between does not', () => {
    const { client, gateway, wire } = bootstrapped();
    const primary = gateway.agent.primary()!;

    client.tunnel.inner.initiateHandshake(wire.now);
    gateway.receive(client.tunnel.inner.pollTransmit()!, primary, wire.now);
    assert.ok(samePair(gateway.agent.primary(), primary), 'after data, one peer re-key is fine');

    client.tunnel.inner.initiateHandshake(wire.now + 1);
    client.tunnel.inner.handleTimeout(wire.now + 3_000);
    const second = client.tunnel.inner.pollTransmit()!;
    assert.equal(messageType(second), 1);
    gateway.receive(second, primary, wire.now + 3_000);
    assert.equal(gateway.agent.primary(), undefined, 'the peer is not hearing us');
  });

  test('a new candidate clears the primary and probes again', () => {
    const { gateway, wire } = bootstrapped();
    assert.ok(gateway.agent.primary() !== undefined);
    gateway.agent.addRemoteCandidate(host('198.51.100.77'), wire.now);
    assert.equal(gateway.agent.primary(), undefined);
  });
});

describe('path agent, candidates', () => {
  test('remote candidates are capped at 6 per kind, oldest first, and pairs never cross families', () => {
    const { gateway } = makePeers();
    gateway.agent.addLocalCandidate(host(GATEWAY_HOST.address), 0);
    gateway.agent.addLocalCandidate(host('2001:db8::2'), 0);
    for (let i = 1; i <= MAX_REMOTE_PER_KIND + 2; i++) gateway.agent.addRemoteCandidate(host(`198.51.100.${i}`), 0);
    gateway.agent.addRemoteCandidate(host('2001:db8::1'), 0);

    const hosts = gateway.agent.remoteCandidates().filter((c) => c.kind === 'host');
    assert.equal(hosts.length, MAX_REMOTE_PER_KIND);
    assert.equal(hosts[0]!.address.address, '198.51.100.4', 'the three oldest IPv4 hosts went');
    assert.equal(gateway.agent.pairCount(), MAX_REMOTE_PER_KIND, '5 IPv4 pairs and 1 IPv6 pair, none across');
  });

  test('peer-reflexive remotes learnt from handshakes and probes are capped at 4', () => {
    const { client, gateway } = withCandidates();
    respond(client, gateway);
    for (let i = 0; i < MAX_PEER_REFLEXIVE + 3; i++) {
      const from = socketAddr('198.51.100.200', 40_000 + i);
      gateway.receive(sealedFromClient(gateway, makeProbeRequest(1, i), client), { local: GATEWAY_HOST, remote: from }, 200 + i);
    }
    const learnt = gateway.agent.remoteCandidates().filter((c) => c.address.address === '198.51.100.200');
    assert.equal(learnt.length, MAX_PEER_REFLEXIVE);
    assert.ok(learnt.every((c) => c.kind === 'srflx'));
  });

  test('a signalled candidate at a peer-reflexive address replaces it in place, keeping the measurement', () => {
    const { client, gateway } = withCandidates();
    const mapped = socketAddr('198.51.100.200', 40_000);
    const pair = { local: GATEWAY_HOST, remote: mapped };
    respond(client, gateway);
    gateway.receive(sealedFromClient(gateway, makeProbeRequest(1, 1), client), pair, 150);
    gateway.handleTimeout(150);
    reply(gateway, client, pair, 0, 170);
    const rtt = gateway.agent.pairRtt(GATEWAY_HOST, mapped);
    assert.equal(rtt, 20);

    assert.equal(gateway.agent.addRemoteCandidate(srflx(mapped, CLIENT_HOST), 200), false);
    assert.equal(gateway.agent.pairRtt(GATEWAY_HOST, mapped), rtt);
    assert.ok(gateway.agent.remoteCandidates().some((c) => c.kind === 'srflx' && c.base.address === CLIENT_HOST.address));
  });

  test('a rebuild keeps the session: probing resumes at once without a handshake', () => {
    const { gateway, wire } = bootstrapped();
    const decapsulations = gateway.tunnel.decapsulations;
    gateway.agent.rebuild((c) => c.kind !== 'relay', wire.now);
    assert.equal(gateway.agent.primary(), undefined);
    wire.run(wire.now + 1_000);
    assert.ok(samePair(gateway.agent.primary(), DIRECT), 'the direct pair is found again by probing');
    assert.ok(gateway.inbound.slice(-10).every((i) => i.result !== 'handshake'));
    assert.ok(gateway.tunnel.decapsulations > decapsulations);
  });
});

describe('path agent, deadlines', () => {
  test('after handleTimeout the next deadline is later than now', () => {
    const { gateway } = established();
    let now = 100;
    for (let i = 0; i < 200; i++) {
      const next = gateway.pollTimeout();
      if (next === Infinity) break;
      now = Math.max(now, next);
      gateway.handleTimeout(now);
      assert.ok(gateway.agent.pollTimeout() === undefined || gateway.agent.pollTimeout()! > now);
    }
  });

  test('a timer fire sends probes only on the pairs that are due', () => {
    const { client, gateway } = makePeers();
    gateway.agent.addLocalCandidate(host(GATEWAY_HOST.address), 0);
    gateway.agent.addRemoteCandidate(host(CLIENT_HOST.address), 0);
    gateway.receive(clientInitiation(client), DIRECT, 0);
    // Pairs created once the session exists start probing when they are created.
    for (let i = 1; i <= 5; i++) gateway.agent.addRemoteCandidate(host(`198.51.100.${10 + i}`), i * 50);

    gateway.agent.handleTimeout(120);
    assert.equal(gateway.agent.stats.probesSent, 3, 'the pairs due at 0, 50 and 100');
    gateway.agent.handleTimeout(120);
    assert.equal(gateway.agent.stats.probesSent, 3, 'nothing is due twice');
    gateway.agent.handleTimeout(260);
    assert.equal(gateway.agent.stats.probesSent, 6, 'the pairs due at 150, 200 and 250');
    gateway.drain(260);
    assert.equal(gateway.agent.pollTimeout(), 320, 'the earliest next probe, read without a scan');
  });
});

// --- helpers ---


/** The gateway answered the client's initiation at t=100 on the relay-to-relay pair (nothing on the wire). */
function established() {
  const peers = withCandidates();
  respond(peers.client, peers.gateway);
  return peers;
}

/** The whole bootstrap over the wire, then probing settled on the direct pair. */
function bootstrapped() {
  const peers = withCandidates();
  const { client, gateway, wire } = peers;
  client.tunnel.inner.initiateHandshake(0);
  client.drain(0);
  wire.run(3_000);
  assert.ok(samePair(gateway.agent.primary(), DIRECT), 'settled on the direct pair');
  client.sendData(ipv4Packet(), wire.now);
  wire.run(wire.now + 50);
  return peers;
}

/** The gateway answers the client's initiation on the relay-to-relay pair at t=100 and fires its timers. */
function respond(client: Peer, gateway: Peer): void {
  gateway.receive(clientInitiation(client), RELAY_TO_RELAY, 100);
  gateway.handleTimeout(100);
}

function clientInitiation(client: Peer): Uint8Array {
  client.tunnel.inner.initiateHandshake(0);
  return client.tunnel.inner.pollTransmit()!;
}

/** A handshake initiation of the peer's own tunnel (its re-key). */
function initiationOf(peer: Peer, now: number): Uint8Array {
  peer.tunnel.inner.initiateHandshake(now);
  const datagram = peer.tunnel.inner.pollTransmit();
  if (datagram !== undefined) return datagram;
  peer.tunnel.inner.handleTimeout(now + 10_000);
  return peer.tunnel.inner.pollTransmit()!;
}

/**
 * A packet as the client would seal it for the gateway. The gateway's session was created by
 * `clientInitiation` and has not been confirmed, so the client finishes its side first.
 */
function sealedFromClient(gateway: Peer, packet: Uint8Array, sender: Peer): Uint8Array {
  if (!sender.tunnel.inner.hasSession(0)) {
    const response = gateway.sent.find((s) => messageType(s.datagram) === 2)!.datagram;
    sender.tunnel.inner.decapsulate(response, GATEWAY_HOST.address, 0);
    while (sender.tunnel.inner.pollTransmit() !== undefined);
  }
  const sealed = sender.tunnel.inner.encapsulate(packet, 0);
  if (!(sealed instanceof Uint8Array)) throw new Error(`could not seal: ${sealed}`);
  return sealed;
}

/** Answers the gateway's `index`-th probe on `pair` at `at`. */
function reply(gateway: Peer, client: Peer, pair: { local: typeof GATEWAY_HOST; remote: typeof CLIENT_HOST }, index: number, at: number): void {
  if (probesOn(gateway, pair).length <= index) advance(gateway, gateway.sent.at(-1)?.at ?? 0, at);
  const probe = parseProbe(probesOn(gateway, pair)[index]!.payload)!;
  gateway.receive(sealedFromClient(gateway, makeProbeReply(probe.id, probe.seq), client), pair, at);
}

/** Fires the peer's own timers (no wire) up to `until`. */
function advance(peer: Peer, from: number, until: number): void {
  let now = from;
  for (let guard = 0; guard < 100_000; guard++) {
    const next = peer.pollTimeout();
    if (next > until) return;
    now = Math.max(now, next);
    peer.handleTimeout(now);
  }
  throw new Error('timers did not settle');
}

function lastWireguard(peer: Peer) {
  return peer.sent.filter((s) => s.kind === 'wireguard').at(-1);
}
