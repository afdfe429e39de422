// The TUN offload byte work in the addon (native/offload.c): what the reader makes of a read with
// a virtio header (TSO, USO, checksum left to us) and what the writer merges. Properties: merging
// a flow's consecutive TCP segments and splitting the result gives back the same packets byte for
// byte; every split packet has valid checksums; merging stops where a flow stops; nothing the
// kernel could hand over makes the splitter fail other than with "malformed".
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { internetChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from '../../src/ip/index.ts';
import { isNativeAddonBuilt, loadNative } from '../../src/runtime/native.ts';

const skip = isNativeAddonBuilt() ? undefined : 'the native addon is not built (npm ci builds it)';
const VNET = 10;
const STRIDE = 2048;
const MAX_LENGTH = 1500;
const TCP = 6;
const UDP = 17;

interface Flow {
  readonly version: 4 | 6;
  readonly source: Uint8Array;
  readonly destination: Uint8Array;
  readonly sourcePort: number;
  readonly destinationPort: number;
  readonly sequence: number;
  readonly ack: number;
  readonly window: number;
  readonly options: Uint8Array;
  readonly id: number;
  readonly dontFragment: boolean;
  readonly tos: number;
}

function ipHeader(flow: Flow, protocol: number, l4Length: number, index: number): Uint8Array {
  if (flow.version === 4) {
    const h = new Uint8Array(20);
    h[0] = 0x45;
    h[1] = flow.tos;
    h.set([(20 + l4Length) >> 8, (20 + l4Length) & 0xff], 2);
    const id = (flow.id + index) & 0xffff;
    h.set([id >> 8, id & 0xff], 4);
    h[6] = flow.dontFragment ? 0x40 : 0;
    h[8] = 64;
    h[9] = protocol;
    h.set(flow.source, 12);
    h.set(flow.destination, 16);
    const checksum = internetChecksum(h, 0, 20);
    h.set([checksum >> 8, checksum & 0xff], 10);
    return h;
  }
  const h = new Uint8Array(40);
  h[0] = 0x60 | (flow.tos >> 4);
  h[1] = (flow.tos & 0x0f) << 4;
  h.set([l4Length >> 8, l4Length & 0xff], 4);
  h[6] = protocol;
  h[7] = 64;
  h.set(flow.source, 8);
  h.set(flow.destination, 24);
  return h;
}

function withL4Checksum(packet: Uint8Array, ipLength: number, protocol: number): Uint8Array {
  const l4Length = packet.length - ipLength;
  const at = ipLength + (protocol === TCP ? 16 : 6);
  packet[at] = packet[at + 1] = 0;
  const pseudo = packet[0]! >> 4 === 4 ? pseudoHeaderSumV4(packet, protocol, l4Length) : pseudoHeaderSumV6(packet, protocol, l4Length);
  let checksum = internetChecksum(packet, ipLength, packet.length, pseudo);
  if (protocol === UDP && checksum === 0) checksum = 0xffff;
  packet.set([checksum >> 8, checksum & 0xff], at);
  return packet;
}

/** Segment `index` of a flow: `offset` payload bytes already sent, `flags` its TCP flags. */
function tcpSegment(flow: Flow, index: number, offset: number, payload: Uint8Array, flags: number): Uint8Array {
  const tcpLength = 20 + flow.options.length;
  const ip = ipHeader(flow, TCP, tcpLength + payload.length, index);
  const packet = new Uint8Array(ip.length + tcpLength + payload.length);
  packet.set(ip);
  const t = ip.length;
  packet.set([flow.sourcePort >> 8, flow.sourcePort & 0xff, flow.destinationPort >> 8, flow.destinationPort & 0xff], t);
  new DataView(packet.buffer).setUint32(t + 4, (flow.sequence + offset) >>> 0);
  new DataView(packet.buffer).setUint32(t + 8, flow.ack);
  packet[t + 12] = (tcpLength / 4) << 4;
  packet[t + 13] = flags;
  new DataView(packet.buffer).setUint16(t + 14, flow.window);
  packet.set(flow.options, t + 20);
  packet.set(payload, t + tcpLength);
  return withL4Checksum(packet, ip.length, TCP);
}

const flowArbitrary: fc.Arbitrary<Flow> = fc.record({
  version: fc.constantFrom(4 as const, 6 as const),
  seed: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  sourcePort: fc.integer({ min: 1, max: 65535 }),
  destinationPort: fc.integer({ min: 1, max: 65535 }),
  sequence: fc.nat({ max: 0xffff_ffff }),
  ack: fc.nat({ max: 0xffff_ffff }),
  window: fc.nat({ max: 0xffff }),
  timestamps: fc.boolean(),
  id: fc.nat({ max: 0xffff }),
  dontFragment: fc.boolean(),
  tos: fc.constantFrom(0, 0b10, 0b01, 0xb8),
}).map((r) => ({
  ...r,
  source: r.version === 4 ? r.seed.slice(0, 4) : r.seed.slice(0, 16),
  destination: r.version === 4 ? r.seed.slice(4, 8) : r.seed.slice(16, 32),
  options: r.timestamps ? Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9) : new Uint8Array(0),
}));

/** A flow's run of segments as a sender's TCP would produce them: all full but the last, PSH maybe on the last. */
const runArbitrary = fc
  .record({
    flow: flowArbitrary,
    count: fc.integer({ min: 1, max: 64 }),
    segment: fc.integer({ min: 1, max: 1200 }),
    lastShort: fc.nat({ max: 1199 }),
    push: fc.boolean(),
    fill: fc.nat({ max: 255 }),
  })
  .filter(({ count, segment }) => count * segment <= 60_000)
  .map(({ flow, count, segment, lastShort, push, fill }) => {
    const packets: Uint8Array[] = [];
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const length = i === count - 1 ? segment - (lastShort % segment) : segment;
      const payload = new Uint8Array(length).map((_, j) => (fill + i * 7 + j) & 0xff);
      packets.push(tcpSegment(flow, i, offset, payload, 0x10 | (push && i === count - 1 ? 0x08 : 0)));
      offset += length;
    }
    return { flow, packets };
  });

function coalesce(packets: readonly Uint8Array[], udp = false): { merged: number; frame: Uint8Array } {
  const total = packets.reduce((n, p) => n + p.length, 0);
  const buffer = new Uint8Array(total);
  const spans = new Uint32Array((packets.length + 1) * 2);
  let at = 0;
  packets.forEach((p, i) => {
    buffer.set(p, at);
    spans[2 * i] = at;
    spans[2 * i + 1] = p.length;
    at += p.length;
  });
  const frame = new Uint8Array(VNET + 65535);
  const merged = loadNative().offloadCoalesce(buffer, spans, packets.length, frame, udp);
  return { merged, frame: frame.subarray(0, spans[2 * packets.length]) };
}

function split(frame: Uint8Array): Uint8Array[] | number {
  const out = new Uint8Array(STRIDE * 512);
  const lengths = new Uint32Array(512);
  const count = loadNative().offloadSplit(frame, out, STRIDE, MAX_LENGTH, lengths);
  if (count < 0) return count;
  return Array.from({ length: count }, (_, i) => out.slice(i * STRIDE, i * STRIDE + lengths[i]!));
}

function assertValidChecksums(packet: Uint8Array): void {
  const version = packet[0]! >> 4;
  const ipLength = version === 4 ? (packet[0]! & 0x0f) * 4 : 40;
  const protocol = version === 4 ? packet[9]! : packet[6]!;
  if (version === 4) assert.equal(internetChecksum(packet, 0, ipLength), 0, 'IPv4 header checksum');
  const l4Length = packet.length - ipLength;
  const pseudo = version === 4 ? pseudoHeaderSumV4(packet, protocol, l4Length) : pseudoHeaderSumV6(packet, protocol, l4Length);
  assert.equal(internetChecksum(packet, ipLength, packet.length, pseudo), 0, 'L4 checksum');
}

describe('TUN offload splitting and merging', { skip }, () => {
  test('merging a flow\'s consecutive segments and splitting the result gives back the same packets', () => {
    fc.assert(
      fc.property(runArbitrary, ({ flow, packets }) => {
        const { merged, frame } = coalesce(packets);
        // IPv4 ids in sequence are needed unless DF is set; these are in sequence.
        assert.equal(merged, packets.length);
        const segments = split(frame);
        assert.ok(Array.isArray(segments));
        assert.equal(segments.length, packets.length);
        segments.forEach((s, i) => assert.deepEqual(s, packets[i], `segment ${i} of ${packets.length} (IPv${flow.version})`));
        if (packets.length > 1) assert.equal(frame[1], flow.version === 4 ? 1 : 4, 'a TCP GSO frame');
      }),
      { numRuns: 150 },
    );
  });

  test('merging stops where the flow does: another flow, a gap, another ack, a flag other than ACK or PSH', () => {
    fc.assert(
      fc.property(runArbitrary.filter(({ packets }) => packets.length >= 3), fc.nat(), fc.constantFrom('port', 'gap', 'ack', 'syn', 'tos', 'window'), ({ flow, packets }, at, change) => {
        const cut = 1 + (at % (packets.length - 2));
        const breaking = packets[cut]!.slice();
        const ip = flow.version === 4 ? 20 : 40;
        if (change === 'port') breaking[ip + 1]! ^= 1;
        else if (change === 'gap') breaking[ip + 7]! ^= 1;
        else if (change === 'ack') breaking[ip + 11]! ^= 1;
        else if (change === 'syn') breaking[ip + 13]! |= 0x02;
        else if (change === 'window') breaking[ip + 15]! ^= 1;
        else breaking[flow.version === 4 ? 1 : 1]! ^= flow.version === 4 ? 0x04 : 0x40;
        const fixed = withL4Checksum(breaking, ip, TCP);
        if (flow.version === 4) {
          fixed[10] = fixed[11] = 0;
          const checksum = internetChecksum(fixed, 0, 20);
          fixed.set([checksum >> 8, checksum & 0xff], 10);
        }
        const run = [...packets.slice(0, cut), fixed, ...packets.slice(cut + 1)];
        const { merged, frame } = coalesce(run);
        assert.equal(merged, cut, `merged up to the ${change} change`);
        const segments = split(frame);
        assert.ok(Array.isArray(segments));
        segments.forEach((s, i) => assert.deepEqual(s, run[i]));
      }),
      { numRuns: 150 },
    );
  });

  test('with USO, a flow\'s UDP datagrams of one size (the last may be shorter) merge and split back byte for byte; without, they stay apart', () => {
    fc.assert(
      fc.property(flowArbitrary, fc.integer({ min: 1, max: 1200 }), fc.integer({ min: 1, max: 64 }), fc.nat({ max: 1199 }), (flow, size, count, short) => {
        fc.pre(size * count <= 60_000);
        const packets = Array.from({ length: count }, (_, i) => {
          const length = i === count - 1 ? size - (short % size) : size;
          const idFlow = { ...flow, id: (flow.id + i) & 0xffff };
          return udpDatagram(idFlow, new Uint8Array(length).map((_, j) => (i * 3 + j) & 0xff));
        });
        const { merged, frame } = coalesce(packets, true);
        assert.equal(merged, count);
        if (count > 1) assert.equal(frame[1], 5, 'a UDP_L4 GSO frame');
        const segments = split(frame);
        assert.ok(Array.isArray(segments));
        assert.equal(segments.length, count);
        segments.forEach((s, i) => assert.deepEqual(s, packets[i]));
        assert.equal(coalesce(packets, false).merged, 1, 'no USO: one at a time');
      }),
      { numRuns: 100 },
    );
  });

  test('a read whose checksum the kernel left to us comes out with a complete checksum', () => {
    fc.assert(
      fc.property(flowArbitrary, fc.uint8Array({ maxLength: 1200 }), fc.boolean(), (flow, payload, udp) => {
        const packet = udp ? udpDatagram(flow, payload) : tcpSegment(flow, 0, 0, payload, 0x18);
        const ip = flow.version === 4 ? 20 : 40;
        const protocol = udp ? UDP : TCP;
        const field = ip + (udp ? 6 : 16);
        const partial = packet.slice();
        const l4Length = packet.length - ip;
        const pseudo = flow.version === 4 ? pseudoHeaderSumV4(packet, protocol, l4Length) : pseudoHeaderSumV6(packet, protocol, l4Length);
        const folded = ~internetChecksum(new Uint8Array(0), 0, 0, pseudo) & 0xffff;
        partial.set([folded >> 8, folded & 0xff], field);
        const frame = new Uint8Array(VNET + partial.length);
        frame[0] = 1;
        frame.set([ip & 0xff, ip >> 8, (field - ip) & 0xff, 0], 6);
        frame.set(partial, VNET);
        const segments = split(frame);
        assert.ok(Array.isArray(segments) && segments.length === 1);
        assertValidChecksums(segments[0]!);
        assert.deepEqual(segments[0]!.subarray(ip + (udp ? 8 : 20 + flow.options.length)), payload);
      }),
      { numRuns: 150 },
    );
  });

  test('a UDP read of several datagrams (USO) splits into datagrams with their own lengths and checksums', () => {
    fc.assert(
      fc.property(flowArbitrary, fc.integer({ min: 1, max: 1200 }), fc.integer({ min: 1, max: 40 }), (flow, segment, count) => {
        const payload = new Uint8Array(segment * count - (count > 1 ? segment >> 1 : 0)).map((_, i) => i & 0xff);
        const datagram = udpDatagram(flow, payload);
        const frame = new Uint8Array(VNET + datagram.length);
        frame[1] = 5;
        frame.set([segment & 0xff, segment >> 8], 4);
        frame.set(datagram, VNET);
        const segments = split(frame);
        assert.ok(Array.isArray(segments));
        const ip = flow.version === 4 ? 20 : 40;
        let joined: number[] = [];
        for (const s of segments) {
          assertValidChecksums(s);
          assert.equal((s[ip + 4]! << 8) | s[ip + 5]!, s.length - ip, 'UDP length');
          assert.ok(s.length - ip - 8 <= segment);
          joined = joined.concat([...s.subarray(ip + 8)]);
        }
        assert.deepEqual(Uint8Array.from(joined), payload);
      }),
      { numRuns: 100 },
    );
  });

  test('arbitrary bytes never crash the splitter: a count or "malformed"', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (frame) => {
        const result = split(frame);
        assert.ok(Array.isArray(result) || result === -1 || result === -2);
      }),
      { numRuns: 500 },
    );
  });
});

function udpDatagram(flow: Flow, payload: Uint8Array): Uint8Array {
  const ip = ipHeader(flow, UDP, 8 + payload.length, 0);
  const packet = new Uint8Array(ip.length + 8 + payload.length);
  packet.set(ip);
  packet.set([flow.sourcePort >> 8, flow.sourcePort & 0xff, flow.destinationPort >> 8, flow.destinationPort & 0xff], ip.length);
  packet.set([(8 + payload.length) >> 8, (8 + payload.length) & 0xff], ip.length + 4);
  packet.set(payload, ip.length + 8);
  return withL4Checksum(packet, ip.length, UDP);
}
