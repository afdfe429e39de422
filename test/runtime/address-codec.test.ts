import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import { AddressCodec, CODEC_CACHE_LIMIT } from '../../src/runtime/udp-socket.ts';
import { formatIpv6InetNtop as formatIpv6, parseIpv6 as parseIpv6Text } from '../../src/ip/index.ts';

function parseIpv6(text: string): Uint8Array {
  const bytes = parseIpv6Text(text);
  assert.ok(bytes !== undefined, `not an IPv6 address: ${text}`);
  return bytes;
}

describe('AddressCodec', () => {
  test('IPv6 text round-trips through bytes for any address', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = formatIpv6(bytes);
        assert.ok(isIPv6(text), text);
        assert.deepEqual(parseIpv6(text), bytes);
      }),
    );
  });

  test('IPv6 text is the compressed lowercase form', () => {
    assert.equal(formatIpv6(parseIpv6('fd00:2021:1111:0:0:0:0:1')), 'fd00:2021:1111::1');
    assert.equal(formatIpv6(parseIpv6('0:0:0:0:0:0:0:1')), '::1');
    assert.equal(formatIpv6(parseIpv6('1:0:0:2:0:0:0:3')), '1:0:0:2::3');
    assert.equal(formatIpv6(parseIpv6('1:0:2:3:4:5:6:7')), '1:0:2:3:4:5:6:7');
    assert.equal(formatIpv6(parseIpv6('::')), '::');
    assert.equal(formatIpv6(parseIpv6('::ffff:10.0.0.1')), '::ffff:10.0.0.1');
  });

  test('decoding the same endpoint twice yields the same object', () => {
    const codec = new AddressCodec();
    const bytes = Uint8Array.from([0, 10, 1, 2, 3, 0]);
    const first = codec.decode(bytes, 1, 4, 443);
    assert.deepEqual(first, { address: '10.1.2.3', port: 443, family: 4 });
    assert.equal(codec.decode(bytes, 1, 4, 443), first);
    assert.notEqual(codec.decode(bytes, 1, 4, 444), first);
  });

  test('a full cache evicts only its oldest endpoint for a new one', () => {
    const codec = new AddressCodec();
    const v4 = (i: number): Uint8Array => Uint8Array.from([10, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff]);
    const v6 = (i: number): Uint8Array => Uint8Array.from([0xfd, 0, ...new Array<number>(10).fill(0), (i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff]);
    for (const [family, bytes] of [[4, v4], [6, v6]] as const) {
      const first = Array.from({ length: CODEC_CACHE_LIMIT }, (_, i) => codec.decode(bytes(i), 0, family, 5000));
      codec.decode(bytes(CODEC_CACHE_LIMIT), 0, family, 5000);
      // Every endpoint but the oldest is still the cached object; the oldest is decoded anew.
      for (let i = 1; i < CODEC_CACHE_LIMIT; i++) assert.equal(codec.decode(bytes(i), 0, family, 5000), first[i], `family ${family} endpoint ${i}`);
      const again = codec.decode(bytes(0), 0, family, 5000);
      assert.notEqual(again, first[0]);
      assert.deepEqual(again, first[0]);
    }
  });

  test('IPv6 decode distinguishes addresses and ports', () => {
    const codec = new AddressCodec();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 65535 }), (bytes, port) => {
        const addr = codec.decode(bytes, 0, 6, port);
        assert.equal(addr.address, formatIpv6(bytes));
        assert.equal(addr.port, port);
        const target = new Uint8Array(16);
        codec.encode(addr.address, 6, target, 0);
        assert.deepEqual(target, bytes);
      }),
    );
  });
});
