import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientOnGateway } from '../../src/gateway/client.ts';
import type { Resource } from '../../src/gateway/client.ts';
import { IpPacket, parseCidr } from '../../src/ip/index.ts';
import type { Filter } from '../../src/gateway/types.ts';
import { icmpEcho, ip, tcp, udp } from './support.ts';

function client(id: string, v4: string, v6: string): ClientOnGateway {
  return new ClientOnGateway(id, ip(v4), ip(v6), ip('100.64.0.1'), ip('fd00:2021:1111::1'), 0);
}

function cidrResource(id: string, network: string): Resource {
  return { type: 'cidr', id, network: parseCidr(network)!, filters: [], expiresAt: undefined };
}

function filtered(id: string, network: string, filters: readonly Filter[]): Resource {
  return { type: 'cidr', id, network: parseCidr(network)!, filters, expiresAt: undefined };
}

function parsed(bytes: Uint8Array): IpPacket {
  const packet = new IpPacket();
  assert.equal(packet.parse(bytes), undefined);
  return packet;
}

describe('ClientOnGateway', () => {
  test('clients without DNS resources share one empty plan and NAT table; a session opens the client its own', () => {
    const a = client('a', '100.64.0.2', 'fd00:2021:1111::2');
    const b = client('b', '100.64.0.3', 'fd00:2021:1111::3');
    a.addResource(cidrResource('r1', '10.0.0.0/24'));
    b.addResource(cidrResource('r1', '10.0.0.0/24'));
    assert.equal(a.nat, b.nat);
    assert.equal(a.translations, b.translations);
    const own = a.openNat();
    assert.notEqual(own, b.nat);
    assert.equal(a.openNat(), own);
    assert.equal(b.nat.size, 0);
    a.resetNat();
    assert.equal(a.nat, b.nat);
  });

  test('holds one resource, then several, then one again, in the order they came', () => {
    const c = client('c', '100.64.0.2', 'fd00:2021:1111::2');
    assert.ok(c.isEmpty);
    assert.equal(c.addResource(cidrResource('r1', '10.0.0.0/24')), 'added');
    assert.equal(c.addResource(cidrResource('r2', '10.0.1.0/24')), 'added');
    assert.equal(c.addResource(cidrResource('r3', '10.0.2.0/24')), 'added');
    assert.deepEqual(c.resourceIds(), ['r1', 'r2', 'r3']);
    assert.equal(c.removeResource('r1')?.id, 'r1');
    assert.equal(c.removeResource('r3')?.id, 'r3');
    assert.deepEqual(c.resourceIds(), ['r2']);
    assert.ok(c.hasResource('r2'));
    assert.ok(!c.hasResource('r1'));
    const outbound = parsed(udp('100.64.0.2', 1000, '10.0.1.9', 53));
    assert.ok(c.permitsOutbound(outbound, false));
    assert.ok(!c.permitsOutbound(parsed(udp('100.64.0.2', 1000, '10.0.0.9', 53)), false));
    assert.deepEqual(c.retainResources(new Set()).map((r) => r.id), ['r2']);
    assert.ok(c.isEmpty);
    assert.ok(!c.permitsOutbound(outbound, false));
  });

  test('one network kept in the client, two in the table, one again in the client: the same answers throughout', () => {
    const c = client('c', '100.64.0.2', 'fd00:2021:1111::2');
    const outbound = (bytes: Uint8Array) => {
      const packet = parsed(bytes);
      return c.permitsOutbound(packet, false) ? c.outboundResourceOf(packet, false) : 'denied';
    };
    const inbound = (bytes: Uint8Array) => {
      const packet = parsed(bytes);
      return c.permitsInbound(packet, false) ? c.inboundResourceOf(packet, false) : 'denied';
    };
    const web = tcp('100.64.0.2', 40000, '10.0.5.5', 80);
    const dns = udp('100.64.0.2', 40000, '10.0.5.5', 53);
    const dnsElsewhere = udp('100.64.0.2', 40000, '10.0.6.1', 53);
    const dnsReply = udp('10.0.5.5', 53, '100.64.0.2', 40000);
    const ping = icmpEcho('100.64.0.2', '10.0.5.5', 1, 1);
    assert.ok(!c.holdsSoleNetwork);

    c.addResource(filtered('wide', '10.0.0.0/16', [{ protocol: 'tcp', portRangeStart: 80, portRangeEnd: 80 }]));
    assert.ok(c.holdsSoleNetwork);
    assert.equal(outbound(web), 'wide');
    assert.equal(outbound(dns), 'denied');
    assert.equal(outbound(tcp('100.64.0.2', 40000, '10.1.0.1', 80)), 'denied');
    assert.equal(outbound(tcp('fd00:2021:1111::2', 40000, 'fd00::1', 80)), 'denied');
    assert.equal(inbound(tcp('10.0.5.5', 80, '100.64.0.2', 40000)), 'wide');
    assert.equal(inbound(dnsReply), 'denied');

    c.addResource(filtered('narrow', '10.0.5.0/24', [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }]));
    assert.ok(!c.holdsSoleNetwork);
    assert.equal(outbound(web), 'wide', 'the longer network does not permit it; the shorter one does');
    assert.equal(outbound(dns), 'narrow');
    assert.equal(outbound(dnsElsewhere), 'denied');
    assert.equal(inbound(dnsReply), 'narrow');

    c.removeResource('wide');
    assert.ok(c.holdsSoleNetwork);
    assert.equal(outbound(web), 'denied');
    assert.equal(outbound(dns), 'narrow');
    assert.equal(outbound(dnsElsewhere), 'denied');
    assert.equal(inbound(dnsReply), 'narrow');

    c.addResource(filtered('pingable', '10.0.5.0/24', [{ protocol: 'icmp' }]));
    assert.ok(c.holdsSoleNetwork, 'one network granted by two resources is still one network');
    assert.equal(outbound(dns), 'narrow');
    assert.equal(outbound(ping), 'pingable');
    assert.equal(outbound(web), 'denied');

    c.updateFilters('narrow', 'cidr', []);
    assert.equal(outbound(web), 'narrow');

    c.removeResource('narrow');
    c.removeResource('pingable');
    assert.ok(!c.holdsSoleNetwork);
    assert.equal(outbound(ping), 'denied');
    assert.equal(outbound(dns), 'denied');
  });

  test('one IPv6 network kept in the client matches its prefix only, and IPv4 not at all', () => {
    const c = client('c', '100.64.0.2', 'fd00:2021:1111::2');
    c.addResource(filtered('v6', 'fd00:aaaa:bbb8::/45', [{ protocol: 'tcp', portRangeStart: 443, portRangeEnd: 443 }]));
    assert.ok(c.holdsSoleNetwork);
    const permits = (dst: string, port: number) => c.permitsOutbound(parsed(tcp('fd00:2021:1111::2', 40000, dst, port)), false);
    assert.ok(permits('fd00:aaaa:bbb8::1', 443));
    assert.ok(permits('fd00:aaaa:bbbf:ffff::1', 443));
    assert.ok(!permits('fd00:aaaa:bbb7:ffff::1', 443));
    assert.ok(!permits('fd00:aaaa:bbc0::1', 443));
    assert.ok(!permits('fd00:aaaa:bbb8::1', 80));
    assert.ok(!c.permitsOutbound(parsed(tcp('100.64.0.2', 40000, '10.0.0.1', 443)), false));
    c.addResource(filtered('v4', '0.0.0.0/0', []));
    assert.ok(!c.holdsSoleNetwork);
    assert.ok(permits('fd00:aaaa:bbb8::1', 443));
    assert.ok(c.permitsOutbound(parsed(tcp('100.64.0.2', 40000, '10.0.0.1', 443)), false));
    c.removeResource('v6');
    assert.ok(c.holdsSoleNetwork);
    assert.ok(!permits('fd00:aaaa:bbb8::1', 443));
    assert.ok(c.permitsOutbound(parsed(tcp('100.64.0.2', 40000, '203.0.113.1', 1)), false));
  });

  test('knows its tunnel addresses in packets of either family', () => {
    const c = client('c', '100.64.0.2', 'fd00:2021:1111::2');
    assert.ok(c.sentFromTunnelAddress(parsed(udp('100.64.0.2', 1, '10.0.0.1', 2))));
    assert.ok(!c.sentFromTunnelAddress(parsed(udp('100.64.0.3', 1, '10.0.0.1', 2))));
    assert.ok(c.sentToTunnelAddress(parsed(udp('10.0.0.1', 2, '100.64.0.2', 1))));
    assert.ok(c.sentFromTunnelAddress(parsed(udp('fd00:2021:1111::2', 1, '2001:db8::1', 2))));
    assert.ok(!c.sentFromTunnelAddress(parsed(udp('fd00:2021:1111::2:2', 1, '2001:db8::1', 2))));
    assert.ok(c.sentToTunnelAddress(parsed(udp('2001:db8::1', 2, 'fd00:2021:1111::2', 1))));
    assert.ok(!c.sentToTunnelAddress(parsed(udp('2001:db8::1', 2, 'fd00:2021:1111::3', 1))));
  });

  test('p2p control packets: a burst of 256, then 32 a second', () => {
    const c = client('c', '100.64.0.2', 'fd00:2021:1111::2');
    for (let i = 0; i < 256; i++) assert.ok(c.takeControlPacket(0));
    assert.ok(!c.takeControlPacket(0));
    assert.ok(!c.takeControlPacket(31));
    assert.ok(c.takeControlPacket(32));
    assert.ok(!c.takeControlPacket(32));
    let taken = 0;
    while (c.takeControlPacket(1032)) taken++;
    assert.equal(taken, 32);
  });

  test('host-route keys: the first of each family, and any later ones', () => {
    const c = client('c', '100.64.0.2', 'fd00:2021:1111::2');
    assert.deepEqual(c.ipKeys(4), []);
    c.addIpKey(4, 7);
    c.addIpKey(4, 7);
    c.addIpKey(6, 9);
    c.addIpKey(4, 8);
    assert.deepEqual(c.ipKeys(4), [7, 8]);
    assert.deepEqual(c.ipKeys(6), [9]);
  });
});
