import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  formatPathCandidate,
  hostCandidate,
  isFamilyMatched,
  parsePathCandidate,
  pathCandidateFoundation,
  pathCandidatePriority,
  relayCandidate,
  sendSocket,
  serverReflexiveCandidate,
  type PathCandidate,
} from '../../../src/snownet/path-agent/index.ts';
import { socketAddr, type SocketAddr } from '../../../src/util/socket-addr.ts';

// The addresses of the reference codec's own examples (path-agent candidate.rs and snownet
// candidate.rs tests); the foundations were computed with an independent FNV-1a implementation.
const ADDR = socketAddr('127.0.0.1', 1234);
const OTHER = socketAddr('192.168.1.5', 1234);
const ADDR_V6 = socketAddr('::1', 1234);

describe('ICE-less candidate codec', () => {
  test('host, srflx and relay candidates print with their FNV-1a foundation, priority and base', () => {
    assert.equal(formatPathCandidate(hostCandidate(ADDR)), 'candidate:3980819833808343013 1 udp 2130706431 127.0.0.1 1234 typ host');
    assert.equal(
      formatPathCandidate(serverReflexiveCandidate(ADDR, OTHER)),
      'candidate:16447672801229755014 1 udp 1694498815 127.0.0.1 1234 typ srflx raddr 192.168.1.5 rport 1234',
    );
    assert.equal(
      formatPathCandidate(relayCandidate(ADDR, OTHER)),
      'candidate:453059077433216087 1 udp 16777215 127.0.0.1 1234 typ relay raddr 192.168.1.5 rport 1234',
    );
    assert.equal(formatPathCandidate(hostCandidate(ADDR_V6)), 'candidate:7920926942413777054 1 udp 2130706431 ::1 1234 typ host');
    assert.equal(
      formatPathCandidate(relayCandidate(ADDR_V6, ADDR_V6)),
      'candidate:4114658255715458421 1 udp 16777215 ::1 1234 typ relay raddr ::1 rport 1234',
    );
  });

  test('foundations of the snownet adapter examples', () => {
    const one = socketAddr('1.1.1.1', 1234);
    const two = socketAddr('2.2.2.2', 5678);
    assert.equal(pathCandidateFoundation(hostCandidate(one)), '1179857357453285637');
    assert.equal(pathCandidateFoundation(serverReflexiveCandidate(one, two)), '13963916338517602478');
    assert.equal(pathCandidateFoundation(relayCandidate(one, two)), '8308400157018688495');
    assert.equal(pathCandidateFoundation(serverReflexiveCandidate(ADDR_V6, ADDR_V6)), '7119766573423579116');
  });

  test('priorities order host above srflx above relay', () => {
    assert.equal(pathCandidatePriority('host'), 0x7effffff);
    assert.equal(pathCandidatePriority('srflx'), 0x64ffffff);
    assert.equal(pathCandidatePriority('relay'), 0x00ffffff);
  });

  test('every kind and family round-trips', () => {
    for (const candidate of [
      hostCandidate(ADDR),
      hostCandidate(ADDR_V6),
      serverReflexiveCandidate(ADDR, OTHER),
      serverReflexiveCandidate(ADDR_V6, ADDR_V6),
      relayCandidate(ADDR, OTHER),
      relayCandidate(ADDR_V6, ADDR_V6),
    ]) {
      assert.deepEqual(parsePathCandidate(formatPathCandidate(candidate)), candidate);
    }
  });

  test('the reference codec refuses what it refuses, with the same reason', () => {
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 80 typ srflx'), 'missingBase');
    assert.equal(parsePathCandidate('candidate:1 1 tcp 100 1.1.1.1 80 typ host'), 'unsupportedTransport');
    assert.equal(parsePathCandidate('not a candidate'), 'malformed');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 999.1.1.1 80 typ host'), 'invalidAddress');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 80 typ prflx raddr 1.1.1.1 rport 1'), 'unknownType');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 80 kind host'), 'malformed');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 80 typ'), 'malformed');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 80 typ relay raddr 1.1.1.1'), 'malformed');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 80 typ relay raddr 1.1.1.1 rport x'), 'invalidAddress');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 1.1.1.1 65536 typ host'), 'invalidAddress');
    assert.equal(parsePathCandidate('candidate:1 1 udp 100 fe80::1%eth0 80 typ host'), 'invalidAddress');
    assert.equal(parsePathCandidate(' candidate:1 1 udp 100 1.1.1.1 80 typ host'), 'malformed');
    assert.equal(parsePathCandidate('candidate:1 1'), 'malformed');
  });

  test('fields are read as the reference reads them: any ASCII whitespace, raddr and rport anywhere after the type', () => {
    assert.deepEqual(
      parsePathCandidate('candidate:x\t1  UDP 7 1.1.1.1 80 typ relay rport 9 generation 0 raddr 2.2.2.2\r\n'),
      relayCandidate(socketAddr('1.1.1.1', 80), socketAddr('2.2.2.2', 9)),
    );
    assert.deepEqual(parsePathCandidate('candidate:x 1 udp 7 1.1.1.1 +80 typ host raddr 3.3.3.3 rport 3'), hostCandidate(socketAddr('1.1.1.1', 80)));
    assert.deepEqual(parsePathCandidate('candidate:x 1 udp 7 1.1.1.1 00080 typ host'), hostCandidate(socketAddr('1.1.1.1', 80)));
  });

  test('the send socket is the base for srflx and the relayed address for relay', () => {
    assert.deepEqual(sendSocket(hostCandidate(ADDR)), ADDR);
    assert.deepEqual(sendSocket(serverReflexiveCandidate(ADDR, OTHER)), OTHER);
    assert.deepEqual(sendSocket(relayCandidate(ADDR, OTHER)), ADDR);
  });

  test('a relay candidate is family-matched when the relayed address and its base share a family', () => {
    assert.equal(isFamilyMatched(relayCandidate(ADDR, OTHER)), true);
    assert.equal(isFamilyMatched(relayCandidate(ADDR_V6, ADDR_V6)), true);
    assert.equal(isFamilyMatched(relayCandidate(ADDR_V6, ADDR)), false);
    assert.equal(isFamilyMatched(relayCandidate(ADDR, ADDR_V6)), false);
    assert.equal(isFamilyMatched(serverReflexiveCandidate(ADDR, OTHER)), true);
  });
});

describe('ICE-less candidate codec properties', () => {
  test('any candidate survives print and parse, and prints back identically', () => {
    fc.assert(
      fc.property(candidate(), (original) => {
        const text = formatPathCandidate(original);
        const parsed = parsePathCandidate(text);
        assert.ok(typeof parsed !== 'string', `${text}: ${String(parsed)}`);
        assert.deepEqual(parsed, original);
        assert.equal(formatPathCandidate(parsed), text);
      }),
      { numRuns: 1_000 },
    );
  });

  test('the foundation depends on kind, address and base only', () => {
    fc.assert(
      fc.property(candidate(), candidate(), (a, b) => {
        const same = a.kind === b.kind && key(a.address) === key(b.address) && (a.kind === 'host' || key(a.base) === key(b.base));
        assert.equal(pathCandidateFoundation(a) === pathCandidateFoundation(b), same);
        assert.match(pathCandidateFoundation(a), /^\d{1,20}$/);
        assert.ok(BigInt(pathCandidateFoundation(a)) < 2n ** 64n);
      }),
      { numRuns: 500 },
    );
  });

  test('random and mutated strings never throw and parse only to well-formed candidates', () => {
    const mutated = fc
      .tuple(candidate(), fc.nat(150), fc.nat(20), fc.string({ maxLength: 12 }))
      .map(([c, start, length, insert]) => {
        const line = formatPathCandidate(c);
        return line.slice(0, start) + insert + line.slice(start + length);
      });
    const tokens = fc
      .array(
        fc.constantFrom('candidate:x', '1', 'udp', 'UDP', 'tcp', '99999999999', '::', '1.2.3.4', '+7', '65535', 'typ', 'host', 'relay', 'srflx', 'prflx', 'raddr', 'rport', '\t', ''),
        { maxLength: 14 },
      )
      .map((t) => t.join(' '));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), mutated, tokens), (text) => {
        const parsed = parsePathCandidate(text);
        if (typeof parsed === 'string') return;
        assert.ok(parsed.kind === 'host' || parsed.kind === 'srflx' || parsed.kind === 'relay');
        assert.ok(parsed.address.port >= 0 && parsed.address.port <= 0xffff);
        assert.deepEqual(parsePathCandidate(formatPathCandidate(parsed)), parsed);
      }),
      { numRuns: 3_000 },
    );
  });
});

function candidate(): fc.Arbitrary<PathCandidate> {
  const v4 = fc.tuple(fc.ipV4(), fc.nat(0xffff)).map(([ip, port]) => socketAddr(ip, port));
  const v6 = fc.tuple(fc.ipV6(), fc.nat(0xffff)).map(([ip, port]) => canonical(ip, port));
  const address = fc.oneof(v4, v6);
  return fc.oneof(
    address.map((a) => hostCandidate(a)),
    fc.tuple(address, address).map(([a, b]) => serverReflexiveCandidate(a, b)),
    fc.tuple(address, address).map(([a, b]) => relayCandidate(a, b)),
  );
}

/** fast-check's IPv6 text is not always the form a socket reports; parse it the way candidates are. */
function canonical(ip: string, port: number): SocketAddr {
  const parsed = parsePathCandidate(`candidate:x 1 udp 1 ${ip} ${port} typ host`);
  assert.ok(typeof parsed !== 'string', ip);
  return parsed.address;
}

function key(a: SocketAddr): string {
  return `${a.address}|${a.port}`;
}
