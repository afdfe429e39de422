/**
 * The attacker's `attack` command: builds one attack's packets or datagrams, sends them through the
 * test client (paced in batches so its own event loop keeps running), waits for the gateway's
 * answers and reports what came back.
 *
 *   {"id":1,"cmd":"attack","attack":"bypass","gateway_id":G,"targets":{...},"repeat"?:3}
 *   {"id":2,"cmd":"attack","attack":"assigned-ips-flood","gateway_id":G,"resource_id":R,"domain_suffix":"lab.test","count":2000,"proxies":40}
 *   {"id":3,"cmd":"attack","attack":"handshake-flood","gateway_id":G,"gateway_public_key":K,"count":60000,"rate":20000}
 *   {"id":4,"cmd":"attack","attack":"fuzz-datagrams","gateway_id":G,"gateway_public_key":K,"count":100000,"rate":20000,"seed":1}
 *   {"id":5,"cmd":"attack","attack":"fuzz-dns","gateway_id":G,"targets":{...},"count":20000,"seed":1}
 *   {"id":6,"cmd":"attack","attack":"connection-flood","host":H,"port":53535,"count":500,"hold_ms":3000,"mode":"idle"}
 */
import { PROTOCOL_ICMPV4, PROTOCOL_ICMPV6, PROTOCOL_TCP, PROTOCOL_UDP } from '../../src/ip/constants.ts';
import { IpPacket } from '../../src/ip/packet.ts';
import { decodeDomainStatusPacket, isP2pControlPacket } from '../../src/ip/p2p-control.ts';
import { seededRandom } from '../../src/util/random.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import { MESSAGE_COOKIE_REPLY, MESSAGE_TRANSPORT } from '../../src/wireguard/constants.ts';
import type { TestClient } from '../test-client/client.ts';
import type { ControlExtension } from '../test-client/process.ts';
import { fuzzDatagram, fuzzDnsQueryPacket, handshakeInitiation, mac1KeyOf } from './datagrams.ts';
import { connectionFlood, type FloodMode } from './idle-connections.ts';
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
  type LabelledPacket,
} from './packets.ts';

type Json = Record<string, unknown>;

const PACKET_SETS: Readonly<Record<string, (targets: AttackTargets) => LabelledPacket[]>> = {
  bypass: bypassAttempts,
  spoofed: spoofedSources,
  fragments,
  icmp: craftedIcmp,
  'ipv6-extension-headers': ipv6ExtensionHeaders,
  malformed: malformedHeaders,
  'host-probe': hostServiceProbes,
  'control-payloads': hostileControlPayloads,
};

const ATTACKS = new Set([...Object.keys(PACKET_SETS), 'assigned-ips-flood', 'handshake-flood', 'fuzz-datagrams', 'fuzz-dns', 'connection-flood']);

/** What came back from the gateway during one attack. */
export class ReplyCounts {
  icmpProhibited = 0;
  icmpUnreachable = 0;
  icmpOther = 0;
  tcpSynAck = 0;
  tcpRst = 0;
  tcpOther = 0;
  udp = 0;
  domainStatusActive = 0;
  domainStatusInactive = 0;
  otherPackets = 0;
  cookieReplies = 0;
  transportDatagrams = 0;
  otherDatagrams = 0;
  private readonly view = new IpPacket();

  onTunnelPacket(packet: Uint8Array): void {
    const view = this.view;
    if (view.parse(packet) !== undefined) {
      this.otherPackets++;
      return;
    }
    if (isP2pControlPacket(view)) {
      const status = decodeDomainStatusPacket(view);
      if (typeof status === 'string') this.otherPackets++;
      else if (status.status === 'Active') this.domainStatusActive++;
      else this.domainStatusInactive++;
      return;
    }
    const l4 = view.l4Offset;
    switch (view.protocol) {
      case PROTOCOL_ICMPV4:
      case PROTOCOL_ICMPV6: {
        const type = packet[l4];
        const code = packet[l4 + 1];
        const unreachable = view.protocol === PROTOCOL_ICMPV4 ? type === 3 : type === 1;
        if (unreachable && (code === 13 || (view.protocol === PROTOCOL_ICMPV6 && code === 1))) this.icmpProhibited++;
        else if (unreachable) this.icmpUnreachable++;
        else this.icmpOther++;
        return;
      }
      case PROTOCOL_TCP: {
        const flags = packet[l4 + 13] ?? 0;
        if ((flags & 0x12) === 0x12) this.tcpSynAck++;
        else if ((flags & 0x04) !== 0) this.tcpRst++;
        else this.tcpOther++;
        return;
      }
      case PROTOCOL_UDP:
        this.udp++;
        return;
      default:
        this.otherPackets++;
    }
  }

  onDatagram(payload: Uint8Array): void {
    if (payload[0] === MESSAGE_COOKIE_REPLY && payload.length === 64) this.cookieReplies++;
    else if (payload[0] === MESSAGE_TRANSPORT) this.transportDatagrams++;
    else this.otherDatagrams++;
  }

  toJson(): Json {
    const { view: _view, ...counts } = this;
    return counts;
  }
}

export class Attacker implements ControlExtension {
  private replies = new ReplyCounts();
  /** Real transport datagrams of our session, the seeds the datagram fuzzer mutates. */
  private readonly seeds: Uint8Array[] = [];

  readonly hooks = {
    onTunnelPacket: (_gatewayId: string, packet: Uint8Array): void => this.replies.onTunnelPacket(packet),
    onDatagram: (payload: Uint8Array, _from: SocketAddr): void => this.replies.onDatagram(payload),
  };

  handles(cmd: unknown): boolean {
    return cmd === 'attack';
  }

  async run(client: TestClient, command: Json): Promise<Json> {
    const attack = String(command['attack']);
    if (!ATTACKS.has(attack)) return { ok: false, error: `unknown attack ${attack}; known: ${[...ATTACKS].join(', ')}` };
    this.replies = new ReplyCounts();
    const started = performance.now();
    const outcome = await this.launch(client, attack, command);
    const sentMs = performance.now() - started;
    await sleep(number(command, 'settle_ms', 500));
    return { ok: true, attack, ...outcome, send_ms: Math.round(sentMs), replies: this.replies.toJson() };
  }

  private async launch(client: TestClient, attack: string, command: Json): Promise<Json> {
    const rate = number(command, 'rate', 0);
    const count = number(command, 'count', 0);
    const seed = number(command, 'seed', 1);
    if (attack === 'connection-flood') {
      const result = await connectionFlood({
        host: String(command['host']),
        port: number(command, 'port', 53535),
        count: number(command, 'count', 100),
        holdMs: number(command, 'hold_ms', 1_000),
        mode: (command['mode'] ?? 'idle') as FloodMode,
        streamBytes: number(command, 'stream_bytes', 1 << 20),
      });
      return { ...result };
    }
    const gatewayId = String(command['gateway_id']);
    const set = PACKET_SETS[attack];
    if (set !== undefined) {
      const packets = set(command['targets'] as AttackTargets);
      const repeat = number(command, 'repeat', 1);
      const all: Uint8Array[] = [];
      for (let r = 0; r < repeat; r++) for (const { packet } of packets) all.push(packet);
      return { distinct: packets.length, ...(await this.sendPackets(client, gatewayId, all, rate)) };
    }
    switch (attack) {
      case 'assigned-ips-flood': {
        const packets = assignedIpsFlood(String(command['resource_id']), String(command['domain_suffix'] ?? 'lab.test'), count || 2000, number(command, 'proxies', 40));
        const bytes = packets.reduce((sum, p) => sum + p.packet.length, 0);
        return { bytes, ...(await this.sendPackets(client, gatewayId, packets.map((p) => p.packet), rate)) };
      }
      case 'fuzz-dns': {
        const rng = seededRandom(seed);
        const targets = command['targets'] as AttackTargets;
        const packets: Uint8Array[] = [];
        for (let i = 0; i < (count || 20_000); i++) {
          const v6 = i % 4 === 3;
          packets.push(fuzzDnsQueryPacket(rng, v6 ? targets.self.ipv6 : targets.self.ipv4, v6 ? targets.gateway.ipv6 : targets.gateway.ipv4, number(command, 'port', 53535)));
        }
        return await this.sendPackets(client, gatewayId, packets, rate);
      }
      case 'handshake-flood':
      case 'fuzz-datagrams': {
        const destination = client.gatewayAddress(gatewayId);
        if (destination === undefined) return { ok: false, error: 'no path to the gateway' };
        const mac1Key = mac1KeyOf(new Uint8Array(Buffer.from(String(command['gateway_public_key']), 'base64')));
        const rng = seededRandom(seed);
        if (attack === 'fuzz-datagrams') this.collectSeeds(client, gatewayId);
        const make = attack === 'handshake-flood' ? () => handshakeInitiation(rng, mac1Key) : () => fuzzDatagram(rng, mac1Key, this.seeds);
        return await this.sendDatagrams(client, destination, count || 1000, make, rate);
      }
      default:
        return { ok: false, error: `unhandled attack ${attack}` };
    }
  }

  private collectSeeds(client: TestClient, gatewayId: string): void {
    const probe = new Uint8Array(60);
    probe[0] = 0x45;
    for (let i = this.seeds.length; i < 16; i++) {
      const transmit = client.sealPacket(gatewayId, probe);
      if (transmit !== undefined) this.seeds.push(transmit.payload.slice());
    }
  }

  /** Sends through the tunnel in batches, yielding between them; `rate` packets per second (0: as fast as possible). */
  private async sendPackets(client: TestClient, gatewayId: string, packets: readonly Uint8Array[], rate: number): Promise<Json> {
    let sent = 0;
    let refused = 0;
    await paced(packets.length, rate, (i) => {
      if (client.sendPacket(gatewayId, packets[i]!)) sent++;
      else refused++;
    }, () => client.flushSockets());
    return { sent, refused };
  }

  private async sendDatagrams(client: TestClient, destination: SocketAddr, count: number, make: () => Uint8Array, rate: number): Promise<Json> {
    let sent = 0;
    let refused = 0;
    let bytes = 0;
    await paced(count, rate, () => {
      const payload = make();
      bytes += payload.length;
      if (payload.length > 0 && client.sendDatagram(payload, destination)) sent++;
      else refused++;
    }, () => client.flushSockets());
    return { sent, refused, bytes };
  }
}

const BATCH = 64;

async function paced(count: number, rate: number, each: (i: number) => void, flush: () => void): Promise<void> {
  const started = performance.now();
  for (let i = 0; i < count; ) {
    const end = Math.min(count, i + BATCH);
    for (; i < end; i++) each(i);
    flush();
    if (rate > 0) {
      const due = started + (i / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      else await yieldToLoop();
    } else {
      await yieldToLoop();
    }
  }
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function number(command: Json, name: string, fallback: number): number {
  const value = command[name];
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}
