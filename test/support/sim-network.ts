/**
 * A simulated IP network in virtual time for deterministic tests: hosts with addresses and one
 * UDP port each, optional NAT routers in front of them, latency, seeded loss. Every host runs a
 * sans-IO agent; the network delivers its transmits and fires its timers in time order.
 */
import type { RandomSource } from '../../src/util/random.ts';
import { socketAddr, socketAddrKey, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';

export interface SimAgent {
  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void;
  handleTimeout(now: number): void;
  pollTransmit(): Transmit | undefined;
  pollTimeout(): number | undefined;
}

export type NatKind =
  /** Endpoint-independent mapping keeping the port when free, address-dependent filtering (a home router). */
  | 'port-preserving'
  /** A new public port per destination (symmetric NAT): only relays get through. */
  | 'symmetric';

export interface SimNat {
  readonly publicIp: string;
  readonly kind: NatKind;
}

interface Host {
  readonly name: string;
  readonly ips: readonly string[];
  readonly port: number;
  readonly agent: SimAgent;
  readonly nat: SimNat | undefined;
  online: boolean;
}

interface NatState {
  readonly nat: SimNat;
  readonly host: Host;
  /** private "ip:port|dest" (symmetric) or "ip:port" -> public port */
  readonly outbound: Map<string, number>;
  /** public port -> private endpoint and the remote endpoints it has sent to */
  readonly inbound: Map<number, { internal: SocketAddr; contacted: Set<string> }>;
  nextPort: number;
}

interface Delivery {
  readonly at: number;
  readonly seq: number;
  readonly from: SocketAddr;
  readonly to: SocketAddr;
  readonly payload: Uint8Array;
}

export interface SimNetworkOptions {
  readonly latencyMs?: number;
  /** Probability in [0, 1) that a datagram is lost. */
  readonly loss?: number;
}

export class SimNetwork {
  now = 0;
  private readonly hosts: Host[] = [];
  private readonly byIp = new Map<string, Host>();
  private readonly nats = new Map<string, NatState>();
  private queue: Delivery[] = [];
  private seq = 0;
  latencyMs: number;
  loss: number;
  /** Every datagram that crossed the network, for assertions. */
  readonly log: { from: SocketAddr; to: SocketAddr; size: number; dropped: boolean }[] = [];

  constructor(private readonly rng: RandomSource, options: SimNetworkOptions = {}) {
    this.latencyMs = options.latencyMs ?? 5;
    this.loss = options.loss ?? 0;
  }

  addHost(name: string, ips: readonly string[], agent: SimAgent, options: { port?: number; nat?: SimNat } = {}): void {
    const host: Host = { name, ips, port: options.port ?? 52625, agent, nat: options.nat, online: true };
    this.hosts.push(host);
    for (const ip of ips) this.byIp.set(ip, host);
    if (options.nat !== undefined) {
      this.nats.set(options.nat.publicIp, { nat: options.nat, host, outbound: new Map(), inbound: new Map(), nextPort: 40000 });
    }
  }

  /** Takes a host off the network (its datagrams vanish both ways) or brings it back. */
  setOnline(name: string, online: boolean): void {
    const host = this.hosts.find((h) => h.name === name);
    if (host) host.online = online;
  }

  /** Runs until virtual time `until`, delivering datagrams and firing timers in order. */
  runUntil(until: number): void {
    for (let guard = 0; guard < 1_000_000; guard++) {
      this.drainTransmits();
      const nextDelivery = this.queue[0]?.at ?? Infinity;
      let nextTimer = Infinity;
      let timerHost: Host | undefined;
      for (const host of this.hosts) {
        const t = host.agent.pollTimeout();
        if (t !== undefined && t < nextTimer) {
          nextTimer = t;
          timerHost = host;
        }
      }
      const next = Math.min(nextDelivery, nextTimer);
      if (next > until) break;
      this.now = Math.max(this.now, next);
      if (nextDelivery <= nextTimer) {
        const delivery = this.queue.shift()!;
        this.deliver(delivery);
      } else {
        timerHost!.agent.handleTimeout(this.now);
      }
    }
    this.now = Math.max(this.now, until);
  }

  /** Runs in steps until `condition` holds or `timeoutMs` of virtual time passes; returns whether it held. */
  runUntilCondition(condition: () => boolean, timeoutMs: number, stepMs = 10): boolean {
    const end = this.now + timeoutMs;
    while (this.now < end) {
      if (condition()) return true;
      this.runUntil(Math.min(end, this.now + stepMs));
    }
    return condition();
  }

  private drainTransmits(): void {
    for (const host of this.hosts) {
      for (let t = host.agent.pollTransmit(); t !== undefined; t = host.agent.pollTransmit()) this.send(host, t);
    }
  }

  private send(host: Host, transmit: Transmit): void {
    const family = transmit.destination.family;
    const sourceIp = transmit.source?.address ?? host.ips.find((ip) => (family === 4) === !ip.includes(':'));
    if (sourceIp === undefined || !host.ips.includes(sourceIp)) return;
    let from = transmit.source ?? socketAddr(sourceIp, host.port);
    if (!host.online) return this.record(from, transmit.destination, transmit.payload, true);
    if (host.nat !== undefined && family === 4) from = this.translateOutbound(host.nat, from, transmit.destination);
    const dropped = this.loss > 0 && this.rng.float() < this.loss;
    this.record(from, transmit.destination, transmit.payload, dropped);
    if (dropped) return;
    const delivery: Delivery = { at: this.now + this.latencyMs, seq: this.seq++, from, to: transmit.destination, payload: transmit.payload.slice() };
    let index = this.queue.length;
    while (index > 0 && this.queue[index - 1]!.at > delivery.at) index--;
    this.queue.splice(index, 0, delivery);
  }

  private deliver(delivery: Delivery): void {
    let to = delivery.to;
    const natState = this.nats.get(to.address);
    if (natState !== undefined) {
      const mapping = natState.inbound.get(to.port);
      if (mapping === undefined || !mapping.contacted.has(filterKey(natState.nat, delivery.from))) return;
      to = mapping.internal;
    }
    const host = this.byIp.get(to.address);
    if (host === undefined || !host.online) return;
    // Hosts behind a NAT are reachable only through their NAT's public address.
    if (host.nat !== undefined && natState === undefined) return;
    host.agent.handleDatagram(delivery.from, to, delivery.payload, this.now);
  }

  private translateOutbound(nat: SimNat, internal: SocketAddr, destination: SocketAddr): SocketAddr {
    const state = this.nats.get(nat.publicIp)!;
    const key = nat.kind === 'symmetric' ? `${socketAddrKey(internal)}|${socketAddrKey(destination)}` : socketAddrKey(internal);
    let port = state.outbound.get(key);
    if (port === undefined) {
      port = nat.kind === 'port-preserving' && !state.inbound.has(internal.port) ? internal.port : state.nextPort++;
      state.outbound.set(key, port);
      state.inbound.set(port, { internal, contacted: new Set() });
    }
    state.inbound.get(port)!.contacted.add(filterKey(nat, destination));
    return socketAddr(nat.publicIp, port);
  }

  private record(from: SocketAddr, to: SocketAddr, payload: Uint8Array, dropped: boolean): void {
    if (this.log.length < 100_000) this.log.push({ from, to, size: payload.length, dropped });
  }
}

function filterKey(nat: SimNat, remote: SocketAddr): string {
  return nat.kind === 'symmetric' ? socketAddrKey(remote) : remote.address;
}
