import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientOnGateway } from '../../src/gateway/client.ts';
import type { Resource } from '../../src/gateway/client.ts';
import { IpPacket, parseCidr } from '../../src/ip/index.ts';
import { ip, udp } from './support.ts';

function client(id: string, v4: string, v6: string): ClientOnGateway {
  return new ClientOnGateway(id, ip(v4), ip(v6), ip('100.64.0.1'), ip('fd00:2021:1111::1'), 0);
}

function cidrResource(id: string, network: string): Resource {
  return { type: 'cidr', id, network: parseCidr(network)!, filters: [], expiresAt: undefined };
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
