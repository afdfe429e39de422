import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import {
  cidrContains,
  cidrContainsCidr,
  cidrContainsV6,
  compareIp,
  formatCidr,
  formatIp,
  formatIpv6,
  hostCidr,
  ipEquals,
  parseCidr,
  parseIp,
  parseIpv4,
  parseIpv6,
} from '../../src/ip/index.ts';
import type { IpAddr } from '../../src/ip/index.ts';
import { numRuns } from './runs.ts';

describe('addresses', () => {
  test('IPv4 is a uint32', () => {
    assert.equal(parseIpv4('10.0.0.1'), 0x0a000001);
    assert.equal(parseIpv4('255.255.255.255'), 0xffffffff);
    for (const bad of ['1.2.3', '1.2.3.4.5', '01.2.3.4', '256.0.0.1', '1.2.3.-1', '', 'a.b.c.d', '1.2.3.4 ']) {
      assert.equal(parseIpv4(bad), undefined, bad);
    }
  });

  test('IPv6 prints as Rust does', () => {
    const cases: [string, string][] = [
      ['::', '::'],
      ['::1', '::1'],
      ['FD00:2021:1111:8000:0:0:0:0', 'fd00:2021:1111:8000::'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      ['1:0:1:1:1:1:1:1', '1:0:1:1:1:1:1:1'],
      ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
      ['::1.2.3.4', '::102:304'],
      ['fd00:2021:1111:8000:100:100:111:0', 'fd00:2021:1111:8000:100:100:111:0'],
    ];
    for (const [input, output] of cases) assert.equal(formatIp(parseIp(input)!), output, input);
  });

  test('malformed IPv6 is refused', () => {
    for (const bad of [':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '::g', '12345::', 'fe80::1%eth0', '1:2:3:4:5:6:7::8']) {
      assert.equal(parseIpv6(bad), undefined, bad);
    }
  });

  test('IPv6 text round-trips and agrees with node:net', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = formatIpv6(bytes);
        assert.ok(isIPv6(text));
        assert.deepEqual(parseIpv6(text), bytes);
      }),
      { numRuns: numRuns(2000) },
    );
    fc.assert(
      fc.property(fc.ipV6(), (text) => {
        const bytes = parseIpv6(text);
        assert.ok(bytes, text);
        assert.deepEqual(parseIpv6(formatIpv6(bytes)), bytes);
      }),
      { numRuns: numRuns(2000) },
    );
  });

  test('ordering puts IPv4 first, then numeric', () => {
    const sorted = ['fd00::1', '10.0.0.2', '::', '10.0.0.1', '2001:db8::1'].map((t) => parseIp(t)!).sort(compareIp);
    assert.deepEqual(sorted.map(formatIp), ['10.0.0.1', '10.0.0.2', '::', '2001:db8::1', 'fd00::1']);
    assert.ok(ipEquals(parseIp('fd00::1')!, parseIp('FD00:0::1')!));
    assert.ok(!ipEquals(parseIp('0.0.0.0')!, parseIp('::')!));
  });
});

describe('CIDR', () => {
  test('parses and prints networks', () => {
    assert.equal(formatCidr(parseCidr('100.64.0.0/11')!), '100.64.0.0/11');
    assert.equal(formatCidr(parseCidr('fd00:2021:1111::/107')!), 'fd00:2021:1111::/107');
    assert.equal(formatCidr(parseCidr('0.0.0.0/0')!), '0.0.0.0/0');
    assert.equal(formatCidr(parseCidr('::/0')!), '::/0');
  });

  test('host bits are refused unless truncating', () => {
    assert.equal(parseCidr('10.0.0.1/8'), undefined);
    assert.equal(formatCidr(parseCidr('10.0.0.1/8', { truncate: true })!), '10.0.0.0/8');
    assert.equal(formatCidr(parseCidr('fd00::1/64', { truncate: true })!), 'fd00::/64');
  });

  test('malformed networks are refused', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/08', 'x/8', '10.0.0.0/-1']) {
      assert.equal(parseCidr(bad), undefined, bad);
    }
  });

  test('containment over both families', () => {
    const tunnel = parseCidr('100.64.0.0/11')!;
    assert.ok(cidrContains(tunnel, parseIp('100.95.255.255')!));
    assert.ok(!cidrContains(tunnel, parseIp('100.96.0.0')!));
    assert.ok(!cidrContains(tunnel, parseIp('::')!));
    const proxies = parseCidr('fd00:2021:1111:8000::/107')!;
    assert.ok(cidrContains(proxies, parseIp('fd00:2021:1111:8000::1f:ffff')!));
    assert.ok(!cidrContains(proxies, parseIp('fd00:2021:1111:8000::20:0')!));
    assert.ok(cidrContainsCidr(parseCidr('10.0.0.0/8')!, parseCidr('10.1.0.0/16')!));
    assert.ok(!cidrContainsCidr(parseCidr('10.1.0.0/16')!, parseCidr('10.0.0.0/8')!));
    assert.ok(cidrContains(parseCidr('0.0.0.0/0')!, parseIp('1.2.3.4')!));
    assert.ok(cidrContains(hostCidr(parseIp('::1')!), parseIp('::1')!));
  });

  test('containment agrees with a bitwise definition', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 128 }), (a, b, length) => {
        const network = parseCidr(`${formatIpv6(a)}/${length}`, { truncate: true })!;
        let expected = true;
        for (let bit = 0; bit < length; bit++) {
          if (((a[bit >> 3]! >> (7 - (bit & 7))) & 1) !== ((b[bit >> 3]! >> (7 - (bit & 7))) & 1)) expected = false;
        }
        assert.equal(cidrContainsV6(network, b, 0), expected);
        assert.equal(cidrContains(network, { family: 6, bytes: b } as IpAddr), expected);
      }),
      { numRuns: numRuns(2000) },
    );
  });
});
