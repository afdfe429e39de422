/**
 * The simulated hosts: the gateway (the real event loop, GatewayState and server node behind an in-memory
 * socket and a fake TUN device), clients (the real client-role node), relays (the test TURN server) and the
 * portal (a queue of messages delivered in virtual time).
 */
import { GatewayState } from '../../src/gateway/index.ts';
import { dataPathMode, transportCipherFor } from '../../src/runtime/data-path.ts';
import { GatewayEventLoop, type NameResolver } from '../../src/runtime/event-loop.ts';
import type { TunReadBatch } from '../../src/runtime/tun-device.ts';
import { MemoryUdpSocket } from '../../src/runtime/udp-socket.ts';
import { Node, type NodeEvent } from '../../src/snownet/index.ts';
import type { RandomSource } from '../../src/util/random.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import type { SimAgent } from '../support/sim-network.ts';
import type { TestTurnServer } from '../support/turn-server.ts';

export const WALL_CLOCK_BASE_MS = 1_700_000_000_000;
/** How long the fake resources take to answer a packet written to the TUN device. */
export const RESOURCE_DELAY_MS = 1;

/** A node that also reports its events to an observer (the simulation learns of failed connections). */
export class ObservedNode extends Node {
  onEvent: (event: NodeEvent) => void = () => undefined;

  override pollEvent(): NodeEvent | undefined {
    const event = super.pollEvent();
    if (event !== undefined) this.onEvent(event);
    return event;
  }
}

export interface GatewayHostOptions {
  readonly rng: RandomSource;
  readonly privateKey: Uint8Array;
  readonly state: GatewayState;
  readonly clock: () => number;
  readonly onPortalSend: (event: string, payload: Readonly<Record<string, unknown>>) => void;
  readonly onReconnect: () => void;
  readonly resolver: NameResolver;
  /** A packet the gateway wrote to its TUN device; returns the resource's answer, if any. */
  readonly onTunWrite: (packet: Uint8Array, now: number) => Uint8Array | undefined;
}

export class GatewayHost implements SimAgent {
  readonly node: ObservedNode;
  readonly state: GatewayState;
  readonly loop: GatewayEventLoop;
  private readonly socket: MemoryUdpSocket;
  private timerAt: number | undefined;
  /** How much of the socket's `sent` list was handed to the network. */
  private sentDrained = 0;
  private readonly answers: { at: number; packet: Uint8Array }[] = [];

  constructor(o: GatewayHostOptions) {
    this.node = new ObservedNode({ role: 'server', privateKey: o.privateKey, rng: o.rng, now: o.clock(), transportCipher: transportCipherFor(dataPathMode()) });
    this.state = o.state;
    this.socket = new MemoryUdpSocket({ family: 4, onDatagrams: (batch) => this.loop.handleDatagrams(batch) });
    this.loop = new GatewayEventLoop({
      node: this.node,
      state: this.state,
      sockets: { v4: this.socket, v6: undefined },
      tun: {
        write: (packet) => {
          const answer = o.onTunWrite(packet.slice(), o.clock());
          if (answer !== undefined) this.answers.push({ at: o.clock() + RESOURCE_DELAY_MS, packet: answer });
          return true;
        },
      },
      portal: { send: o.onPortalSend, reconnect: o.onReconnect },
      resolver: o.resolver,
      configureInterface: async () => undefined,
      clock: o.clock,
      wallClock: () => WALL_CLOCK_BASE_MS + o.clock(),
      rng: o.rng,
      onFatal: (error) => {
        throw error;
      },
      setTimer: (_callback, delay) => (this.timerAt = o.clock() + delay),
      clearTimer: () => (this.timerAt = undefined),
    });
  }

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array): void {
    this.socket.deliver([{ payload, source: from, destinationIp: to.address }]);
  }

  handleTimeout(now: number): void {
    if (this.answers.length > 0 && this.answers[0]!.at <= now) {
      let count = 0;
      while (count < this.answers.length && this.answers[count]!.at <= now) count++;
      const due = this.answers.splice(0, count);
      for (const { packet } of due) this.readFromTun(packet);
      return;
    }
    this.timerAt = undefined;
    this.loop.handleTimeout();
  }

  pollTransmit(): Transmit | undefined {
    const sent = this.socket.sent;
    if (this.sentDrained === sent.length) {
      sent.length = 0;
      this.sentDrained = 0;
      return undefined;
    }
    const next = sent[this.sentDrained++]!;
    return { source: next.source, destination: next.destination, payload: next.payload };
  }

  pollTimeout(): number | undefined {
    const answerAt = this.answers[0]?.at;
    if (answerAt === undefined) return this.timerAt;
    return this.timerAt === undefined ? answerAt : Math.min(answerAt, this.timerAt);
  }

  /** A packet the TUN device hands to the gateway (a resource talking to a client). */
  readFromTun(packet: Uint8Array): void {
    const batch: TunReadBatch = { queue: 0, count: 1, buffer: packet, offset: () => 0, length: () => packet.length, packet: () => packet };
    this.loop.handleTunPackets(batch);
  }
}

export class ClientHost implements SimAgent {
  /** A roamed-away client: its old node falls silent. */
  retired = false;
  private readonly outbox: Transmit[] = [];

  constructor(
    readonly node: Node,
    private readonly onPacket: (packet: Uint8Array, now: number) => void,
    private readonly onEvent: (event: NodeEvent, now: number) => void,
  ) {}

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void {
    if (this.retired) return;
    const result = this.node.decapsulate(to, from, payload, now);
    if (typeof result !== 'string') this.onPacket(result.packet.slice(), now);
    this.drainEvents(now);
  }

  handleTimeout(now: number): void {
    this.node.handleTimeout(now);
    this.drainEvents(now);
  }

  pollTransmit(): Transmit | undefined {
    if (this.retired) return undefined;
    return this.outbox.shift() ?? this.node.pollTransmit();
  }

  pollTimeout(): number | undefined {
    return this.retired ? undefined : this.node.pollTimeout();
  }

  /** Encrypts a packet towards the gateway; false when the node held or dropped it. */
  send(connection: string, packet: Uint8Array, now: number): boolean {
    const transmit = this.node.encapsulate(connection, packet, now);
    this.drainEvents(now);
    if (transmit === undefined) return false;
    this.outbox.push({ ...transmit, payload: transmit.payload.slice() });
    return true;
  }

  drainEvents(now: number): void {
    for (let event = this.node.pollEvent(); event !== undefined; event = this.node.pollEvent()) this.onEvent(event, now);
  }
}

/** The portal's message queue: everything it relays happens as a timer of its own, never inside another host's call. */
export class PortalHost implements SimAgent {
  private queue: (() => void)[] = [];

  /** `wake`: tells the network this host has work (a message may be queued from any host's callback). */
  constructor(
    private readonly clock: () => number,
    private readonly wake: () => void = () => undefined,
  ) {}

  enqueue(action: () => void): void {
    this.queue.push(action);
    this.wake();
  }

  handleDatagram(): void {}

  handleTimeout(): void {
    const due = this.queue;
    this.queue = [];
    for (const action of due) action();
  }

  pollTransmit(): Transmit | undefined {
    return undefined;
  }

  pollTimeout(): number | undefined {
    return this.queue.length > 0 ? this.clock() : undefined;
  }
}

/**
 * Delays each datagram a host sends by a random extra 0..maxMs, so datagrams overtake each other (the network
 * itself keeps order). Deterministic: the delays come from a seeded source.
 */
export class JitteredAgent implements SimAgent {
  private readonly held: { at: number; transmit: Transmit }[] = [];

  constructor(
    private readonly inner: SimAgent,
    private readonly rng: RandomSource,
    private readonly maxMs: number,
    private readonly clock: () => number,
  ) {}

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void {
    this.inner.handleDatagram(from, to, payload, now);
  }

  handleTimeout(now: number): void {
    const inner = this.inner.pollTimeout();
    if (inner !== undefined && inner <= now) this.inner.handleTimeout(now);
  }

  pollTransmit(): Transmit | undefined {
    const now = this.clock();
    for (let t = this.inner.pollTransmit(); t !== undefined; t = this.inner.pollTransmit()) {
      const at = now + Math.floor(this.rng.float() * (this.maxMs + 1));
      let index = this.held.length;
      while (index > 0 && this.held[index - 1]!.at > at) index--;
      this.held.splice(index, 0, { at, transmit: t });
    }
    if (this.held.length > 0 && this.held[0]!.at <= now) return this.held.shift()!.transmit;
    return undefined;
  }

  pollTimeout(): number | undefined {
    const inner = this.inner.pollTimeout();
    const release = this.held[0]?.at;
    if (release === undefined) return inner;
    return inner === undefined ? release : Math.min(inner, release);
  }
}

/**
 * The gateway's name resolver: answers from fixed records after a delay in virtual time, through a thenable so the
 * answer arrives as a timer of its own (never inside another host's call, never in a microtask).
 */
export class DnsHost implements SimAgent, NameResolver {
  static readonly DELAY_MS = 3;
  private readonly pending: { at: number; name: string; resolve: (ips: string[]) => void; reject: (error: Error) => void }[] = [];

  /** `answered`: called after answers went to the resolver's caller (another host). */
  constructor(
    private readonly records: Readonly<Record<string, readonly string[] | undefined>>,
    private readonly clock: () => number,
    private readonly answered: () => void = () => undefined,
  ) {}

  resolve(name: string): Promise<string[]> {
    const thenable = {
      then: (resolve: (ips: string[]) => void, reject: (error: Error) => void) => {
        this.pending.push({ at: this.clock() + DnsHost.DELAY_MS, name, resolve, reject });
        this.wakeSelf();
      },
    };
    return thenable as unknown as Promise<string[]>;
  }

  handleDatagram(): void {}

  /** Set by the world: the gateway asks from its own events, so this host must be woken. */
  wakeSelf: () => void = () => undefined;

  handleTimeout(now: number): void {
    let answered = false;
    while (this.pending.length > 0 && this.pending[0]!.at <= now) {
      const query = this.pending.shift()!;
      const ips = this.records[query.name.toLowerCase()];
      if (ips === undefined) query.reject(new Error(`no records for ${query.name}`));
      else query.resolve([...ips]);
      answered = true;
    }
    if (answered) this.answered();
  }

  pollTransmit(): Transmit | undefined {
    return undefined;
  }

  pollTimeout(): number | undefined {
    return this.pending[0]?.at;
  }
}
