import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_LOCAL_CANDIDATES,
  MAX_PEER_REFLEXIVE,
  MAX_REMOTE_PER_KIND,
  hostCandidate,
  makeProbeReply,
  makeProbeRequest,
  relayCandidate,
  serverReflexiveCandidate,
  type PathCandidate,
} from '../../../src/snownet/path-agent/index.ts';
import { socketAddr, type SocketAddr } from '../../../src/util/socket-addr.ts';
import { makePeers, type Peer } from './harness.ts';

type Step =
  | { readonly kind: 'local' | 'remote' | 'removeLocal' | 'removeRemote'; readonly candidate: PathCandidate }
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array; readonly from: SocketAddr }
  | { readonly kind: 'probe'; readonly request: boolean; readonly id: number; readonly seq: number; readonly from: SocketAddr }
  | { readonly kind: 'initiation'; readonly from: SocketAddr }
  | { readonly kind: 'outbound' }
  | { readonly kind: 'advance'; readonly ms: number };

describe('path agent properties', () => {
  test('any sequence of inputs: nothing throws, caps hold, deadlines move forward', () => {
    fc.assert(
      fc.property(fc.array(step(), { maxLength: 60 }), (steps) => {
        const { client, gateway } = makePeers();
        let now = 0;
        for (const s of steps) {
          now = apply(gateway, client, s, now);
          gateway.drain(now);
          checkInvariants(gateway, now, s.kind === 'advance');
        }
      }),
      { numRuns: 300 },
    );
  });
});

function apply(gateway: Peer, client: Peer, s: Step, now: number): number {
  const agent = gateway.agent;
  switch (s.kind) {
    case 'local':
      agent.addLocalCandidate(s.candidate, now);
      return now;
    case 'remote':
      agent.addRemoteCandidate(s.candidate, now);
      return now;
    case 'removeLocal':
      agent.removeLocalCandidate(s.candidate, now);
      return now;
    case 'removeRemote':
      agent.removeRemoteCandidate(s.candidate, now);
      return now;
    case 'bytes':
      gateway.receive(s.bytes, { local: LOCAL, remote: s.from }, now);
      return now;
    case 'initiation': {
      client.tunnel.inner.initiateHandshake(now);
      const initiation = client.tunnel.inner.pollTransmit();
      if (initiation !== undefined) gateway.receive(initiation, { local: LOCAL, remote: s.from }, now);
      const response = gateway.sent.at(-1);
      if (response !== undefined && response.payload[0] === 2) {
        client.tunnel.inner.decapsulate(response.payload, LOCAL.address, now);
        while (client.tunnel.inner.pollTransmit() !== undefined);
      }
      return now;
    }
    case 'probe': {
      if (!client.tunnel.inner.hasSession(now)) return now;
      const packet = s.request ? makeProbeRequest(s.id, s.seq) : makeProbeReply(s.id, s.seq);
      const sealed = client.tunnel.inner.encapsulate(packet, now);
      if (sealed instanceof Uint8Array) gateway.receive(sealed, { local: LOCAL, remote: s.from }, now);
      return now;
    }
    case 'outbound':
      gateway.tunnel.inner.initiateHandshake(now);
      gateway.drain(now);
      return now;
    case 'advance': {
      const until = now + s.ms;
      for (let guard = 0; guard < 10_000; guard++) {
        const next = gateway.pollTimeout();
        if (next > until) break;
        now = Math.max(now, next);
        gateway.handleTimeout(now);
      }
      return Math.max(now, until);
    }
  }
}

function checkInvariants(gateway: Peer, now: number, timersFired: boolean): void {
  const agent = gateway.agent;
  const locals = agent.localCandidates();
  const remotes = agent.remoteCandidates();
  assert.ok(locals.length <= MAX_LOCAL_CANDIDATES);
  for (const kind of ['host', 'srflx', 'relay'] as const) {
    assert.ok(remotes.filter((c) => c.kind === kind).length <= MAX_REMOTE_PER_KIND, `${kind} remotes capped`);
  }
  assert.ok(remotes.length <= 3 * MAX_REMOTE_PER_KIND);
  assert.ok(agent.pairCount() <= locals.length * remotes.length, 'no more pairs than candidates make');
  const learnt = remotes.filter((c) => c.kind === 'srflx' && c.address === c.base).length;
  assert.ok(learnt <= MAX_PEER_REFLEXIVE + MAX_REMOTE_PER_KIND);
  const primary = agent.primary();
  if (primary !== undefined) assert.equal(primary.local.family, primary.remote.family, 'no cross-family primary');
  const deadline = gateway.agent.pollTimeout();
  if (timersFired) assert.ok(deadline === undefined || deadline > now, `deadline ${deadline} not after ${now}`);
}

const LOCAL = socketAddr('203.0.113.2', 52625);

function step(): fc.Arbitrary<Step> {
  const v4 = fc.tuple(fc.constantFrom('198.51.100.2', '198.51.100.3', '192.0.2.1', '203.0.113.2', '192.0.2.2'), fc.constantFrom(52625, 40000, 50001)).map(([ip, port]) => socketAddr(ip, port));
  const v6 = fc.tuple(fc.constantFrom('2001:db8::1', '2001:db8::2'), fc.constantFrom(52625, 40000)).map(([ip, port]) => socketAddr(ip, port));
  const address = fc.oneof({ weight: 4, arbitrary: v4 }, { weight: 1, arbitrary: v6 });
  const candidate: fc.Arbitrary<PathCandidate> = fc.oneof(
    address.map((a) => hostCandidate(a)),
    fc.tuple(address, address).map(([a, b]) => serverReflexiveCandidate(a, b)),
    fc.tuple(address, address).map(([a, b]) => relayCandidate(a, b)),
  );
  return fc.oneof(
    fc.record({ kind: fc.constantFrom('local' as const, 'remote' as const, 'removeLocal' as const, 'removeRemote' as const), candidate }),
    fc.record({ kind: fc.constant('bytes' as const), bytes: fc.oneof(fc.uint8Array({ maxLength: 200 }), wireguardShaped()), from: address }),
    fc.record({ kind: fc.constant('probe' as const), request: fc.boolean(), id: fc.nat(0xffff), seq: fc.nat(20), from: address }),
    fc.record({ kind: fc.constant('initiation' as const), from: address }),
    fc.record({ kind: fc.constant('outbound' as const) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.nat(30_000) }),
  );
}

/** Random bytes with a WireGuard type and the exact length of that type. */
function wireguardShaped(): fc.Arbitrary<Uint8Array> {
  return fc.tuple(fc.constantFrom([1, 148], [2, 92], [3, 64], [4, 48]), fc.uint8Array({ minLength: 148, maxLength: 148 })).map(([[type, length], bytes]) => {
    const out = bytes.slice(0, length);
    out[0] = type;
    out[1] = out[2] = out[3] = 0;
    return out;
  });
}
