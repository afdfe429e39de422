// Two path agents, each with a real WireGuard tunnel of ICE-less timers, joined by an in-memory
// wire in virtual time. The wire delivers a transmit sent on (local, remote) to the peer on
// (remote, what the peer sees as our address): the sender's address unless `seenAs` rewrites it
// (a NAT). Paths can be given a latency or cut.
import {
  ICELESS_KEEPALIVE_TIMEOUT,
  ICELESS_REKEY_ATTEMPT_TIME,
  ICELESS_REKEY_TIMEOUT,
  PathAgent,
  hostCandidate,
  relayCandidate,
  serverReflexiveCandidate,
  type PathCandidate,
  type PathEvent,
  type PathInbound,
  type PathPair,
  type PathTransmit,
  type PathTunnel,
} from '../../../src/snownet/path-agent/index.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { socketAddr, socketAddrKey, type SocketAddr } from '../../../src/util/socket-addr.ts';
import { messageType, RateLimiter, staticIdentity, Tunnel, type DecapsulateResult } from '../../../src/wireguard/index.ts';

export const CLIENT_HOST = socketAddr('198.51.100.2', 52625);
export const CLIENT_RELAYED = socketAddr('192.0.2.1', 50001);
export const CLIENT_RELAY_BASE = CLIENT_HOST;
export const GATEWAY_HOST = socketAddr('203.0.113.2', 52625);
export const GATEWAY_RELAYED = socketAddr('192.0.2.2', 50002);
export const GATEWAY_RELAY_BASE = GATEWAY_HOST;

export function host(ip: string, port = 52625): PathCandidate {
  return hostCandidate(socketAddr(ip, port));
}

export function relay(address: SocketAddr, base: SocketAddr): PathCandidate {
  return relayCandidate(address, base);
}

export function srflx(address: SocketAddr, base: SocketAddr): PathCandidate {
  return serverReflexiveCandidate(address, base);
}

/** Counts what the agent asks of WireGuard. */
export class CountingTunnel implements PathTunnel {
  decapsulations = 0;
  constructor(readonly inner: Tunnel) {}
  decapsulate(datagram: Uint8Array, sourceIp: string, now: number): DecapsulateResult {
    this.decapsulations++;
    return this.inner.decapsulate(datagram, sourceIp, now);
  }
  pollTransmit(): Uint8Array | undefined {
    return this.inner.pollTransmit();
  }
}

export interface Sent extends PathTransmit {
  readonly at: number;
  /** The WireGuard datagram that went on the wire (a probe sealed). */
  readonly datagram: Uint8Array;
}

export class Peer {
  readonly agent = new PathAgent();
  readonly tunnel: CountingTunnel;
  readonly sent: Sent[] = [];
  /** Everything the agent asked to send, sealed or not (probes before a confirmed session are not). */
  readonly planned: (PathTransmit & { readonly at: number })[] = [];
  readonly inbound: { at: number; pair: PathPair; type: number; result: PathInbound }[] = [];
  readonly events: PathEvent[] = [];
  /** Decrypted packets that were not probes. */
  readonly delivered: Uint8Array[] = [];
  wire: Wire | undefined;

  constructor(readonly name: string, tunnel: Tunnel) {
    this.tunnel = new CountingTunnel(tunnel);
  }

  receive(datagram: Uint8Array, pair: PathPair, now: number): PathInbound {
    const result = this.agent.decapsulate(this.tunnel, datagram, pair, now);
    this.inbound.push({ at: now, pair, type: messageType(datagram), result });
    if (result instanceof Uint8Array) this.delivered.push(Uint8Array.from(result));
    this.drain(now);
    return result;
  }

  handleTimeout(now: number): void {
    this.tunnel.inner.handleTimeout(now);
    this.agent.handleTimeout(now);
    this.drain(now);
  }

  pollTimeout(): number {
    return Math.min(this.tunnel.inner.pollTimeout() ?? Infinity, this.agent.pollTimeout() ?? Infinity);
  }

  /** Seals an IP packet and sends it on the primary, as the node does for TUN traffic. */
  sendData(packet: Uint8Array, now: number): boolean {
    const primary = this.agent.primary();
    const sealed = this.tunnel.inner.encapsulate(packet, now);
    this.drain(now);
    if (typeof sealed === 'string' || primary === undefined) return false;
    this.emit({ kind: 'wireguard', local: primary.local, remote: primary.remote, payload: sealed }, sealed, now);
    return true;
  }

  drain(now: number): void {
    for (let d = this.tunnel.inner.pollTransmit(); d !== undefined; d = this.tunnel.inner.pollTransmit()) this.agent.handleOutbound(d, now);
    for (let e = this.agent.pollEvent(); e !== undefined; e = this.agent.pollEvent()) this.events.push(e);
    for (let t = this.agent.pollTransmit(); t !== undefined; t = this.agent.pollTransmit()) {
      this.planned.push({ ...t, at: now });
      if (t.kind === 'wireguard') {
        this.emit(t, t.payload, now);
        continue;
      }
      // As the reference: a probe without a session to seal it (a responder not yet confirmed) is dropped.
      if (!this.tunnel.inner.hasSession(now)) continue;
      const sealed = this.tunnel.inner.encapsulate(t.payload, now);
      if (typeof sealed !== 'string') this.emit(t, sealed, now);
    }
  }

  private emit(transmit: PathTransmit, datagram: Uint8Array, now: number): void {
    this.sent.push({ ...transmit, at: now, datagram });
    this.wire?.send(this, transmit, datagram, now);
  }
}

export interface WireOptions {
  readonly latency?: number;
}

interface Delivery {
  readonly at: number;
  readonly to: Peer;
  readonly pair: PathPair;
  readonly datagram: Uint8Array;
}

export class Wire {
  now = 0;
  latency: number;
  /** Per-path latency by `pathKey(from.local, from.remote)` of the sender. */
  readonly latencies = new Map<string, number>();
  /** Paths (sender's local and remote) whose datagrams vanish. */
  readonly cut = new Set<string>();
  /** What the receiver sees as a sender's source address (a NAT mapping). */
  readonly seenAs = new Map<string, SocketAddr>();
  private queue: Delivery[] = [];

  constructor(readonly a: Peer, readonly b: Peer, options: WireOptions = {}) {
    this.latency = options.latency ?? 10;
    a.wire = this;
    b.wire = this;
  }

  send(from: Peer, transmit: PathPair, datagram: Uint8Array, now: number): void {
    const key = pathKey(transmit.local, transmit.remote);
    if (this.cut.has(key)) return;
    const to = from === this.a ? this.b : this.a;
    const source = this.seenAs.get(socketAddrKey(transmit.local)) ?? transmit.local;
    const at = now + (this.latencies.get(key) ?? this.latency);
    const delivery: Delivery = { at, to, pair: { local: transmit.remote, remote: source }, datagram: datagram.slice() };
    let index = this.queue.length;
    while (index > 0 && this.queue[index - 1]!.at > at) index--;
    this.queue.splice(index, 0, delivery);
  }

  run(until: number): void {
    for (let guard = 0; guard < 200_000; guard++) {
      const delivery = this.queue[0]?.at ?? Infinity;
      const timerA = this.a.pollTimeout();
      const timerB = this.b.pollTimeout();
      const next = Math.min(delivery, timerA, timerB);
      if (next > until) break;
      if (next < this.now) throw new Error(`a deadline in the past: ${next} < ${this.now}`);
      this.now = next;
      if (delivery === next) {
        const d = this.queue.shift()!;
        d.to.receive(d.datagram, d.pair, this.now);
      } else if (timerA === next) {
        this.a.handleTimeout(this.now);
      } else {
        this.b.handleTimeout(this.now);
      }
    }
    this.now = Math.max(this.now, until);
  }
}

export function pathKey(local: SocketAddr, remote: SocketAddr): string {
  return `${socketAddrKey(local)} ${socketAddrKey(remote)}`;
}

/** Both peers with a host and a relay candidate each, and the other's signalled. */
export function withCandidates(options: { gatewayRateLimit?: number } = {}): { client: Peer; gateway: Peer; wire: Wire } {
  const peers = makePeers(options);
  const { client, gateway } = peers;
  for (const [peer, own, ownRelayed, other, otherRelayed] of [
    [client, CLIENT_HOST, CLIENT_RELAYED, GATEWAY_HOST, GATEWAY_RELAYED],
    [gateway, GATEWAY_HOST, GATEWAY_RELAYED, CLIENT_HOST, CLIENT_RELAYED],
  ] as const) {
    peer.agent.addLocalCandidate(hostCandidate(own), 0);
    peer.agent.addLocalCandidate(relayCandidate(ownRelayed, own), 0);
    peer.agent.addRemoteCandidate(hostCandidate(other), 0);
    peer.agent.addRemoteCandidate(relayCandidate(otherRelayed, other), 0);
  }
  return peers;
}

/** A client (controlling) and a gateway (controlled) with matching keys; the wire between them. */
export function makePeers(options: { gatewayRateLimit?: number; clientKey?: Uint8Array; now?: number } = {}): { client: Peer; gateway: Peer; wire: Wire } {
  const now = options.now ?? 0;
  const clientIdentity = staticIdentity(options.clientKey ?? fill(1));
  const gatewayIdentity = staticIdentity(fill(2));
  const psk = fill(3);
  const clientTunnel = new Tunnel({
    local: clientIdentity,
    peer: gatewayIdentity.publicKey,
    presharedKey: psk,
    index: 0x0a0a0a,
    rng: seededRandom(11),
    rateLimiter: new RateLimiter(clientIdentity, seededRandom(12), now),
    now,
    ...ICELESS_TIMERS,
  });
  const gatewayTunnel = new Tunnel({
    local: gatewayIdentity,
    peer: staticIdentity(fill(1)).publicKey,
    presharedKey: psk,
    index: 0x0b0b0b,
    rng: seededRandom(21),
    rateLimiter: new RateLimiter(gatewayIdentity, seededRandom(22), now, options.gatewayRateLimit),
    now,
    ...ICELESS_TIMERS,
  });
  const client = new Peer('client', clientTunnel);
  const gateway = new Peer('gateway', gatewayTunnel);
  const wire = new Wire(client, gateway);
  return { client, gateway, wire };
}

export const ICELESS_TIMERS = {
  rekeyAttemptTime: ICELESS_REKEY_ATTEMPT_TIME,
  keepaliveTimeout: ICELESS_KEEPALIVE_TIMEOUT,
  rekeyTimeout: ICELESS_REKEY_TIMEOUT,
} as const;

function fill(value: number): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = (value * 31 + i * 7) & 0xff;
  return out;
}

/** A minimal IPv4 packet. */
export function ipv4Packet(length = 40): Uint8Array {
  const packet = new Uint8Array(length).fill(0xab);
  packet[0] = 0x45;
  packet[2] = length >> 8;
  packet[3] = length & 0xff;
  return packet;
}

export function probesOn(peer: Peer, pair: PathPair): (PathTransmit & { readonly at: number })[] {
  const key = pathKey(pair.local, pair.remote);
  return peer.planned.filter((s) => s.kind === 'probe' && pathKey(s.local, s.remote) === key && s.payload[40] === 128);
}

export function samePair(a: PathPair | undefined, b: PathPair): boolean {
  return a !== undefined && pathKey(a.local, a.remote) === pathKey(b.local, b.remote);
}
