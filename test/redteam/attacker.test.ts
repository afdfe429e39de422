/**
 * The attacker tool's packet sets, checked without a lab: each set is non-empty, fits the tunnel,
 * carries what its label says, and the reply counter classifies what the gateway sends back.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIp } from '../../src/ip/addr.ts';
import { makeDomainStatusPacket, makeIcmpDestinationUnreachable, makeTcpPacket, MAX_IP_SIZE, IpPacket } from '../../src/ip/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { INITIATION_OFFSET_MAC1, INITIATION_SIZE } from '../../src/wireguard/constants.ts';
import { mac } from '../../src/wireguard/crypto.ts';
import { fuzzDatagram, fuzzDnsQueryPacket, handshakeInitiation, mac1KeyOf } from '../../tools/attacker/datagrams.ts';
import { ReplyCounts } from '../../tools/attacker/attacks.ts';
import { mutate } from '../../tools/attacker/mutate.ts';
import {
  assignedIpsFlood,
  bypassAttempts,
  craftedIcmp,
  fragments,
  hostileControlPayloads,
  hostServiceProbes,
  ipv6ExtensionHeaders,
  malformedHeaders,
  spoofedSources,
  type AttackTargets,
} from '../../tools/attacker/packets.ts';

const TARGETS: AttackTargets = {
  self: { ipv4: '100.64.0.9', ipv6: 'fd00:2021:1111::9' },
  victim: { ipv4: '100.64.0.8', ipv6: 'fd00:2021:1111::8' },
  gateway: { ipv4: '100.64.0.2', ipv6: 'fd00:2021:1111::2' },
  granted: [
    { address: '10.78.0.2', protocol: 'tcp', port: 80 },
    { address: 'fd00:78::2', protocol: 'tcp', port: 80 },
    { address: '100.96.0.1', protocol: 'tcp', port: 80 },
    { address: '100.96.0.1', protocol: 'icmp' },
  ],
  ungranted: ['10.78.0.4', '10.78.0.3', 'fd00:78::3'],
  dnsResource: { id: '6f0c4b1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b', domain: 'app.lab.test' },
  otherResourceId: '7a1d5c2f-3b4e-4f60-9bac-1d2e3f4a5b6c',
  hostServicePort: 2222,
};

const SETS = { bypassAttempts, spoofedSources, fragments, craftedIcmp, ipv6ExtensionHeaders, malformedHeaders, hostServiceProbes, hostileControlPayloads };

describe('attacker: packet sets', () => {
  for (const [name, build] of Object.entries(SETS)) {
    test(`${name}: labelled packets that fit one tunnel packet`, () => {
      const packets = build(TARGETS);
      assert.ok(packets.length > 0);
      for (const { label, packet } of packets) {
        assert.ok(label.length > 0);
        assert.ok(packet.length <= MAX_IP_SIZE, `${label}: ${packet.length} bytes`);
      }
    });
  }

  test('bypass attempts never address a granted port', () => {
    const view = new IpPacket();
    for (const { label, packet } of bypassAttempts(TARGETS)) {
      if (view.parse(packet) !== undefined || view.transport !== 'tcp') continue;
      const granted = TARGETS.granted.some((g) => g.protocol === 'tcp' && g.port === view.destinationPort && view.destinationEquals(parseIp(g.address)!));
      assert.equal(granted, false, label);
    }
  });

  test('spoofed packets never carry the attacker’s own source', () => {
    const own = [parseIp(TARGETS.self.ipv4)!, parseIp(TARGETS.self.ipv6)!];
    const view = new IpPacket();
    for (const { label, packet } of spoofedSources(TARGETS)) {
      assert.equal(view.parse(packet), undefined, label);
      assert.equal(own.some((ip) => view.sourceEquals(ip)), false, label);
    }
  });

  test('the AssignedIps flood: one new domain and new in-range proxies per packet', () => {
    const packets = assignedIpsFlood(TARGETS.dnsResource.id, 'lab.test', 50, 40);
    assert.equal(packets.length, 50);
    const text = new TextDecoder();
    const seen = new Set<string>();
    for (const { packet } of packets) {
      const body = JSON.parse(text.decode(packet.subarray(48))) as { domain: string; proxy_ips: string[] };
      assert.equal(body.proxy_ips.length, 40);
      assert.ok(!seen.has(body.domain));
      seen.add(body.domain);
      for (const ip of body.proxy_ips) assert.ok(ip.startsWith('100.') || ip.startsWith('fd00:2021:1111:8000:'), ip);
    }
  });
});

describe('attacker: datagrams', () => {
  test('handshake initiations carry a valid MAC1 for the gateway’s key', () => {
    const publicKey = new Uint8Array(32).fill(7);
    const key = mac1KeyOf(publicKey);
    const message = handshakeInitiation(seededRandom(1), key);
    assert.equal(message.length, INITIATION_SIZE);
    assert.equal(message[0], 1);
    assert.deepEqual(message.subarray(INITIATION_OFFSET_MAC1, INITIATION_OFFSET_MAC1 + 16), mac(key, message.subarray(0, INITIATION_OFFSET_MAC1)));
  });

  test('fuzzed datagrams and DNS queries are deterministic per seed and bounded in size', () => {
    const key = mac1KeyOf(new Uint8Array(32).fill(7));
    const run = (seed: number): Uint8Array[] => {
      const rng = seededRandom(seed);
      return Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? fuzzDatagram(rng, key, []) : fuzzDnsQueryPacket(rng, '100.64.0.9', '100.64.0.2', 53535)));
    };
    assert.deepEqual(run(3), run(3));
    for (const datagram of run(4)) assert.ok(datagram.length <= 1500);
  });

  test('mutations stay within the size limit', () => {
    const rng = seededRandom(5);
    for (let i = 0; i < 500; i++) assert.ok(mutate(rng, new Uint8Array(100 + (i % 50)), 160).length <= 160);
  });
});

describe('attacker: reply counting', () => {
  test('ICMP prohibited, SYN-ACK and DomainStatus are told apart', () => {
    const counts = new ReplyCounts();
    const a = parseIp('10.78.0.2')!;
    const b = parseIp('100.64.0.9')!;
    const syn = makeTcpPacket(b, a, 40000, 22, { flags: 0x02 }, new Uint8Array(0));
    const view = new IpPacket();
    view.parse(syn);
    counts.onTunnelPacket(makeIcmpDestinationUnreachable(view, 'prohibited'));
    counts.onTunnelPacket(makeTcpPacket(a, b, 80, 40000, { flags: 0x12 }, new Uint8Array(0)));
    counts.onTunnelPacket(makeDomainStatusPacket({ resource: TARGETS.dnsResource.id, domain: 'app.lab.test', status: 'Inactive' })!);
    counts.onDatagram(new Uint8Array(64).fill(3, 0, 1));
    assert.deepEqual(
      { prohibited: counts.icmpProhibited, synAck: counts.tcpSynAck, inactive: counts.domainStatusInactive, cookies: counts.cookieReplies },
      { prohibited: 1, synAck: 1, inactive: 1, cookies: 1 },
    );
  });
});
