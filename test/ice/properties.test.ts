import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { IceAgent, formatCandidate, parseCandidate } from '../../src/ice/index.ts';
import type { Candidate, CandidateKind } from '../../src/ice/index.ts';
import { StunMethod, encodeStunMessage, shortTermKey } from '../../src/stun/index.ts';
import type { StunAttribute, StunClass } from '../../src/stun/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import { fixturePath } from '../support/env.ts';
import { SimNet, lastNomination } from './sim-net.ts';

const LOCAL = socketAddr('10.0.0.2', 52625);
const REMOTE = socketAddr('10.0.0.1', 40000);
const LOCAL_PASSWORD = 'xJcE9AQAR7kczUDVOXRUCl';

describe('ICE agent properties', () => {
  test('random datagrams never throw and are never accepted', () => {
    const agent = readyAgent('controlled');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), fc.nat(100_000), (bytes, now) => {
        assert.equal(agent.handleInput(bytes, REMOTE, LOCAL, now), false);
        agent.handleTimeout(now);
      }),
      { numRuns: 2_000 },
    );
  });

  test('mutated reference checks never throw', () => {
    const request = fixtureRequest();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(request.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.nat(request.length),
        fc.constantFrom<'controlled' | 'controlling'>('controlled', 'controlling'),
        (flips, cut, role) => {
          const agent = readyAgent(role);
          const bytes = request.slice(0, Math.max(cut, 20));
          for (const [offset, value] of flips) if (offset < bytes.length) bytes[offset] = value;
          const accepted = agent.handleInput(bytes, REMOTE, LOCAL, 0);
          assert.equal(typeof accepted, 'boolean');
          drain(agent);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  test('random well-formed STUN messages never throw; integrity decides acceptance of requests', () => {
    fc.assert(
      fc.property(stunMessage(), fc.boolean(), fc.constantFrom<'controlled' | 'controlling'>('controlled', 'controlling'), (init, signed, role) => {
        const agent = readyAgent(role);
        const bytes = encodeStunMessage(init, { integrityKey: signed ? shortTermKey(LOCAL_PASSWORD) : undefined, fingerprint: true });
        const accepted = agent.handleInput(bytes, REMOTE, LOCAL, 5);
        if (!signed || init.class !== 'request') assert.equal(accepted, false);
        drain(agent);
        agent.handleTimeout(10);
        drain(agent);
      }),
      { numRuns: 1_000 },
    );
  });

  test('random candidate strings never throw', () => {
    const lines = readFileSync(fixturePath('connectivity', 'ice_candidate_strings.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('candidate:'));
    const agent = readyAgent('controlled');
    const mutated = fc
      .tuple(fc.constantFrom(...lines), fc.nat(200), fc.nat(200), fc.string({ maxLength: 12 }))
      .map(([line, start, length, insert]) => line.slice(0, start) + insert + line.slice(start + length));
    const tokens = fc
      .array(fc.constantFrom('candidate:x', '1', '0', 'udp', 'UDP', 'tcp', '99999999999', '::', '1.2.3.4', 'fe80::1%eth0', '65535', 'typ', 'host', 'relay', 'srflx', 'prflx', 'raddr', 'rport', 'ufrag', 'generation', '', ' '), { maxLength: 14 })
      .map((t) => t.join(' '));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), mutated, tokens), (text) => {
        const parsed = parseCandidate(text);
        if (typeof parsed === 'string') return;
        agent.addRemoteCandidate(parsed);
        agent.removeRemoteCandidate(parsed);
        assert.equal(typeof formatCandidate(parsed), 'string');
      }),
      { numRuns: 3_000 },
    );
  });

  test('candidates in the reference format survive print and parse unchanged', () => {
    fc.assert(
      fc.property(candidate(), (original) => {
        const text = formatCandidate(original);
        const parsed = parseCandidate(text);
        assert.ok(typeof parsed !== 'string', `${text}: ${String(parsed)}`);
        assert.deepEqual(parsed, original);
        assert.equal(formatCandidate(parsed), text);
      }),
      { numRuns: 1_000 },
    );
  });

  test('two agents with random loss and random seeds agree on a pair once they connect', () => {
    fc.assert(
      fc.property(fc.nat(1_000_000), fc.double({ min: 0, max: 0.5, noNaN: true }), (seed, loss) => {
        const net = new SimNet(seed);
        net.lossRate = loss;
        const client = net.addPeer('client', { role: 'controlling', host: '10.0.0.1' });
        const gateway = net.addPeer('gateway', { role: 'controlled', host: '10.0.0.2' });
        net.introduce(client, gateway);
        const clientCandidates = [net.addHost(client), net.addRelay(client, '192.0.2.1')];
        const gatewayCandidates = [net.addHost(gateway), net.addRelay(gateway, '192.0.2.2')];
        net.trickle(gateway, clientCandidates);
        net.trickle(client, gatewayCandidates);
        net.runUntil(20_000);
        net.lossRate = 0;
        net.runUntil(25_000);
        const atClient = lastNomination(client);
        const atGateway = lastNomination(gateway);
        assert.ok(atClient !== undefined && atGateway !== undefined, 'did not connect');
        assert.deepEqual(atClient.path.destination, atGateway.local.address);
        assert.deepEqual(atGateway.path.destination, atClient.local.address);
      }),
      { numRuns: 25 },
    );
  });
});

function readyAgent(role: 'controlled' | 'controlling'): IceAgent {
  const agent = new IceAgent({
    role,
    local: { ufrag: 'p9KA', password: LOCAL_PASSWORD },
    remote: { ufrag: 'SQAt', password: 'remote-password-0123456' },
    rng: seededRandom(9),
  });
  agent.addLocalHostCandidate(LOCAL);
  agent.addRemoteCandidate(parseCandidate(`candidate:1 1 udp 2130706175 ${REMOTE.address} ${REMOTE.port} typ host`) as Candidate);
  agent.handleTimeout(0);
  drain(agent);
  return agent;
}

function drain(agent: IceAgent): void {
  while (agent.pollTransmit() !== undefined) {}
  while (agent.pollEvent() !== undefined) {}
}

function fixtureRequest(): Uint8Array {
  const line = readFileSync(fixturePath('connectivity', 'ice_binding_request_shortterm.hex'), 'utf8')
    .split('\n')
    .find((l) => /^[0-9a-f]+$/i.test(l.trim()))!;
  return new Uint8Array(Buffer.from(line.trim(), 'hex'));
}

function stunMessage(): fc.Arbitrary<{ method: number; class: StunClass; transactionId: Uint8Array; attributes: StunAttribute[] }> {
  const attribute: fc.Arbitrary<StunAttribute> = fc.oneof(
    fc.constantFrom('p9KA:SQAt', 'p9KA:', ':SQAt', 'p9KA', 'p9KA:SQAt:x', 'x'.repeat(200)).map((value) => ({ kind: 'username' as const, value })),
    fc.string({ maxLength: 40 }).map((value) => ({ kind: 'username' as const, value })),
    fc.nat(0xffff_ffff).map((priority) => ({ kind: 'priority' as const, priority })),
    fc.constant({ kind: 'useCandidate' as const }),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((tieBreaker) => ({ kind: 'iceControlling' as const, tieBreaker })),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((tieBreaker) => ({ kind: 'iceControlled' as const, tieBreaker })),
    fc.constant({ kind: 'xorMappedAddress' as const, address: REMOTE }),
    fc.integer({ min: 300, max: 699 }).map((code) => ({ kind: 'errorCode' as const, code, reason: 'x' })),
  );
  return fc.record({
    method: fc.constantFrom(StunMethod.Binding, StunMethod.Binding, StunMethod.Allocate),
    class: fc.constantFrom<StunClass>('request', 'success', 'error', 'indication'),
    transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
    attributes: fc.array(attribute, { maxLength: 6 }),
  });
}

function candidate(): fc.Arbitrary<Candidate> {
  const ipv4 = fc.ipV4().filter((ip) => !/(^|\.)0\d/.test(ip));
  const ipv6 = fc
    .array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
    .map((words) => parseCandidate(`candidate:x 1 udp 1 ${words.map((w) => w.toString(16)).join(':')} 1 typ host`));
  const address = fc.oneof(
    fc.tuple(ipv4, fc.integer({ min: 0, max: 65535 })).map(([ip, port]) => socketAddr(ip, port)),
    fc.tuple(ipv6, fc.integer({ min: 0, max: 65535 })).map(([parsed, port]) => {
      assert.ok(typeof parsed !== 'string');
      return { ...parsed.address, port };
    }),
  );
  return fc
    .record({
      kind: fc.constantFrom<CandidateKind>('host', 'srflx', 'prflx', 'relay'),
      foundation: fc.stringMatching(/^[0-9a-z_]{1,24}$/),
      priority: fc.nat(0xffff_ffff),
      address,
      related: fc.option(address, { nil: undefined }),
      ufrag: fc.option(fc.stringMatching(/^[a-zA-Z0-9+/]{1,16}$/), { nil: undefined }),
    })
    .map(({ kind, foundation, priority, address: addr, related, ufrag }) => ({
      kind,
      foundation,
      component: 1,
      protocol: 'udp' as const,
      priority,
      address: addr,
      base: addr,
      related,
      ufrag,
    }));
}
