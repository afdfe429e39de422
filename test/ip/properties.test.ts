import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  IpPacket,
  decodeAssignedIps,
  decodeAssignedIpsPacket,
  decodeDomainStatus,
  decodeDomainStatusPacket,
  encodeAssignedIps,
  encodeDomainStatus,
  icmpErrorKind,
  ipEquals,
  isP2pControlPacket,
  makeAssignedIpsPacket,
  makeDomainStatusPacket,
  makeIcmpDestinationUnreachable,
  makeIcmpEchoReply,
  makeIcmpEchoRequest,
  makeTcpPacket,
  makeTranslatedIcmpError,
  makeUdpPacket,
  parseCidr,
  parseIcmpErrorQuote,
  parseIp,
} from '../../src/ip/index.ts';
import type { Ecn, IpAddr } from '../../src/ip/index.ts';
import { numRuns } from './runs.ts';

type Kind = 'udp' | 'tcp' | 'echoRequest' | 'echoReply';

interface PacketSpec {
  readonly kind: Kind;
  readonly source: IpAddr;
  readonly destination: IpAddr;
  readonly sourcePort: number;
  readonly destinationPort: number;
  readonly flags: number;
  readonly sequence: number;
  readonly payload: Uint8Array;
  readonly optionWords: number;
}

const v4 = fc.integer({ min: 0, max: 0xffffffff }).map((value): IpAddr => ({ family: 4, value }));
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes): IpAddr => ({ family: 6, bytes }));
const port = fc.integer({ min: 0, max: 0xffff });
const addressPair = fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6));

const packetSpec: fc.Arbitrary<PacketSpec> = fc
  .record({
    kind: fc.constantFrom<Kind>('udp', 'tcp', 'echoRequest', 'echoReply'),
    addresses: addressPair,
    sourcePort: port,
    destinationPort: port,
    flags: fc.integer({ min: 0, max: 0xff }),
    sequence: fc.integer({ min: 0, max: 0xffffffff }),
    payload: fc.uint8Array({ maxLength: 300 }),
    optionWords: fc.integer({ min: 0, max: 10 }),
  })
  .map(({ addresses, ...rest }) => ({ ...rest, source: addresses[0], destination: addresses[1] }));

describe('build then parse', () => {
  test('every built packet parses back to what it was built from', () => {
    fc.assert(
      fc.property(packetSpec, (spec) => {
        const packet = new IpPacket();
        assert.equal(packet.parse(build(spec)), undefined);
        assert.equal(packet.version, spec.source.family);
        assert.ok(ipEquals(packet.source(), spec.source));
        assert.ok(ipEquals(packet.destination(), spec.destination));
        assert.ok(packet.checksumsValid());
        assert.deepEqual(packet.payload(), spec.payload);
        switch (spec.kind) {
          case 'udp':
          case 'tcp':
            assert.equal(packet.transport, spec.kind);
            assert.equal(packet.sourcePort, spec.sourcePort);
            assert.equal(packet.destinationPort, spec.destinationPort);
            if (spec.kind === 'tcp') assert.equal(packet.tcpFlags, spec.flags);
            break;
          case 'echoRequest':
          case 'echoReply':
            assert.equal(packet.transport, spec.source.family === 4 ? 'icmpv4' : 'icmpv6');
            assert.equal(packet.isIcmpEchoRequest, spec.kind === 'echoRequest');
            assert.equal(packet.icmpIdentifier, spec.sourcePort);
            assert.equal(packet.icmpSequence, spec.destinationPort);
            assert.equal(icmpErrorKind(packet), 'notAnError');
            break;
        }
      }),
      { numRuns: numRuns(2000) },
    );
  });

  test('p2p control events round-trip', () => {
    const uuid = fc.uuid();
    const label = fc.stringMatching(/^[a-zA-Z0-9-]{1,20}$/);
    const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));
    const ip = fc.oneof(v4, v6);
    fc.assert(
      fc.property(uuid, domain, fc.array(ip, { maxLength: 8 }), fc.boolean(), (resource, name, proxyIps, active) => {
        const view = new IpPacket();
        assert.equal(view.parse(makeAssignedIpsPacket({ resource, domain: name, proxyIps })!), undefined);
        assert.ok(isP2pControlPacket(view));
        const assigned = decodeAssignedIpsPacket(view);
        assert.ok(typeof assigned === 'object');
        assert.equal(assigned.resource, resource);
        assert.equal(assigned.domain, name);
        assert.equal(assigned.proxyIps.length, proxyIps.length);
        assigned.proxyIps.forEach((addr, i) => assert.ok(ipEquals(addr, proxyIps[i]!)));

        const status = { resource, domain: name, status: active ? ('Active' as const) : ('Inactive' as const) };
        assert.equal(view.parse(makeDomainStatusPacket(status)!), undefined);
        assert.deepEqual(decodeDomainStatusPacket(view), status);
      }),
      { numRuns: numRuns(1000) },
    );
  });
});

describe('parsers never throw', () => {
  test('on random bytes', () => {
    const bytes = fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x00), fc.uint8Array({ maxLength: 1300 })).map(([first, rest]) => {
      const out = new Uint8Array(rest.length + 1);
      out[0] = first;
      out.set(rest, 1);
      return out;
    });
    const anyBytes = fc.oneof(bytes, fc.uint8Array({ maxLength: 100 }));
    fc.assert(
      fc.property(anyBytes, (b) => {
        exercise(b);
        const lenient = new IpPacket();
        if (lenient.parseLenient(b) === undefined) {
          assert.ok(lenient.ipEnd <= b.length);
          void [lenient.sourceValue, lenient.destinationValue, lenient.icmpType, lenient.payload(), lenient.toString()];
        }
      }),
      { numRuns: numRuns(2000) },
    );
  });

  test('on mutated, truncated and extended valid packets', () => {
    const mutation = fc.record({ index: fc.nat(), value: fc.integer({ min: 0, max: 255 }) });
    fc.assert(
      fc.property(packetSpec, fc.array(mutation, { maxLength: 6 }), fc.integer({ min: -40, max: 20 }), (spec, mutations, resize) => {
        exercise(mutate(build(spec), mutations, resize));
      }),
      { numRuns: numRuns(2000) },
    );
  });

  test('on ICMP errors quoting mutated packets', () => {
    const mutation = fc.record({ index: fc.nat(), value: fc.integer({ min: 0, max: 255 }) });
    const errorType = fc.constantFrom([3, 3], [3, 4], [11, 0], [5, 0], [3, 20]);
    let translated = 0;
    const runs = numRuns(2000);
    fc.assert(
      fc.property(packetSpec, fc.array(mutation, { maxLength: 4 }), fc.integer({ min: 1, max: 120 }), errorType, (spec, mutations, keep, [type, code]) => {
        const quote = mutate(build(spec), mutations, 0).subarray(0, keep);
        if (exercise(icmpErrorCarrying(spec.source, spec.destination, quote, type!, code!))) translated++;
      }),
      { numRuns: runs },
    );
    assert.ok(translated > runs / 10, `only ${translated} of ${runs} errors were translatable`);
  });

  test('p2p control decoders on random JSON and text', () => {
    const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
    const shaped = fc.record(
      {
        resource: fc.oneof(fc.uuid(), fc.string(), fc.jsonValue()),
        domain: fc.oneof(fc.domain(), fc.string(), fc.jsonValue()),
        proxy_ips: fc.oneof(fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string())), fc.jsonValue()),
        status: fc.oneof(fc.constantFrom('Active', 'Inactive'), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), shaped.map((v) => JSON.stringify(v))), fc.uint8Array({ maxLength: 50 }), (text, raw) => {
        for (const payload of [utf8(text), raw]) {
          const assigned = decodeAssignedIps(payload);
          if (typeof assigned === 'object') assert.deepEqual(decodeAssignedIps(encodeAssignedIps(assigned)), assigned);
          const status = decodeDomainStatus(payload);
          if (typeof status === 'object') assert.deepEqual(decodeDomainStatus(encodeDomainStatus(status)), status);
        }
        parseIp(text);
        parseCidr(text);
        parseCidr(text, { truncate: true });
      }),
      { numRuns: numRuns(2000) },
    );
  });
});

describe('incremental checksums', () => {
  test('equal a full recomputation after random rewrites', () => {
    const rewrite = fc.oneof(
      fc.record({ field: fc.constant('destination' as const), v4, v6 }),
      fc.record({ field: fc.constant('source' as const), v4, v6 }),
      fc.record({ field: fc.constantFrom('sourceValue' as const, 'destinationValue' as const, 'sequence' as const, 'ttl' as const), value: port }),
      fc.record({ field: fc.constant('ecn' as const), ecn: fc.constantFrom<Ecn>(0, 1, 2, 3) }),
      fc.record({ field: fc.constant('icmpType' as const), type: fc.constantFrom(0, 8, 128, 129), code: fc.constantFrom(0, 0, 1) }),
    );
    fc.assert(
      fc.property(packetSpec, fc.array(rewrite, { minLength: 1, maxLength: 5 }), (spec, rewrites) => {
        const incremental = new IpPacket();
        const full = new IpPacket();
        assert.equal(incremental.parse(build(spec)), undefined);
        assert.equal(full.parse(incremental.bytes.slice()), undefined);
        for (const view of [incremental, full]) {
          for (const r of rewrites) {
            switch (r.field) {
              case 'destination':
                view.setDestination(view.version === 4 ? r.v4 : r.v6);
                break;
              case 'source':
                view.setSource(view.version === 4 ? r.v4 : r.v6);
                break;
              case 'sourceValue':
                view.setSourceValue(r.value);
                break;
              case 'destinationValue':
                view.setDestinationValue(r.value);
                break;
              case 'sequence':
                view.setIcmpSequence(r.value);
                break;
              case 'ttl':
                view.setTtl(r.value & 0xff);
                break;
              case 'ecn':
                view.setEcn(r.ecn);
                break;
              case 'icmpType':
                view.setIcmpTypeAndCode(r.type, r.code);
                break;
            }
          }
        }
        full.updateChecksums();
        assert.deepEqual(incremental.bytes, full.bytes);
        assert.ok(incremental.checksumsValid());
      }),
      { numRuns: numRuns(2000) },
    );
  });
});

function build(spec: PacketSpec): Uint8Array {
  let packet: Uint8Array;
  switch (spec.kind) {
    case 'udp':
      packet = makeUdpPacket(spec.source, spec.destination, spec.sourcePort, spec.destinationPort, spec.payload);
      break;
    case 'tcp':
      packet = makeTcpPacket(spec.source, spec.destination, spec.sourcePort, spec.destinationPort, { flags: spec.flags, sequence: spec.sequence }, spec.payload);
      break;
    case 'echoRequest':
      packet = makeIcmpEchoRequest(spec.source, spec.destination, spec.sourcePort, spec.destinationPort, spec.payload);
      break;
    case 'echoReply':
      packet = makeIcmpEchoReply(spec.source, spec.destination, spec.sourcePort, spec.destinationPort, spec.payload);
      break;
  }
  return spec.source.family === 4 && spec.optionWords > 0 ? withIpv4Options(packet, spec.optionWords) : packet;
}

/** Inserts `words` × 4 bytes of NOP options into an IPv4 header and fixes lengths and checksums. */
function withIpv4Options(packet: Uint8Array, words: number): Uint8Array {
  const out = new Uint8Array(packet.length + 4 * words);
  out.set(packet.subarray(0, 20));
  out.fill(1, 20, 20 + 4 * words);
  out.set(packet.subarray(20), 20 + 4 * words);
  out[0] = 0x45 + words;
  out[2] = out.length >>> 8;
  out[3] = out.length & 0xff;
  const view = new IpPacket();
  assert.equal(view.parse(out), undefined);
  view.updateChecksums();
  return out;
}

function mutate(bytes: Uint8Array, mutations: readonly { index: number; value: number }[], resize: number): Uint8Array {
  const length = Math.max(0, bytes.length + resize);
  const out = new Uint8Array(length);
  out.set(bytes.subarray(0, Math.min(length, bytes.length)));
  if (length > 0) for (const m of mutations) out[m.index % length] = m.value;
  return out;
}

function icmpErrorCarrying(source: IpAddr, destination: IpAddr, quote: Uint8Array, type: number, code: number): Uint8Array {
  const packet = makeIcmpEchoRequest(source, destination, 0, 0, quote);
  const view = new IpPacket();
  assert.equal(view.parse(packet), undefined);
  packet[view.l4Offset] = source.family === 4 ? type : type === 3 ? 1 : type === 11 ? 3 : type;
  packet[view.l4Offset + 1] = code;
  view.updateChecksums();
  return packet;
}

const PROXY_V4: IpAddr = { family: 4, value: 0x64600001 };
const PROXY_V6: IpAddr = { family: 6, bytes: new Uint8Array(16).fill(0xfd, 0, 1) };

/**
 * Parses `bytes` and drives every accessor, builder and setter; all must return values, never throw.
 * Returns whether the packet was an ICMP error that could be translated.
 */
function exercise(bytes: Uint8Array): boolean {
  const view = new IpPacket();
  const error = view.parse(bytes);
  if (error !== undefined) {
    assert.equal(typeof error, 'string');
    return false;
  }
  const length = view.bytes.length;
  void [view.sourcePort, view.destinationPort, view.icmpType, view.icmpCode, view.icmpIdentifier, view.icmpSequence];
  void [view.sourceValue, view.destinationValue, view.ttl, view.ecn, view.tcpFlags, view.isTcpRst, view.isIcmpEcho];
  void [view.toString(), view.l4(), view.payload(), view.ipPayload(), view.checksumsValid(), view.source(), view.destination()];

  const kind = icmpErrorKind(view);
  const quote = new IpPacket();
  const quoteError = parseIcmpErrorQuote(view, quote);
  if (quoteError === undefined) {
    assert.equal(kind, 'error');
    void [quote.sourceValue, quote.destinationValue, quote.destination(), quote.toString()];
    const proxy = view.version === 4 ? PROXY_V4 : PROXY_V6;
    const translated = makeTranslatedIcmpError(view, quote, proxy, 4242);
    assert.ok(translated);
    const reparsed = new IpPacket();
    assert.equal(reparsed.parse(translated), undefined);
    assert.ok(reparsed.checksumsValid());
    assert.ok(reparsed.sourceEquals(proxy));
    assert.equal(reparsed.icmpType, view.icmpType);
    const translatedQuote = new IpPacket();
    assert.equal(parseIcmpErrorQuote(reparsed, translatedQuote), undefined);
    assert.ok(translatedQuote.destinationEquals(proxy));
    assert.equal(translatedQuote.sourceValue, 4242);
    assert.equal(translatedQuote.bytes.length, quote.bytes.length);
  }
  if (isP2pControlPacket(view)) {
    decodeAssignedIpsPacket(view);
    decodeDomainStatusPacket(view);
  }

  const reply = new IpPacket();
  assert.equal(reply.parse(makeIcmpDestinationUnreachable(view, 'prohibited')), undefined);
  assert.ok(reply.checksumsValid());

  view.setDestination(view.version === 4 ? PROXY_V4 : PROXY_V6);
  view.setSourceValue(1);
  view.setDestinationValue(2);
  view.setIcmpSequence(3);
  view.setTtl(4);
  view.setEcn(1);
  view.applyOuterEcn(3);
  view.updateChecksums();
  assert.ok(view.checksumsValid());
  assert.equal(view.bytes.length, length);
  return quoteError === undefined;
}
