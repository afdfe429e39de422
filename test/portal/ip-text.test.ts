import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import { isCanonicalCidr, isIpText, isIpv4Text, isIpv6Text } from '../../src/portal/ip-text.ts';

const RUNS = process.env['CI'] ? 10_000 : 2_000;

test('IP text is accepted exactly as node:net accepts it, without IPv6 zones', () => {
  const pieces = ['0', '1', '01', 'a', 'F', 'ffff', '12345', '1.2.3.4', '01.2.3.4', '256.1.1.1', '1.2.3', ':', '::', '.', '%eth0', 'g', ''];
  const text = fc.oneof(
    fc.array(fc.constantFrom(...pieces), { maxLength: 12 }).map((parts) => parts.join('')),
    fc.ipV4(),
    fc.ipV6(),
    fc.ipV4Extended(),
  );
  fc.assert(
    fc.property(text, (candidate) => {
      const zoneFree = !candidate.includes('%');
      assert.equal(isIpv4Text(candidate), isIPv4(candidate), candidate);
      assert.equal(isIpv6Text(candidate), zoneFree && isIPv6(candidate), candidate);
      assert.equal(isIpText(candidate), isIPv4(candidate) || (zoneFree && isIPv6(candidate)), candidate);
    }),
    { numRuns: RUNS },
  );
});

test('a network needs a prefix in range and no host bits', () => {
  for (const good of ['10.0.0.0/8', '0.0.0.0/0', '10.0.0.1/32', '10.0.0.0/08', '::/0', 'fd00:2021:1111::/107', 'fd00::1/128', '::ffff:10.0.0.0/104']) {
    assert.equal(isCanonicalCidr(good), true, good);
  }
  for (const bad of ['10.0.0.1/8', '10.0.0.0', '10.0.0.0/', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/0008', '010.0.0.0/8', '::/129', 'fd00::1/64', 'fe80::%eth0/64', 'x/8']) {
    assert.equal(isCanonicalCidr(bad), false, bad);
  }
});
