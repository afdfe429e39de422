import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpPacket, PrefixTable, cidrContains, cidrEquals, formatCidr, makeUdpPacket, parseCidr, parseIp } from '../../src/ip/index.ts';
import type { Cidr, IpAddr } from '../../src/ip/index.ts';
import { numRuns } from './runs.ts';

describe('longest-prefix-match table', () => {
  test('the most specific network wins', () => {
    const table = new PrefixTable<string>();
    table.insert(cidr('10.0.0.0/8'), 'wide');
    table.insert(cidr('10.1.0.0/16'), 'narrow');
    table.insert(cidr('10.1.2.3/32'), 'host');
    table.insert(cidr('fd00:2021:1111::/107'), 'tunnel');
    table.insert(cidr('fd00:2021:1111::1/128'), 'client');
    assert.equal(table.lookup(ip('10.200.0.1')), 'wide');
    assert.equal(table.lookup(ip('10.1.9.9')), 'narrow');
    assert.equal(table.lookup(ip('10.1.2.3')), 'host');
    assert.equal(table.lookup(ip('11.0.0.1')), undefined);
    assert.equal(table.lookup(ip('fd00:2021:1111::1')), 'client');
    assert.equal(table.lookup(ip('fd00:2021:1111::2')), 'tunnel');
    assert.equal(table.lookup(ip('fd00:2021:1111:8000::')), undefined);
    assert.equal(table.size, 5);
  });

  test('IPv4 and IPv6 default routes stay apart', () => {
    const table = new PrefixTable<number>();
    table.insert(cidr('0.0.0.0/0'), 4);
    assert.equal(table.lookup(ip('::1')), undefined);
    table.insert(cidr('::/0'), 6);
    assert.equal(table.lookup(ip('::1')), 6);
    assert.equal(table.lookup(ip('1.2.3.4')), 4);
  });

  test('lookups read IPv6 addresses in place', () => {
    const table = new PrefixTable<string>();
    table.insert(cidr('2001:db8::/32'), 'doc');
    const packet = new Uint8Array(40);
    packet.set(ip6bytes('2001:db8::1'), 24);
    assert.equal(table.lookupV6(packet, 24), 'doc');
    assert.equal(table.lookupV4(0x0a000001), undefined);
  });

  test('packets are looked up by destination or source', () => {
    const table = new PrefixTable<string>();
    table.insert(cidr('10.0.0.0/8'), 'resource v4');
    table.insert(cidr('100.64.0.0/11'), 'client v4');
    table.insert(cidr('2001:db8::/32'), 'resource v6');
    table.insert(cidr('fd00:2021:1111::/107'), 'client v6');
    const hello = new Uint8Array(5);
    const v4 = new IpPacket();
    assert.equal(v4.parse(makeUdpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 1, 2, hello)), undefined);
    assert.equal(table.lookupDestination(v4), 'resource v4');
    assert.equal(table.lookupSource(v4), 'client v4');
    const v6 = new IpPacket();
    assert.equal(v6.parse(makeUdpPacket(ip('fd00:2021:1111::1'), ip('2001:db8::1'), 1, 2, hello)), undefined);
    assert.equal(table.lookupDestination(v6), 'resource v6');
    assert.equal(table.lookupSource(v6), 'client v6');
  });

  test('insert replaces, get is exact, remove deletes', () => {
    const table = new PrefixTable<string>();
    table.insert(cidr('10.0.0.0/8'), 'a');
    table.insert(cidr('10.0.0.0/8'), 'b');
    table.insert(cidr('fd00::/8'), 'c');
    table.insert(cidr('fd00::/8'), 'd');
    assert.equal(table.size, 2);
    assert.equal(table.get(cidr('10.0.0.0/8')), 'b');
    assert.equal(table.get(cidr('10.0.0.0/9')), undefined);
    assert.equal(table.get(cidr('fd00::/8')), 'd');
    assert.equal(table.match(ip('fd12::1'))?.value, 'd');
    assert.equal(formatCidr(table.match(ip('fd12::1'))!.cidr), 'fd00::/8');
    assert.ok(table.remove(cidr('10.0.0.0/8')));
    assert.ok(!table.remove(cidr('10.0.0.0/8')));
    assert.ok(table.remove(cidr('fd00::/8')));
    assert.equal(table.size, 0);
    assert.equal(table.lookup(ip('10.0.0.1')), undefined);
    assert.deepEqual([...table.entries()], []);
  });

  test('agrees with a linear scan under random inserts, removes, lookups and finds', () => {
    const v4Net = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 })).map(([a, l]) => {
      // cluster addresses so that networks overlap often
      const addr = ((a & 0xff0000ff) | 0x0a000000) >>> 0;
      return parseCidr(`${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${l}`, { truncate: true })!;
    });
    const v6Net = fc.tuple(fc.uint8Array({ minLength: 2, maxLength: 2 }), fc.integer({ min: 0, max: 128 })).map(([b, l]) => {
      const bytes = new Uint8Array(16);
      bytes[0] = 0xfd;
      bytes[15] = b[0]!;
      bytes[7] = b[1]! & 3;
      return parseCidr(`${fmt6(bytes)}/${l}`, { truncate: true })!;
    });
    const net = fc.oneof(v4Net, v6Net);
    const op = fc.oneof(
      fc.record({ kind: fc.constant('insert' as const), net, value: fc.integer() }),
      fc.record({ kind: fc.constant('remove' as const), net }),
      fc.record({ kind: fc.constant('lookup' as const), net }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const table = new PrefixTable<number>();
        const slow: { cidr: Cidr; value: number }[] = [];
        for (const o of ops) {
          if (o.kind === 'insert') {
            table.insert(o.net, o.value);
            const existing = slow.find((e) => cidrEquals(e.cidr, o.net));
            if (existing) existing.value = o.value;
            else slow.push({ cidr: o.net, value: o.value });
          } else if (o.kind === 'remove') {
            const index = slow.findIndex((e) => cidrEquals(e.cidr, o.net));
            assert.equal(table.remove(o.net), index >= 0);
            if (index >= 0) slow.splice(index, 1);
          } else {
            const address = o.net.address;
            let best: { cidr: Cidr; value: number } | undefined;
            for (const e of slow) {
              if (cidrContains(e.cidr, address) && (best === undefined || e.cidr.prefixLength > best.cidr.prefixLength)) best = e;
            }
            assert.equal(table.lookup(address), best?.value);
            let bestEven: { cidr: Cidr; value: number } | undefined;
            for (const e of slow) {
              if (e.value % 2 !== 0 || !cidrContains(e.cidr, address)) continue;
              if (bestEven === undefined || e.cidr.prefixLength > bestEven.cidr.prefixLength) bestEven = e;
            }
            const found = address.family === 4 ? table.findV4(address.value, isEven, undefined) : table.findV6(address.bytes, 0, isEven, undefined);
            assert.equal(found, bestEven?.value, 'find: the longest network whose value is accepted');
          }
          assert.equal(table.size, slow.length);
          if (o.kind !== 'lookup') {
            assert.equal(table.get(o.net), slow.find((e) => cidrEquals(e.cidr, o.net))?.value);
            const listed = [...table.entries()].map(([c, v]) => `${formatCidr(c)}=${v}`).sort();
            assert.deepEqual(listed, slow.map((e) => `${formatCidr(e.cidr)}=${e.value}`).sort());
          }
        }
      }),
      { numRuns: numRuns(500) },
    );
  });
});

function isEven(value: number): boolean {
  return value % 2 === 0;
}

function cidr(text: string): Cidr {
  const parsed = parseCidr(text);
  assert.ok(parsed, text);
  return parsed;
}

function ip(text: string): IpAddr {
  const parsed = parseIp(text);
  assert.ok(parsed, text);
  return parsed;
}

function ip6bytes(text: string): Uint8Array {
  const parsed = ip(text);
  assert.equal(parsed.family, 6);
  return parsed.family === 6 ? parsed.bytes : new Uint8Array(16);
}

function fmt6(bytes: Uint8Array): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return words.join(':');
}
