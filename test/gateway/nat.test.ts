import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { L4, NatTable, RealIpIds } from '../../src/gateway/nat.ts';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import { assignedIps, ip, recordingLogger, udp } from './support.ts';

const PROXY = ip('100.96.0.1');
const REAL = ip('10.0.0.1');

describe('NAT table', () => {
  test('keeps the port when free, else takes the next one up, wrapping to 1', () => {
    const nat = new NatTable();
    const proxies = [1, 2, 3].map((n) => ip(`100.96.0.${n}`));
    const v = (proxyIndex: number, port: number): number => nat.outgoing(L4.Udp, port, proxies[proxyIndex]!, (proxies[proxyIndex] as { value: number }).value, REAL, 0x0a000001, false, 0);
    assert.equal(v(0, 65535), 65535);
    assert.equal(v(1, 65535), 1, 'wraps to 1, never 0');
    assert.equal(v(2, 65535), 2);
    assert.equal(v(0, 65535), 65535, 'an existing mapping is reused');
  });

  test('exhaustion is an error value, not an exception', () => {
    const nat = new NatTable();
    for (let port = 1; port <= 65535; port++) {
      assert.ok(nat.outgoing(L4.Icmp, port, PROXY, 0x64600001, REAL, 0x0a000001, false, 0) >= 0);
    }
    const other = ip('100.96.0.2');
    assert.equal(nat.outgoing(L4.Icmp, 5, other, 0x64600002, REAL, 0x0a000001, false, 0), -1);
  });

  test('a packet out and its reply after a random delay: translated iff the delay is below the TTL', () => {
    const protocols = [
      { l4: L4.Tcp, ttl: 7200_000 },
      { l4: L4.Udp, ttl: 120_000 },
      { l4: L4.Icmp, ttl: 120_000 },
    ];
    fc.assert(
      fc.property(fc.constantFrom(...protocols), fc.integer({ min: 0, max: 65535 }), fc.oneof(fc.integer({ min: 0, max: 8_000_000 }), fc.constantFrom(119_999, 120_000, 7_199_999, 7_200_000)), ({ l4, ttl }, port, delay) => {
        const nat = new NatTable();
        const outside = nat.outgoing(l4, port, PROXY, 0x64600001, REAL, 0x0a000001, false, 0);
        nat.collectGarbage(delay);
        const key = (4 * 0 + l4) * 65536 + outside;
        const session = nat.lookupOutside(key * 0x1_0000_0000 + 0x0a000001);
        assert.equal(session !== undefined, delay < ttl);
        assert.equal(nat.isExpired(key * 0x1_0000_0000 + 0x0a000001), delay >= ttl);
      }),
      { numRuns: 300 },
    );
  });

  test('IPv6 real IPs get stable small ids', () => {
    const ids = new RealIpIds();
    const a = ids.idOf(ip('2001:db8::1'));
    const b = ids.idOf(ip('2001:db8::2'));
    assert.notEqual(a, b);
    assert.equal(ids.idOf(ip('2001:db8::1')), a);
    assert.equal(ids.lookupV6((ip('2001:db8::2') as { bytes: Uint8Array }).bytes, 0), b);
    assert.equal(ids.lookupV6((ip('2001:db8::3') as { bytes: Uint8Array }).bytes, 0), -1);
  });
});

describe('NAT through the gateway', () => {
  const client = { id: 'aaaaaaaa-0000-0000-0000-000000000001', ipv4: ip('100.64.0.10'), ipv6: ip('fd00:2021:1111::10') };
  const other = { id: 'bbbbbbbb-0000-0000-0000-000000000002', ipv4: ip('100.64.0.11'), ipv6: ip('fd00:2021:1111::11') };
  const dns = { type: 'dns' as const, id: 'dddddddd-0000-0000-0000-000000000000', address: '**.corp', filters: [] };

  function assign(state: GatewayState, who: { id: string }, proxies: string[], resolved: string[]): void {
    state.handleTunnelPacket(who.id, assignedIps(dns.id, 'a.corp', proxies), 0);
    while (state.pollEvent() !== undefined);
    state.handleDnsResolution('a.corp', resolved.map(ip), 0);
    state.pollClientPacket();
  }

  test('sessions are per client: the same port from two clients maps back to each', () => {
    const state = new GatewayState({ logger: recordingLogger() });
    state.init({ ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') }, undefined, 0);
    state.authorizeFlow(client, dns, undefined, 0);
    state.authorizeFlow(other, dns, undefined, 0);
    assign(state, client, ['100.96.0.1'], ['10.0.0.1']);
    assign(state, other, ['100.96.0.1'], ['10.0.0.1']);
    assert.equal(state.handleTunnelPacket(client.id, udp('100.64.0.10', 5000, '100.96.0.1', 53), 0).action, TunnelAction.ToTun);
    assert.equal(state.handleTunnelPacket(other.id, udp('100.64.0.11', 5000, '100.96.0.1', 53), 0).action, TunnelAction.ToTun);
    const toOther = state.handleTunPacket(udp('10.0.0.1', 53, '100.64.0.11', 5000), 0);
    assert.deepEqual([toOther.action, toOther.clientId, ...toOther.packet.subarray(12, 16)], [TunAction.ToClient, other.id, 100, 96, 0, 1]);
  });

  test('many concurrent sessions all translate back to their own proxy and port', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 65535 })), { minLength: 1, maxLength: 30, selector: ([p, s]) => `${p}:${s}` }), (flows) => {
        const state = new GatewayState({ logger: recordingLogger() });
        state.init({ ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') }, undefined, 0);
        state.authorizeFlow(client, dns, undefined, 0);
        assign(state, client, ['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4'], ['10.0.0.1', '10.0.0.2']);
        const outside = flows.map(([proxy, sport]) => {
          const verdict = state.handleTunnelPacket(client.id, udp('100.64.0.10', sport, `100.96.0.${proxy}`, 53), 0);
          assert.equal(verdict.action, TunnelAction.ToTun);
          return { real: [...verdict.packet.subarray(16, 20)].join('.'), port: (verdict.packet[20]! << 8) | verdict.packet[21]! };
        });
        flows.forEach(([proxy, sport], i) => {
          const back = state.handleTunPacket(udp(outside[i]!.real, 53, '100.64.0.10', outside[i]!.port), 0);
          assert.equal(back.action, TunAction.ToClient);
          assert.deepEqual([...back.packet.subarray(12, 16)], [100, 96, 0, proxy]);
          assert.equal((back.packet[22]! << 8) | back.packet[23]!, sport);
        });
      }),
      { numRuns: 100 },
    );
  });
});
