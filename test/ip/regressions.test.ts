import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { IpPacket, ipv4, makeIcmpDestinationUnreachable } from '../../src/ip/index.ts';
import { fixturePath } from '../support/env.ts';

/**
 * The byte arrays of the reference's proptest regression seeds. IPv4 buffers carry a 20-byte zero prefix from
 * an old buffer layout (see the fixture's header); it is stripped here.
 */
function regressionPackets(): { line: number; bytes: Uint8Array }[] {
  const text = readFileSync(fixturePath('packets', 'proptest-regressions-verbatim.txt'), 'utf8');
  const out: { line: number; bytes: Uint8Array }[] = [];
  text.split('\n').forEach((lineText, index) => {
    if (lineText.startsWith('#')) return;
    for (const match of lineText.matchAll(/buf: Owned\(\[([\d, ]+)\]\)/g)) {
      let bytes = Uint8Array.from(match[1]!.split(',').map((s) => Number(s.trim())));
      if (bytes.length > 20 && bytes.subarray(0, 20).every((b) => b === 0) && bytes[20] === 0x45) bytes = bytes.subarray(20);
      out.push({ line: index + 1, bytes: bytes.slice() });
    }
  });
  return out;
}

describe('reference proptest regression packets', () => {
  test('there are regression packets to check', () => {
    assert.ok(regressionPackets().length >= 10);
  });

  test('each parses with a supported transport; only the two stale ICMP seeds fail their checksum', () => {
    const view = new IpPacket();
    const invalid: number[] = [];
    for (const { line, bytes } of regressionPackets()) {
      assert.equal(view.parse(bytes), undefined, `line ${line}`);
      assert.notEqual(view.transport, 'unsupported', `line ${line}`);
      if (!view.checksumsValid()) invalid.push(line);
    }
    // Lines 28-29: an echo request with identifier 1 whose checksum was computed for identifier 0.
    assert.deepEqual(invalid, [28, 29]);
  });

  test('a NAT rewrite and its reverse restore every packet exactly', () => {
    const view = new IpPacket();
    for (const { line, bytes } of regressionPackets()) {
      const original = bytes.slice();
      assert.equal(view.parse(bytes), undefined);
      const valid = view.checksumsValid();
      const destination = view.destination();
      const value = view.sourceValue;
      const outside = view.version === 4 ? ipv4(0x0a000001) : { family: 6 as const, bytes: new Uint8Array(16).fill(0x20) };
      assert.ok(view.setDestination(outside));
      if (value >= 0) view.setSourceValue((value + 1) & 0xffff);
      assert.equal(view.checksumsValid(), valid, `line ${line} after rewrite`);
      assert.ok(view.setDestination(destination));
      if (value >= 0) view.setSourceValue(value);
      assert.deepEqual(view.bytes, original, `line ${line}`);
    }
  });

  test('each can be refused with an ICMP error that parses back', () => {
    const view = new IpPacket();
    const reply = new IpPacket();
    for (const { line, bytes } of regressionPackets()) {
      assert.equal(view.parse(bytes), undefined);
      assert.equal(reply.parse(makeIcmpDestinationUnreachable(view, 'prohibited')), undefined, `line ${line}`);
      assert.ok(reply.checksumsValid(), `line ${line}`);
    }
  });
});
