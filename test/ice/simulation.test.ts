import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IDLE_TIMING, formatCandidate, iceTimeout, parseCandidate, ACTIVE_TIMING } from '../../src/ice/index.ts';
import type { Candidate } from '../../src/ice/index.ts';
import { SimNet, lastNomination, nominations, pathText, states } from './sim-net.ts';
import type { SimPeer } from './sim-net.ts';

describe('two agents on a simulated network', () => {
  test('host candidates on an open network: both sides select the same pair within one round trip or two', () => {
    const { net, client, gateway } = openPair();
    exchangeHosts(net, client, gateway);

    const connectedAt = net.runUntilTrue(() => bothNominated(client, gateway), 5_000);

    assert.ok(connectedAt !== undefined && connectedAt <= 100, `connected at ${connectedAt}`);
    assert.equal(pathText(lastNomination(client)!), '10.0.0.1:52625 -> 10.0.0.2:52625');
    assert.equal(pathText(lastNomination(gateway)!), '10.0.0.2:52625 -> 10.0.0.1:52625');
    assert.deepEqual(lastNomination(gateway)!.path, {
      kind: 'direct',
      source: gateway.host,
      destination: client.host,
    });
    assert.equal(client.agent.connectionState, 'completed');
    assert.equal(gateway.agent.connectionState, 'completed');
    assert.ok(net.sendData(client, 'hello') && net.sendData(gateway, 'world'));
    net.runUntil(net.now + 100);
    assert.deepEqual(gateway.received.map((r) => r.text), ['hello']);
    assert.deepEqual(client.received.map((r) => r.text), ['world']);
  });

  test('dual stack: pairs stay within a family and the IPv6 host pair wins on priority', () => {
    const net = new SimNet(13);
    const client = net.addPeer('client', { role: 'controlling', host: '10.0.0.1' });
    const gateway = net.addPeer('gateway', { role: 'controlled', host: '10.0.0.2' });
    net.introduce(client, gateway);
    const clientV6 = net.addHost(client, 'fd00::1');
    const gatewayV6 = net.addHost(gateway, 'fd00::2');
    const [clientV4, gatewayV4] = exchangeHosts(net, client, gateway);
    net.trickle(gateway, [clientV6]);
    net.trickle(client, [gatewayV6]);
    const seen = new Set<string>();

    net.runUntil(3_000);

    for (const { transmit } of [...client.sent, ...gateway.sent]) {
      assert.ok(transmit.kind === 'direct');
      assert.equal(transmit.source.family, transmit.destination.family);
      seen.add(transmit.destination.address);
    }
    assert.deepEqual([...seen].sort(), ['10.0.0.1', '10.0.0.2', 'fd00::1', 'fd00::2']);
    assert.equal(pathText(lastNomination(client)!), '[fd00::1]:52625 -> [fd00::2]:52625');
    assert.equal(pathText(lastNomination(gateway)!), '[fd00::2]:52625 -> [fd00::1]:52625');
    assert.ok(clientV4.priority < clientV6.priority && gatewayV4.priority < gatewayV6.priority);
  });

  test('the controlled side never sends USE-CANDIDATE and the controlling side does on its nominated pair', () => {
    const { net, client, gateway } = openPair();
    exchangeHosts(net, client, gateway);
    net.runUntil(5_000);

    assert.ok(gateway.sent.length > 0);
    for (const { transmit } of gateway.sent) assert.ok(!hasUseCandidate(transmit.payload));
    const clientChecks = client.sent.filter(({ transmit }) => isRequest(transmit.payload));
    assert.ok(clientChecks.some(({ transmit }) => hasUseCandidate(transmit.payload)));
  });

  test('30% loss both ways still connects, and the agents agree on the pair', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { net, client, gateway } = openPair(seed);
      net.lossRate = 0.3;
      exchangeHosts(net, client, gateway);

      const connectedAt = net.runUntilTrue(() => bothNominated(client, gateway), 15_000);

      assert.ok(connectedAt !== undefined, `seed ${seed} did not connect`);
      assert.equal(pathText(lastNomination(client)!), reversed(pathText(lastNomination(gateway)!)));
    }
  });

  test('client behind a port-restricted NAT: the gateway learns it peer-reflexively, then its srflx replaces the prflx', () => {
    const net = new SimNet(7);
    const client = net.addPeer('client', { role: 'controlling', host: '192.168.1.10', nat: { kind: 'portRestricted', publicIp: '198.51.100.1' } });
    const gateway = net.addPeer('gateway', { role: 'controlled', host: '203.0.113.5' });
    net.introduce(client, gateway);
    const clientHost = net.addHost(client);
    const gatewayHost = net.addHost(gateway);
    net.trickle(gateway, [clientHost]);
    net.trickle(client, [gatewayHost]);
    net.runUntil(0);

    const connectedAt = net.runUntilTrue(() => bothNominated(client, gateway), 5_000);

    assert.ok(connectedAt !== undefined);
    const atGateway = lastNomination(gateway)!;
    assert.equal(atGateway.remote.kind, 'prflx');
    assert.equal(socketText(atGateway.remote.address), '198.51.100.1:52625');
    assert.ok(gateway.events.some(({ event }) => event.kind === 'discoveredRecv' && socketText(event.source) === '198.51.100.1:52625'));

    net.trickle(gateway, [net.srflx(client)]);
    const remote = gateway.agent.remoteCandidates().find((c) => socketText(c.address) === '198.51.100.1:52625');
    assert.equal(remote?.kind, 'srflx');
    net.runUntil(net.now + 10_000);
    assert.equal(nominations(gateway).length, 1, 'replacing prflx by srflx must not disturb the selected pair');
    assert.notEqual(gateway.agent.connectionState, 'disconnected');
  });

  test('both behind symmetric NATs: only the relayed pairs work and they are selected', () => {
    const net = new SimNet(11);
    const client = net.addPeer('client', { role: 'controlling', host: '192.168.1.10', nat: { kind: 'symmetric', publicIp: '198.51.100.1' } });
    const gateway = net.addPeer('gateway', { role: 'controlled', host: '10.1.0.5', nat: { kind: 'symmetric', publicIp: '198.51.100.2' } });
    net.introduce(client, gateway);
    const clientCandidates = [net.addHost(client), net.srflx(client), net.addRelay(client, '192.0.2.100')];
    const gatewayCandidates = [net.addHost(gateway), net.srflx(gateway), net.addRelay(gateway, '192.0.2.200')];
    net.trickle(gateway, clientCandidates);
    net.trickle(client, gatewayCandidates);

    const connectedAt = net.runUntilTrue(() => bothNominated(client, gateway), 10_000);

    assert.ok(connectedAt !== undefined);
    const atGateway = lastNomination(gateway)!;
    assert.ok(atGateway.path.kind === 'relay' || atGateway.remote.kind === 'relay');
    if (atGateway.path.kind === 'relay') {
      assert.equal(socketText(atGateway.path.relay), '192.0.2.200:3478');
      assert.equal(socketText(atGateway.path.relayed), socketText(gatewayCandidates[2]!.address));
    }
    assert.ok(net.sendData(client, 'through the relay'));
    net.runUntil(net.now + 100);
    assert.deepEqual(gateway.received.map((r) => r.text), ['through the relay']);
  });

  test('re-nomination: a better direct pair trickled later replaces the relayed one on both sides', () => {
    const { net, client, gateway } = openPair(3);
    const clientRelay = net.addRelay(client, '192.0.2.100');
    const gatewayRelay = net.addRelay(gateway, '192.0.2.200');
    net.trickle(gateway, [clientRelay]);
    net.trickle(client, [gatewayRelay]);
    net.runUntilTrue(() => bothNominated(client, gateway), 5_000);
    assert.equal(lastNomination(gateway)!.path.kind, 'relay');

    exchangeHosts(net, client, gateway);
    net.runUntil(net.now + 5_000);

    assert.equal(lastNomination(client)!.path.kind, 'direct');
    assert.equal(lastNomination(gateway)!.path.kind, 'direct');
    assert.equal(pathText(lastNomination(client)!), reversed(pathText(lastNomination(gateway)!)));
    assert.ok(nominations(gateway).length >= 2);
  });

  test('an invalidated relay candidate: both sides move to the remaining relay at once, and it is not re-learnt', () => {
    const { net, client, gateway } = openPair(5);
    const firstRelay = net.addRelay(client, '192.0.2.100');
    const secondRelay = net.addRelay(client, '192.0.2.101');
    const gatewayHost = net.addHost(gateway);
    net.trickle(gateway, [firstRelay, secondRelay]);
    net.trickle(client, [gatewayHost]);
    net.runUntil(3_000);
    assert.equal(socketText(lastNomination(gateway)!.remote.address), socketText(firstRelay.address));

    assert.ok(client.agent.removeLocalCandidate(firstRelay.address));
    assert.ok(gateway.agent.removeRemoteCandidate(viaText(firstRelay)));
    net.touch(client);
    net.touch(gateway);
    const switchedAt = net.runUntilTrue(
      () =>
        socketText(lastNomination(gateway)!.remote.address) === socketText(secondRelay.address) &&
        socketText(lastNomination(client)!.local.address) === socketText(secondRelay.address),
      net.now + 2_000,
    );

    assert.ok(switchedAt !== undefined, 'did not move to the second relay');
    assert.equal(lastNomination(client)!.path.kind, 'relay');
    net.runUntil(net.now + 5_000);
    assert.ok(gateway.agent.remoteCandidates().every((c) => socketText(c.address) !== socketText(firstRelay.address)));
    assert.ok(!gateway.agent.removeRemoteCandidate(viaText(firstRelay)), 'removing twice is a no-op');
  });

  test('a check from an invalidated remote address gets no answer and creates no peer-reflexive candidate', () => {
    const { net, client, gateway } = openPair(12);
    const [clientHost] = exchangeHosts(net, client, gateway);
    net.runUntil(1_000);
    assert.ok(gateway.agent.removeRemoteCandidate(viaText(clientHost)));
    net.touch(gateway);
    const sentBefore = gateway.sent.length;

    net.runUntil(net.now + 3_000);

    assert.equal(gateway.sent.length, sentBefore, 'the gateway answered an invalidated address');
    assert.deepEqual(gateway.agent.remoteCandidates(), []);
  });

  test('peer disappearance is reported as disconnected after the ICE timeout, not before', () => {
    const { net, client, gateway } = openPair(9);
    exchangeHosts(net, client, gateway);
    net.runUntil(10_000);
    assert.equal(gateway.agent.connectionState, 'completed');

    const goneAt = net.now;
    client.alive = false;
    const reportedAt = net.runUntilTrue(() => gateway.agent.connectionState === 'disconnected', goneAt + 30_000, 50);

    assert.ok(reportedAt !== undefined, 'never reported disconnected');
    const elapsed = reportedAt - goneAt;
    assert.ok(elapsed >= iceTimeout(ACTIVE_TIMING) - 1_500, `too early: ${elapsed}`);
    assert.ok(elapsed <= iceTimeout(ACTIVE_TIMING) + 2_000, `too late: ${elapsed}`);
    assert.equal(states(gateway).at(-1), 'disconnected');
  });

  test('consent: a connected pair is checked every 1.5 s from both sides', () => {
    const { net, client, gateway } = openPair(4);
    exchangeHosts(net, client, gateway);
    net.runUntil(10_000);

    const from = 5_000;
    const gatewayChecks = gateway.sent.filter(({ at, transmit }) => at >= from && isRequest(transmit.payload));
    const clientChecks = client.sent.filter(({ at, transmit }) => at >= from && isRequest(transmit.payload));
    assert.ok(gatewayChecks.length >= 3 && gatewayChecks.length <= 4, `${gatewayChecks.length} gateway checks`);
    assert.ok(clientChecks.length >= 3 && clientChecks.length <= 4, `${clientChecks.length} client checks`);
    const gaps = gatewayChecks.slice(1).map((c, i) => c.at - gatewayChecks[i]!.at);
    for (const gap of gaps) assert.equal(gap, 1_500);
  });

  test('idle timing: checks every 25 s and a vanished peer is noticed after about 100 s', () => {
    const { net, client, gateway } = openPair(6);
    exchangeHosts(net, client, gateway);
    net.runUntil(2_000);
    gateway.agent.setTiming(IDLE_TIMING);
    client.agent.setTiming(IDLE_TIMING);
    const start = net.now;
    net.runUntil(start + 100_000);
    const idleChecks = gateway.sent.filter(({ at, transmit }) => at > start + 1 && isRequest(transmit.payload));
    assert.ok(idleChecks.length >= 3 && idleChecks.length <= 5, `${idleChecks.length} idle checks`);

    client.alive = false;
    const goneAt = net.now;
    const reportedAt = net.runUntilTrue(() => gateway.agent.connectionState === 'disconnected', goneAt + 200_000, 500);
    assert.ok(reportedAt !== undefined);
    assert.ok(reportedAt - goneAt >= iceTimeout(IDLE_TIMING) - 25_000 && reportedAt - goneAt <= iceTimeout(IDLE_TIMING) + 25_000);
  });

  test('role conflict: two controlling agents resolve it by tie-breaker when RFC 8445 resolution is on', () => {
    const net = new SimNet(21);
    const a = net.addPeer('a', { role: 'controlling', host: '10.0.0.1', resolveRoleConflicts: true });
    const b = net.addPeer('b', { role: 'controlling', host: '10.0.0.2', resolveRoleConflicts: true });
    net.introduce(a, b);
    exchangeHosts(net, a, b);

    const connectedAt = net.runUntilTrue(() => bothNominated(a, b), 10_000);

    assert.ok(connectedAt !== undefined);
    assert.notEqual(a.agent.controlling, b.agent.controlling);
    assert.equal(pathText(lastNomination(a)!), reversed(pathText(lastNomination(b)!)));
  });

  test('role conflict without resolution (the reference): two controlled agents never nominate', () => {
    const net = new SimNet(22);
    const a = net.addPeer('a', { role: 'controlled', host: '10.0.0.1' });
    const b = net.addPeer('b', { role: 'controlled', host: '10.0.0.2' });
    net.introduce(a, b);
    exchangeHosts(net, a, b);
    net.runUntil(5_000);
    assert.equal(nominations(a).length + nominations(b).length, 0);
  });

  test('pacing: with Ta = 50 ms, checks leave at least 50 ms apart', () => {
    const net = new SimNet(8);
    const client = net.addPeer('client', { role: 'controlling', host: '10.0.0.1', checkPacing: 50 });
    const gateway = net.addPeer('gateway', { role: 'controlled', host: '10.0.0.2' });
    net.introduce(client, gateway);
    client.agent.addLocalHostCandidate(client.host);
    client.agent.addLocalHostCandidate({ address: '10.0.1.1', port: 52625, family: 4 });
    const remotes = [net.addHost(gateway), net.addRelay(gateway, '192.0.2.7')];
    net.trickle(client, remotes);
    net.runUntil(300);
    const times = client.sent.filter(({ transmit }) => isRequest(transmit.payload)).map(({ at }) => at);
    assert.ok(times.length >= 4);
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 50, `${times.join(',')}`);
  });
});

function openPair(seed = 1): { net: SimNet; client: SimPeer; gateway: SimPeer } {
  const net = new SimNet(seed);
  const client = net.addPeer('client', { role: 'controlling', host: '10.0.0.1' });
  const gateway = net.addPeer('gateway', { role: 'controlled', host: '10.0.0.2' });
  net.introduce(client, gateway);
  return { net, client, gateway };
}

function exchangeHosts(net: SimNet, a: SimPeer, b: SimPeer): [Candidate, Candidate] {
  const aHost = net.addHost(a);
  const bHost = net.addHost(b);
  net.trickle(b, [aHost]);
  net.trickle(a, [bHost]);
  return [aHost, bHost];
}

function bothNominated(a: SimPeer, b: SimPeer): boolean {
  return lastNomination(a) !== undefined && lastNomination(b) !== undefined;
}

function reversed(path: string): string {
  const [left, right] = path.split(' -> ');
  return `${right} -> ${left}`;
}

function socketText(addr: { address: string; port: number; family: 4 | 6 }): string {
  return addr.family === 6 ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
}

function viaText(candidate: Candidate): Candidate {
  const parsed = parseCandidate(formatCandidate(candidate));
  assert.ok(typeof parsed !== 'string');
  return parsed;
}

function isRequest(payload: Uint8Array): boolean {
  return payload[0] === 0x00 && payload[1] === 0x01;
}

function hasUseCandidate(payload: Uint8Array): boolean {
  for (let offset = 20; offset + 4 <= payload.length; ) {
    const type = (payload[offset]! << 8) | payload[offset + 1]!;
    const length = (payload[offset + 2]! << 8) | payload[offset + 3]!;
    if (type === 0x0025) return true;
    offset += 4 + ((length + 3) & ~3);
  }
  return false;
}
