// The connectivity rules 1.6.0 changed (spec gateway-1.6 §3.1, §3.6 and the 1.4.13-tag differences): GOODBYE
// before closing, the gateway's ICE timings, WireGuard's 20 s rekey-attempt time, when an upsert reuses a
// connection, optimistic server-reflexive candidates.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { SERVER_ACTIVE_TIMING, SERVER_IDLE_TIMING, iceTimeout, parseCandidate } from '../../src/ice/index.ts';
import { IpPacket, isP2pControlPacket, makeGoodbyePacket, p2pControlEventType, P2P_EVENT_GOODBYE } from '../../src/ip/index.ts';
import type { ConnectionParams } from '../../src/snownet/index.ts';
import { Scenario } from './harness.ts';

function failures(agent: Scenario['client']): string[] {
  return agent.events.flatMap((e) => (e.kind === 'connectionFailed' ? [e.reason] : []));
}

function isGoodbye(packet: Uint8Array): boolean {
  const view = new IpPacket();
  return view.parse(packet) === undefined && isP2pControlPacket(view) && p2pControlEventType(view) === P2P_EVENT_GOODBYE;
}

describe('closing a connection says GOODBYE first', () => {
  test('a Connected connection sends GOODBYE through the tunnel, then is gone', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client));
    s.gateway.node.closeConnection('client', makeGoodbyePacket(), s.net.now);
    assert.equal(s.gateway.node.hasConnection('client'), false);
    s.net.runUntil(s.net.now + 100);
    assert.ok(s.client.received.some((r) => isGoodbye(r.packet)), 'the client decrypted a GOODBYE');
  });

  test('an Idle connection sends it too', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client));
    s.net.runUntil(s.net.now + 25_000);
    assert.equal(s.gateway.node.connectionState('client'), 'idle');
    s.gateway.node.closeConnection('client', makeGoodbyePacket(), s.net.now);
    s.net.runUntil(s.net.now + 100);
    assert.ok(s.client.received.some((r) => isGoodbye(r.packet)));
  });

  test('a connection still in ICE is dropped without sending anything', () => {
    const s = new Scenario();
    s.net.runUntil(500);
    s.gateway.node.upsertConnection('client', params(s, 'x'), s.net.now);
    assert.equal(s.gateway.node.connectionState('client'), 'connecting');
    while (s.gateway.node.pollTransmit() !== undefined);
    s.gateway.node.closeConnection('client', makeGoodbyePacket(), s.net.now);
    assert.equal(s.gateway.node.hasConnection('client'), false);
    assert.equal(s.gateway.node.pollTransmit(), undefined);
  });

  test('closeAll says GOODBYE on every connection', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client));
    s.gateway.node.closeAll(makeGoodbyePacket(), s.net.now);
    s.net.runUntil(s.net.now + 100);
    assert.equal(s.gateway.node.hasConnection('client'), false);
    assert.ok(s.client.received.some((r) => isGoodbye(r.packet)));
  });
});

describe('timings', () => {
  test("the gateway's ICE schedules: 250 ms / 15 s / 45 (about 10 min) and 25 s / 25 s / 40 idle (1000 s)", () => {
    assert.deepEqual({ ...SERVER_ACTIVE_TIMING }, { initialRto: 250, maxRto: 15_000, maxRetransmits: 45 });
    assert.deepEqual({ ...SERVER_IDLE_TIMING }, { initialRto: 25_000, maxRto: 25_000, maxRetransmits: 40 });
    assert.equal(iceTimeout(SERVER_IDLE_TIMING), 1_000_000);
    const active = iceTimeout(SERVER_ACTIVE_TIMING) + SERVER_ACTIVE_TIMING.maxRto;
    assert.ok(Math.abs(active - 615_500) <= 500, `${active}`);
  });

  test('WireGuard gives up a handshake after 20 s while ICE stays up', () => {
    const s = new Scenario();
    // The gateway never answers a handshake; STUN still goes through, so ICE keeps the path.
    const handle = s.gateway.handleDatagram.bind(s.gateway);
    s.gateway.handleDatagram = (from, to, payload, now) => {
      if (payload.length === 148 && payload[0] === 1) return;
      handle(from, to, payload, now);
    };
    s.connect();
    assert.ok(s.net.runUntilCondition(() => s.client.node.connectionState('gateway') === 'connected', 5_000, 10));
    const nominatedAt = s.net.now;
    assert.ok(s.net.runUntilCondition(() => failures(s.client).length > 0, 60_000, 100));
    assert.deepEqual(failures(s.client), ['wireguardExpired']);
    const elapsed = s.net.now - nominatedAt;
    assert.ok(elapsed >= 19_500 && elapsed <= 21_000, `gave up after ${elapsed} ms`);
  });
});

describe('connection upsert', () => {
  test('reuses a connection only when local and remote credentials, remote key and PSK all match', () => {
    const changes: [string, (p: ConnectionParams) => ConnectionParams][] = [
      ['local credentials', (p) => ({ ...p, localCredentials: { ...p.localCredentials, password: `${p.localCredentials.password}!` } })],
      ['remote credentials', (p) => ({ ...p, remoteCredentials: { ...p.remoteCredentials, ufrag: 'other' } })],
      ['remote key', (p) => ({ ...p, remotePublicKey: new Uint8Array(32).fill(7) })],
      ['preshared key', (p) => ({ ...p, presharedKey: new Uint8Array(32).fill(8) })],
    ];
    for (const [what, change] of changes) {
      const s = new Scenario();
      s.net.runUntil(500);
      const base = params(s, 'a');
      assert.equal(s.gateway.node.upsertConnection('client', base, s.net.now), 'created');
      assert.equal(s.gateway.node.upsertConnection('client', { ...base }, s.net.now), 'reused', 'identical');
      assert.equal(s.gateway.node.upsertConnection('client', change(base), s.net.now), 'created', `a different ${what} replaces it`);
    }
  });

  test('a reused connection signals all its candidates again', () => {
    const s = new Scenario();
    s.connect();
    assert.ok(s.deliver(s.client));
    s.gateway.events.length = 0;
    const reused = s.gateway.node.upsertConnection('client', gatewaySide(s, 'a'), s.net.now);
    assert.equal(reused, 'reused');
    s.gateway.drainEvents(s.net.now);
    const signalled = s.gateway.events.flatMap((e) => (e.kind === 'newIceCandidates' ? e.candidates : []));
    assert.ok(signalled.some((c) => c.includes('typ host')), signalled.join('\n'));
    assert.ok(s.deliver(s.client, 'same tunnel'));
  });
});

describe('optimistic server-reflexive candidates', () => {
  const host = 'candidate:1 1 udp 2130706431 10.0.0.1 52625 typ host';
  const srflx = (ip: string, port = 40000): string => `candidate:2 1 udp 1694498815 ${ip} ${port} typ srflx raddr 0.0.0.0 rport 0`;

  function connecting(): Scenario {
    const s = new Scenario();
    s.net.runUntil(500);
    s.gateway.node.upsertConnection('client', params(s, 'a'), s.net.now);
    return s;
  }

  function remoteAddresses(s: Scenario): string[] {
    return s.gateway.node.remoteCandidates('client').map((c) => {
      const parsed = parseCandidate(c);
      assert.ok(typeof parsed !== 'string');
      return `${parsed.kind} ${parsed.address.address}:${parsed.address.port}`;
    });
  }

  test('the remote srflx IP with the remote host port becomes a candidate', () => {
    const s = connecting();
    s.gateway.node.addRemoteCandidate('client', host, s.net.now);
    s.gateway.node.addRemoteCandidate('client', srflx('1.1.1.1'), s.net.now);
    assert.ok(remoteAddresses(s).includes('srflx 1.1.1.1:52625'), remoteAddresses(s).join(', '));
  });

  test('none for IPv6', () => {
    const s = connecting();
    s.gateway.node.addRemoteCandidate('client', 'candidate:1 1 udp 2130706431 fd00::1 52625 typ host', s.net.now);
    s.gateway.node.addRemoteCandidate('client', 'candidate:2 1 udp 1694498815 2001:db8::1 40000 typ srflx raddr :: rport 0', s.net.now);
    assert.ok(!remoteAddresses(s).includes('srflx 2001:db8::1:52625'));
    assert.equal(remoteAddresses(s).length, 2);
  });

  test('at most two new ones per signalled candidate', () => {
    const s = connecting();
    s.gateway.node.addRemoteCandidate('client', srflx('1.1.1.1'), s.net.now);
    s.gateway.node.addRemoteCandidate('client', srflx('1.1.1.2'), s.net.now);
    s.gateway.node.addRemoteCandidate('client', srflx('1.1.1.3'), s.net.now);
    s.gateway.node.addRemoteCandidate('client', host, s.net.now);
    const optimistic = remoteAddresses(s).filter((a) => a.endsWith(':52625') && a.startsWith('srflx'));
    assert.deepEqual(optimistic, ['srflx 1.1.1.1:52625', 'srflx 1.1.1.2:52625']);
  });
});

function params(s: Scenario, seed: string): ConnectionParams {
  return {
    localCredentials: { ufrag: `g${seed}`, password: `gateway-password-${seed}-xxx` },
    remoteCredentials: { ufrag: `c${seed}`, password: `client-password-${seed}-xxxx` },
    remotePublicKey: s.client.node.publicKey,
    presharedKey: new Uint8Array(32).fill(3),
  };
}

/** The gateway's parameters of the last `connect`. */
function gatewaySide(s: Scenario, seed: string): ConnectionParams {
  return { ...params(s, seed), presharedKey: s.presharedKey };
}
