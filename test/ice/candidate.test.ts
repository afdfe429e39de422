import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  IceAgent,
  candidatePriority,
  fallbackPriority,
  formatCandidate,
  parseCandidate,
} from '../../src/ice/index.ts';
import type { Candidate } from '../../src/ice/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import { fixturePath } from '../support/env.ts';

describe('candidate SDP strings', () => {
  test('every candidate string in the reference fixture parses', () => {
    const lines = fixtureLines();
    assert.ok(lines.length >= 10);
    for (const line of lines) {
      const parsed = parseCandidate(line);
      assert.equal(typeof parsed, 'object', `${line}: ${String(parsed)}`);
    }
  });

  test('fixture strings in the reference format print back identically', () => {
    const exact = fixtureLines().filter((line) => /^candidate:\S+ 1 udp \d+ \S+ \d+ typ \w+( raddr \S+ rport \d+)?( ufrag \S+)?$/.test(line));
    assert.ok(exact.length >= 5);
    for (const line of exact) assert.equal(formatCandidate(parseCandidate(line) as Candidate), line);
  });

  test('optional fields are read in the reference order and the rest is ignored', () => {
    const parsed = parseCandidate(
      'candidate:387183333 1 udp 1686052607 113.185.55.72 31267 typ srflx raddr 10.217.229.219 rport 50028 generation 0 network-id 1 ufrag abc network-cost 900 trailing junk',
    ) as Candidate;
    assert.equal(parsed.kind, 'srflx');
    assert.equal(parsed.priority, 1686052607);
    assert.deepEqual(parsed.address, socketAddr('113.185.55.72', 31267));
    assert.deepEqual(parsed.related, socketAddr('10.217.229.219', 50028));
    assert.equal(parsed.ufrag, 'abc');
    const tcp = parseCandidate('candidate:2501718406 1 TCP 1518280447 10.217.229.219 9 typ host tcptype active generation 0') as Candidate;
    assert.equal(tcp.protocol, 'tcp');
  });

  test('IPv6 addresses are canonicalised like the socket layer reports them', () => {
    const parsed = parseCandidate('candidate:1 1 udp 2130706431 2001:DB8:0:0::1 52625 typ host') as Candidate;
    assert.equal(parsed.address.address, '2001:db8::1');
    assert.equal(parsed.address.family, 6);
  });

  test('malformed strings are rejected with a reason, never thrown', () => {
    assert.equal(parseCandidate('1 1 udp 1 1.2.3.4 5 typ host'), 'syntax');
    assert.equal(parseCandidate('candidate:1 x udp 1 1.2.3.4 5 typ host'), 'badComponent');
    assert.equal(parseCandidate('candidate:1 1 sctp 1 1.2.3.4 5 typ host'), 'badProtocol');
    assert.equal(parseCandidate('candidate:1 1 udp 4294967296 1.2.3.4 5 typ host'), 'badPriority');
    assert.equal(parseCandidate('candidate:1 1 udp 1 1.2.3.999 5 typ host'), 'badAddress');
    assert.equal(parseCandidate('candidate:1 1 udp 1 1.2.3.4 65536 typ host'), 'badAddress');
    assert.equal(parseCandidate('candidate:1 1 udp 1 1.2.3.4 5 typ bogus'), 'badKind');
    assert.equal(parseCandidate('candidate:1 1 udp 1 1.2.3.4 5 type host'), 'syntax');
  });
});

describe('local candidates', () => {
  test('priorities match the reference table', () => {
    const agent = newAgent();
    const hostV4 = agent.addLocalHostCandidate(socketAddr('10.0.0.1', 52625))!;
    const hostV6 = agent.addLocalHostCandidate(socketAddr('2001:db8::1', 52625))!;
    const secondHostV4 = agent.addLocalHostCandidate(socketAddr('10.0.0.2', 52625))!;
    const relayV4 = agent.addLocalRelayCandidate(socketAddr('192.0.2.1', 60000), socketAddr('192.0.2.1', 3478))!;
    const relayV6 = agent.addLocalRelayCandidate(socketAddr('2001:db8::9', 60000), socketAddr('2001:db8::9', 3478))!;

    assert.equal(hostV4.priority, 2130706175);
    assert.equal(hostV6.priority, 2130706431);
    assert.equal(secondHostV4.priority, 2130705663);
    assert.equal(relayV4.priority, 37748479);
    assert.equal(relayV6.priority, 37748735);
    assert.equal(fallbackPriority('srflx', 4), 1694498559);
    assert.equal(fallbackPriority('srflx', 6), 1694498815);
    assert.equal(candidatePriority('prflx', 65534), 1862270719);
  });

  test('a relayed address of the other family than the way to the relay costs 1000 preference', () => {
    const agent = newAgent();
    const v6ViaV4 = agent.addLocalRelayCandidate(socketAddr('2001:db8::9', 60000), socketAddr('192.0.2.1', 3478), 4)!;
    const v4ViaV6 = agent.addLocalRelayCandidate(socketAddr('192.0.2.1', 60000), socketAddr('2001:db8::9', 3478), 6)!;
    assert.equal(v6ViaV4.priority, 37492735);
    assert.equal(v4ViaV6.priority, 37492479);
  });

  test('host and relay candidates carry our ufrag and the reference raddr; srflx carries no ufrag', () => {
    const agent = newAgent();
    const host = agent.addLocalHostCandidate(socketAddr('10.0.0.1', 52625))!;
    const relay = agent.addLocalRelayCandidate(socketAddr('192.0.2.1', 60000), socketAddr('192.0.2.1', 3478))!;
    const srflx = agent.serverReflexiveCandidate(socketAddr('198.51.100.1', 52625), socketAddr('10.0.0.1', 52625));
    const srflxV6 = agent.serverReflexiveCandidate(socketAddr('2001:db8::5', 52625), socketAddr('2001:db8::1', 52625));

    assert.match(formatCandidate(host), /^candidate:fffeff7e[0-9a-f]+ 1 udp 2130706175 10\.0\.0\.1 52625 typ host ufrag gwuf$/);
    assert.match(formatCandidate(relay), /^candidate:[0-9a-f]+ 1 udp 37748479 192\.0\.2\.1 60000 typ relay raddr 0\.0\.0\.0 rport 0 ufrag gwuf$/);
    assert.match(formatCandidate(srflx), /^candidate:[0-9a-f]+ 1 udp 1694498559 198\.51\.100\.1 52625 typ srflx raddr 0\.0\.0\.0 rport 0$/);
    assert.match(formatCandidate(srflxV6), / typ srflx raddr :: rport 0$/);
  });

  test('unusable and duplicate host addresses are refused', () => {
    const agent = newAgent();
    for (const bad of ['0.0.0.0', '255.255.255.255', '224.0.0.1', '169.254.1.1', '::', 'ff02::1']) {
      assert.equal(agent.addLocalHostCandidate(socketAddr(bad, 52625)), undefined, bad);
    }
    assert.ok(agent.addLocalHostCandidate(socketAddr('10.0.0.1', 52625)));
    assert.equal(agent.addLocalHostCandidate(socketAddr('10.0.0.1', 52625)), undefined);
  });
});

describe('remote candidates', () => {
  test('a candidate with another ufrag or component is ignored; one without ufrag is accepted', () => {
    const agent = newAgent();
    assert.equal(agent.addRemoteCandidate(parsed('candidate:1 1 udp 2130706175 10.0.0.9 5000 typ host ufrag nope')), false);
    assert.equal(agent.addRemoteCandidate(parsed('candidate:1 2 udp 2130706175 10.0.0.9 5000 typ host')), false);
    assert.equal(agent.addRemoteCandidate(parsed('candidate:1 1 udp 2130706175 10.0.0.9 5000 typ host ufrag cluf')), true);
    assert.equal(agent.addRemoteCandidate(parsed('candidate:1 1 udp 2130706175 10.0.0.10 5000 typ host')), true);
    assert.equal(agent.addRemoteCandidate(parsed('candidate:1 1 udp 2130706175 10.0.0.10 5000 typ host')), false, 'duplicate');
    assert.deepEqual(
      agent.remoteCandidates().map((c) => c.address.address),
      ['10.0.0.9', '10.0.0.10'],
    );
  });

  test('a removed candidate can be added again', () => {
    const agent = newAgent();
    const candidate = parsed('candidate:1 1 udp 2130706175 10.0.0.9 5000 typ host');
    agent.addRemoteCandidate(candidate);
    assert.ok(agent.removeRemoteCandidate(candidate));
    assert.deepEqual(agent.remoteCandidates(), []);
    assert.ok(agent.addRemoteCandidate(candidate));
    assert.equal(agent.remoteCandidates().length, 1);
  });

  test('at most 100 pairs are kept, the lowest-priority ones go', () => {
    const agent = newAgent();
    agent.addLocalHostCandidate(socketAddr('10.0.0.1', 52625));
    agent.addLocalRelayCandidate(socketAddr('192.0.2.1', 60000), socketAddr('192.0.2.1', 3478));
    for (let i = 0; i < 60; i++) agent.addRemoteCandidate(parsed(`candidate:1 1 udp ${2130706175 - i} 10.0.1.${i} 5000 typ host`));
    agent.handleTimeout(0);
    const checks: string[] = [];
    for (let t = agent.pollTransmit(); t; t = agent.pollTransmit()) checks.push(`${t.kind} ${t.destination.address}`);

    assert.equal(checks.length, 100);
    assert.equal(checks.filter((c) => c.startsWith('direct')).length, 60, 'host pairs outrank relayed ones');
    assert.ok(!checks.includes('relay 10.0.1.59'), 'the lowest-priority pair was dropped');
  });

  test('candidates only pair within an address family', () => {
    const agent = newAgent();
    agent.addLocalHostCandidate(socketAddr('10.0.0.1', 52625));
    agent.addRemoteCandidate(parsed('candidate:1 1 udp 2130706431 2001:db8::7 5000 typ host'));
    agent.handleTimeout(0);
    assert.equal(agent.pollTimeout(), undefined, 'no pair, nothing to check');
    agent.addRemoteCandidate(parsed('candidate:1 1 udp 2130706175 10.0.0.7 5000 typ host'));
    agent.handleTimeout(0);
    const transmit = agent.pollTransmit();
    assert.equal(transmit?.destination.address, '10.0.0.7');
    assert.equal(agent.pollTransmit(), undefined);
  });
});

function newAgent(): IceAgent {
  return new IceAgent({
    role: 'controlled',
    local: { ufrag: 'gwuf', password: 'gateway-password-0123456' },
    remote: { ufrag: 'cluf', password: 'client-password-01234567' },
    rng: seededRandom(1),
  });
}

function parsed(text: string): Candidate {
  const candidate = parseCandidate(text);
  assert.ok(typeof candidate !== 'string', `${text}: ${String(candidate)}`);
  return candidate;
}

function fixtureLines(): string[] {
  return readFileSync(fixturePath('connectivity', 'ice_candidate_strings.txt'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('candidate:'));
}
