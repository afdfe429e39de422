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
import { SimNetwork, type SimAgent } from './sim-network.ts';
import { TestTurnServer } from './turn-server.ts';

export const FLEET_GATEWAY_IP = '203.0.113.2';
export const FLEET_RELAY = socketAddr('192.0.2.100', 3478);
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
  private readonly rng: RandomSource;
  private readonly byId = new Map<string, FleetClient>();
  private readonly gatewayAgent: SimAgent;
  private readonly resource: { readonly id: string; readonly address: string };
  private nextRef = 0;

  constructor(readonly options: FleetOptions) {
    this.rng = seededRandom(options.seed ?? 1);
    this.resource = options.resource ?? FLEET_RESOURCE;
    this.net = new SimNetwork(this.rng, { latencyMs: options.latencyMs ?? 5 });
    this.relay = new TestTurnServer({ listen: [FLEET_RELAY], relayIpv4: FLEET_RELAY.address, password: () => RELAY_PASSWORD });
    this.net.addHost('relay', [FLEET_RELAY.address], this.relay, { port: 3478 });
    const privateKey = this.key();
    const gatewayRng = seededRandom((options.seed ?? 1) ^ 0x5eed);
    const nodeOptions = { role: 'server' as const, privateKey, rng: gatewayRng, now: 0, ...(options.observer ? { observer: options.observer } : {}) };
    if (options.gateway === 'node') {
      const agent = new GatewayNodeAgent(new Node(nodeOptions), (event) => this.fromGateway(event));
      this.gateway = agent.node;
      this.gatewayAgent = agent;
      this.gateway.updateRelays([], [relayServer()], 0);
    } else {
      const host = new GatewayLoopAgent(new Node(nodeOptions), () => this.net.now, gatewayRng, (event, payload) => this.fromGatewayPortal(event, payload));
      this.gateway = host.node;
      this.loop = host.loop;
      this.state = host.state;
      this.gatewayAgent = host;
      this.portal('init', {
        interface: GATEWAY_TUN,
        config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
        relays: [{ type: 'turn', id: 'relay-1', addr: `${FLEET_RELAY.address}:${FLEET_RELAY.port}`, username: RELAY_USERNAME, password: RELAY_PASSWORD, expires_at: 1999999999 }],
      });
    }
    this.net.addHost('gateway', [FLEET_GATEWAY_IP], this.gatewayAgent);
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
      this.portal('authorize_flow', {
        ref: `flow-${++this.nextRef}`,
        resource: { id: this.resource.id, name: 'fleet', type: 'cidr', address: this.resource.address, filters: [] },
        client: {
          id: client.id,
          public_key: Buffer.from(client.node.publicKey).toString('base64'),
          preshared_key: Buffer.from(gatewayParams.presharedKey).toString('base64'),
          ipv4: client.tunV4,
          ipv6: `fd00:2021:1111::${(client.index + 16).toString(16)}`,
        },
        client_ice_credentials: { username: client.params.localCredentials.ufrag, password: client.params.localCredentials.password },
        gateway_ice_credentials: { username: client.params.remoteCredentials.ufrag, password: client.params.remoteCredentials.password },
        expires_at: null,
      });
    }
    this.net.wake('gateway');
    client.node.upsertConnection(GATEWAY_CONNECTION, client.params, now);
    client.agent.drainEvents(now);
    this.net.wake(client.name);
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
    this.loop!.handlePortalMessage(decoded.message);
    this.net.wake('gateway');
  }

  private addClient(index: number): void {
    const id = `3abd725a-733b-4801-ac16-${(0x72f26cd90000 + index).toString(16)}`;
    const name = `client${index}`;
    const ip = `198.18.${index >> 8}.${index & 0xff}`;
    const node = new Node({ role: 'client', privateKey: this.key(), rng: this.rng, now: this.net.now });
    node.updateRelays([], [relayServer()], this.net.now);
    const params: ConnectionParams = {
      localCredentials: { ufrag: `c${index.toString(36)}`, password: `client-password-${index}-xxxxxxxx` },
      remoteCredentials: { ufrag: `g${index.toString(36)}`, password: `gateway-password-${index}-xxxxxxx` },
      remotePublicKey: this.gateway.publicKey,
      presharedKey: this.key(),
    };
    const agent = new ClientAgent(node, (event, now) => this.fromClient(client, event, now));
    const client: FleetClient = { index, id, name, ip, tunV4: `100.${64 + (index >> 16)}.${(index >> 8) & 0xff}.${(index & 0xff) + 2}`, node, agent, params };
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

function relayServer(): RelayServer {
  return { id: 'relay-1', v4: FLEET_RELAY, v6: undefined, username: RELAY_USERNAME, password: RELAY_PASSWORD };
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
    this.socket.deliver([{ payload, source: from, destinationIp: to.address }]);
  }

  handleTimeout(): void {
    this.timerAt = undefined;
    this.loop.handleTimeout();
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
