/**
 * The parsers `npm run fuzz` feeds: everything that reads bytes or text from the network or the
 * portal. Each target loads the code under test from the compiled build (`dist/`), gives seed
 * inputs (real fixtures and messages built by the code itself) and runs one input, returning
 * whether the parser accepted it. A throw is a crash: parsers answer bad input with an error value.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AttackTargets } from '../attacker/packets.ts';

/** One input: bytes for binary parsers, text for the portal's. */
export type FuzzInput = Uint8Array;

export interface FuzzTarget {
  readonly name: string;
  /** Real inputs to mutate. */
  readonly seeds: readonly Uint8Array[];
  /** Runs one input; true when the parser accepted it. Throws only on a bug. */
  run(input: Uint8Array, index: number): boolean;
  /** Structure-aware mutation for JSON targets (the byte mutator is used otherwise). */
  readonly mutateJson?: boolean;
  /** Longest input to produce. */
  readonly maxLength: number;
}

export interface TargetContext {
  /** Where the code under test is: `dist` (compiled, `.js`) or `src` (`.ts`, for the smoke test). */
  readonly code: string;
  readonly extension: '.js' | '.ts';
  readonly fixtures: string;
}

type Mod<T> = Promise<T>;

function loader(context: TargetContext): <T>(path: string) => Mod<T> {
  return <T>(path: string) => import(pathToFileURL(join(context.code, path.replace(/\.js$/, context.extension))).href) as Mod<T>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function makeTargets(context: TargetContext): Promise<FuzzTarget[]> {
  const { fixtures } = context;
  const load = loader(context);
  const packetMod = await load<typeof import('../../src/ip/packet.ts')>('ip/packet.js');
  const icmpMod = await load<typeof import('../../src/ip/icmp-error.ts')>('ip/icmp-error.js');
  const p2p = await load<typeof import('../../src/ip/p2p-control.ts')>('ip/p2p-control.js');
  const stun = await load<typeof import('../../src/stun/index.ts')>('stun/index.js');
  const turn = await load<typeof import('../../src/turn/index.ts')>('turn/index.js');
  const wg = await load<typeof import('../../src/wireguard/index.ts')>('wireguard/index.js');
  const random = await load<typeof import('../../src/util/random.ts')>('util/random.js');
  const sockets = await load<typeof import('../../src/util/socket-addr.ts')>('util/socket-addr.js');
  const dns = await load<typeof import('../../src/runtime/dns-forwarder.ts')>('runtime/dns-forwarder.js');
  const frames = await load<typeof import('../../src/portal/phoenix-frame.ts')>('portal/phoenix-frame.js');
  const messages = await load<typeof import('../../src/portal/messages.ts')>('portal/messages.js');
  const candidates = await load<typeof import('../../src/ice/candidate.ts')>('ice/candidate.js');
  const log = await load<typeof import('../../src/log/index.ts')>('log/index.js');
  const attackerPackets = await import('../attacker/packets.ts');
  // The parsers' own log lines (a relay that stopped answering, ...) are not findings.
  log.configureLogging({ filter: log.LogFilter.parse('error') });

  const portalFrames = readPortalFrames(fixtures);
  const packetSeeds = ipPacketSeeds(attackerPackets);

  // ---- IP packets (what comes out of a WireGuard session) ----
  const view = new packetMod.IpPacket();
  const quote = new packetMod.IpPacket();
  const ip: FuzzTarget = {
    name: 'ip-packet',
    seeds: packetSeeds,
    maxLength: 1500,
    run(input) {
      const strict = view.parse(input) === undefined;
      if (!strict && view.parseLenient(input) !== undefined) return false;
      view.source();
      view.destination();
      void view.ttl;
      void view.ecn;
      void view.transport;
      if (view.transport === 'tcp' || view.transport === 'udp') {
        void view.sourcePort;
        void view.destinationPort;
      }
      if (view.transport === 'tcp') void view.tcpFlags;
      if (view.transport === 'icmpv4' || view.transport === 'icmpv6') {
        void view.icmpType;
        void view.icmpCode;
        void view.isIcmpEcho;
        if (icmpMod.icmpErrorKind(view) === 'error') icmpMod.parseIcmpErrorQuote(view, quote);
      }
      view.l4();
      view.payload();
      view.checksumsValid();
      view.toString();
      p2p.isP2pControlPacket(view);
      return strict;
    },
  };

  // ---- p2p control (AssignedIps, DomainStatus, Goodbye inside the tunnel) ----
  const controlSeeds = [
    ...attackerPackets.hostileControlPayloads(FAKE_TARGETS).map((p) => p.packet),
    ...attackerPackets.assignedIpsFlood(FAKE_TARGETS.dnsResource.id, 'lab.test', 4, 8).map((p) => p.packet),
    ...p2pJsonVectors(fixtures).map((payload) => p2p.makeP2pControlPacket(p2p.P2P_EVENT_ASSIGNED_IPS, payload) ?? payload),
  ];
  const control = new packetMod.IpPacket();
  const p2pControl: FuzzTarget = {
    name: 'p2p-control',
    seeds: controlSeeds,
    maxLength: 1500,
    run(input) {
      // Both the whole packet and the raw payload (the decoder behind the header check).
      const raw = typeof p2p.decodeAssignedIps(input.subarray(Math.min(input.length, 48))) !== 'string';
      typeof p2p.decodeDomainStatus(input.subarray(Math.min(input.length, 48)));
      if (control.parse(input) !== undefined || !p2p.isP2pControlPacket(control)) return raw;
      const type = p2p.p2pControlEventType(control);
      const assigned = p2p.decodeAssignedIpsPacket(control);
      const status = p2p.decodeDomainStatusPacket(control);
      return type >= 0 && (typeof assigned !== 'string' || typeof status !== 'string');
    },
  };

  // ---- STUN messages (ICE checks, relay answers) ----
  const transactionId = new Uint8Array(12).fill(7);
  const key = stun.shortTermKey('password');
  const stunSeeds = [
    ...hexFixtures(join(fixtures, 'connectivity')),
    stun.encodeStunMessage(
      {
        method: stun.StunMethod.Binding,
        class: 'request',
        transactionId,
        attributes: [
          { kind: 'username', value: 'abcd:efgh' },
          { kind: 'priority', priority: 1862270975 },
          { kind: 'iceControlling', tieBreaker: 0x1234567890n },
          { kind: 'useCandidate' },
        ],
      },
      { integrityKey: key, fingerprint: true },
    ),
    stun.encodeStunMessage({
      method: stun.StunMethod.Binding,
      class: 'success',
      transactionId,
      attributes: [{ kind: 'xorMappedAddress', address: sockets.socketAddr('2001:db8::1', 3478) }],
    }),
    stun.encodeStunMessage({
      method: stun.StunMethod.Allocate,
      class: 'error',
      transactionId,
      attributes: [
        { kind: 'errorCode', code: 401, reason: 'Unauthorized' },
        { kind: 'realm', value: 'firezone' },
        { kind: 'nonce', value: 'n0nce' },
        { kind: 'unknownAttributes', types: [1, 2, 3] },
      ],
    }),
  ];
  const stunKinds = ['xorMappedAddress', 'xorPeerAddress', 'xorRelayedAddress', 'mappedAddress', 'username', 'realm', 'nonce', 'software', 'errorCode', 'lifetime', 'data', 'priority', 'channelNumber'] as const;
  const stunTarget: FuzzTarget = {
    name: 'stun',
    seeds: stunSeeds,
    maxLength: 1500,
    run(input) {
      stun.looksLikeStun(input);
      const message = stun.decodeStunMessage(input);
      if (typeof message === 'string') return false;
      for (const kind of stunKinds) stun.getAttributes(message, kind);
      stun.unknownComprehensionRequired(message);
      stun.verifyIntegrity(message, key);
      stun.verifyFingerprint(message);
      return true;
    },
  };

  // ---- TURN: an allocation fed datagrams from its relay (responses, ChannelData, indications) ----
  const relay = sockets.socketAddr('203.0.113.1', 3478);
  const local = sockets.socketAddr('10.0.0.2', 52625);
  let allocation = newAllocation();
  let pendingIds: Uint8Array[] = [];
  let turnNow = 0;
  function newAllocation(): InstanceType<typeof turn.Allocation> {
    return new turn.Allocation({ server: { v4: relay }, username: 'u', password: 'p', software: 'fuzz', rng: random.seededRandom(3) }, 0);
  }
  function drainAllocation(): void {
    for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) {
      const decoded = stun.decodeStunMessage(t.payload);
      if (typeof decoded !== 'string') pendingIds = [decoded.transactionId, ...pendingIds].slice(0, 4);
    }
    while (allocation.pollEvent() !== undefined);
  }
  drainAllocation();
  const turnSeeds = [
    stun.encodeChannelData(0x4000, new Uint8Array(60).fill(0x45)),
    stun.encodeChannelData(0x7fff, new Uint8Array(0)),
    ...stunSeeds,
    stun.encodeStunMessage({
      method: stun.StunMethod.Allocate,
      class: 'success',
      transactionId,
      attributes: [
        { kind: 'xorRelayedAddress', address: sockets.socketAddr('203.0.113.1', 50000) },
        { kind: 'xorMappedAddress', address: sockets.socketAddr('198.51.100.7', 40000) },
        { kind: 'lifetime', seconds: 600 },
      ],
    }),
    stun.encodeStunMessage({
      method: stun.StunMethod.Data,
      class: 'indication',
      transactionId,
      attributes: [
        { kind: 'xorPeerAddress', address: sockets.socketAddr('198.51.100.9', 1234) },
        { kind: 'data', data: new Uint8Array(40).fill(1) },
      ],
    }),
  ];
  const turnTarget: FuzzTarget = {
    name: 'turn',
    seeds: turnSeeds,
    maxLength: 1500,
    run(input, index) {
      if (index % 5_000 === 0) {
        allocation = newAllocation();
        turnNow = 0;
        drainAllocation();
      }
      // Aim half of the STUN inputs at a transaction the allocation has outstanding.
      if (input.length >= 20 && (index & 1) === 1 && pendingIds.length > 0 && input[0]! < 4) input.set(pendingIds[index % pendingIds.length]!, 8);
      stun.looksLikeChannelData(input);
      if (input.length >= 4) stun.channelDataChannel(input);
      const result = allocation.handleInput(input, relay, local, turnNow);
      if ((index & 63) === 0) {
        turnNow += 1_000;
        allocation.handleTimeout(turnNow);
        const deadline = allocation.pollTimeout();
        if (deadline !== undefined && deadline < turnNow) throw new Error(`allocation deadline ${deadline} before now ${turnNow}`);
      }
      drainAllocation();
      return result !== 'notForUs';
    },
  };

  // ---- WireGuard: a responder with an established session, fed every message type ----
  let pair = wireguardPair();
  const wgSeeds = pair.captured;
  const wgTarget: FuzzTarget = {
    name: 'wireguard',
    seeds: wgSeeds,
    maxLength: 1500,
    run(input, index) {
      if (index % 20_000 === 0 && index > 0) pair = wireguardPair();
      wg.messageType(input);
      wg.receiverIndex(input);
      wg.receiverTunnelIndex(input);
      const result = pair.responder.decapsulate(input, '10.0.0.1', pair.now + (index >> 10));
      while (pair.responder.pollTransmit() !== undefined);
      while (pair.responder.pollEvent() !== undefined);
      return typeof result !== 'string' || result === 'keepalive';
    },
  };

  function wireguardPair(): { responder: InstanceType<typeof wg.Tunnel>; captured: Uint8Array[]; now: number } {
    const key = (fill: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (fill + i * 7) & 0xff);
    const idA = wg.staticIdentity(key(1));
    const idB = wg.staticIdentity(key(2));
    const psk = key(3);
    const side = (identity: typeof idA, peer: Uint8Array, index: number, seed: number): InstanceType<typeof wg.Tunnel> =>
      new wg.Tunnel({ local: identity, peer, presharedKey: psk, index, rng: random.seededRandom(seed), rateLimiter: new wg.RateLimiter(identity, random.seededRandom(seed + 1), 0), now: 0 });
    const a = side(idA, idB.publicKey, 0x0a0a0a, 11);
    const b = side(idB, idA.publicKey, 0x0b0b0b, 22);
    const captured: Uint8Array[] = [];
    const deliver = (from: InstanceType<typeof wg.Tunnel>, to: InstanceType<typeof wg.Tunnel>, ip: string): void => {
      for (let t = from.pollTransmit(); t !== undefined; t = from.pollTransmit()) {
        captured.push(t.slice());
        to.decapsulate(t, ip, 0);
      }
    };
    a.initiateHandshake(0);
    deliver(a, b, '10.0.0.1');
    deliver(b, a, '10.0.0.2');
    deliver(a, b, '10.0.0.1');
    const packet = new Uint8Array(60).fill(0xab);
    packet[0] = 0x45;
    packet[3] = 60;
    const sealed = a.encapsulate(packet, 0);
    if (sealed instanceof Uint8Array) captured.push(sealed.slice());
    while (a.pollEvent() !== undefined);
    while (b.pollEvent() !== undefined);
    return { responder: b, captured, now: 0 };
  }

  // ---- DNS messages (the forwarder's checks on queries from clients and answers from upstream) ----
  const dnsSeeds = [
    dns.buildQuery(1, 'app.lab.test'),
    dns.buildQuery(0xffff, 'a.b.c.d.e.f.example.com', 28),
    dns.buildQuery(7, 'firezone.dev', 16),
    dnsAnswer(dns.buildQuery(9, 'app.lab.test')),
  ];
  const dnsTarget: FuzzTarget = {
    name: 'dns',
    seeds: dnsSeeds,
    maxLength: 1500,
    run(input) {
      const info = dns.inspectDnsMessage(input);
      if (info === undefined) return false;
      dns.buildServfail(input, info);
      dns.fitUdpResponse(input, info, 64);
      return true;
    },
  };

  // ---- Phoenix frames (every text frame from the portal) ----
  const frameSeeds = portalFrames.map((f) => encoder.encode(f.text));
  const frameTarget: FuzzTarget = {
    name: 'phoenix-frame',
    seeds: frameSeeds,
    maxLength: 64 * 1024,
    mutateJson: true,
    run(input) {
      const decoded = frames.decodeFrame(decoder.decode(input));
      if (!decoded.ok) return false;
      frames.decodeReply(decoded.frame.payload);
      return true;
    },
  };

  // ---- Portal messages (zod schemas behind every event), and the candidate strings they carry ----
  const portalTarget: FuzzTarget = {
    name: 'portal-json',
    seeds: frameSeeds,
    maxLength: 64 * 1024,
    mutateJson: true,
    run(input, index) {
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(input));
      } catch {
        return false;
      }
      if (typeof value !== 'object' || value === null) return false;
      const frame = value as { event?: unknown; payload?: unknown };
      const event = typeof frame.event === 'string' ? frame.event : 'init';
      // Both dialects (1.4.13's /gateway/websocket, 1.6.0's v2) and their union.
      const decoded = messages.decodeIngress(event, frame.payload, DIALECTS[index % DIALECTS.length]);
      if (!decoded.ok) {
        messages.describeMessageDecodeError(decoded.error);
        return false;
      }
      const message = decoded.message as { candidates?: unknown };
      if (Array.isArray(message.candidates)) for (const c of message.candidates) if (typeof c === 'string') candidates.parseCandidate(c);
      return true;
    },
  };

  const candidateSeeds = readFileSync(join(fixtures, 'connectivity/ice_candidate_strings.txt'), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('candidate:'))
    .map((line) => encoder.encode(line));
  const candidateTarget: FuzzTarget = {
    name: 'ice-candidate',
    seeds: candidateSeeds,
    maxLength: 512,
    run(input) {
      return typeof candidates.parseCandidate(decoder.decode(input)) !== 'string';
    },
  };

  return [ip, p2pControl, stunTarget, turnTarget, wgTarget, dnsTarget, frameTarget, portalTarget, candidateTarget];
}

const DIALECTS = ['any', 'v1', 'v2'] as const;

const FAKE_TARGETS: AttackTargets = {
  self: { ipv4: '100.64.0.9', ipv6: 'fd00:2021:1111::9' },
  victim: { ipv4: '100.64.0.10', ipv6: 'fd00:2021:1111::a' },
  gateway: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' },
  granted: [
    { address: '10.78.0.2', protocol: 'tcp', port: 80 },
    { address: 'fd00:78::2', protocol: 'tcp', port: 80 },
    { address: '100.96.0.1', protocol: 'tcp', port: 80 },
    { address: '100.96.0.1', protocol: 'icmp' },
  ],
  ungranted: ['10.78.0.4', '10.78.0.3', '10.78.0.1', 'fd00:78::3'],
  dnsResource: { id: '00000000-0000-4000-8000-000000000001', domain: 'app.lab.test' },
  otherResourceId: '00000000-0000-4000-8000-000000000002',
  hostServicePort: 2222,
};

function ipPacketSeeds(packets: typeof import('../attacker/packets.ts')): Uint8Array[] {
  const sets = [packets.bypassAttempts, packets.spoofedSources, packets.fragments, packets.craftedIcmp, packets.ipv6ExtensionHeaders, packets.malformedHeaders, packets.hostServiceProbes];
  return sets.flatMap((set) => set(FAKE_TARGETS).map((p) => p.packet));
}

function hexFixtures(dir: string): Uint8Array[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.hex'))
    .map((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('').replace(/\s+/g, ''))
    .filter((hex) => /^([0-9a-f]{2})+$/i.test(hex))
    .map((hex) => Uint8Array.from(Buffer.from(hex, 'hex')));
}

function p2pJsonVectors(fixtures: string): Uint8Array[] {
  const text = readFileSync(join(fixtures, 'packets/p2p-control-json-vectors.json'), 'utf8');
  const out: Uint8Array[] = [];
  // Every JSON object text inside the vectors file that looks like a payload.
  const walk = (value: unknown): void => {
    if (typeof value === 'string' && value.startsWith('{')) out.push(encoder.encode(value));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === 'object' && value !== null) Object.values(value).forEach(walk);
  };
  walk(JSON.parse(text));
  return out;
}

/** Every portal frame among the fixtures, as text. */
function readPortalFrames(fixtures: string): { text: string }[] {
  const out: { text: string }[] = [];
  for (const dir of ['portal', 'portal-1.6', 'connectivity']) {
    for (const file of readdirSync(join(fixtures, dir)).filter((f) => f.endsWith('.json'))) {
      let value: unknown;
      try {
        value = JSON.parse(readFileSync(join(fixtures, dir, file), 'utf8'));
      } catch {
        continue;
      }
      const walk = (v: unknown, depth: number): void => {
        if (depth > 6 || typeof v !== 'object' || v === null) return;
        const record = v as Record<string, unknown>;
        if (typeof record['event'] === 'string' && 'payload' in record && 'topic' in record) {
          out.push({ text: JSON.stringify(record) });
          return;
        }
        for (const child of Object.values(record)) walk(child, depth + 1);
      };
      walk(value, 0);
    }
  }
  return out;
}

/** The query with one A record answer, as a resolver sends it back. */
function dnsAnswer(query: Uint8Array): Uint8Array {
  const answer = Uint8Array.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 78, 0, 3]);
  const out = new Uint8Array(query.length + answer.length);
  out.set(query);
  out.set(answer, query.length);
  out[2] = 0x81;
  out[3] = 0x80;
  out[7] = 1;
  return out;
}
