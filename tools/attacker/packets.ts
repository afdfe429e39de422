/**
 * The attacker's packet sets, one per attack family of issue 17. Each is a pure function of the
 * targets (addresses the test hands over) returning labelled packets; what the gateway must do
 * with them is the same for all: forward what the attacker's flows grant, and nothing else.
 *
 * Every packet here goes *inside* the tunnel (the attacker's WireGuard session); the datagram-level
 * attacks (handshake flood, fuzzed datagrams) are in datagrams.ts.
 */
import { parseIp, type IpAddr } from '../../src/ip/addr.ts';
import { PROTOCOL_FZ_P2P_CONTROL, PROTOCOL_ICMPV4, PROTOCOL_ICMPV6, PROTOCOL_TCP, PROTOCOL_UDP } from '../../src/ip/constants.ts';
import { makeAssignedIpsPacket, makeP2pControlPacket, P2P_EVENT_ASSIGNED_IPS, P2P_EVENT_DOMAIN_STATUS } from '../../src/ip/p2p-control.ts';
import { concat, extensionHeader, fragmentHeader, icmp, ip, ipv4, ipv6, tcp, TCP_ACK, TCP_SYN, udp } from './raw.ts';

export interface LabelledPacket {
  readonly label: string;
  readonly packet: Uint8Array;
}

/** A TCP or UDP port (or ICMP) the attacker's flows grant at an address. */
export interface Grant {
  readonly address: string;
  readonly protocol: 'tcp' | 'udp' | 'icmp';
  readonly port?: number;
}

export interface AttackTargets {
  /** The attacker's own tunnel addresses. */
  readonly self: { readonly ipv4: string; readonly ipv6: string };
  readonly victim: { readonly ipv4: string; readonly ipv6: string };
  /** The gateway's tunnel addresses. */
  readonly gateway: { readonly ipv4: string; readonly ipv6: string };
  /** What the attacker may reach (CIDR resources by address, DNS resources by proxy IP). */
  readonly granted: readonly Grant[];
  /** Addresses the attacker holds no grant for at all (other resources, real IPs behind proxies, the gateway's LAN side). */
  readonly ungranted: readonly string[];
  /** A DNS resource the attacker holds, for p2p control payloads. */
  readonly dnsResource: { readonly id: string; readonly domain: string };
  /** A resource the attacker does not hold (the victim's). */
  readonly otherResourceId: string;
  /** A TCP and UDP service listening on the gateway host. */
  readonly hostServicePort: number;
}

const PROBE_PORTS = [22, 53, 80, 81, 443, 7, 8080, 2222];

/** Reaching ports and addresses outside the grants: every port but the granted one, every ungranted address, proxies not assigned, broadcast, multicast, loopback. */
export function bypassAttempts(t: AttackTargets): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  for (const address of new Set(t.granted.map((g) => g.address))) {
    const destination = addr(address);
    const source = selfFor(t, destination);
    const grants = t.granted.filter((g) => g.address === address);
    const isGranted = (protocol: Grant['protocol'], port?: number): boolean => grants.some((g) => g.protocol === protocol && g.port === port);
    for (const port of PROBE_PORTS) {
      if (!isGranted('tcp', port)) out.push(syn(`tcp ${address}:${port}`, source, destination, port));
      if (!isGranted('udp', port)) out.push(datagram(`udp ${address}:${port}`, source, destination, port));
    }
    if (!isGranted('icmp')) out.push(echo(`icmp echo ${address}`, source, destination));
  }
  const notGranted = [
    ...t.ungranted,
    // Proxy IPs nobody assigned, and the proxy ranges' edges.
    '100.96.0.250', '100.96.255.254', '100.127.255.255', 'fd00:2021:1111:8000::ff00', 'fd00:2021:1111:8000:ffff::1',
    // The victim's tunnel addresses: no client reaches another through the gateway.
    t.victim.ipv4, t.victim.ipv6, '100.64.0.1', 'fd00:2021:1111::1',
    // Broadcast, multicast, loopback, link-local, unspecified.
    '255.255.255.255', '224.0.0.1', '239.255.255.250', '127.0.0.1', '169.254.169.254', '0.0.0.0',
    'ff02::1', 'ff05::1:3', '::1', 'fe80::1', '::',
  ];
  for (const text of notGranted) {
    const destination = addr(text);
    const source = selfFor(t, destination);
    for (const port of [80, 7, 53, 22]) {
      out.push(syn(`tcp ${text}:${port}`, source, destination, port));
      out.push(datagram(`udp ${text}:${port}`, source, destination, port));
    }
    out.push(echo(`icmp echo ${text}`, source, destination));
  }
  return out;
}

/** Granted destinations with sources that are not the attacker's: the victim, other clients, the gateway, resources, special addresses. */
export function spoofedSources(t: AttackTargets): LabelledPacket[] {
  const sources4 = [t.victim.ipv4, '100.64.0.1', '100.65.1.1', t.gateway.ipv4, '100.96.0.1', '10.78.0.2', '10.78.0.1', '0.0.0.0', '127.0.0.1', '255.255.255.255', '224.0.0.1', '192.0.2.1'];
  const sources6 = [t.victim.ipv6, 'fd00:2021:1111::1', t.gateway.ipv6, 'fd00:2021:1111:8000::1', 'fd00:78::3', '::', '::1', 'fe80::1', 'ff02::1', '2001:db8::1'];
  const out: LabelledPacket[] = [];
  for (const grant of t.granted) {
    const destination = addr(grant.address);
    const sources = destination.family === 4 ? sources4 : sources6;
    for (const text of sources) {
      const source = addr(text);
      const port = grant.port ?? 80;
      out.push(grant.protocol === 'udp' ? datagram(`from ${text} to ${grant.address}:${port}`, source, destination, port) : syn(`from ${text} to ${grant.address}:${port}`, source, destination, port));
      out.push(echo(`echo from ${text} to ${grant.address}`, source, destination));
    }
  }
  return out;
}

/**
 * Fragments: overlapping fragments that rewrite a granted port into another, tiny first fragments,
 * fragments to ungranted ports, lone non-first fragments, oversized reassemblies; the same over IPv6
 * (fragment header, atomic fragments, the transport header pushed into a later fragment).
 */
export function fragments(t: AttackTargets): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  let id = 0x4242;
  for (const grant of t.granted.filter((g) => g.protocol === 'tcp')) {
    const destination = addr(grant.address);
    const source = selfFor(t, destination);
    const allowed = tcp(source, destination, { sourcePort: 40001, destinationPort: grant.port!, payload: new Uint8Array(16) });
    const denied = tcp(source, destination, { sourcePort: 40001, destinationPort: 22, payload: new Uint8Array(16) });
    if (destination.family === 4) {
      const v4 = (label: string, payload: Uint8Array, offset: number, more: boolean, ident = id): LabelledPacket => ({
        label: `${grant.address} ${label}`,
        packet: ipv4({ source, destination, protocol: PROTOCOL_TCP, payload, identification: ident, fragmentOffset: offset, moreFragments: more }),
      });
      id++;
      // Overlap: an allowed first fragment, then one at offset 0 that rewrites the ports to 22.
      out.push(v4('overlap first (allowed port)', allowed.subarray(0, 16), 0, true), v4('overlap rewrite to :22', denied.subarray(0, 16), 0, true), v4('overlap last', allowed.subarray(16), 2, false));
      id++;
      // Tiny first fragment: only the ports, the flags come later.
      out.push(v4('tiny first (ports only)', denied.subarray(0, 8), 0, true), v4('tiny rest', denied.subarray(8), 1, false));
      id++;
      // A denied port, properly fragmented.
      out.push(v4('denied port first', denied.subarray(0, 24), 0, true), v4('denied port last', denied.subarray(24), 3, false));
      id++;
      // A lone non-first fragment whose bytes read like an allowed TCP header.
      out.push(v4('lone non-first', allowed, 5, false));
      id++;
      // Reassembly beyond 65535 bytes.
      out.push(v4('ping of death tail', new Uint8Array(64), 8189, false));
      // UDP to an ungranted port split so the first fragment carries no ports.
      id++;
      const udpDenied = udp(source, destination, 40002, 7, new Uint8Array(32));
      out.push(
        { label: `${grant.address} udp first 4 bytes`, packet: ipv4({ source, destination, protocol: PROTOCOL_UDP, payload: udpDenied.subarray(0, 8), identification: id, moreFragments: true }) },
        { label: `${grant.address} udp rest`, packet: ipv4({ source, destination, protocol: PROTOCOL_UDP, payload: udpDenied.subarray(8), identification: id, fragmentOffset: 1 }) },
      );
    } else {
      const v6 = (label: string, inner: number, payload: Uint8Array, offset: number, more: boolean, ident: number, prefix = new Uint8Array(0)): LabelledPacket => ({
        label: `${grant.address} ${label}`,
        packet: ipv6({ source, destination, nextHeader: 44, payload: concat(prefix, fragmentHeader(inner, offset, more, ident), payload) }),
      });
      id++;
      out.push(v6('overlap first', PROTOCOL_TCP, allowed.subarray(0, 16), 0, true, id), v6('overlap rewrite to :22', PROTOCOL_TCP, denied.subarray(0, 16), 0, true, id), v6('overlap last', PROTOCOL_TCP, allowed.subarray(16), 2, false, id));
      id++;
      out.push(v6('atomic fragment to :22', PROTOCOL_TCP, denied, 0, false, id));
      id++;
      out.push(v6('denied port first', PROTOCOL_TCP, denied.subarray(0, 24), 0, true, id), v6('denied port last', PROTOCOL_TCP, denied.subarray(24), 3, false, id));
      id++;
      // The transport header only in the second fragment (RFC 7112 forbids it): destination options first.
      const options = extensionHeader(PROTOCOL_TCP, new Uint8Array(14));
      const chain = concat(options, denied);
      out.push(v6('header chain split first', 60, chain.subarray(0, 8), 0, true, id), v6('header chain split last', 60, chain.subarray(8), 1, false, id));
      id++;
      out.push(v6('lone non-first', PROTOCOL_TCP, allowed, 5, false, id));
    }
  }
  return out;
}

/** ICMP: echo where no ICMP is granted, every other type, and errors with quotes crafted to point at other flows. */
export function craftedIcmp(t: AttackTargets): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  const targets = [...t.granted.map((g) => g.address), ...t.ungranted];
  for (const text of new Set(targets)) {
    const destination = addr(text);
    const source = selfFor(t, destination);
    const v4 = destination.family === 4;
    const types = v4 ? [0, 4, 5, 9, 10, 13, 15, 17, 30, 42, 255] : [129, 130, 133, 134, 135, 136, 137, 139, 143, 200, 255];
    for (const type of types) {
      out.push({ label: `icmp type ${type} to ${text}`, packet: ip(source, destination, v4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6, icmp(source, destination, type, 0, 0, new Uint8Array(24))) });
    }
    // Errors quoting someone else's flow: the victim's echo traffic, a resource's reply to the victim.
    const victim = addr(v4 ? t.victim.ipv4 : t.victim.ipv6);
    const quotes = [
      { what: 'victim flow', quote: ip(victim, destination, PROTOCOL_UDP, udp(victim, destination, 40000, 7, new Uint8Array(8))) },
      { what: 'reply to victim', quote: ip(destination, victim, PROTOCOL_UDP, udp(destination, victim, 7, 40000, new Uint8Array(8))) },
      { what: 'own flow', quote: ip(destination, source, PROTOCOL_TCP, tcp(destination, source, { sourcePort: 80, destinationPort: 40001, flags: TCP_SYN | TCP_ACK })) },
      { what: 'truncated quote', quote: new Uint8Array([v4 ? 0x45 : 0x60, 0, 0]) },
      { what: 'nested error', quote: ip(destination, source, v4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6, icmp(destination, source, v4 ? 3 : 1, 1, 0, ip(source, destination, PROTOCOL_UDP, udp(source, destination, 1, 7, new Uint8Array(4))))) },
      { what: 'p2p control quote', quote: makeP2pControlPacket(P2P_EVENT_DOMAIN_STATUS, new Uint8Array(8))! },
    ];
    const errors = v4 ? [[3, 1], [3, 4], [11, 0], [12, 0]] : [[1, 4], [2, 0], [3, 0], [4, 0]];
    for (const { what, quote } of quotes) {
      for (const [type, code] of errors) {
        out.push({ label: `icmp ${type}/${code} about ${what} to ${text}`, packet: ip(source, destination, v4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6, icmp(source, destination, type!, code!, type === 2 ? 576 : 0, quote)) });
      }
    }
  }
  return out;
}

/** IPv6 extension headers in front of denied ports, source routing towards ungranted addresses, broken chains. */
export function ipv6ExtensionHeaders(t: AttackTargets): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  const ungranted6 = t.ungranted.map(addr).find((a) => a.family === 6);
  for (const grant of t.granted) {
    const destination = addr(grant.address);
    if (destination.family !== 6) continue;
    const source = addr(t.self.ipv6);
    const denied = tcp(source, destination, { sourcePort: 40003, destinationPort: 22 });
    const allowedPort = grant.port ?? 80;
    const allowed = tcp(source, destination, { sourcePort: 40003, destinationPort: allowedPort });
    const packet = (label: string, nextHeader: number, payload: Uint8Array, payloadLength?: number): LabelledPacket => ({
      label: `${grant.address} ${label}`,
      packet: ipv6({ source, destination, nextHeader, payload, ...(payloadLength === undefined ? {} : { payloadLength }) }),
    });
    out.push(packet('hop-by-hop then :22', 0, concat(extensionHeader(PROTOCOL_TCP, new Uint8Array(4)), denied)));
    out.push(packet('destination options then :22', 60, concat(extensionHeader(PROTOCOL_TCP, new Uint8Array(4)), denied)));
    let chain: Uint8Array = denied;
    let next = PROTOCOL_TCP;
    for (let i = 0; i < 12; i++) {
      chain = concat(extensionHeader(next, new Uint8Array(4)), chain);
      next = 60;
    }
    out.push(packet('12 destination options then :22', 60, chain));
    if (ungranted6 !== undefined) {
      // Routing header type 0 (deprecated source routing) and type 4 (segment routing) naming an ungranted next hop.
      for (const routingType of [0, 4]) {
        const routing = new Uint8Array(24);
        routing[0] = PROTOCOL_TCP;
        routing[1] = 2;
        routing[2] = routingType;
        routing[3] = 1;
        if (ungranted6.family === 6) routing.set(ungranted6.bytes, 8);
        out.push(packet(`routing type ${routingType} via ungranted`, 43, concat(routing, allowed)));
      }
    }
    out.push(packet('extension header longer than the packet', 60, concat(extensionHeader(PROTOCOL_TCP, new Uint8Array(4), 200), denied)));
    out.push(packet('authentication header then :22', 51, concat(new Uint8Array([PROTOCOL_TCP, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), denied)));
    out.push(packet('no next header with a TCP body', 59, denied));
    out.push(packet('unknown next header 253', 253, denied));
    out.push(packet('hop-by-hop jumbo with zero payload length', 0, concat(new Uint8Array([PROTOCOL_TCP, 0, 0xc2, 4, 0, 0, 0x10, 0]), denied), 0));
  }
  return out;
}

/** Malformed headers around denied ports: header lengths that shift the ports, lengths that lie, bad versions. */
export function malformedHeaders(t: AttackTargets): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  for (const grant of t.granted.filter((g) => g.protocol === 'tcp')) {
    const destination = addr(grant.address);
    const source = selfFor(t, destination);
    const port = grant.port!;
    const denied = tcp(source, destination, { sourcePort: 40004, destinationPort: 22 });
    if (destination.family === 4) {
      const v4 = (label: string, fields: Partial<Parameters<typeof ipv4>[0]> & { payload: Uint8Array }): LabelledPacket => ({
        label: `${grant.address} ${label}`,
        packet: ipv4({ source, destination, protocol: PROTOCOL_TCP, ...fields }),
      });
      // Options whose bytes read like a TCP header to the allowed port, the real one to :22 behind them.
      const decoy = new Uint8Array(4);
      decoy[2] = port >>> 8;
      decoy[3] = port & 0xff;
      out.push(v4('options shift the ports (IHL 6)', { options: decoy, payload: denied }));
      out.push(v4('IHL 5 with options present', { options: decoy, ihl: 5, payload: denied }));
      out.push(v4('IHL 4', { ihl: 4, payload: denied }));
      out.push(v4('IHL 15 on a short packet', { ihl: 15, payload: denied }));
      out.push(v4('total length beyond the buffer', { totalLength: 1400, payload: denied }));
      out.push(v4('total length shorter than the header', { totalLength: 12, payload: denied }));
      out.push(v4('total length 0', { totalLength: 0, payload: denied }));
      out.push(v4('bad header checksum', { badChecksum: true, payload: denied }));
      out.push(v4('version 5', { version: 5, payload: denied }));
      out.push(v4('version 6 with an IPv4 header', { version: 6, payload: denied }));
      out.push(v4('protocol 255 (p2p control number) in IPv4', { protocol: PROTOCOL_FZ_P2P_CONTROL, payload: denied }));
      for (const offset of [0, 2, 4, 15]) {
        out.push(v4(`TCP data offset ${offset} to :22`, { payload: tcp(source, destination, { sourcePort: 40004, destinationPort: 22, dataOffset: offset }) }));
      }
      out.push(v4('truncated TCP header to :22', { payload: denied.subarray(0, 10) }));
      for (const length of [0, 7, 200]) {
        out.push(v4(`UDP length ${length} to :7`, { protocol: PROTOCOL_UDP, payload: udp(source, destination, 40005, 7, new Uint8Array(16), length) }));
      }
    } else {
      const v6 = (label: string, fields: Partial<Parameters<typeof ipv6>[0]> & { payload: Uint8Array }): LabelledPacket => ({
        label: `${grant.address} ${label}`,
        packet: ipv6({ source, destination, nextHeader: PROTOCOL_TCP, ...fields }),
      });
      out.push(v6('payload length beyond the buffer', { payloadLength: 1000, payload: denied }));
      out.push(v6('payload length 0', { payloadLength: 0, payload: denied }));
      out.push(v6('version 4 with an IPv6 header', { version: 4, payload: denied }));
      out.push(v6('next header 255 with real addresses', { nextHeader: PROTOCOL_FZ_P2P_CONTROL, payload: new Uint8Array(32) }));
      out.push(v6('truncated TCP header to :22', { payload: denied.subarray(0, 10) }));
    }
  }
  // Buffers too short to be anything.
  for (const length of [0, 1, 19, 39]) {
    const bytes = new Uint8Array(length);
    if (length > 0) bytes[0] = length > 20 ? 0x60 : 0x45;
    out.push({ label: `${length}-byte packet`, packet: bytes });
  }
  return out;
}

/** TCP and UDP to services of the gateway host through its tunnel addresses (only DNS :53535 and ICMP echo are served there). */
export function hostServiceProbes(t: AttackTargets): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  for (const text of [t.gateway.ipv4, t.gateway.ipv6]) {
    const destination = addr(text);
    const source = selfFor(t, destination);
    for (const port of [t.hostServicePort, 22, 8080, 53, 111, 3478, 52625]) {
      out.push(syn(`tcp ${text}:${port}`, source, destination, port));
      out.push(datagram(`udp ${text}:${port}`, source, destination, port));
    }
  }
  return out;
}

/** Hostile p2p control packets: wrong event types, broken JSON, oversized and malicious fields, resources not held. */
export function hostileControlPayloads(t: AttackTargets): LabelledPacket[] {
  const encoder = new TextEncoder();
  const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
  const { id, domain } = t.dnsResource;
  const valid = { resource: id, domain, proxy_ips: ['100.96.0.1'] };
  const payloads: { label: string; event: number; payload: Uint8Array }[] = [];
  const add = (label: string, payload: Uint8Array, event = P2P_EVENT_ASSIGNED_IPS): void => {
    payloads.push({ label, event, payload });
  };
  for (const event of [1, 2, 3, 7, 128, 254, 255]) add(`event type ${event} with an AssignedIps body`, json(valid), event);
  add('empty payload', new Uint8Array(0));
  for (const text of ['{', 'null', '[]', '"x"', '1e999', '{"resource":', '{}', '{"a":1}', '\uFEFF{}']) add(`json ${text}`, encoder.encode(text));
  add('deep nesting', encoder.encode('['.repeat(600) + ']'.repeat(600)));
  add('deep object nesting', encoder.encode('{"a":'.repeat(200) + '1' + '}'.repeat(200)));
  add('invalid UTF-8', new Uint8Array([0x7b, 0xff, 0xfe, 0x22, 0x7d]));
  add('overlong UTF-8 quote', new Uint8Array([0x7b, 0xc0, 0xa2, 0x7d]));
  add('resource not a UUID', json({ ...valid, resource: 'not-a-uuid' }));
  add('resource not held (the victim’s)', json({ ...valid, resource: t.otherResourceId }));
  add('resource random UUID', json({ ...valid, resource: '00000000-0000-4000-8000-000000000000' }));
  add('domain outside the pattern', json({ ...valid, domain: 'evil.example.com' }));
  add('domain label of 64 chars', json({ ...valid, domain: `${'a'.repeat(64)}.lab.test` }));
  add('domain of 300 chars', json({ ...valid, domain: `${'abcdefghi.'.repeat(30)}lab.test` }));
  add('domain with NUL', json({ ...valid, domain: 'app\u0000.lab.test' }));
  add('domain unicode', json({ ...valid, domain: 'äpp.lab.test' }));
  add('domain empty label', json({ ...valid, domain: 'app..lab.test' }));
  add('domain wildcard', json({ ...valid, domain: '*.lab.test' }));
  add('domain not a string', json({ ...valid, domain: 42 }));
  add('proxy_ips not an array', json({ ...valid, proxy_ips: '100.96.0.1' }));
  add('proxy_ips objects', json({ ...valid, proxy_ips: [{ ip: '100.96.0.1' }, null, 1, true] }));
  add('proxy_ips outside the proxy range (resources, victim, gateway)', json({ ...valid, proxy_ips: ['10.78.0.4', '10.78.0.2', t.victim.ipv4, t.gateway.ipv4, '127.0.0.1', '0.0.0.0', '255.255.255.255'] }));
  add('proxy_ips of the IPv6 kind outside the range', json({ ...valid, proxy_ips: ['fd00:78::3', t.victim.ipv6, '::1', 'ff02::1'] }));
  add('proxy_ips malformed text', json({ ...valid, proxy_ips: ['100.96.0.999', '100.96.0', '1.2.3.4.5', 'fd00:::1', '', ' 100.96.0.1'] }));
  const many: string[] = [];
  for (let i = 0; many.length < 95; i++) many.push(`100.96.${(i >> 8) & 0xff}.${i & 0xff}`);
  add('95 proxy IPs', json({ ...valid, proxy_ips: many }));
  add('duplicate keys', encoder.encode(`{"resource":"${t.otherResourceId}","resource":"${id}","domain":"${domain}","proxy_ips":[]}`));
  add('extra fields', json({ ...valid, status: 'Active', __proto__x: 1, constructor: 'x' }));
  add('__proto__ key', encoder.encode(`{"__proto__":{"polluted":1},"resource":"${id}","domain":"${domain}","proxy_ips":["100.96.0.1"]}`));
  add('DomainStatus sent by the client', json({ resource: id, domain, status: 'Active' }), P2P_EVENT_DOMAIN_STATUS);

  const out: LabelledPacket[] = [];
  for (const { label, event, payload } of payloads) {
    const packet = makeP2pControlPacket(event, payload);
    if (packet !== undefined) out.push({ label, packet });
  }
  // Header games: a non-zero hop limit and traffic class, a payload length that lies, a truncated control header.
  const base = makeAssignedIpsPacket({ resource: id, domain, proxyIps: [addr('100.96.0.1')] })!;
  const variant = (label: string, edit: (packet: Uint8Array) => Uint8Array): void => {
    out.push({ label, packet: edit(base.slice()) });
  };
  variant('hop limit 255 and traffic class set', (p) => ((p[7] = 255), (p[1] = 0xf0), p));
  variant('payload length beyond the buffer', (p) => ((p[4] = 0x04), (p[5] = 0x00), p));
  variant('payload length 4 (shorter than the control header)', (p) => ((p[4] = 0), (p[5] = 4), p));
  variant('truncated to the IPv6 header', (p) => p.slice(0, 44));
  variant('source not unspecified', (p) => ((p[23] = 1), p));
  variant('destination not unspecified', (p) => ((p[39] = 1), p));
  return out;
}

/** AssignedIps packets as fast as the tunnel takes them: `proxies` in-range proxy IPs each, a new domain and new proxies per packet. */
export function assignedIpsFlood(resourceId: string, domainSuffix: string, count: number, proxies: number): LabelledPacket[] {
  const out: LabelledPacket[] = [];
  let next = 0;
  for (let i = 0; i < count; i++) {
    const ips: IpAddr[] = [];
    for (let j = 0; j < proxies; j++, next++) {
      // Half IPv4 from 100.96.0.0/11, half IPv6 from fd00:2021:1111:8000::/107, never repeating.
      ips.push(j % 2 === 0 ? addr(`100.${96 + ((next >>> 16) & 0x1f)}.${(next >>> 8) & 0xff}.${next & 0xff}`) : addr(`fd00:2021:1111:8000::${(next >>> 16).toString(16)}:${(next & 0xffff).toString(16)}`));
    }
    const packet = makeAssignedIpsPacket({ resource: resourceId, domain: `f${i}.${domainSuffix}`, proxyIps: ips });
    if (packet !== undefined) out.push({ label: `assigned ips ${i}`, packet });
  }
  return out;
}

function addr(text: string): IpAddr {
  const parsed = parseIp(text);
  if (parsed === undefined) throw new Error(`not an IP address: ${text}`);
  return parsed;
}

function selfFor(t: AttackTargets, destination: IpAddr): IpAddr {
  return addr(destination.family === 4 ? t.self.ipv4 : t.self.ipv6);
}

function syn(label: string, source: IpAddr, destination: IpAddr, port: number): LabelledPacket {
  return { label, packet: ip(source, destination, PROTOCOL_TCP, tcp(source, destination, { sourcePort: 40000 + (port % 1000), destinationPort: port })) };
}

function datagram(label: string, source: IpAddr, destination: IpAddr, port: number): LabelledPacket {
  return { label, packet: ip(source, destination, PROTOCOL_UDP, udp(source, destination, 40000 + (port % 1000), port, new TextEncoder().encode('redteam'))) };
}

function echo(label: string, source: IpAddr, destination: IpAddr): LabelledPacket {
  const type = source.family === 4 ? 8 : 128;
  const body = new Uint8Array(16);
  return { label, packet: ip(source, destination, source.family === 4 ? PROTOCOL_ICMPV4 : PROTOCOL_ICMPV6, icmp(source, destination, type, 0, 0x12340001, body)) };
}
