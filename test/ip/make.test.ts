import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TCP_FLAG_RST,
  makeIcmpDestinationUnreachable,
  makeIcmpEchoRequest,
  makeIcmpErrorReply,
  makeTcpPacket,
  makeUdpPacket,
  parseIp,
  parseIpPacket,
} from '../../src/ip/index.ts';
import type { IpAddr, IpPacket } from '../../src/ip/index.ts';
import { hex, vector } from './vectors.ts';

const hello = new TextEncoder().encode('hello');

describe('packet builders match the reference byte for byte', () => {
  test('udp over IPv4', () => {
    assert.equal(hex(makeUdpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 5401, 80, hello)), hex(vector('udp_v4_client_to_cidr')));
  });

  test('udp over IPv6', () => {
    const packet = makeUdpPacket(ip('fd00:2021:1111::1'), ip('2001:db8::1'), 5401, 80, hello);
    assert.equal(hex(packet), hex(vector('udp_v6_client_to_cidr')));
  });

  test('udp with a 100-byte payload', () => {
    const packet = makeUdpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 5401, 80, new Uint8Array(100).fill(0xab));
    assert.equal(hex(packet), hex(vector('udp_v4_100B_payload')));
  });

  test('tcp without flags and with RST', () => {
    const plain = makeTcpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 5401, 80, {}, new Uint8Array(0));
    const rst = makeTcpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 5401, 80, { flags: TCP_FLAG_RST }, new Uint8Array(0));
    assert.equal(hex(plain), hex(vector('tcp_v4_no_flags')));
    assert.equal(hex(rst), hex(vector('tcp_v4_rst')));
  });

  test('icmp echo requests over both families', () => {
    assert.equal(hex(makeIcmpEchoRequest(ip('100.64.0.1'), ip('10.0.0.1'), 7, 1, hello)), hex(vector('icmpv4_echo_request')));
    const v6 = makeIcmpEchoRequest(ip('fd00:2021:1111::1'), ip('2001:db8::1'), 7, 1, hello);
    assert.equal(hex(v6), hex(vector('icmpv6_echo_request')));
  });

  test('builders refuse mixed families and oversized packets', () => {
    assert.throws(() => makeUdpPacket(ip('100.64.0.1'), ip('2001:db8::1'), 1, 2, hello), TypeError);
    assert.throws(() => makeUdpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 1, 2, new Uint8Array(1253)), RangeError);
    assert.equal(makeUdpPacket(ip('100.64.0.1'), ip('10.0.0.1'), 1, 2, new Uint8Array(1252)).length, 1280);
  });
});

describe('ICMP destination unreachable replies', () => {
  test('a filtered IPv4 packet gets type 3 code 13 quoting its header and 8 bytes', () => {
    const reply = makeIcmpDestinationUnreachable(parsed('udp_v4_client_to_cidr'), 'prohibited');
    assert.equal(hex(reply), hex(vector('filtered_v4_prohibited')));
  });

  test('a filtered IPv6 packet gets type 1 code 1 quoting the whole packet', () => {
    const reply = makeIcmpDestinationUnreachable(parsed('udp_v6_client_to_cidr'), 'prohibited');
    assert.equal(hex(reply), hex(vector('filtered_v6_prohibited')));
  });

  test('the IPv4 quote is truncated to the header and 8 bytes', () => {
    const reply = makeIcmpDestinationUnreachable(parsed('udp_v4_100B_payload'), 'prohibited');
    assert.equal(hex(reply), hex(vector('filtered_v4_prohibited_truncated')));
  });

  test('an untranslatable proxy IP gets network (v4) or address (v6) unreachable from the proxy', () => {
    const v4 = makeIcmpDestinationUnreachable(parsed('udp_v4_client_to_proxy'), 'unreachable');
    const v6 = makeIcmpDestinationUnreachable(parsed('udp_v6_client_to_proxy'), 'unreachable');
    assert.equal(hex(v4), hex(vector('unreachable_v4_network_for_proxy')));
    assert.equal(hex(v6), hex(vector('unreachable_v6_address_for_proxy')));
  });

  test('the IPv6 quote is capped at 1232 bytes so the reply fits 1280', () => {
    const big = parse(makeUdpPacket(ip('fd00:2021:1111::1'), ip('2001:db8::1'), 1, 2, new Uint8Array(1232)));
    assert.equal(big.bytes.length, 1280);
    const reply = makeIcmpDestinationUnreachable(big, 'prohibited');
    assert.equal(reply.length, 1280);
    assert.deepEqual(reply.subarray(48), big.bytes.subarray(0, 1232));
    assert.ok(parse(reply).checksumsValid());
  });

  test('errors from routers, as the fixtures have them', () => {
    const bumped = parsed('nat_out_v4_udp_port_bumped');
    const portUnreachable = makeIcmpErrorReply(bumped, { type: 3, code: 3, source: ip('192.0.2.254'), quoteLength: 1280 });
    assert.equal(hex(portUnreachable), hex(vector('icmpv4_port_unreachable_from_network')));
    const v6 = parse(vector('icmpv6_packet_too_big_from_network')).bytes.subarray(48);
    const tooBig = makeIcmpErrorReply(parse(v6.slice()), { type: 2, code: 0, rest: 1200, source: ip('2001:db8::fe') });
    assert.equal(hex(tooBig), hex(vector('icmpv6_packet_too_big_from_network')));
  });

  test('a quote shorter than header + 8 bytes is taken whole', () => {
    const bare = Uint8Array.from(Buffer.from('450000140000400040fd0000644000010a000001', 'hex'));
    const reply = makeIcmpDestinationUnreachable(parse(bare), 'prohibited');
    assert.equal(reply.length, 20 + 8 + 20);
    assert.deepEqual(reply.subarray(28), bare);
  });
});

function ip(text: string): IpAddr {
  const addr = parseIp(text);
  assert.ok(addr, text);
  return addr;
}

function parsed(name: string): IpPacket {
  return parse(vector(name));
}

function parse(bytes: Uint8Array): IpPacket {
  const packet = parseIpPacket(bytes);
  assert.equal(typeof packet, 'object', `parse failed: ${String(packet)}`);
  return packet as IpPacket;
}
