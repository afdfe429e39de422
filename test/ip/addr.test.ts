import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6, SocketAddress } from 'node:net';
import fc from 'fast-check';
import {
  cidrContains,
  cidrContainsCidr,
  cidrContainsV6,
  canonicalSocketIp,
  compareIp,
  formatCidr,
  formatIp,
  formatIpv6,
  formatIpv6InetNtop,
  hostCidr,
  ipEquals,
  parseCidr,
  parseIp,
  parseIpv4,
  parseIpv6,
  parseIpv6Into,
  writeIpText,
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

describe('IPv6 text forms: Rust Display and inet_ntop', () => {
  // [address, Rust's Ipv6Addr Display, glibc/libuv inet_ntop (= Node's rinfo.address)]
  const table: [string, string, string][] = [
    ['0:0:0:0:0:0:0:0', '::', '::'],
    ['0:0:0:0:0:0:0:1', '::1', '::1'],
    ['0:0:0:0:0:0:0:2', '::2', '::2'],
    ['1:0:0:0:0:0:0:0', '1::', '1::'],
    ['0:0:0:0:0:ffff:102:304', '::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['0:0:0:0:0:ffff:0:0', '::ffff:0.0.0.0', '::ffff:0.0.0.0'],
    ['0:0:0:0:0:ffff:0:1', '::ffff:0.0.0.1', '::ffff:0.0.0.1'],
    ['0:0:0:0:0:0:102:304', '::102:304', '::1.2.3.4'],
    ['0:0:0:0:0:0:2:0', '::2:0', '::0.2.0.0'],
    ['0:0:0:0:0:0:ffff:ffff', '::ffff:ffff', '::255.255.255.255'],
    ['0:0:0:0:ffff:0:0:1', '::ffff:0:0:1', '::ffff:0:0:1'],
    ['0:0:0:0:0:1:0:0', '::1:0:0', '::1:0:0'],
    ['0:0:0:0:1:ffff:102:304', '::1:ffff:102:304', '::1:ffff:102:304'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4', '1::2:0:0:3:4'],
    ['1:0:0:1:1:0:0:1', '1::1:1:0:0:1', '1::1:1:0:0:1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3', '1:0:0:2::3'],
    ['1:0:1:1:1:1:1:1', '1:0:1:1:1:1:1:1', '1:0:1:1:1:1:1:1'],
    ['1:1:1:1:1:1:1:0', '1:1:1:1:1:1:1:0', '1:1:1:1:1:1:1:0'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', '2001:db8::1:0:0:1'],
    ['FD00:2021:1111:8000:0:0:0:0', 'fd00:2021:1111:8000::', 'fd00:2021:1111:8000::'],
  ];

  test('each form on the cases where the two could differ', () => {
    for (const [input, rust, inetNtop] of table) {
      const bytes = parseIpv6(input)!;
      assert.equal(formatIpv6(bytes), rust, input);
      assert.equal(formatIpv6InetNtop(bytes), inetNtop, input);
      assert.equal(new SocketAddress({ address: input, family: 'ipv6' }).address, inetNtop, `libuv on ${input}`);
    }
  });

  test('the forms differ exactly on IPv4-compatible addresses', () => {
    fc.assert(
      fc.property(sparseIpv6(), (bytes) => {
        const ipv4Compatible = bytes.subarray(0, 12).every((b) => b === 0) && (bytes[12]! | bytes[13]!) !== 0;
        assert.equal(formatIpv6(bytes) !== formatIpv6InetNtop(bytes), ipv4Compatible);
      }),
      { numRuns: numRuns(2000) },
    );
  });

  test('inet_ntop form agrees with libuv, Rust form with the WHATWG URL serializer outside IPv4-mapped', () => {
    fc.assert(
      fc.property(fc.oneof(sparseIpv6(), fc.uint8Array({ minLength: 16, maxLength: 16 })), fc.nat(8), (bytes, offset) => {
        const buffer = new Uint8Array(offset + 16);
        buffer.set(bytes, offset);
        const rust = formatIpv6(buffer, offset);
        assert.equal(formatIpv6InetNtop(buffer, offset), new SocketAddress({ address: rust, family: 'ipv6' }).address);
        if (!rust.includes('.')) assert.equal(rust, new URL(`http://[${rust}]/`).hostname.slice(1, -1));
        assert.deepEqual(parseIpv6(formatIpv6InetNtop(buffer, offset)), bytes);
      }),
      { numRuns: numRuns(2000) },
    );
  });

  test('parsing into a buffer writes at the offset, or nothing', () => {
    const target = new Uint8Array(20).fill(0xaa);
    assert.equal(parseIpv6Into('1:0:2::ffff:1.2.3.4', target, 2), true);
    assert.deepEqual([...target], [0xaa, 0xaa, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0xaa, 0xaa]);
    for (const bad of ['1.2.3.4::', '::01.2.3.4', 'fe80::1%eth0', '1::2::3', '[::1]']) {
      const untouched = new Uint8Array(16).fill(0xaa);
      assert.equal(parseIpv6Into(bad, untouched, 0), false, bad);
      assert.ok(untouched.every((b) => b === 0xaa), bad);
    }
  });

  test('socket address text is written by family, ignoring an IPv6 zone', () => {
    const target = new Uint8Array(18).fill(0xaa);
    assert.equal(writeIpText('10.0.0.1', 4, target, 1), true);
    assert.deepEqual([...target.subarray(0, 6)], [0xaa, 10, 0, 0, 1, 0xaa]);
    assert.equal(writeIpText('fe80::1%eth0', 6, target, 2), true);
    assert.equal(formatIpv6InetNtop(target, 2), 'fe80::1');
    for (const [text, family] of [['10.0.0.01', 4], ['::1', 4], ['10.0.0.1', 6], ['%eth0', 6]] as const) {
      const untouched = new Uint8Array(16).fill(0xaa);
      assert.equal(writeIpText(text, family, untouched, 0), false, text);
      assert.ok(untouched.every((b) => b === 0xaa), text);
    }
  });

  test('canonical socket text of IP literals', () => {
    assert.deepEqual(canonicalSocketIp('10.0.0.1'), { address: '10.0.0.1', family: 4 });
    assert.deepEqual(canonicalSocketIp('2001:DB8:0:0::1'), { address: '2001:db8::1', family: 6 });
    assert.deepEqual(canonicalSocketIp('::ffff:7f00:1'), { address: '::ffff:127.0.0.1', family: 6 });
    assert.deepEqual(canonicalSocketIp('::102:304'), { address: '::1.2.3.4', family: 6 });
    for (const bad of ['', '10.0.0.01', '10.0.0', 'fe80::1%eth0', '[::1]', 'localhost', '1.2.3.4::']) {
      assert.equal(canonicalSocketIp(bad), undefined, bad);
    }
  });
});

/** 16 bytes made of groups that are mostly zero, so that zero runs, ties and embedded IPv4 forms come up. */
function sparseIpv6(): fc.Arbitrary<Uint8Array> {
  return fc.array(fc.constantFrom(0, 0, 0, 0, 1, 0x102, 0xffff, 0xabc), { minLength: 8, maxLength: 8 }).map((words) => {
    const bytes = new Uint8Array(16);
    words.forEach((word, i) => {
      bytes[2 * i] = word >>> 8;
      bytes[2 * i + 1] = word & 0xff;
    });
    return bytes;
  });
}

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
