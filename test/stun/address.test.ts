import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { once } from 'node:events';
import fc from 'fast-check';
import { crc32, formatIpv4, formatIpv6, writeIpAddress } from '../../src/stun/index.ts';

const RUNS = process.env.CI ? 10_000 : 1_000;

test('IPv6 text round-trips through bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
      const back = new Uint8Array(16);
      assert.equal(writeIpAddress(formatIpv6(bytes, 0), 6, back, 0), true);
      assert.deepEqual(back, bytes);
    }),
    { numRuns: RUNS },
  );
});

test('IPv6 formatting matches the WHATWG URL serializer outside the embedded-IPv4 forms', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0xabc), { minLength: 8, maxLength: 8 }), (words) => {
      const bytes = new Uint8Array(16);
      words.forEach((w, i) => {
        bytes[2 * i] = w >> 8;
        bytes[2 * i + 1] = w & 0xff;
      });
      const text = formatIpv6(bytes, 0);
      fc.pre(!text.includes('.'));
      assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
    }),
    { numRuns: RUNS },
  );
});

test('IPv4 text round-trips through bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (bytes) => {
      const back = new Uint8Array(4);
      assert.equal(writeIpAddress(formatIpv4(bytes, 0), 4, back, 0), true);
      assert.deepEqual(back, bytes);
    }),
    { numRuns: RUNS },
  );
});

test('decoded IPv6 text equals what a dual-stack socket reports for ::1 and IPv4-mapped peers', async () => {
  const receiver = createSocket({ type: 'udp6' });
  const senders = [createSocket({ type: 'udp6' }), createSocket({ type: 'udp4' })];
  try {
    receiver.bind(0, '::');
    await once(receiver, 'listening');
    const { port } = receiver.address();
    const reported: string[] = [];
    for (const [sender, destination] of [[senders[0]!, '::1'], [senders[1]!, '127.0.0.1']] as const) {
      sender.send('x', port, destination);
      const [, rinfo] = (await once(receiver, 'message')) as [Buffer, RemoteInfo];
      reported.push(rinfo.address);
    }
    assert.deepEqual(reported, ['::1', '::ffff:127.0.0.1']);
    for (const address of reported) {
      const bytes = new Uint8Array(16);
      assert.equal(writeIpAddress(address, 6, bytes, 0), true);
      assert.equal(formatIpv6(bytes, 0), address);
    }
  } finally {
    receiver.close();
    for (const sender of senders) sender.close();
  }
});

test('address text that is not an IP of the family is refused, an IPv6 zone is ignored', () => {
  const bytes = new Uint8Array(16);
  assert.equal(writeIpAddress('fe80::1%eth0', 6, bytes, 0), true);
  assert.equal(formatIpv6(bytes, 0), 'fe80::1');
  for (const [text, family] of [
    ['01.2.3.4', 4],
    ['1.2.3.4.5', 4],
    ['::1', 4],
    ['1.2.3.4', 6],
    ['1.2.3.4::', 6],
    ['::01.2.3.4', 6],
    ['[::1]', 6],
  ] as const) {
    assert.equal(writeIpAddress(text, family, new Uint8Array(16), 0), false, text);
  }
});

test('the table CRC-32 agrees with zlib', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      assert.equal(crc32(bytes), zlibCrc32(bytes));
    }),
    { numRuns: RUNS },
  );
});
