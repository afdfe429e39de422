import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceModel, sameIp, toBigInt, type ModelFilter, type ResourceDef } from './model.ts';

const CLIENT = 'client';
const TUN = { v4: '100.64.0.10', v6: 'fd00:2021:1111::10' };
const GATEWAY_TUN = { v4: '100.64.0.1', v6: 'fd00:2021:1111::1' };
const tcp = (start: number, end: number): ModelFilter => ({ protocol: 'tcp', start, end });

const resources: ResourceDef[] = [
  { id: 'wide', type: 'cidr', address: '10.0.0.0/8' },
  { id: 'narrow', type: 'cidr', address: '10.1.2.0/24' },
  { id: 'host', type: 'cidr', address: '10.1.2.3/32' },
  { id: 'internet', type: 'internet', address: '' },
  { id: 'dns', type: 'dns', address: '*.example.com' },
];

function model(): ReferenceModel {
  return new ReferenceModel(new Map(resources.map((r) => [r.id, r])), GATEWAY_TUN);
}

function verdict(m: ReferenceModel, destination: string, protocol: 'tcp' | 'udp' | 'icmp', port: number, source = TUN.v4): string {
  const v = m.outbound(CLIENT, TUN, source, destination, protocol, port, 0);
  return v.kind === 'allow' && v.translatedTo !== undefined ? `allow->${v.translatedTo}` : v.kind;
}

describe('reference model', () => {
  test('some network containing the address must permit: a subnet gets its supernets\' rules, not the reverse', () => {
    const m = model();
    m.authorize(CLIENT, 'wide', [tcp(80, 80)], undefined, 0);
    m.authorize(CLIENT, 'narrow', [tcp(443, 443)], undefined, 0);
    assert.equal(verdict(m, '10.1.2.9', 'tcp', 80), 'allow');
    assert.equal(verdict(m, '10.1.2.9', 'tcp', 443), 'allow');
    assert.equal(verdict(m, '10.9.9.9', 'tcp', 443), 'deny');
    assert.equal(verdict(m, '10.9.9.9', 'tcp', 80), 'allow');
  });

  test('an empty filter list permits everything; ICMP needs an icmp filter otherwise', () => {
    const m = model();
    m.authorize(CLIENT, 'narrow', [tcp(22, 22)], undefined, 0);
    assert.equal(verdict(m, '10.1.2.9', 'icmp', 0), 'deny');
    m.resourceUpdated('narrow', []);
    assert.equal(verdict(m, '10.1.2.9', 'icmp', 0), 'allow');
    assert.equal(verdict(m, '10.1.2.9', 'udp', 9), 'allow');
  });

  test('the Internet resource permits everything but DNS proxy IPs and the private, link-local, loopback, CGNAT, multicast ranges', () => {
    const m = model();
    m.authorize(CLIENT, 'internet', [], undefined, 0);
    m.authorize(CLIENT, 'wide', [], undefined, 0);
    assert.equal(verdict(m, '8.8.8.8', 'udp', 53), 'allow');
    assert.equal(verdict(m, '100.96.0.1', 'udp', 53), 'deny');
    for (const address of ['10.1.2.3', '172.16.0.1', '192.168.0.1', '127.0.0.1', '169.254.169.254', '240.0.0.1', '255.255.255.255']) {
      assert.equal(verdict(m, address, 'udp', 53), 'unreachable', address);
    }
    for (const address of ['fe80::1', '::1', '::ffff:8.8.8.8', 'fd10::1']) assert.equal(verdict(m, address, 'udp', 53, TUN.v6), 'unreachable', address);
    assert.equal(verdict(m, '224.0.0.251', 'udp', 5353), 'drop', 'multicast goes nowhere');
    assert.equal(verdict(m, 'ff02::fb', 'udp', 5353, TUN.v6), 'drop');
  });

  test('spoofed sources are denied; the gateway tunnel address serves only DNS on 53535 and echo; other clients are off limits', () => {
    const m = model();
    assert.equal(verdict(m, GATEWAY_TUN.v4, 'udp', 53535), 'drop', 'an unknown client');
    m.authorize(CLIENT, 'host', [tcp(1, 1)], undefined, 0);
    m.authorize(CLIENT, 'internet', [], undefined, 0);
    assert.equal(verdict(m, GATEWAY_TUN.v4, 'udp', 53535), 'allow');
    assert.equal(verdict(m, GATEWAY_TUN.v4, 'tcp', 53535), 'allow');
    assert.equal(verdict(m, GATEWAY_TUN.v4, 'icmp', 0), 'allow');
    assert.equal(verdict(m, GATEWAY_TUN.v4, 'udp', 53), 'deny');
    assert.equal(verdict(m, '100.64.0.11', 'udp', 53), 'deny', 'no hair-pinning');
    assert.equal(verdict(m, '10.1.2.3', 'tcp', 1, '100.64.0.11'), 'deny');
    assert.equal(m.inbound(CLIENT, '100.64.0.11', 'udp', 53, 0), 'deny');
  });

  test('proxy IPs map round-robin per family onto the sorted answers; without an address of its family, unreachable', () => {
    const m = model();
    m.authorize(CLIENT, 'dns', [], undefined, 0);
    m.dnsSetUp(CLIENT, 'dns', 'a.example.com', ['100.96.0.2', '100.96.0.1', 'fd00:2021:1111:8000::1'], ['172.16.3.4', '10.1.2.3'], true, 0);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'allow->10.1.2.3');
    assert.equal(verdict(m, '100.96.0.2', 'tcp', 80), 'allow->172.16.3.4');
    assert.equal(verdict(m, 'fd00:2021:1111:8000::1', 'tcp', 80, TUN.v6), 'unreachable');
  });

  test('a resolved DNS address grants nothing to CIDR resources (1.6.0)', () => {
    const m = model();
    m.authorize(CLIENT, 'dns', [tcp(8080, 8080)], undefined, 0);
    m.authorize(CLIENT, 'host', [tcp(22, 22)], undefined, 0);
    m.dnsSetUp(CLIENT, 'dns', 'a.example.com', ['100.96.0.1'], ['10.1.2.3'], true, 0);
    assert.equal(verdict(m, '10.1.2.3', 'tcp', 8080), 'deny');
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 8080), 'allow->10.1.2.3');
  });

  test("a proxy IP announced for another name resets every translation; a name's proxies are replaced", () => {
    const m = model();
    m.authorize(CLIENT, 'dns', [], undefined, 0);
    m.dnsSetUp(CLIENT, 'dns', 'a.example.com', ['100.96.0.1', '100.96.0.2'], ['10.1.2.3'], true, 0);
    m.dnsSetUp(CLIENT, 'dns', 'b.example.com', ['100.96.0.3'], ['192.168.7.1'], true, 0);
    m.dnsSetUp(CLIENT, 'dns', 'c.example.com', ['100.96.0.3'], ['10.9.9.9'], false, 0);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'deny', 'reset, even though c.example.com failed');
    m.dnsSetUp(CLIENT, 'dns', 'a.example.com', ['100.96.0.1', '100.96.0.2'], ['10.1.2.3'], true, 0);
    m.dnsSetUp(CLIENT, 'dns', 'a.example.com', ['100.96.0.4'], ['10.1.2.3'], true, 0);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'deny', 'replaced');
    assert.equal(verdict(m, '100.96.0.4', 'tcp', 80), 'allow->10.1.2.3');
  });

  test('a failed connection changes nothing: the grants stay', () => {
    const m = model();
    m.authorize(CLIENT, 'wide', [], undefined, 0);
    m.expire(1_000_000);
    assert.equal(verdict(m, '10.1.1.1', 'udp', 1), 'allow');
  });

  test('expiry is certain only a little after its deadline; until then the verdict is unknown', () => {
    const m = model();
    m.authorize(CLIENT, 'wide', [], 10_000, 0);
    assert.equal(m.outbound(CLIENT, TUN, TUN.v4, '10.1.1.1', 'udp', 1, 0).kind, 'allow');
    assert.equal(m.outbound(CLIENT, TUN, TUN.v4, '10.1.1.1', 'udp', 1, 9_000).kind, 'unknown');
    m.expire(11_000);
    assert.equal(m.outbound(CLIENT, TUN, TUN.v4, '10.1.1.1', 'udp', 1, 11_000).kind, 'unknown');
    m.expire(11_100);
    assert.equal(m.outbound(CLIENT, TUN, TUN.v4, '10.1.1.1', 'udp', 1, 11_100).kind, 'drop', 'the client is gone');
  });

  test('re-authorizing past an expiry makes DNS translations uncertain (the gateway may have dropped the client)', () => {
    const m = model();
    m.authorize(CLIENT, 'dns', [], 10_000, 0);
    m.dnsSetUp(CLIENT, 'dns', 'a.example.com', ['100.96.0.1'], ['10.1.2.3'], true, 0);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'allow->10.1.2.3');
    m.authorize(CLIENT, 'dns', [], undefined, 10_000);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'unknown');
  });

  test('an unanswered AssignedIps may still arrive: a later grant or a reset makes its proxies uncertain until it certainly cannot', () => {
    const m = model();
    m.dnsMayArrive(CLIENT, 'a.example.com', ['100.96.0.1'], 120_000);
    m.authorize(CLIENT, 'dns', [], undefined, 1_000);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'unknown', 'the client held it for a handshake');
    m.dnsSetUp(CLIENT, 'dns', 'b.example.com', ['100.96.0.1'], ['10.9.9.9'], true, 2_000);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'unknown', 'a reset does not outrun it');
    m.forget(CLIENT);
    m.authorize(CLIENT, 'dns', [], undefined, 120_000);
    assert.equal(verdict(m, '100.96.0.1', 'tcp', 80), 'deny', 'too late to arrive');
  });

  test('address arithmetic', () => {
    assert.equal(toBigInt('10.1.2.3'), 0x0a010203n);
    assert.equal(toBigInt('fd00::1'), (0xfd00n << 112n) | 1n);
    assert.ok(sameIp('fd00:2021:1111::10', 'fd00:2021:1111:0:0:0:0:10'));
    assert.ok(!sameIp('10.0.0.1', '::a00:1'));
  });
});
