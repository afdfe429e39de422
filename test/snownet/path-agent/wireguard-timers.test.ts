import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ICELESS_REKEY_ATTEMPT_TIME } from '../../../src/snownet/path-agent/index.ts';
import { messageType } from '../../../src/wireguard/index.ts';
import { ipv4Packet, makePeers, type Peer } from './harness.ts';

// The WireGuard timers of an ICE-less tunnel, set per tunnel (spec 1.6 §3.9): rekey-attempt 90 s,
// keepalive timeout 5 s, rekey timeout 2 s, no persistent keepalive.
describe('WireGuard timers of an ICE-less tunnel', () => {
  test('an unanswered initiation is retransmitted every 2 s (plus jitter) and the tunnel expires after 90 s', () => {
    const { client } = makePeers();
    const tunnel = client.tunnel.inner;
    tunnel.initiateHandshake(0);
    const sent: number[] = [0];
    tunnel.pollTransmit();
    let expiredAt: number | undefined;
    for (let guard = 0; guard < 1_000 && expiredAt === undefined; guard++) {
      const at = tunnel.pollTimeout()!;
      tunnel.handleTimeout(at);
      for (let d = tunnel.pollTransmit(); d !== undefined; d = tunnel.pollTransmit()) if (messageType(d) === 1) sent.push(at);
      for (let e = tunnel.pollEvent(); e !== undefined; e = tunnel.pollEvent()) if (e.kind === 'connectionExpired') expiredAt = at;
    }
    for (let i = 1; i < sent.length; i++) {
      const gap = sent[i]! - sent[i - 1]!;
      assert.ok(gap >= 2_000 && gap < 2_334, `retransmission gap ${gap}`);
    }
    assert.equal(expiredAt, ICELESS_REKEY_ATTEMPT_TIME);
  });

  test('an idle tunnel sends nothing: there is no persistent keepalive', () => {
    const { client, gateway } = handshaken();
    assert.deepEqual(timerOutput(client, 0, 100_000), []);
    assert.deepEqual(timerOutput(gateway, 0, 100_000), []);
  });

  test('data received and nothing sent back gets a passive keepalive after 5 s', () => {
    const { client, gateway } = handshaken();
    const sealed = client.tunnel.inner.encapsulate(ipv4Packet(), 1_000);
    assert.ok(sealed instanceof Uint8Array);
    assert.ok(gateway.tunnel.inner.decapsulate(sealed, '198.51.100.2', 1_000) instanceof Uint8Array);

    const keepalives = timerOutput(gateway, 1_000, 30_000);
    assert.deepEqual(keepalives.map((k) => [k.at, k.length]), [[6_000, 32]]);
  });

  test('data sent without an answer starts a new handshake after 5 + 2 s', () => {
    const { client } = handshaken();
    assert.ok(client.tunnel.inner.encapsulate(ipv4Packet(), 1_000) instanceof Uint8Array);
    const out = timerOutput(client, 1_000, 9_000);
    assert.equal(out.length, 1);
    assert.ok(out[0]!.at >= 8_000 && out[0]!.at < 8_334 && out[0]!.type === 1, `initiation at ${out[0]?.at}`);
  });
});

function handshaken(): { client: Peer; gateway: Peer } {
  const { client, gateway } = makePeers();
  client.tunnel.inner.initiateHandshake(0);
  const response = gateway.tunnel.inner.decapsulate(client.tunnel.inner.pollTransmit()!, '198.51.100.2', 0);
  assert.equal(response, 'handshake');
  assert.equal(client.tunnel.inner.decapsulate(gateway.tunnel.inner.pollTransmit()!, '203.0.113.2', 0), 'handshake');
  assert.equal(gateway.tunnel.inner.decapsulate(client.tunnel.inner.pollTransmit()!, '198.51.100.2', 0), 'keepalive');
  for (const peer of [client, gateway]) while (peer.tunnel.inner.pollEvent() !== undefined);
  return { client, gateway };
}

function timerOutput(peer: Peer, from: number, until: number): { at: number; length: number; type: number }[] {
  const out: { at: number; length: number; type: number }[] = [];
  const tunnel = peer.tunnel.inner;
  let now = from;
  for (let guard = 0; guard < 1_000; guard++) {
    const at = tunnel.pollTimeout();
    if (at === undefined || at > until) break;
    now = Math.max(now, at);
    tunnel.handleTimeout(now);
    for (let d = tunnel.pollTransmit(); d !== undefined; d = tunnel.pollTransmit()) out.push({ at: now, length: d.length, type: messageType(d) });
  }
  return out;
}
