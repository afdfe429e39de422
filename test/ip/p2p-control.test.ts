import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IpPacket,
  P2P_CONTROL_MAX_PAYLOAD,
  P2P_EVENT_ASSIGNED_IPS,
  P2P_EVENT_DOMAIN_STATUS,
  P2P_EVENT_GOODBYE,
  decodeAssignedIps,
  decodeAssignedIpsPacket,
  decodeDomainStatus,
  decodeDomainStatusPacket,
  encodeAssignedIps,
  encodeDomainStatus,
  formatIp,
  isP2pControlPacket,
  makeAssignedIpsPacket,
  makeDomainStatusPacket,
  makeGoodbyePacket,
  makeP2pControlPacket,
  p2pControlEventType,
  p2pControlPayload,
  parseDomainName,
  parseIpPacket,
  parseUuid,
} from '../../src/ip/index.ts';
import type { AssignedIps } from '../../src/ip/index.ts';
import { hex, readJsonFixture, vector } from './vectors.ts';

interface JsonVector {
  readonly name: string;
  readonly event_type: number;
  readonly payload: string;
  readonly payload_len?: number;
  readonly expected_decode?: { resource: string; domain: string; status: string };
}

const jsonVectors = (): JsonVector[] =>
  readJsonFixture<{ vectors: JsonVector[] }>('packets', 'p2p-control-json-vectors.json').vectors;
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

describe('recognising control packets', () => {
  test('the reference control packets are recognised with their event types', () => {
    const assigned = parse(vector('p2p_assigned_ips'));
    assert.ok(isP2pControlPacket(assigned));
    assert.equal(p2pControlEventType(assigned), P2P_EVENT_ASSIGNED_IPS);
    const status = parse(vector('p2p_domain_status_active'));
    assert.ok(isP2pControlPacket(status));
    assert.equal(p2pControlEventType(status), P2P_EVENT_DOMAIN_STATUS);
  });

  test('GOODBYE is 48 bytes: the IPv6 header from :: to :: and the header [2, 0, 0, 0, 0, 0, 0, 0]', () => {
    const goodbye = makeGoodbyePacket();
    assert.equal(hex(goodbye), `600000000008ff00${'00'.repeat(32)}0200000000000000`);
    const packet = parse(goodbye);
    assert.ok(isP2pControlPacket(packet));
    assert.equal(p2pControlEventType(packet), P2P_EVENT_GOODBYE);
    assert.equal(p2pControlPayload(packet).length, 0);
  });

  test('needs IPv6, protocol 0xFF, :: to :: and 8 payload bytes', () => {
    const packet = vector('p2p_domain_status_active');
    assert.equal(isP2pControlPacket(parse(withByte(packet, 6, 17))), false);
    assert.equal(isP2pControlPacket(parse(withByte(packet, 23, 1))), false);
    assert.equal(isP2pControlPacket(parse(withByte(packet, 39, 1))), false);
    const short = makeP2pControlPacket(1, new Uint8Array(0))!.slice(0, 47);
    short[5] = 7;
    assert.equal(isP2pControlPacket(parse(short)), false);
    assert.equal(isP2pControlPacket(parse(vector('udp_v4_client_to_cidr'))), false);
  });

  test('the hop limit is not checked', () => {
    assert.ok(isP2pControlPacket(parse(withByte(vector('p2p_domain_status_active'), 7, 64))));
  });
});

describe('events', () => {
  test('the reference AssignedIps packet decodes', () => {
    const decoded = decodeAssignedIpsPacket(parse(vector('p2p_assigned_ips')));
    assert.equal(typeof decoded, 'object');
    const event = decoded as AssignedIps;
    assert.match(event.resource, /^[0-9a-f]{8}-/);
    assert.ok(event.proxyIps.length > 0);
    assert.equal(hex(makeAssignedIpsPacket(event)!), hex(vector('p2p_assigned_ips')));
  });

  test('DomainStatus packets are byte-exact for both statuses', () => {
    for (const name of ['p2p_domain_status_active', 'p2p_domain_status_inactive']) {
      const decoded = decodeDomainStatusPacket(parse(vector(name)));
      assert.ok(typeof decoded === 'object', name);
      assert.equal(decoded.status, name === 'p2p_domain_status_active' ? 'Active' : 'Inactive');
      assert.equal(hex(makeDomainStatusPacket(decoded)!), hex(vector(name)));
    }
  });

  test('an event of the other type is refused by the typed decoder', () => {
    assert.equal(decodeDomainStatusPacket(parse(vector('p2p_assigned_ips'))), 'wrongEventType');
    assert.equal(decodeAssignedIpsPacket(parse(vector('p2p_domain_status_active'))), 'wrongEventType');
  });

  test('JSON vectors round-trip byte for byte', () => {
    for (const v of jsonVectors()) {
      if (v.expected_decode !== undefined) continue;
      const payload = utf8(v.payload);
      if (v.event_type === P2P_EVENT_ASSIGNED_IPS) {
        const decoded = decodeAssignedIps(payload);
        assert.equal(typeof decoded, 'object', v.name);
        assert.equal(text(encodeAssignedIps(decoded as AssignedIps)), v.payload, v.name);
      } else {
        const decoded = decodeDomainStatus(payload);
        assert.ok(typeof decoded === 'object', v.name);
        assert.equal(text(encodeDomainStatus(decoded)), v.payload, v.name);
      }
      if (v.payload_len !== undefined) assert.equal(payload.length, v.payload_len);
    }
  });

  test('an unknown status decodes as Inactive', () => {
    const v = jsonVectors().find((x) => x.expected_decode !== undefined)!;
    assert.deepEqual(decodeDomainStatus(utf8(v.payload)), v.expected_decode);
  });

  test('the longest AssignedIps fits in one control packet', () => {
    const v = jsonVectors().find((x) => x.name === 'assigned_ips_max_length')!;
    const packet = makeP2pControlPacket(P2P_EVENT_ASSIGNED_IPS, utf8(v.payload))!;
    assert.equal(packet.length, 40 + 8 + 402);
    assert.equal(text(p2pControlPayload(parse(packet))), v.payload);
  });

  test('the decoder accepts a trailing dot and other UUID forms, and normalises them', () => {
    const decoded = decodeAssignedIps(
      utf8('{"proxy_ips":["100.96.0.1","FD00:2021:1111:8000::"],"domain":"Example.com.","resource":"{9D4B79F6-1DB7-4CB3-A077-712102204D73}","extra":1}'),
    );
    assert.deepEqual(
      typeof decoded === 'object' ? { ...decoded, proxyIps: decoded.proxyIps.map(formatIp) } : decoded,
      { resource: '9d4b79f6-1db7-4cb3-a077-712102204d73', domain: 'Example.com', proxyIps: ['100.96.0.1', 'fd00:2021:1111:8000::'] },
    );
  });

  test('the decoder refuses malformed events with an error value', () => {
    const good = { resource: '9d4b79f6-1db7-4cb3-a077-712102204d73', domain: 'foo.com', proxy_ips: ['100.96.0.1'] };
    const cases: [unknown, string][] = [
      [{ ...good, resource: 'nope' }, 'badResource'],
      [{ ...good, resource: undefined }, 'badResource'],
      [{ ...good, domain: 'a..b' }, 'badDomain'],
      [{ ...good, domain: `${'a'.repeat(64)}.com` }, 'badDomain'],
      [{ ...good, domain: 7 }, 'badDomain'],
      [{ ...good, proxy_ips: ['100.96.0.256'] }, 'badProxyIps'],
      [{ ...good, proxy_ips: '100.96.0.1' }, 'badProxyIps'],
      [{ ...good, proxy_ips: [1] }, 'badProxyIps'],
      [[good], 'notAnObject'],
      [null, 'notAnObject'],
    ];
    for (const [value, error] of cases) assert.equal(decodeAssignedIps(utf8(JSON.stringify(value))), error, JSON.stringify(value));
    assert.equal(decodeAssignedIps(utf8('{"resource":')), 'badJson');
    assert.equal(decodeAssignedIps(Uint8Array.of(0x7b, 0xff, 0x7d)), 'badUtf8');
    assert.equal(decodeAssignedIps(utf8('\ufeff{}')), 'badJson');
    assert.equal(decodeDomainStatus(utf8(JSON.stringify({ resource: good.resource, domain: 'x', status: 1 }))), 'badStatus');
  });

  test('an oversized payload makes no packet', () => {
    assert.ok(makeP2pControlPacket(0, new Uint8Array(P2P_CONTROL_MAX_PAYLOAD)));
    assert.equal(makeP2pControlPacket(0, new Uint8Array(P2P_CONTROL_MAX_PAYLOAD + 1)), undefined);
  });
});

describe('names and ids', () => {
  test('UUID forms', () => {
    assert.equal(parseUuid('9D4B79F61DB74CB3A077712102204D73'), '9d4b79f6-1db7-4cb3-a077-712102204d73');
    assert.equal(parseUuid('urn:uuid:9d4b79f6-1db7-4cb3-a077-712102204d73'), '9d4b79f6-1db7-4cb3-a077-712102204d73');
    assert.equal(parseUuid('9d4b79f6-1db7-4cb3-a077-712102204d7'), undefined);
    assert.equal(parseUuid('9d4b79f6-1db7-4cb3-a077-712102204d7g'), undefined);
  });

  test('domain names', () => {
    assert.equal(parseDomainName('.'), '.');
    assert.equal(parseDomainName('foo.com.'), 'foo.com');
    assert.equal(parseDomainName(''), undefined);
    assert.equal(parseDomainName('.foo'), undefined);
    assert.equal(parseDomainName('foo bar.com'), undefined);
    assert.equal(parseDomainName(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`)?.length, 253);
    assert.equal(parseDomainName(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`), undefined);
  });
});

function parse(bytes: Uint8Array): IpPacket {
  const packet = parseIpPacket(bytes);
  assert.equal(typeof packet, 'object', `parse failed: ${String(packet)}`);
  return packet as IpPacket;
}

function withByte(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = bytes.slice();
  copy[offset] = value;
  return copy;
}
