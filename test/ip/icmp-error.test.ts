import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IpPacket,
  formatIp,
  icmpErrorKind,
  makeIcmpEchoReply,
  makeIcmpEchoRequest,
  makeIcmpErrorReply,
  makeTranslatedIcmpError,
  makeUdpPacket,
  parseIcmpErrorQuote,
  parseIp,
  parseIpPacket,
} from '../../src/ip/index.ts';
import type { IpAddr } from '../../src/ip/index.ts';
import { hex, vector } from './vectors.ts';

describe('classifying ICMP messages', () => {
  test('echo messages and non-ICMP packets are not errors', () => {
    assert.equal(icmpErrorKind(parse(vector('icmpv4_echo_request'))), 'notAnError');
    assert.equal(icmpErrorKind(parse(vector('icmpv6_echo_request'))), 'notAnError');
    assert.equal(icmpErrorKind(parse(vector('udp_v4_client_to_cidr'))), 'notAnError');
  });

  test('unreachable, time exceeded and packet too big are errors', () => {
    assert.equal(icmpErrorKind(parse(vector('icmpv4_port_unreachable_from_network'))), 'error');
    assert.equal(icmpErrorKind(parse(vector('icmpv4_time_exceeded_from_network'))), 'error');
    assert.equal(icmpErrorKind(parse(vector('icmpv6_packet_too_big_from_network'))), 'error');
    assert.equal(icmpErrorKind(parse(vector('filtered_v6_prohibited'))), 'error');
  });

  test('other types and unknown codes are unsupported', () => {
    assert.equal(icmpErrorKind(parse(withIcmp(vector('icmpv4_port_unreachable_from_network'), 20, 5, 0))), 'unsupported');
    assert.equal(icmpErrorKind(parse(withIcmp(vector('icmpv4_port_unreachable_from_network'), 20, 3, 16))), 'unsupported');
    assert.equal(icmpErrorKind(parse(withIcmp(vector('icmpv4_echo_request'), 20, 8, 1))), 'unsupported');
    assert.equal(icmpErrorKind(parse(withIcmp(vector('icmpv6_packet_too_big_from_network'), 40, 2, 1))), 'unsupported');
    assert.equal(icmpErrorKind(parse(withIcmp(vector('icmpv6_packet_too_big_from_network'), 40, 135, 0))), 'unsupported');
  });
});

describe('parsing the quoted packet', () => {
  test('finds the NAT session of a port unreachable', () => {
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(parse(vector('icmpv4_port_unreachable_from_network')), quote), undefined);
    assert.equal(quote.transport, 'udp');
    assert.equal(quote.sourceValue, 5402);
    assert.equal(formatIp(quote.destination()), '10.0.0.1');
  });

  test('accepts a quote truncated to the header and 4 bytes', () => {
    const original = vector('icmpv4_port_unreachable_from_network');
    const truncated = original.slice(0, 28 + 20 + 4);
    truncated[3] = truncated.length;
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(parse(truncated), quote), undefined);
    assert.equal(quote.sourceValue, 5402);
  });

  test('a quoted IPv6 packet with payload length 0 extends to the end of the quote', () => {
    const error = vector('icmpv6_packet_too_big_from_network').slice();
    error[48 + 4] = 0;
    error[48 + 5] = 0;
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(parse(error), quote), undefined);
    assert.equal(quote.transport, 'udp');
    assert.equal(quote.sourceValue, 5401);
  });

  test('refuses a quote too short for the ports', () => {
    const truncated = vector('icmpv4_port_unreachable_from_network').slice(0, 28 + 20 + 3);
    truncated[3] = truncated.length;
    assert.equal(parseIcmpErrorQuote(parse(truncated), new IpPacket()), 'unsupportedQuotedProtocol');
  });

  test('refuses a quote with a truncated IP header', () => {
    const truncated = vector('icmpv4_port_unreachable_from_network').slice(0, 28 + 19);
    truncated[3] = truncated.length;
    assert.equal(parseIcmpErrorQuote(parse(truncated), new IpPacket()), 'badQuotedHeader');
  });

  test('an embedded echo request is a session; an embedded echo reply is not', () => {
    const client = ip('100.64.0.1');
    const resource = ip('10.0.0.1');
    const request = makeIcmpEchoRequest(client, resource, 9, 3, new Uint8Array(4));
    const reply = makeIcmpEchoReply(client, resource, 9, 3, new Uint8Array(4));
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(parse(timeExceeded(request)), quote), undefined);
    assert.equal(quote.sourceValue, 9);
    assert.equal(parseIcmpErrorQuote(parse(timeExceeded(reply)), quote), 'quotedIcmpNotEchoRequest');
  });

  test('echo and unsupported ICMP are not errors to translate', () => {
    assert.equal(parseIcmpErrorQuote(parse(vector('icmpv4_echo_request')), new IpPacket()), 'notAnIcmpError');
    const redirect = withIcmp(vector('icmpv4_port_unreachable_from_network'), 20, 5, 0);
    assert.equal(parseIcmpErrorQuote(parse(redirect), new IpPacket()), 'unsupportedIcmpType');
  });
});

describe('translating ICMP errors for the client', () => {
  test('IPv4 port unreachable', () => {
    assert.equal(translate('icmpv4_port_unreachable_from_network', '100.96.0.2', 5401), hex(vector('icmpv4_port_unreachable_translated')));
  });

  test('IPv6 packet too big keeps the MTU', () => {
    const translated = translate('icmpv6_packet_too_big_from_network', 'fd00:2021:1111:8000::1', 5401);
    assert.equal(translated, hex(vector('icmpv6_packet_too_big_translated')));
  });

  test('IPv4 time exceeded', () => {
    assert.equal(translate('icmpv4_time_exceeded_from_network', '100.96.0.1', 5401), hex(vector('icmpv4_time_exceeded_translated')));
  });

  test('fragmentation needed keeps the next-hop MTU', () => {
    const error = vector('icmpv4_port_unreachable_from_network').slice();
    error[21] = 4;
    error[26] = 0x04;
    error[27] = 0xb0;
    const packet = parse(error);
    packet.updateChecksums();
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(packet, quote), undefined);
    const out = parse(makeTranslatedIcmpError(packet, quote, ip('100.96.0.2'), 5401)!);
    assert.equal(hex(out.bytes.subarray(24, 28)), '000004b0');
    assert.ok(out.checksumsValid());
  });

  test('errors built for a router round-trip through translation', () => {
    const outgoing = parse(vector('nat_out_v4_udp'));
    const error = parse(makeIcmpErrorReply(outgoing, { type: 11, code: 0, source: ip('192.0.2.254'), quoteLength: 1000 }));
    assert.equal(formatIp(error.source()), '192.0.2.254');
    assert.equal(formatIp(error.destination()), '100.64.0.1');
    assert.equal(error.l4End - error.l4Offset, 8 + outgoing.bytes.length);
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(error, quote), undefined);
    assert.equal(hex(makeTranslatedIcmpError(error, quote, ip('100.96.0.1'), 5401)!), hex(vector('icmpv4_time_exceeded_translated')));
    assert.throws(() => makeIcmpErrorReply(outgoing, { type: 11, code: 0, source: ip('2001:db8::fe') }), TypeError);
  });

  test('an echo request quote gets its identifier restored', () => {
    const request = makeIcmpEchoRequest(ip('100.64.0.1'), ip('10.0.0.1'), 1000, 3, new Uint8Array(4));
    const error = parse(timeExceeded(request));
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(error, quote), undefined);
    const out = parse(makeTranslatedIcmpError(error, quote, ip('100.96.0.1'), 7)!);
    const inner = new IpPacket();
    assert.equal(parseIcmpErrorQuote(out, inner), undefined);
    assert.equal(inner.icmpIdentifier, 7);
    assert.equal(formatIp(inner.destination()), '100.96.0.1');
    assert.equal(formatIp(out.source()), '100.96.0.1');
  });

  test('a proxy of the other family yields nothing', () => {
    const error = parse(vector('icmpv4_port_unreachable_from_network'));
    const quote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(error, quote), undefined);
    assert.equal(makeTranslatedIcmpError(error, quote, ip('fd00:2021:1111:8000::1'), 5401), undefined);
  });
});

function translate(name: string, proxy: string, insideValue: number): string {
  const error = parse(vector(name));
  const quote = new IpPacket();
  assert.equal(parseIcmpErrorQuote(error, quote), undefined);
  const out = makeTranslatedIcmpError(error, quote, ip(proxy), insideValue);
  assert.ok(out);
  return hex(out);
}

/** A router's ICMPv4 time exceeded quoting the first 28 bytes of `packet`. */
function timeExceeded(packet: Uint8Array): Uint8Array {
  const router = ip('192.0.2.254');
  const carrier = makeUdpPacket(router, ip('100.64.0.1'), 0, 0, packet.subarray(0, 28));
  const bytes = carrier.slice();
  bytes[9] = 1;
  bytes[20] = 11;
  bytes[21] = 0;
  bytes.fill(0, 22, 28);
  bytes.set(packet.subarray(0, 28), 28);
  const view = parse(bytes);
  view.updateChecksums();
  return bytes;
}

function withIcmp(bytes: Uint8Array, l4: number, type: number, code: number): Uint8Array {
  const copy = bytes.slice();
  copy[l4] = type;
  copy[l4 + 1] = code;
  return copy;
}

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
