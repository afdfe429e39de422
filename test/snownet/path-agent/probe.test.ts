import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { makeProbeReply, makeProbeRequest, parseProbe, PROBE_DST, PROBE_SRC } from '../../../src/snownet/path-agent/index.ts';
import { formatIp, parseIp } from '../../../src/ip/addr.ts';
import { makeIcmpEchoRequest, makeUdpPacket } from '../../../src/ip/make.ts';
import { parseIpPacket } from '../../../src/ip/packet.ts';

describe('path probes', () => {
  test('probe addresses are 100::dead:1ce:1 and 100::dead:1ce:2', () => {
    assert.equal(formatIp(PROBE_SRC), '100::dead:1ce:1');
    assert.equal(formatIp(PROBE_DST), '100::dead:1ce:2');
  });

  test('a request and a reply are empty ICMPv6 echoes from PROBE_SRC to PROBE_DST with a valid checksum', () => {
    for (const [packet, type] of [[makeProbeRequest(0x1234, 0x5678), 128], [makeProbeReply(0x0001, 0xffff), 129]] as const) {
      assert.equal(packet.length, 48);
      assert.equal(packet[6], 58);
      assert.equal(packet[7], 64, 'hop limit');
      assert.equal(packet[40], type);
      const parsed = parseIpPacket(packet);
      assert.ok(typeof parsed !== 'string', 'a well-formed IPv6 packet');
    }
  });

  test('identifier and sequence survive over their whole range', () => {
    fc.assert(
      fc.property(fc.nat(0xffff), fc.nat(0xffff), (id, seq) => {
        assert.deepEqual(parseProbe(makeProbeRequest(id, seq)), { kind: 'request', id, seq });
        assert.deepEqual(parseProbe(makeProbeReply(id, seq)), { kind: 'reply', id, seq });
      }),
    );
  });

  test('other packets are not probes', () => {
    const other = parseIp('::1')!;
    assert.equal(parseProbe(makeIcmpEchoRequest(other, PROBE_DST, 1, 1, new Uint8Array(0))), undefined, 'wrong source');
    assert.equal(parseProbe(makeIcmpEchoRequest(PROBE_SRC, other, 1, 1, new Uint8Array(0))), undefined, 'wrong destination');
    assert.equal(parseProbe(makeUdpPacket(PROBE_SRC, PROBE_DST, 1, 2, new Uint8Array(0))), undefined, 'not ICMPv6');
    const v4 = parseIp('10.0.0.1')!;
    assert.equal(parseProbe(makeIcmpEchoRequest(v4, v4, 1, 1, new Uint8Array(0))), undefined, 'IPv4');
    const notEcho = makeProbeRequest(1, 1);
    notEcho[40] = 1;
    assert.equal(parseProbe(notEcho), undefined, 'another ICMPv6 type');
    const badCode = makeProbeRequest(1, 1);
    badCode[41] = 1;
    assert.equal(parseProbe(badCode), undefined, 'an echo with a non-zero code');
  });

  test('random bytes never throw', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => void parseProbe(bytes)), { numRuns: 2_000 });
  });
});
