import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ACTIVE_TIMING, IceAgent, iceTimeout, parseCandidate, TransactionIds } from '../../src/ice/index.ts';
import type { Candidate, IceEvent, IceRole, IceTransmit } from '../../src/ice/index.ts';
import {
  StunMethod,
  decodeStunMessage,
  encodeStunMessage,
  getAttribute,
  shortTermKey,
  verifyFingerprint,
  verifyIntegrity,
} from '../../src/stun/index.ts';
import type { StunMessage } from '../../src/stun/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import { fixturePath } from '../support/env.ts';

const FIXTURE_PASSWORD = 'xJcE9AQAR7kczUDVOXRUCl';
const GATEWAY = socketAddr('10.0.0.2', 52625);
const CLIENT = socketAddr('10.0.0.1', 40000);

describe('answering connectivity checks', () => {
  test('the reference check vector is answered with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT', () => {
    const agent = fixtureAgent('controlled');
    const request = fixtureRequest();

    assert.equal(agent.handleInput(request, CLIENT, GATEWAY, 0), true);

    const transmit = onlyTransmit(agent);
    assert.deepEqual(transmit, { kind: 'direct', source: GATEWAY, destination: CLIENT, payload: transmit.payload });
    const response = decode(transmit.payload);
    assert.equal(response.class, 'success');
    assert.deepEqual(response.transactionId, decode(request).transactionId);
    assert.deepEqual(response.attributes, [{ kind: 'xorMappedAddress', address: CLIENT }]);
    assert.ok(verifyIntegrity(response, shortTermKey(FIXTURE_PASSWORD)));
    assert.ok(verifyFingerprint(response));
  });

  test('USE-CANDIDATE nominates the pair on the controlled side at once, with a peer-reflexive remote', () => {
    const agent = fixtureAgent('controlled');
    agent.handleInput(fixtureRequest(), CLIENT, GATEWAY, 0);
    assert.equal(decode(onlyTransmit(agent).payload).class, 'success');

    const events = drainEvents(agent);
    const nominated = events.find((e) => e.kind === 'nominated');
    assert.ok(nominated?.kind === 'nominated');
    assert.equal(nominated.remote.kind, 'prflx');
    assert.equal(nominated.remote.priority, 0x6e7f1eff);
    assert.deepEqual(nominated.path, { kind: 'direct', source: GATEWAY, destination: CLIENT });
    assert.ok(events.some((e) => e.kind === 'discoveredRecv' && e.source === CLIENT));
    agent.handleTimeout(0);
    const triggered = agent.pollTransmit();
    assert.ok(triggered !== undefined && decode(triggered.payload).class === 'request', 'a triggered check follows');
  });

  test('the controlling side ignores a check that carries USE-CANDIDATE', () => {
    const agent = fixtureAgent('controlling');
    assert.equal(agent.handleInput(fixtureRequest(), CLIENT, GATEWAY, 0), false);
    assert.equal(agent.pollTransmit(), undefined);
  });

  test('checks failing integrity, ufrag or format are ignored silently', () => {
    const request = fixtureRequest();
    const tampered = request.slice();
    tampered[30] = tampered[30]! ^ 0x01;
    const cases: [string, IceAgent, Uint8Array][] = [
      ['wrong password', fixtureAgent('controlled', 'another-password-000000'), request],
      ['tampered', fixtureAgent('controlled'), tampered],
      ['other ufrag', new IceAgent({ role: 'controlled', local: { ufrag: 'nope', password: FIXTURE_PASSWORD }, rng: seededRandom(1) }), request],
      ['truncated', fixtureAgent('controlled'), request.subarray(0, request.length - 4)],
      ['not STUN', fixtureAgent('controlled'), new TextEncoder().encode('hello world, not a STUN message')],
    ];
    for (const [name, agent, bytes] of cases) {
      agent.addLocalHostCandidate(GATEWAY);
      assert.equal(agent.handleInput(bytes, CLIENT, GATEWAY, 0), false, name);
      assert.equal(agent.pollTransmit(), undefined, name);
      assert.equal(drainEvents(agent).filter((e) => e.kind !== 'stateChanged').length, 0, name);
    }
  });

  test('a check without PRIORITY is ignored', () => {
    const agent = pairAgent('controlled');
    const request = encodeStunMessage(
      {
        method: StunMethod.Binding,
        class: 'request',
        transactionId: new Uint8Array(12).fill(7),
        attributes: [{ kind: 'username', value: 'gwuf:cluf' }],
      },
      { integrityKey: shortTermKey('gateway-password-0123456'), fingerprint: true },
    );
    assert.equal(agent.handleInput(request, CLIENT, GATEWAY, 0), false);
    assert.equal(agent.pollTransmit(), undefined);
  });

  test('a check to an address that is not a local candidate is accepted but not answered', () => {
    const agent = fixtureAgent('controlled');
    assert.equal(agent.handleInput(fixtureRequest(), CLIENT, socketAddr('10.9.9.9', 52625), 0), true);
    assert.equal(agent.pollTransmit(), undefined);
  });

  test('a check arriving on our relayed address is answered through that relay', () => {
    const agent = fixtureAgent('controlled');
    const relayed = socketAddr('192.0.2.1', 61000);
    const relay = socketAddr('192.0.2.1', 3478);
    agent.addLocalRelayCandidate(relayed, relay);
    agent.handleInput(fixtureRequest(), CLIENT, relayed, 0);
    const transmit = onlyTransmit(agent);
    assert.equal(transmit.kind, 'relay');
    assert.ok(transmit.kind === 'relay');
    assert.deepEqual([transmit.relay, transmit.relayed, transmit.destination], [relay, relayed, CLIENT]);
  });
});

describe('sending connectivity checks', () => {
  test('the controlled side sends USERNAME remote:local, ICE-CONTROLLED, prflx PRIORITY, integrity with the remote password, FINGERPRINT', () => {
    const agent = pairAgent('controlled');
    agent.handleTimeout(0);
    const request = decode(onlyTransmit(agent).payload);

    assert.equal(request.class, 'request');
    assert.deepEqual(
      request.attributes.map((a) => a.kind),
      ['username', 'iceControlled', 'priority'],
    );
    assert.equal(getAttribute(request, 'username')?.value, 'cluf:gwuf');
    assert.equal(getAttribute(request, 'priority')?.priority, 1862270719);
    assert.ok(verifyIntegrity(request, shortTermKey('client-password-01234567')));
    assert.ok(verifyFingerprint(request));
  });

  test('an unanswered pair is retried at 250, 500, 1000 then 1500 ms intervals with fresh transaction ids', () => {
    const agent = pairAgent('controlled');
    const sent = runFor(agent, 0, 6_000);

    assert.deepEqual(sent.map((s) => s.at), [0, 250, 750, 1750, 3250, 4750]);
    const ids = new Set(sent.map((s) => Buffer.from(decode(s.transmit.payload).transactionId).toString('hex')));
    assert.equal(ids.size, sent.length);
  });

  test('an unanswered pair is dropped after the ICE timeout and the agent becomes disconnected', () => {
    const agent = pairAgent('controlled');
    const sent = runFor(agent, 0, 20_000);

    assert.equal(sent.length, ACTIVE_TIMING.maxRetransmits);
    assert.equal(iceTimeout(ACTIVE_TIMING), 15_250);
    const events = drainEvents(agent).filter((e) => e.kind === 'stateChanged');
    assert.deepEqual(events.map((e) => e.kind === 'stateChanged' && e.state), ['checking', 'disconnected']);
    assert.equal(agent.connectionState, 'disconnected');
    assert.equal(agent.pollTimeout(), undefined);
  });

  test('handleTimeout always moves the deadline forward', () => {
    const agent = pairAgent('controlling');
    let now = 0;
    for (let i = 0; i < 50; i++) {
      agent.handleTimeout(now);
      while (agent.pollTransmit()) {}
      const next = agent.pollTimeout();
      if (next === undefined) break;
      assert.ok(next > now, `deadline ${next} not after ${now}`);
      now = next;
    }
  });

  test('the controlling side nominates on the first answer and keeps USE-CANDIDATE on that pair', () => {
    const agent = pairAgent('controlling');
    agent.handleTimeout(0);
    const first = onlyTransmit(agent);
    assert.equal(getAttribute(decode(first.payload), 'useCandidate'), undefined);
    drainEvents(agent);

    assert.equal(agent.handleInput(answer(first, 'gateway-password-0123456'), GATEWAY, CLIENT, 20), true);
    const nominated = drainEvents(agent).find((e) => e.kind === 'nominated');
    assert.ok(nominated?.kind === 'nominated');
    assert.deepEqual(nominated.path, { kind: 'direct', source: CLIENT, destination: GATEWAY });

    agent.handleTimeout(20);
    const next = onlyTransmit(agent);
    assert.deepEqual(decode(next.payload).attributes.map((a) => a.kind), ['username', 'iceControlling', 'priority', 'useCandidate']);
    assert.equal(agent.connectionState, 'completed');
  });

  test('answers with a wrong password, an unknown transaction or no XOR-MAPPED-ADDRESS are ignored', () => {
    const agent = pairAgent('controlling');
    agent.handleTimeout(0);
    const check = onlyTransmit(agent);
    const noMapped = encodeStunMessage(
      { method: StunMethod.Binding, class: 'success', transactionId: decode(check.payload).transactionId, attributes: [] },
      { integrityKey: shortTermKey('gateway-password-0123456'), fingerprint: true },
    );
    const unknown = answer(check, 'gateway-password-0123456');
    unknown[8] = unknown[8]! ^ 0xff;

    assert.equal(agent.handleInput(answer(check, 'wrong-password'), GATEWAY, CLIENT, 10), false);
    assert.equal(agent.handleInput(unknown, GATEWAY, CLIENT, 10), false);
    assert.equal(agent.handleInput(noMapped, GATEWAY, CLIENT, 10), false);
    assert.equal(drainEvents(agent).filter((e) => e.kind === 'nominated').length, 0);
  });

  test('a late answer counts while it is among the last four unanswered checks of its pair, and only once', () => {
    const agent = pairAgent('controlling');
    const checks = runFor(agent, 0, 4_000).map((s) => s.transmit);
    assert.ok(checks.length >= 5, `only ${checks.length} checks`);
    const [oldest, ...recent] = checks.slice(-5);
    assert.equal(agent.handleInput(answer(oldest!, 'gateway-password-0123456'), GATEWAY, CLIENT, 4_000), false, 'fifth-last is forgotten');
    assert.equal(agent.handleInput(answer(recent[0]!, 'gateway-password-0123456'), GATEWAY, CLIENT, 4_000), true, 'fourth-last still counts');
    assert.equal(agent.handleInput(answer(recent[0]!, 'gateway-password-0123456'), GATEWAY, CLIENT, 4_000), false, 'answered once');
    assert.equal(agent.handleInput(answer(recent[2]!, 'gateway-password-0123456'), GATEWAY, CLIENT, 4_000), true);
    assert.equal(agent.handleInput(answer(recent[1]!, 'gateway-password-0123456'), GATEWAY, CLIENT, 4_000), true, 'out of order');
  });

  test('agents sharing transaction ids tag their checks: each accepts only answers to its own', () => {
    const rng = seededRandom(9);
    const transactionIds = new TransactionIds(rng);
    const make = (tag: number): IceAgent => {
      const agent = new IceAgent({
        role: 'controlling',
        local: { ufrag: 'cluf', password: 'client-password-01234567' },
        remote: { ufrag: 'gwuf', password: 'gateway-password-0123456' },
        rng,
        transactionIds,
        transactionTag: tag,
      });
      agent.addLocalHostCandidate(CLIENT);
      agent.addRemoteCandidate(candidate(`candidate:1 1 udp 2130706175 ${GATEWAY.address} ${GATEWAY.port} typ host`));
      agent.handleTimeout(0);
      return agent;
    };
    const [first, second] = [make(0xabcdef), make(7)];
    const [firstCheck, secondCheck] = [onlyTransmit(first), onlyTransmit(second)];
    assert.equal(transactionIds.tagOf(decode(firstCheck.payload).transactionId), 0xabcdef);
    assert.equal(transactionIds.tagOf(decode(secondCheck.payload).transactionId), 7);
    assert.equal(second.handleInput(answer(firstCheck, 'gateway-password-0123456'), GATEWAY, CLIENT, 10), false);
    assert.equal(first.handleInput(answer(firstCheck, 'gateway-password-0123456'), GATEWAY, CLIENT, 10), true);
  });

  test('no checks go out before the remote credentials are known', () => {
    const agent = new IceAgent({ role: 'controlled', local: { ufrag: 'gwuf', password: 'gateway-password-0123456' }, rng: seededRandom(3) });
    agent.addLocalHostCandidate(GATEWAY);
    agent.addRemoteCandidate(candidate(`candidate:1 1 udp 2130706175 ${CLIENT.address} ${CLIENT.port} typ host`));
    agent.handleTimeout(0);
    assert.equal(agent.pollTransmit(), undefined);
    agent.setRemoteCredentials({ ufrag: 'cluf', password: 'client-password-01234567' });
    agent.handleTimeout(1);
    assert.ok(agent.pollTransmit());
  });
});

function fixtureAgent(role: IceRole, password = FIXTURE_PASSWORD): IceAgent {
  const agent = new IceAgent({
    role,
    local: { ufrag: 'p9KA', password },
    remote: { ufrag: 'SQAt', password: 'remote-password-0123456' },
    rng: seededRandom(1),
  });
  agent.addLocalHostCandidate(GATEWAY);
  agent.handleTimeout(0);
  drainEvents(agent);
  return agent;
}

/** An agent with one host candidate each side; the gateway is 10.0.0.2, the client 10.0.0.1. */
function pairAgent(role: IceRole): IceAgent {
  const controlled = role === 'controlled';
  const agent = new IceAgent({
    role,
    local: controlled ? { ufrag: 'gwuf', password: 'gateway-password-0123456' } : { ufrag: 'cluf', password: 'client-password-01234567' },
    remote: controlled ? { ufrag: 'cluf', password: 'client-password-01234567' } : { ufrag: 'gwuf', password: 'gateway-password-0123456' },
    rng: seededRandom(2),
  });
  const [local, remote] = controlled ? [GATEWAY, CLIENT] : [CLIENT, GATEWAY];
  agent.addLocalHostCandidate(local);
  agent.addRemoteCandidate(candidate(`candidate:1 1 udp 2130706175 ${remote.address} ${remote.port} typ host`));
  return agent;
}

function candidate(text: string): Candidate {
  const parsed = parseCandidate(text);
  assert.ok(typeof parsed !== 'string');
  return parsed;
}

function fixtureRequest(): Uint8Array {
  const line = readFileSync(fixturePath('connectivity', 'ice_binding_request_shortterm.hex'), 'utf8')
    .split('\n')
    .find((l) => /^[0-9a-f]+$/i.test(l.trim()));
  assert.ok(line);
  return new Uint8Array(Buffer.from(line.trim(), 'hex'));
}

function runFor(agent: IceAgent, from: number, until: number): { at: number; transmit: IceTransmit }[] {
  const sent: { at: number; transmit: IceTransmit }[] = [];
  let now = from;
  for (let steps = 0; steps < 1_000; steps++) {
    agent.handleTimeout(now);
    for (let t = agent.pollTransmit(); t; t = agent.pollTransmit()) sent.push({ at: now, transmit: t });
    const next = agent.pollTimeout();
    if (next === undefined || next > until) break;
    now = next;
  }
  return sent;
}

function answer(check: IceTransmit, password: string): Uint8Array {
  const request = decode(check.payload);
  return encodeStunMessage(
    {
      method: StunMethod.Binding,
      class: 'success',
      transactionId: request.transactionId,
      attributes: [{ kind: 'xorMappedAddress', address: check.kind === 'direct' ? check.source : check.relayed }],
    },
    { integrityKey: shortTermKey(password), fingerprint: true },
  );
}

function onlyTransmit(agent: IceAgent): IceTransmit {
  const transmit = agent.pollTransmit();
  assert.ok(transmit !== undefined, 'expected a transmit');
  assert.equal(agent.pollTransmit(), undefined, 'expected only one transmit');
  return transmit;
}

function drainEvents(agent: IceAgent): IceEvent[] {
  const events: IceEvent[] = [];
  for (let e = agent.pollEvent(); e; e = agent.pollEvent()) events.push(e);
  return events;
}

function decode(bytes: Uint8Array): StunMessage {
  const message = decodeStunMessage(bytes);
  assert.ok(typeof message !== 'string', `not STUN: ${String(message)}`);
  return message;
}
