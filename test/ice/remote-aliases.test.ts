import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IceAgent, parseCandidate, type Candidate } from '../../src/ice/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';

function candidate(sdp: string): Candidate {
  const parsed = parseCandidate(sdp);
  assert.notEqual(typeof parsed, 'string', sdp);
  return parsed as Candidate;
}

// A peer without NAT signals one address twice: as host and as server-reflexive.
const HOST = candidate('candidate:fffeff7e 1 udp 2130706175 203.0.113.2 52625 typ host ufrag cl');
const SRFLX = candidate('candidate:fffeff64 1 udp 1694498559 203.0.113.2 52625 typ srflx raddr 0.0.0.0 rport 0');

function agent(): IceAgent {
  const a = new IceAgent({ role: 'controlled', local: { ufrag: 'gw', password: 'gateway-password-01234' }, remote: { ufrag: 'cl', password: 'client-password-012345' }, rng: seededRandom(5) });
  a.addLocalHostCandidate(socketAddr('198.51.100.2', 52625));
  return a;
}

test('an address signalled as host and srflx keeps its pairs when one of the two is invalidated', () => {
  for (const order of [[HOST, SRFLX], [SRFLX, HOST]]) {
    const a = agent();
    for (const c of order) assert.equal(a.addRemoteCandidate(c), true);
    assert.equal(a.remoteCandidates().length, 1, 'one remote entry per address');
    assert.equal(a.remoteCandidates()[0]!.kind, 'host', 'the higher-priority kind represents the address');
    assert.equal(a.removeRemoteCandidate(SRFLX), true);
    assert.equal(a.remoteCandidates().length, 1, 'the host candidate survives');
    a.handleTimeout(0);
    assert.ok(a.pollTransmit() !== undefined, 'checks still go to the address');
    assert.equal(a.removeRemoteCandidate(HOST), true);
    assert.equal(a.remoteCandidates().length, 0, 'gone once no kind is left');
  }
});

test('invalidating a kind never signalled at an address changes nothing', () => {
  const a = agent();
  a.addRemoteCandidate(HOST);
  assert.equal(a.removeRemoteCandidate(SRFLX), false);
  assert.equal(a.remoteCandidates().length, 1);
  assert.equal(a.addRemoteCandidate(HOST), false, 'a duplicate is ignored');
});
