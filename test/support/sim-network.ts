/**
 * A simulated IP network in virtual time for deterministic tests: hosts with addresses and one
 * UDP port each, optional NAT routers in front of them, latency, seeded loss. Every host runs a
 * sans-IO agent; the network delivers its transmits and fires its timers in time order.
 *
 * Cost per event is O(log n) in the number of hosts: datagrams in flight wait in a heap ordered by
 * (arrival, sending order), and each host's next timer sits in a DeadlineQueue. After the network
 * delivers to a host or fires its timer it drains and re-polls that host alone. Code that calls
 * into a host's state machine any other way (a test, a portal stand-in relaying a message from
 * another host's callback) must `wake` that host so it is drained and re-polled too. Small
 * networks check this after every event and throw on a host changed without a wake, so the code
 * driving large networks is checked by the small ones.
 */
import type { RandomSource } from '../../src/util/random.ts';
import { DeadlineQueue } from '../../src/util/deadline-queue.ts';
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
  /** The timer as last polled (what the timer queue holds). */
  timerAt: number;
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
  /**
   * After every event, check that no host changed without a `wake` (O(hosts) per event).
   * Default: on for networks of up to 32 hosts.
   */
  readonly checkWakes?: boolean;
  /**
   * Wake every host at the start of each `runUntil` (O(hosts) per call), for small tests that poke
   * their nodes between runs. Calls made from within another host's event still need `wake`.
   */
  readonly wakeAllOnRun?: boolean;
  /** Keeps `log` (default true); a benchmark turns it off so the log does not weigh on the heap it measures. */
  readonly record?: boolean;
}

/** Networks up to this size check wakes by default. */
const CHECKED_NETWORK_SIZE = 32;

export class SimNetwork {
  now = 0;
  private readonly hosts: Host[] = [];
  private readonly byName = new Map<string, Host>();
  private readonly byAgent = new Map<SimAgent, Host>();
  private readonly byIp = new Map<string, Host>();
  private readonly nats = new Map<string, NatState>();
  private readonly inFlight = new DeliveryHeap();
  private readonly timers = new DeadlineQueue<Host>();
  private readonly woken = new Set<Host>();
  private readonly checkWakes: boolean | undefined;
  private readonly wakeAllOnRun: boolean;
  private readonly recording: boolean;
  private seq = 0;
  /** Events processed so far (deliveries and timer fires), for tests that bound the work. */
  events = 0;
  latencyMs: number;
  loss: number;
  /**
   * Shapes single links: the delays of the copies of a datagram to deliver (an empty list drops
   * it; several copies duplicate it; differing delays reorder), or undefined for one copy after
   * `latencyMs`. `from` is the source as the network sees it (after NAT).
   */
  shape: ((from: SocketAddr, to: SocketAddr, payload: Uint8Array) => readonly number[] | undefined) | undefined = undefined;
  /** Every datagram that crossed the network, for assertions. */
  readonly log: { from: SocketAddr; to: SocketAddr; size: number; dropped: boolean }[] = [];

  constructor(private readonly rng: RandomSource, options: SimNetworkOptions = {}) {
    this.latencyMs = options.latencyMs ?? 5;
    this.loss = options.loss ?? 0;
    this.checkWakes = options.checkWakes;
    this.wakeAllOnRun = options.wakeAllOnRun ?? false;
    this.recording = options.record ?? true;
  }

  addHost(name: string, ips: readonly string[], agent: SimAgent, options: { port?: number; nat?: SimNat } = {}): void {
    const host: Host = { name, ips, port: options.port ?? 52625, agent, nat: options.nat, online: true, timerAt: Infinity };
    this.hosts.push(host);
    this.byName.set(name, host);
    this.byAgent.set(agent, host);
    for (const ip of ips) this.byIp.set(ip, host);
    if (options.nat !== undefined) {
      this.nats.set(options.nat.publicIp, { nat: options.nat, host, outbound: new Map(), inbound: new Map(), nextPort: 40000 });
    }
    this.woken.add(host);
  }

  /**
   * Tells the network that a host's state machine was called from outside the network (a test,
   * or another host's callback): its transmits are sent and its timer is re-read.
   */
  wake(agentOrName: SimAgent | string): void {
    const host = typeof agentOrName === 'string' ? this.byName.get(agentOrName) : this.byAgent.get(agentOrName);
    if (host === undefined) throw new Error(`wake: no such host ${typeof agentOrName === 'string' ? agentOrName : 'agent'}`);
    this.woken.add(host);
  }

  /** Removes a host for good: nothing of it stays referenced by the network (datagrams to it vanish). */
  removeHost(name: string): void {
    const host = this.byName.get(name);
    if (host === undefined) return;
    this.hosts.splice(this.hosts.indexOf(host), 1);
    this.byName.delete(name);
    this.byAgent.delete(host.agent);
    for (const ip of host.ips) this.byIp.delete(ip);
    this.timers.delete(host);
    this.woken.delete(host);
  }

  /** Takes a host off the network (its datagrams vanish both ways) or brings it back. */
  setOnline(name: string, online: boolean): void {
    const host = this.byName.get(name);
    if (host) host.online = online;
  }

  /** Runs until virtual time `until`, delivering datagrams and firing timers in order. */
  runUntil(until: number): void {
    const checked = this.checkWakes ?? this.hosts.length <= CHECKED_NETWORK_SIZE;
    if (this.wakeAllOnRun) for (const host of this.hosts) this.woken.add(host);
    for (let guard = 0; guard < 10_000_000; guard++) {
      this.settleWoken();
      if (checked) this.assertNothingUnwoken();
      const nextDelivery = this.inFlight.peekAt();
      const nextTimer = this.timers.peekTime();
      const next = Math.min(nextDelivery, nextTimer);
      if (next > until) break;
      this.now = Math.max(this.now, next);
      this.events++;
      if (nextDelivery <= nextTimer) {
        this.deliver(this.inFlight.pop()!);
      } else {
        const host = this.timers.peekKey()!;
        this.woken.add(host);
        host.agent.handleTimeout(this.now);
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

  /** Drains and re-polls every host that had an event or was woken. */
  private settleWoken(): void {
    while (this.woken.size > 0) {
      for (const host of this.woken) {
        this.woken.delete(host);
        for (let t = host.agent.pollTransmit(); t !== undefined; t = host.agent.pollTransmit()) this.send(host, t);
        const at = host.agent.pollTimeout() ?? Infinity;
        host.timerAt = at;
        this.timers.set(host, at);
      }
    }
  }

  private assertNothingUnwoken(): void {
    for (const host of this.hosts) {
      const at = host.agent.pollTimeout() ?? Infinity;
      if (at !== host.timerAt) throw new Error(`sim network: host ${host.name} moved its timer (${host.timerAt} -> ${at}) without a wake`);
      // A host whose timer is due may release datagrams it holds until then (jitter): not a change.
      if (host.timerAt <= this.now) continue;
      const transmit = host.agent.pollTransmit();
      if (transmit !== undefined) throw new Error(`sim network: host ${host.name} has a datagram to send without a wake`);
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
    const delays = dropped ? undefined : this.shape?.(from, transmit.destination, transmit.payload);
    this.record(from, transmit.destination, transmit.payload, dropped || delays?.length === 0);
    if (dropped) return;
    for (const delay of delays ?? [this.latencyMs]) {
      this.inFlight.push({ at: this.now + delay, seq: this.seq++, from, to: transmit.destination, payload: transmit.payload.slice() });
    }
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
    this.woken.add(host);
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
    if (this.recording && this.log.length < 100_000) this.log.push({ from, to, size: payload.length, dropped });
  }
}

function filterKey(nat: SimNat, remote: SocketAddr): string {
  return nat.kind === 'symmetric' ? socketAddrKey(remote) : remote.address;
}

/** Datagrams in flight: a binary min-heap by arrival time, then by the order they were sent. */
class DeliveryHeap {
  private readonly items: Delivery[] = [];

  peekAt(): number {
    return this.items.length === 0 ? Infinity : this.items[0]!.at;
  }

  push(delivery: Delivery): void {
    const items = this.items;
    let slot = items.length;
    items.push(delivery);
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      if (!earlier(delivery, items[parent]!)) break;
      items[slot] = items[parent]!;
      slot = parent;
    }
    items[slot] = delivery;
  }

  pop(): Delivery | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let slot = 0;
    for (;;) {
      const left = 2 * slot + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && earlier(items[right]!, items[left]!) ? right : left;
      if (!earlier(items[child]!, last)) break;
      items[slot] = items[child]!;
      slot = child;
    }
    items[slot] = last;
    return top;
  }
}

function earlier(a: Delivery, b: Delivery): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
