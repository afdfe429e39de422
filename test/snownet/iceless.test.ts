import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { formatPathCandidate, hostCandidate, serverReflexiveCandidate } from '../../src/snownet/path-agent/index.ts';
import type { IcePath } from '../../src/ice/index.ts';
import { socketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import { CLIENT_IP, GATEWAY_IP, IcelessScenario, isDirect, RELAY_IPS } from './iceless-harness.ts';
import type { NodeAgent } from './harness.ts';

configureLogging({ filter: LogFilter.parse('off') });

describe('ICE-less connections on the simulated network', () => {
  test('direct: the client bootstraps over relays and both ends settle on the direct path', () => {
    const s = new IcelessScenario();
    s.connect();
    const start = s.net.now;
    assert.ok(s.deliver(s.client, 'ping'), 'client to gateway');
    const firstByte = s.net.now - start;
    assert.ok(s.deliver(s.gateway, 'pong'), 'gateway to client');
    s.net.runUntil(s.net.now + 2_000);

    assert.deepEqual(direct(s.gateway.node.connectionPath('client')), [GATEWAY_IP, CLIENT_IP]);
    assert.deepEqual(direct(s.client.node.connectionPath('gateway')), [CLIENT_IP, GATEWAY_IP]);
    assert.ok(firstByte < 500, `first byte after ${firstByte} ms`);
    assert.equal(established(s.gateway), 1);
    assert.equal(established(s.client), 1);
    assert.deepEqual(failures(s.gateway), []);
  });

  test('the batched data path: probes and packets opened in batches are told apart as one by one', () => {
    const s = new IcelessScenario();
    for (const agent of [s.gateway, s.client]) {
      agent.handleDatagram = (from, to, payload, now) => {
        const result = agent.node.decapsulateBatched(to, from, payload, 0, now);
        if (typeof result !== 'string') agent.received.push({ connection: result.connection, packet: result.packet.slice() });
        for (let p = agent.node.pollDecrypted(now); p !== undefined; p = agent.node.pollDecrypted(now)) {
          agent.received.push({ connection: p.connection, packet: p.packet.slice() });
        }
        agent.drainEvents(now);
      };
    }
    s.connect();
    assert.ok(s.deliver(s.client, 'ping'));
    assert.ok(s.deliver(s.gateway, 'pong'));
    s.net.runUntil(s.net.now + 3_000);
    assert.deepEqual(direct(s.gateway.node.connectionPath('client')), [GATEWAY_IP, CLIENT_IP], 'probe replies reached the agent');
    assert.ok(s.gateway.received.every((r) => r.packet[0] === 0x45), 'no probe reached the caller');
    assert.ok(s.gateway.node.pathAgentStats('client')!.probeRepliesMatched > 0);
  });

  test('its candidates travel in the ICE-less form: FNV-1a foundations, raddr/rport on srflx and relay', () => {
    const s = new IcelessScenario();
    s.connect();
    s.net.runUntil(s.net.now + 100);
    const signalled = s.gateway.events.flatMap((e) => (e.kind === 'newIceCandidates' ? e.candidates : []));
    assert.ok(signalled.length >= 3);
    for (const line of signalled) assert.match(line, /^candidate:\d+ 1 udp \d+ \S+ \d+ typ (host|srflx raddr \S+ rport \d+|relay raddr \S+ rport \d+)$/);
    assert.ok(signalled.some((l) => l.endsWith(`typ relay raddr ${GATEWAY_IP} rport 52625`)));
  });

  test('both behind port-preserving NATs: the direct path through both NATs wins', () => {
    const s = new IcelessScenario({ clientNat: 'port-preserving', gatewayNat: 'port-preserving' });
    s.connect();
    assert.ok(s.deliver(s.client, 'through nat'));
    assert.ok(s.deliver(s.gateway, 'back through nat'));
    s.net.runUntil(s.net.now + 5_000);
    const path = s.gateway.node.connectionPath('client');
    assert.equal(path?.kind, 'direct');
    assert.equal(path?.destination.address, '198.51.100.1', 'the client NAT public address');
  });

  test('both behind symmetric NATs: only a relay pair works, and data flows through it', () => {
    const s = new IcelessScenario({ clientNat: 'symmetric', gatewayNat: 'symmetric' });
    s.connect();
    assert.ok(s.deliver(s.client, 'relayed', 10_000));
    assert.ok(s.deliver(s.gateway, 'relayed back', 10_000));
    s.net.runUntil(s.net.now + 10_000);
    assert.equal(s.gateway.node.connectionPath('client')?.kind, 'relay');
    assert.equal(s.client.node.connectionPath('gateway')?.kind, 'relay');
    assert.ok(s.relays[0]!.stats.relayedToPeer > 0);
    assert.ok(s.deliver(s.client, 'still relayed'));
  });

  test('relay loss: the connection moves to the other relay and carries data again, without failing', () => {
    const s = new IcelessScenario({ clientNat: 'symmetric', gatewayNat: 'symmetric', relays: 2 });
    s.connect();
    assert.ok(s.deliver(s.client, 'before', 10_000));
    s.net.runUntil(s.net.now + 3_000);
    const path = s.gateway.node.connectionPath('client');
    assert.equal(path?.kind, 'relay');
    const lost = path.kind === 'relay' ? RELAY_IPS.indexOf(path.relay.address as (typeof RELAY_IPS)[number]) : -1;
    assert.ok(lost >= 0);

    // The portal tells both ends the relay is gone, and it is.
    s.net.setOnline(`relay-${lost + 1}`, false);
    for (const agent of [s.gateway, s.client]) {
      agent.node.updateRelays([`relay-${lost + 1}`], [], s.net.now);
      agent.drainEvents(s.net.now);
    }

    assert.ok(s.deliver(s.client, 'after', 30_000), 'data flows again');
    assert.ok(s.deliver(s.gateway, 'after, back', 10_000));
    const moved = s.gateway.node.connectionPath('client');
    assert.ok(moved?.kind === 'relay' && moved.relay.address !== RELAY_IPS[lost], 'through the other relay');
    assert.deepEqual(failures(s.gateway), []);
    assert.deepEqual(failures(s.client), []);
  });

  test('duplicated and reordered handshake messages: one session, answers replayed from the cache', () => {
    const s = new IcelessScenario();
    s.net.shape = (_from, _to, payload) => (isHandshake(payload) ? [40, 5, 20] : undefined);
    s.connect();
    assert.ok(s.deliver(s.client, 'ping'));
    assert.ok(s.deliver(s.gateway, 'pong'));
    s.net.runUntil(s.net.now + 1_000);

    assert.equal(s.gateway.node.stats.handshakes, 1, 'WireGuard answered one initiation');
    const gateway = s.gateway.node.pathAgentStats('client')!;
    const client = s.client.node.pathAgentStats('gateway')!;
    assert.ok(gateway.responsesReplayed >= 2, `replayed ${gateway.responsesReplayed}`);
    assert.ok(client.duplicatesDropped >= 2, `dropped ${client.duplicatesDropped}`);
    assert.equal(established(s.gateway), 1);
    assert.equal(established(s.client), 1);
  });

  test('a re-key arriving on another pair than the primary does not move it', () => {
    const s = new IcelessScenario();
    // No direct path: each end prefers a pair through its own relay, so the client's re-key
    // (on its primary) reaches the gateway on a pair that is not the gateway's primary.
    s.net.shape = (from, to) => (isDirect(from, to, CLIENT_IP, GATEWAY_IP) ? [] : undefined);
    s.connect();
    assert.ok(s.deliver(s.client, 'ping', 10_000));
    s.net.runUntil(s.net.now + 12_000);
    const gatewayPath = s.gateway.node.connectionPath('client')!;
    const clientPath = s.client.node.connectionPath('gateway')!;
    assert.ok(gatewayPath.kind === 'relay' && gatewayPath.destination.address === CLIENT_IP, 'the gateway sends through its relay');
    assert.ok(clientPath.kind === 'relay' && clientPath.destination.address === GATEWAY_IP, 'the client sends through its own');
    const handshakes = s.gateway.node.stats.handshakes;

    const delivered = s.traffic(130_000); // past REKEY_AFTER_TIME (120 s) with data flowing

    assert.ok(s.gateway.node.stats.handshakes > handshakes, 'the client re-keyed');
    assert.ok(samePath(s.gateway.node.connectionPath('client'), gatewayPath), 'the primary stayed');
    assert.ok(delivered.gateway >= 128 && delivered.client >= 128, `delivered ${JSON.stringify(delivered)} of 130 each way`);
  });

  test('distress: when the direct path dies, unanswered re-keys clear the primary and probing finds a relay pair', () => {
    const s = new IcelessScenario();
    s.connect();
    assert.ok(s.deliver(s.client, 'ping'));
    s.net.runUntil(s.net.now + 3_000);
    assert.equal(s.gateway.node.connectionPath('client')?.kind, 'direct');

    s.net.shape = (from, to) => (isDirect(from, to, CLIENT_IP, GATEWAY_IP) ? [] : undefined);
    s.traffic(40_000);

    assert.equal(s.client.node.connectionPath('gateway')?.kind, 'relay');
    assert.equal(s.gateway.node.connectionPath('client')?.kind, 'relay');
    const after = s.traffic(5_000);
    assert.ok(after.gateway >= 4 && after.client >= 4, `data flows on the new paths: ${JSON.stringify(after)}`);
    assert.deepEqual(failures(s.gateway), []);
  });

  test('a faster pair of the same bucket is promoted only by a clear RTT win (hysteresis)', () => {
    const second = '198.51.100.3';
    const s = new IcelessScenario({ clientIps: [CLIENT_IP, second] });
    const oneWay = new Map([
      [CLIENT_IP, 15],
      [second, 25],
    ]);
    s.net.shape = (from, to) => {
      const client = from.address === GATEWAY_IP ? to.address : to.address === GATEWAY_IP ? from.address : undefined;
      const delay = client === undefined ? undefined : oneWay.get(client);
      return delay === undefined ? undefined : [delay];
    };
    s.connect();
    // The client's second address, signalled as its first one is (host and srflx), so both pairs share a bucket.
    const address = socketAddr(second, 52625);
    for (const candidate of [hostCandidate(address), serverReflexiveCandidate(address, address)]) {
      s.gateway.node.addRemoteCandidate('client', formatPathCandidate(candidate), s.net.now);
    }
    s.net.wake(s.gateway);
    s.net.runUntil(s.net.now + 2_500);
    assert.deepEqual(direct(s.gateway.node.connectionPath('client')), [GATEWAY_IP, CLIENT_IP], 'the faster pair (30 ms) first');

    oneWay.set(second, 12.5); // 25 ms: faster, but not by max(10 ms, 20 %)
    s.net.runUntil(s.net.now + 2_000);
    assert.deepEqual(direct(s.gateway.node.connectionPath('client')), [GATEWAY_IP, CLIENT_IP], 'within the hysteresis');

    oneWay.set(second, 2.5); // 5 ms: a clear win once smoothed
    s.net.runUntil(s.net.now + 3_000);
    assert.deepEqual(direct(s.gateway.node.connectionPath('client')), [GATEWAY_IP, second], 'promoted');
  });
});

function direct(path: IcePath | undefined): [string, string] | undefined {
  return path?.kind === 'direct' ? [path.source.address, path.destination.address] : undefined;
}

function samePath(a: IcePath | undefined, b: IcePath): boolean {
  if (a === undefined || a.kind !== b.kind || !same(a.destination, b.destination)) return false;
  if (a.kind === 'relay' && b.kind === 'relay') return same(a.relayed, b.relayed);
  return a.kind === 'direct' && b.kind === 'direct' && same(a.source, b.source);
}

function same(a: SocketAddr, b: SocketAddr): boolean {
  return a.address === b.address && a.port === b.port;
}

/** A WireGuard initiation or response, sent directly or inside ChannelData. */
function isHandshake(payload: Uint8Array): boolean {
  const at = payload[0]! >= 0x40 && payload[0]! <= 0x4f ? 4 : 0;
  const type = payload[at];
  const length = payload.length - at;
  return (type === 1 && length === 148) || (type === 2 && length === 92);
}

function established(agent: NodeAgent): number {
  return agent.events.filter((e) => e.kind === 'connectionEstablished').length;
}

function failures(agent: NodeAgent): string[] {
  return agent.events.flatMap((e) => (e.kind === 'connectionFailed' ? [e.reason] : []));
}
