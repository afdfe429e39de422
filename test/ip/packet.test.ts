import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ECN_CE,
  ECN_ECT0,
  ECN_ECT1,
  ECN_NOT_ECT,
  IpPacket,
  formatIp,
  makeIcmpEchoRequest,
  makeTcpPacket,
  makeUdpPacket,
  parseIp,
  parseIpPacket,
  parseIpv4,
  parseIpv6,
} from '../../src/ip/index.ts';
import type { IpAddr } from '../../src/ip/index.ts';
import { hex, vector, vectorNames } from './vectors.ts';

describe('parsing', () => {
  test('every fixture vector parses with correct checksums', () => {
    for (const name of vectorNames()) {
      const packet = parse(vector(name));
      assert.ok(packet.checksumsValid(), name);
    }
  });

  test('reads IPv4 UDP fields', () => {
    const packet = parse(vector('udp_v4_client_to_cidr'));
    assert.equal(packet.version, 4);
    assert.equal(packet.transport, 'udp');
    assert.equal(formatIp(packet.source()), '100.64.0.1');
    assert.equal(formatIp(packet.destination()), '10.0.0.1');
    assert.equal(packet.sourceV4, parseIpv4('100.64.0.1'));
    assert.equal(packet.sourcePort, 5401);
    assert.equal(packet.destinationPort, 80);
    assert.equal(packet.ttl, 64);
    assert.equal(new TextDecoder().decode(packet.payload()), 'hello');
    assert.equal(packet.icmpType, -1);
  });

  test('reads IPv6 ICMP echo fields', () => {
    const packet = parse(vector('icmpv6_echo_request'));
    assert.equal(packet.version, 6);
    assert.equal(packet.transport, 'icmpv6');
    assert.equal(formatIp(packet.destination()), '2001:db8::1');
    assert.ok(packet.isIcmpEcho);
    assert.ok(packet.isIcmpEchoRequest);
    assert.equal(packet.icmpType, 128);
    assert.equal(packet.icmpIdentifier, 7);
    assert.equal(packet.icmpSequence, 1);
    assert.equal(packet.sourceValue, 7);
    assert.equal(packet.destinationValue, 7);
    assert.equal(packet.sourcePort, -1);
  });

  test('rewrites the ICMP type and code and keeps the checksum valid', () => {
    const packet = parse(vector('icmpv6_echo_request'));
    packet.setIcmpTypeAndCode(129, 0);
    assert.equal(packet.icmpType, 129);
    assert.equal(packet.isIcmpEchoRequest, false);
    assert.ok(packet.checksumsValid());
    const v4 = parse(vector('icmpv4_echo_request'));
    v4.setIcmpTypeAndCode(0, 0);
    v4.setIcmpSequence(9);
    assert.equal(v4.icmpSequence, 9);
    assert.ok(v4.checksumsValid());
  });

  test('reads TCP flags', () => {
    assert.equal(parse(vector('tcp_v4_no_flags')).isTcpRst, false);
    assert.equal(parse(vector('tcp_v4_rst')).isTcpRst, true);
  });

  test('rejects malformed IP headers with an error value', () => {
    const view = new IpPacket();
    const udp = vector('udp_v4_client_to_cidr');
    assert.equal(view.parse(new Uint8Array(0)), 'empty');
    assert.equal(view.parse(Uint8Array.of(0x55, 0, 0, 0)), 'badVersion');
    assert.equal(view.parse(udp.subarray(0, 19)), 'truncatedHeader');
    assert.equal(view.parse(udp.subarray(0, 30)), 'badTotalLength');
    assert.equal(view.parse(withByte(udp, 0, 0x44)), 'badHeaderLength');
    assert.equal(view.parse(withByte(udp, 0, 0x4f)), 'truncatedHeader');
    assert.equal(view.parse(withByte(udp, 3, 19)), 'badTotalLength');
    assert.equal(view.parse(vector('udp_v6_client_to_cidr').subarray(0, 52)), 'badPayloadLength');
    assert.equal(view.parse(vector('udp_v6_client_to_cidr').subarray(0, 39)), 'truncatedHeader');
    assert.equal(view.parse(new Uint8Array(1281).fill(0x45)), 'tooLarge');
    assert.equal(view.bytes.length, 0);
  });

  test('bytes after the total length are kept but not part of the transport', () => {
    const padded = new Uint8Array(40);
    padded.set(vector('udp_v4_client_to_cidr'));
    const packet = parse(padded);
    assert.equal(packet.bytes.length, 40);
    assert.equal(packet.l4End, 33);
    assert.ok(packet.checksumsValid());
  });

  test('IPv4 options are skipped via IHL', () => {
    const plain = vector('udp_v4_client_to_cidr');
    const withOptions = new Uint8Array(plain.length + 4);
    withOptions.set(plain.subarray(0, 20));
    withOptions.set(Uint8Array.of(1, 1, 1, 0), 20);
    withOptions.set(plain.subarray(20), 24);
    withOptions[0] = 0x46;
    withOptions[3] = withOptions.length;
    const packet = parse(withOptions);
    packet.updateChecksums();
    assert.equal(packet.headerLength, 24);
    assert.equal(packet.transport, 'udp');
    assert.equal(packet.sourcePort, 5401);
    assert.ok(packet.checksumsValid());
  });

  test('a UDP length beyond the IP payload makes the transport unsupported', () => {
    const packet = parse(withByte(vector('udp_v4_client_to_cidr'), 25, 0x20));
    assert.equal(packet.transport, 'unsupported');
    assert.equal(packet.sourceValue, -1);
  });

  test('a UDP length of 0 extends to the end of the IP payload', () => {
    const packet = parse(withByte(vector('udp_v4_client_to_cidr'), 25, 0));
    assert.equal(packet.transport, 'udp');
    assert.equal(new TextDecoder().decode(packet.payload()), 'hello');
    packet.updateChecksums();
    assert.ok(packet.checksumsValid());
  });

  test('an IPv6 extension header makes the transport unsupported', () => {
    const udp = vector('udp_v6_client_to_cidr');
    const withHopByHop = new Uint8Array(udp.length + 8);
    withHopByHop.set(udp.subarray(0, 40));
    withHopByHop.set(Uint8Array.of(17, 0, 1, 4, 0, 0, 0, 0), 40);
    withHopByHop.set(udp.subarray(40), 48);
    withHopByHop[5] = udp.length - 40 + 8;
    withHopByHop[6] = 0;
    const packet = parse(withHopByHop);
    assert.equal(packet.protocol, 0);
    assert.equal(packet.transport, 'unsupported');
  });

  test('malformed extension headers make the packet invalid, as in etherparse', () => {
    const view = new IpPacket();
    assert.equal(view.parse(withByte(vector('udp_v6_client_to_cidr'), 6, 0)), 'badExtensionHeader');
    assert.notEqual(view.parse(withByte(vector('udp_v6_client_to_cidr'), 6, 44)), 'badExtensionHeader');
    assert.equal(view.parse(withByte(vector('udp_v4_client_to_cidr'), 9, 51)), 'badExtensionHeader');
    const auth = withByte(withByte(vector('udp_v4_client_to_cidr'), 9, 51), 21, 1);
    assert.equal(view.parse(auth), undefined);
    assert.equal(view.transport, 'unsupported');
    assert.equal(view.parse(withByte(vector('icmpv4_port_unreachable_from_network'), 28 + 9, 51)), undefined);
  });

  test('IPv4 fragments are refused: MF set or a non-zero offset; DF alone is fine', () => {
    const view = new IpPacket();
    const plain = vector('udp_v4_client_to_cidr');
    assert.equal(view.parse(withByte(plain, 6, 0x20)), 'fragmented');
    assert.equal(view.parse(withByte(plain, 7, 0x01)), 'fragmented');
    assert.equal(view.parse(withByte(plain, 6, 0x01)), 'fragmented');
    assert.equal(view.parse(withByte(plain, 6, 0x40)), undefined);
    assert.equal(view.parse(withByte(plain, 6, 0x00)), undefined);
  });

  test('IPv6 fragments are refused; an atomic fragment (offset 0, M clear) is not a fragment', () => {
    const view = new IpPacket();
    const fragment = (word: number): Uint8Array => withFragmentHeader(vector('udp_v6_client_to_cidr'), word);
    assert.equal(view.parse(fragment(0x0001)), 'fragmented');
    assert.equal(view.parse(fragment(0x0008)), 'fragmented');
    assert.equal(view.parse(fragment(0xfff8)), 'fragmented');
    assert.equal(view.parse(fragment(0x0006)), undefined);
    assert.equal(view.transport, 'unsupported');
    assert.equal(view.parse(fragment(0x0000)), undefined);
  });

  test('a quoted packet may be a fragment', () => {
    const view = new IpPacket();
    assert.equal(view.parseLenient(withByte(vector('udp_v4_client_to_cidr'), 6, 0x20)), undefined);
    assert.equal(view.transport, 'udp');
  });

  test('an ICMPv4 timestamp of the wrong length is not ICMP, as in etherparse', () => {
    const echo = vector('icmpv4_echo_request');
    assert.equal(parse(withByte(echo, 20, 13)).transport, 'unsupported');
    assert.equal(parse(withByte(withByte(echo, 20, 13), 21, 1)).transport, 'icmpv4');
    const timestamp = new Uint8Array(40);
    timestamp.set(echo.subarray(0, 20));
    timestamp[3] = 40;
    timestamp[20] = 14;
    assert.equal(parse(timestamp).transport, 'icmpv4');
  });

  test('ICMPv4 inside IPv6 is not ICMP', () => {
    const packet = parse(withByte(vector('icmpv6_echo_request'), 6, 1));
    assert.equal(packet.transport, 'unsupported');
  });

  test('a TCP data offset beyond the segment makes the transport unsupported', () => {
    const packet = parse(withByte(vector('tcp_v4_no_flags'), 32, 0x60));
    assert.equal(packet.transport, 'unsupported');
  });

  test('one view can be reused across packets', () => {
    const view = new IpPacket();
    assert.equal(view.parse(vector('udp_v6_client_to_cidr')), undefined);
    assert.equal(view.parse(vector('tcp_v4_no_flags')), undefined);
    assert.equal(view.version, 4);
    assert.equal(view.transport, 'tcp');
    assert.equal(view.parse(Uint8Array.of(0x60)), 'truncatedHeader');
    assert.equal(view.transport, 'unsupported');
  });
});

describe('DNS-resource NAT rewrites reproduce the reference packets', () => {
  for (const mode of ['incremental', 'full'] as const) {
    test(`client to proxy, UDP (${mode} checksums)`, () => {
      const packet = parse(vector('udp_v4_client_to_proxy'));
      packet.setDestination(ip('10.0.0.1'));
      if (mode === 'full') packet.updateChecksums();
      assert.equal(hex(packet.bytes), hex(vector('nat_out_v4_udp')));
    });

    test(`client to proxy with a bumped source port (${mode} checksums)`, () => {
      const packet = parse(vector('udp_v4_client_to_proxy2'));
      packet.setDestination(ip('10.0.0.1'));
      packet.setSourceValue(5402);
      if (mode === 'full') packet.updateChecksums();
      assert.equal(hex(packet.bytes), hex(vector('nat_out_v4_udp_port_bumped')));
    });

    test(`resource to client, UDP (${mode} checksums)`, () => {
      const plain = parse(vector('nat_in_v4_udp_before'));
      plain.setSource(ip('100.96.0.1'));
      plain.setDestinationValue(5401);
      if (mode === 'full') plain.updateChecksums();
      assert.equal(hex(plain.bytes), hex(vector('nat_in_v4_udp_after')));

      const bumped = parse(vector('nat_in_v4_udp_port_bumped_before'));
      bumped.setSource(ip('100.96.0.2'));
      bumped.setDestinationValue(5401);
      if (mode === 'full') bumped.updateChecksums();
      assert.equal(hex(bumped.bytes), hex(vector('nat_in_v4_udp_port_bumped_after')));
    });

    test(`ICMPv4 echo both ways (${mode} checksums)`, () => {
      const out = parse(vector('icmpv4_echo_to_proxy'));
      out.setDestination(ip('10.0.0.1'));
      out.setSourceValue(7);
      if (mode === 'full') out.updateChecksums();
      assert.equal(hex(out.bytes), hex(vector('nat_out_icmpv4_echo')));

      const back = parse(vector('nat_in_icmpv4_echo_reply_before'));
      back.setSource(ip('100.96.0.1'));
      back.setDestinationValue(7);
      if (mode === 'full') back.updateChecksums();
      assert.equal(hex(back.bytes), hex(vector('nat_in_icmpv4_echo_reply_after')));
    });

    test(`ICMPv6 echo to a proxy (${mode} checksums)`, () => {
      const hello = new TextEncoder().encode('hello');
      const packet = parse(makeIcmpEchoRequest(ip('fd00:2021:1111::1'), ip('fd00:2021:1111:8000::1'), 7, 1, hello));
      packet.setDestination(ip('2001:db8::1'));
      if (mode === 'full') packet.updateChecksums();
      assert.equal(hex(packet.bytes), hex(vector('nat_out_icmpv6_echo')));
    });
  }

  test('setting an address of the other family changes nothing', () => {
    const packet = parse(vector('udp_v4_client_to_proxy'));
    assert.equal(packet.setDestination(ip('2001:db8::1')), false);
    assert.equal(hex(packet.bytes), hex(vector('udp_v4_client_to_proxy')));
  });

  test('IPv6 rewrites keep TCP and UDP checksums valid', () => {
    const tcp = parse(makeTcpPacket(ip('fd00:2021:1111::1'), ip('fd00:2021:1111:8000::1'), 1000, 443, {}, new Uint8Array(3)));
    tcp.setDestinationV6(parseIpv6('2001:db8::99')!);
    tcp.setSourcePort(1001);
    assert.ok(tcp.checksumsValid());
    const udp = parse(makeUdpPacket(ip('2001:db8::1'), ip('fd00:2021:1111::1'), 53, 1000, new Uint8Array(7)));
    udp.setSourceV6(parseIpv6('fd00:2021:1111:8000::3')!);
    udp.setDestinationPort(999);
    assert.ok(udp.checksumsValid());
    assert.equal(formatIp(udp.source()), 'fd00:2021:1111:8000::3');
  });

  test('an IPv4 UDP packet without checksum keeps none on incremental rewrite and gets one on full recompute', () => {
    const bytes = vector('udp_v4_client_to_proxy');
    bytes[26] = 0;
    bytes[27] = 0;
    const packet = parse(bytes);
    assert.ok(packet.udpChecksumMissing);
    packet.setDestination(ip('10.0.0.1'));
    packet.setSourcePort(5402);
    assert.equal(packet.bytes[26], 0);
    assert.equal(packet.bytes[27], 0);
    assert.ok(packet.checksumsValid());
    packet.updateChecksums();
    assert.ok(!packet.udpChecksumMissing);
    assert.notEqual((packet.bytes[26]! << 8) | packet.bytes[27]!, 0);
    assert.ok(packet.checksumsValid());
  });
});

describe('TTL and ECN', () => {
  test('setting the TTL keeps the IPv4 header checksum valid', () => {
    const packet = parse(vector('tcp_v4_no_flags'));
    packet.setTtl(20);
    assert.equal(packet.ttl, 20);
    assert.ok(packet.checksumsValid());
  });

  test('the hop limit of IPv6 is read and written', () => {
    const packet = parse(vector('udp_v6_client_to_cidr'));
    packet.setTtl(3);
    assert.equal(packet.bytes[7], 3);
    assert.equal(packet.ttl, 3);
  });

  test('outer CE marks an ECN-capable inner packet, and nothing else changes ECN', () => {
    const cases: [number, number, number][] = [
      [ECN_NOT_ECT, ECN_CE, ECN_NOT_ECT],
      [ECN_ECT0, ECN_CE, ECN_CE],
      [ECN_ECT1, ECN_CE, ECN_CE],
      [ECN_CE, ECN_NOT_ECT, ECN_CE],
      [ECN_ECT0, ECN_ECT1, ECN_ECT0],
      [ECN_ECT1, ECN_NOT_ECT, ECN_ECT1],
    ];
    for (const name of ['udp_v4_client_to_cidr', 'udp_v6_client_to_cidr']) {
      for (const [inner, outer, expected] of cases) {
        const packet = parse(vector(name));
        packet.setEcn(inner as 0);
        packet.applyOuterEcn(outer as 0);
        assert.equal(packet.ecn, expected, `${name} inner ${inner} outer ${outer}`);
        assert.ok(packet.checksumsValid());
      }
    }
  });

  test('IPv6 ECN lives in the low bits of the traffic class', () => {
    const packet = parse(vector('udp_v6_client_to_cidr'));
    packet.setEcn(ECN_CE);
    assert.equal(hex(packet.bytes.subarray(0, 4)), '60300000');
  });
});

function ip(text: string): IpAddr {
  const addr = parseIp(text);
  assert.ok(addr, text);
  return addr;
}

function parse(bytes: Uint8Array): IpPacket {
  const packet = parseIpPacket(bytes);
  assert.equal(typeof packet, 'object', `parse failed: ${String(packet)}`);
  return packet as IpPacket;
}

/** The IPv6 packet with a Fragment header (offset/flags word `word`) inserted before its transport header. */
function withFragmentHeader(packet: Uint8Array, word: number): Uint8Array {
  const out = new Uint8Array(packet.length + 8);
  out.set(packet.subarray(0, 40));
  out.set(Uint8Array.of(packet[6]!, 0, word >>> 8, word & 0xff, 0, 0, 0, 1), 40);
  out.set(packet.subarray(40), 48);
  out[4] = (packet.length - 40 + 8) >>> 8;
  out[5] = (packet.length - 40 + 8) & 0xff;
  out[6] = 44;
  return out;
}

function withByte(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = bytes.slice();
  copy[offset] = value;
  return copy;
}
