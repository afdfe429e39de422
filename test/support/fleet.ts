/**
 * Many clients and one gateway on a simulated network, for structural tests and the scale
 * benchmark: N client-role nodes (each its own host and socket), one TURN relay, and a gateway that
 * is either a bare server-role `Node` or the real `GatewayEventLoop` with its `GatewayState`. The
 * portal is played directly: candidates go from one side to the other as the portal would relay them.
 */
import { GatewayState } from '../../src/gateway/index.ts';
import { decodeIngress } from '../../src/portal/index.ts';
import { GatewayEventLoop } from '../../src/runtime/event-loop.ts';
import { MemoryUdpSocket } from '../../src/runtime/udp-socket.ts';
import { Node, type ConnectionParams, type NodeEvent, type NodeObserver, type RelayServer } from '../../src/snownet/index.ts';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { socketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import type { TransportCipher } from '../../src/wireguard/index.ts';
import { SimNetwork, type SimAgent } from './sim-network.ts';
import { TestTurnServer } from './turn-server.ts';

export const FLEET_GATEWAY_IP = '203.0.113.2';
export const FLEET_RELAY = socketAddr('192.0.2.100', 3478);
const FLEET_RELAY_ID = '0f1e2d3c-4b5a-4697-8879-a1b2c3d4e5f6';
const RELAY_PASSWORD = 'relay-password';
const RELAY_USERNAME = '1999999999:salt';
const GATEWAY_TUN = { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' };
/** The gateway's id on every client node. */
export const GATEWAY_CONNECTION = 'gateway';

export interface FleetOptions {
  readonly clients: number;
  readonly seed?: number;
  readonly latencyMs?: number;
  /** `node`: a bare server-role Node. `loop`: the event loop, GatewayState and node, fed portal messages. */
  readonly gateway: 'node' | 'loop';
  /** Test hook passed to the gateway's node. */
  readonly observer?: NodeObserver;
  /** The resource every client is authorized for (loop gateway). */
  readonly resource?: { readonly id: string; readonly address: string };
  /** Keeps the network's datagram log (default true). */
  readonly record?: boolean;
  /** The gateway node's transport AEAD (default the node's own, node:crypto); benches pass the shipped one. */
  readonly transportCipher?: TransportCipher;
  /** Every client uses the same ICE ufrags (passwords still differ): the gateway sees colliding USERNAMEs. */
  readonly sharedUfrags?: boolean;
}

export interface FleetClient {
  readonly index: number;
  readonly id: string;
  readonly name: string;
  readonly ip: string;
  readonly tunV4: string;
  readonly node: Node;
  readonly agent: ClientAgent;
  readonly params: ConnectionParams;
}

export const FLEET_RESOURCE = { id: 'c7793628-8579-465b-83e3-1a5d4af4db30', address: '10.0.0.0/8' };

export class Fleet {
  readonly net: SimNetwork;
  readonly relay: TestTurnServer;
  readonly gateway: Node;
  readonly loop: GatewayEventLoop | undefined;
  readonly state: GatewayState | undefined;
  readonly clients: FleetClient[] = [];
  /**
   * While true, the main thread's CPU time spent in the gateway (its datagrams, timers and portal
   * messages, without the clients' work its portal messages cause) adds up in `gatewayCpuMicros`.
   */
  meterGateway = false;
  gatewayCpuMicros = 0;
  /**
   * How many times the meter read the thread's CPU clock, in pairs (start and end of one metered
   * stretch): each pair adds about one read's own cost to `gatewayCpuMicros`, which a bench subtracts.
   */
  meterReadPairs = 0;
  private metering = false;
  private meterStart = 0;
  private readonly rng: RandomSource;
  private readonly sharedUfrags: boolean;
  private readonly byId = new Map<string, FleetClient>();
  private readonly gatewayAgent: SimAgent;
  private readonly resource: { readonly id: string; readonly address: string };
  private nextRef = 0;

  constructor(readonly options: FleetOptions) {
    this.rng = seededRandom(options.seed ?? 1);
    this.sharedUfrags = options.sharedUfrags ?? false;
    this.resource = options.resource ?? FLEET_RESOURCE;
    this.net = new SimNetwork(this.rng, { latencyMs: options.latencyMs ?? 5, record: options.record ?? true });
    this.relay = new TestTurnServer({ listen: [FLEET_RELAY], relayIpv4: FLEET_RELAY.address, password: () => RELAY_PASSWORD });
    this.net.addHost('relay', [FLEET_RELAY.address], this.relay, { port: 3478 });
    const privateKey = this.key();
    const gatewayRng = seededRandom((options.seed ?? 1) ^ 0x5eed);
    const nodeOptions = {
      role: 'server' as const,
      privateKey,
      rng: gatewayRng,
      now: 0,
      ...(options.observer ? { observer: options.observer } : {}),
      ...(options.transportCipher ? { transportCipher: options.transportCipher } : {}),
    };
    if (options.gateway === 'node') {
      const agent = new GatewayNodeAgent(new Node(nodeOptions), (event) => this.fromGateway(event));
      this.gateway = agent.node;
      this.gatewayAgent = agent;
      this.gateway.updateRelays([], [relayServer()], 0);
    } else {
      const host = new GatewayLoopAgent(new Node(nodeOptions), () => this.net.now, gatewayRng, (event, payload) => this.fromGatewayPortal(event, payload));
      host.work = (run) => this.gatewayWork(run);
      this.gateway = host.node;
      this.loop = host.loop;
      this.state = host.state;
      this.gatewayAgent = host;
    }
    this.net.addHost('gateway', [FLEET_GATEWAY_IP], this.gatewayAgent);
    if (this.loop !== undefined) {
      this.portal('init', {
        interface: GATEWAY_TUN,
        config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
        relays: [{ type: 'turn', id: FLEET_RELAY_ID, addr: `${FLEET_RELAY.address}:${FLEET_RELAY.port}`, username: RELAY_USERNAME, password: RELAY_PASSWORD, expires_at: 1999999999 }],
      });
    }
    for (let index = 0; index < options.clients; index++) this.addClient(index);
    this.net.runUntil(500);
  }

  /** Sees every input of a bare-node gateway (undefined: none). */
  set gatewayProbe(probe: GatewayProbe | undefined) {
    if (this.gatewayAgent instanceof GatewayNodeAgent) this.gatewayAgent.probe = probe;
  }

  /** Authorizes every client at once (a burst), then runs until all are connected or `timeoutMs` passes. */
  connectAll(timeoutMs = 30_000): boolean {
    for (const client of this.clients) this.authorize(client);
    return this.net.runUntilCondition(() => this.connectedCount() === this.clients.length, timeoutMs, 50);
  }

  /**
   * Authorizes the clients one after another over `spreadMs` (as people arrive, so their timers
   * do not all line up), then runs until all are connected or `timeoutMs` passes.
   */
  connectSpread(spreadMs: number, timeoutMs = 30_000): boolean {
    const start = this.net.now;
    for (const client of this.clients) {
      this.net.runUntil(start + (client.index * spreadMs) / this.clients.length);
      this.authorize(client);
    }
    return this.net.runUntilCondition(() => this.connectedCount() === this.clients.length, timeoutMs, 50);
  }

  /** Starts one client's connection on both sides, as the portal's authorize_flow does. */
  authorize(client: FleetClient): void {
    const now = this.net.now;
    const gatewayParams: ConnectionParams = {
      localCredentials: client.params.remoteCredentials,
      remoteCredentials: client.params.localCredentials,
      remotePublicKey: client.node.publicKey,
      presharedKey: client.params.presharedKey,
    };
    if (this.loop === undefined) {
      this.gateway.upsertConnection(client.id, gatewayParams, now);
      (this.gatewayAgent as GatewayNodeAgent).drainEvents();
    } else {
      this.authorizeResource(client, this.resource);
    }
    this.net.wake('gateway');
    client.node.upsertConnection(GATEWAY_CONNECTION, client.params, now);
    client.agent.drainEvents(now);
    this.net.wake(client.name);
  }

  /** A loop gateway's `authorize_flow` of `resource` (a CIDR resource, no filters) for `client`. */
  authorizeResource(client: FleetClient, resource: { readonly id: string; readonly address: string }): void {
    this.portal('authorize_flow', {
      ref: `flow-${++this.nextRef}`,
      resource: { id: resource.id, name: 'fleet', type: 'cidr', address: resource.address, filters: [] },
      client: {
        id: client.id,
        public_key: Buffer.from(client.node.publicKey).toString('base64'),
        preshared_key: Buffer.from(client.params.presharedKey).toString('base64'),
        ipv4: client.tunV4,
        ipv6: `fd00:2021:1111::${(client.index + 16).toString(16)}`,
      },
      client_ice_credentials: { username: client.params.localCredentials.ufrag, password: client.params.localCredentials.password },
      gateway_ice_credentials: { username: client.params.remoteCredentials.ufrag, password: client.params.remoteCredentials.password },
      expires_at: null,
    });
  }

  /** Packets a loop gateway wrote to its TUN device. */
  gatewayTunWrites(): number {
    return (this.gatewayAgent as GatewayLoopAgent).tunWrites;
  }

  connectedCount(): number {
    let count = 0;
    for (const client of this.clients) {
      const state = this.gateway.connectionState(client.id);
      const clientState = client.node.connectionState(GATEWAY_CONNECTION);
      if ((state === 'connected' || state === 'idle') && (clientState === 'connected' || clientState === 'idle') && client.agent.established) count++;
    }
    return count;
  }

  client(index: number): FleetClient {
    return this.clients[index]!;
  }

  /** Delivers a portal message to a loop gateway. */
  portal(event: string, payload: unknown): void {
    const decoded = decodeIngress(event, payload);
    if (!decoded.ok) throw new Error(`invalid ${event}: ${JSON.stringify(decoded.error)}`);
    this.gatewayWork(() => this.loop!.handlePortalMessage(decoded.message));
    this.net.wake('gateway');
  }

  /** Hands a datagram from `from` straight to a loop gateway, outside the network (no metering). */
  deliverToGateway(from: SocketAddr, payload: Uint8Array): void {
    (this.gatewayAgent as GatewayLoopAgent).socket.deliver([{ payload, source: from, destinationIp: FLEET_GATEWAY_IP }]);
  }

  /**
   * Hands datagrams to a loop gateway as one socket read (outside the network, no metering). As in a
   * real read, their payloads should be views of one buffer: the gateway opens a read's WireGuard data
   * in one cipher call only then.
   */
  deliverReadToGateway(datagrams: readonly { readonly from: SocketAddr; readonly payload: Uint8Array }[]): void {
    (this.gatewayAgent as GatewayLoopAgent).socket.deliver(datagrams.map((d) => ({ payload: d.payload, source: d.from, destinationIp: FLEET_GATEWAY_IP })));
  }

  /** Takes the gateway off the network and lets go of it, so a benchmark can see the heap it held. The fleet is unusable after. */
  dropGateway(): void {
    this.net.removeHost('gateway');
    const self = this as unknown as { gateway: unknown; loop: unknown; state: unknown; gatewayAgent: unknown };
    self.gateway = undefined;
    self.loop = undefined;
    self.state = undefined;
    self.gatewayAgent = undefined;
  }

  private gatewayWork(run: () => void): void {
    if (!this.meterGateway || this.metering) return run();
    this.metering = true;
    this.meterReadPairs++;
    this.meterStart = threadMicros();
    try {
      run();
    } finally {
      this.gatewayCpuMicros += threadMicros() - this.meterStart;
      this.metering = false;
    }
  }

  private clientWork(run: () => void): void {
    if (!this.metering) return run();
    this.gatewayCpuMicros += threadMicros() - this.meterStart;
    this.metering = false;
    try {
      run();
    } finally {
      this.metering = true;
      this.meterReadPairs++;
      this.meterStart = threadMicros();
    }
  }

  private addClient(index: number): void {
    const id = `3abd725a-733b-4801-ac16-${(0x72f26cd90000 + index).toString(16)}`;
    const name = `client${index}`;
    const ip = `198.18.${index >> 8}.${index & 0xff}`;
    // Small batches: 10,000 client nodes of 256-datagram batches would hold 7 GB of buffers.
    const node = new Node({ role: 'client', privateKey: this.key(), rng: this.rng, now: this.net.now, transportBatchCapacity: 4 });
    node.updateRelays([], [relayServer()], this.net.now);
    const params: ConnectionParams = {
      localCredentials: { ufrag: this.sharedUfrags ? 'cshared' : `c${index.toString(36)}`, password: `client-password-${index}-xxxxxxxx` },
      remoteCredentials: { ufrag: this.sharedUfrags ? 'gshared' : `g${index.toString(36)}`, password: `gateway-password-${index}-xxxxxxx` },
      remotePublicKey: this.gateway.publicKey,
      presharedKey: this.key(),
    };
    const agent = new ClientAgent(node, (event, now) => this.fromClient(client, event, now));
    const client: FleetClient = { index, id, name, ip, tunV4: tunV4(index), node, agent, params };
    this.clients.push(client);
    this.byId.set(id, client);
    this.net.addHost(name, [ip], agent);
  }

  private fromClient(client: FleetClient, event: NodeEvent, now: number): void {
    if (event.kind !== 'newIceCandidates' && event.kind !== 'invalidatedIceCandidates') return;
    const add = event.kind === 'newIceCandidates';
    if (this.loop === undefined) {
      for (const candidate of event.candidates) {
        if (add) this.gateway.addRemoteCandidate(client.id, candidate, now);
        else this.gateway.removeRemoteCandidate(client.id, candidate, now);
      }
      (this.gatewayAgent as GatewayNodeAgent).drainEvents();
      this.net.wake('gateway');
      return;
    }
    this.portal(add ? 'ice_candidates' : 'invalidate_ice_candidates', { client_id: client.id, candidates: event.candidates });
  }

  private fromGateway(event: NodeEvent): void {
    if (event.kind !== 'newIceCandidates' && event.kind !== 'invalidatedIceCandidates') return;
    this.toClient(event.connection, event.kind === 'newIceCandidates', event.candidates);
  }

  private fromGatewayPortal(event: string, payload: Readonly<Record<string, unknown>>): void {
    if (event !== 'broadcast_ice_candidates' && event !== 'broadcast_invalidated_ice_candidates') return;
    for (const id of payload['client_ids'] as string[]) this.toClient(id, event === 'broadcast_ice_candidates', payload['candidates'] as string[]);
  }

  private toClient(id: string, add: boolean, candidates: readonly string[]): void {
    this.clientWork(() => this.candidatesToClient(id, add, candidates));
  }

  private candidatesToClient(id: string, add: boolean, candidates: readonly string[]): void {
    const client = this.byId.get(id);
    if (client === undefined) return;
    const now = this.net.now;
    for (const candidate of candidates) {
      if (add) client.node.addRemoteCandidate(GATEWAY_CONNECTION, candidate, now);
      else client.node.removeRemoteCandidate(GATEWAY_CONNECTION, candidate, now);
    }
    client.agent.drainEvents(now);
    this.net.wake(client.name);
  }

  private key(): Uint8Array {
    const key = new Uint8Array(32);
    this.rng.fill(key);
    return key;
  }
}

/** 100.64.0.2 onwards (100.64.0.1 is the gateway's). */
function tunV4(index: number): string {
  const v = index + 2;
  return `100.${64 + (v >> 16)}.${(v >> 8) & 0xff}.${v & 0xff}`;
}

function threadMicros(): number {
  const usage = process.threadCpuUsage();
  return usage.user + usage.system;
}

function relayServer(): RelayServer {
  return { id: FLEET_RELAY_ID, v4: FLEET_RELAY, v6: undefined, username: RELAY_USERNAME, password: RELAY_PASSWORD };
}

/** A client: its node, and the packets it decrypted. */
export class ClientAgent implements SimAgent {
  established = false;
  received = 0;
  private readonly outbox: Transmit[] = [];

  constructor(
    readonly node: Node,
    private readonly onEvent: (event: NodeEvent, now: number) => void,
  ) {}

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void {
    const result = this.node.decapsulate(to, from, payload, now);
    if (typeof result !== 'string') this.received++;
    this.drainEvents(now);
  }

  handleTimeout(now: number): void {
    this.node.handleTimeout(now);
    this.drainEvents(now);
  }

  pollTransmit(): Transmit | undefined {
    return this.outbox.shift() ?? this.node.pollTransmit();
  }

  pollTimeout(): number | undefined {
    return this.node.pollTimeout();
  }

  /** Encrypts a packet for the gateway; returns the datagram (not sent), or undefined. */
  seal(packet: Uint8Array, now: number): Transmit | undefined {
    const transmit = this.node.encapsulate(GATEWAY_CONNECTION, packet, now);
    this.drainEvents(now);
    return transmit === undefined ? undefined : { ...transmit, payload: transmit.payload.slice() };
  }

  drainEvents(now: number): void {
    for (let event = this.node.pollEvent(); event !== undefined; event = this.node.pollEvent()) {
      if (event.kind === 'connectionEstablished') this.established = true;
      this.onEvent(event, now);
    }
  }
}

/** Wraps the gateway's work on one input, for tests that look at what that input made it do. */
export type GatewayProbe = (input: { readonly kind: 'timer'; readonly now: number } | { readonly kind: 'datagram'; readonly from: SocketAddr; readonly payload: Uint8Array }, run: () => void) => void;

/** The gateway as a bare node. */
class GatewayNodeAgent implements SimAgent {
  probe: GatewayProbe | undefined;

  constructor(
    readonly node: Node,
    private readonly onEvent: (event: NodeEvent) => void,
  ) {}

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void {
    const run = (): void => void this.node.decapsulate(to, from, payload, now);
    if (this.probe === undefined) run();
    else this.probe({ kind: 'datagram', from, payload }, run);
    this.drainEvents();
  }

  handleTimeout(now: number): void {
    const run = (): void => this.node.handleTimeout(now);
    if (this.probe === undefined) run();
    else this.probe({ kind: 'timer', now }, run);
    this.drainEvents();
  }

  pollTransmit(): Transmit | undefined {
    return this.node.pollTransmit();
  }

  pollTimeout(): number | undefined {
    return this.node.pollTimeout();
  }

  drainEvents(): void {
    for (let event = this.node.pollEvent(); event !== undefined; event = this.node.pollEvent()) this.onEvent(event);
  }
}

/** The gateway as the real event loop, policy state and node behind an in-memory socket; the TUN device swallows packets. */
export class GatewayLoopAgent implements SimAgent {
  readonly state = new GatewayState();
  readonly loop: GatewayEventLoop;
  readonly socket: MemoryUdpSocket;
  tunWrites = 0;
  /** Wraps the gateway's work on a datagram or a timer (a benchmark meters it). */
  work: (run: () => void) => void = (run) => run();
  private timerAt: number | undefined;
  private drained = 0;

  constructor(
    readonly node: Node,
    clock: () => number,
    rng: RandomSource,
    onPortalSend: (event: string, payload: Readonly<Record<string, unknown>>) => void,
  ) {
    this.socket = new MemoryUdpSocket({ family: 4, onDatagrams: (batch) => this.loop.handleDatagrams(batch) });
    this.loop = new GatewayEventLoop({
      node,
      state: this.state,
      sockets: { v4: this.socket, v6: undefined },
      tun: {
        write: () => {
          this.tunWrites++;
          return true;
        },
      },
      portal: { send: onPortalSend, reconnect: () => undefined },
      resolver: { resolve: () => Promise.resolve([]) },
      configureInterface: async () => undefined,
      clock,
      wallClock: () => 1_700_000_000_000 + clock(),
      rng,
      onFatal: (error) => {
        throw error;
      },
      setTimer: (_callback, delay) => (this.timerAt = clock() + delay),
      clearTimer: () => (this.timerAt = undefined),
    });
  }

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array): void {
    this.work(() => this.socket.deliver([{ payload, source: from, destinationIp: to.address }]));
  }

  handleTimeout(): void {
    this.timerAt = undefined;
    this.work(() => this.loop.handleTimeout());
  }

  pollTransmit(): Transmit | undefined {
    const sent = this.socket.sent;
    if (this.drained === sent.length) {
      sent.length = 0;
      this.drained = 0;
      return undefined;
    }
    const next = sent[this.drained++]!;
    return { source: next.source, destination: next.destination, payload: next.payload };
  }

  pollTimeout(): number | undefined {
    return this.timerAt;
  }
}
