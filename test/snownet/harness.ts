/** Two snownet nodes, a test TURN relay and a portal stand-in on a simulated network. */
import { Node, type ConnectionParams, type NodeEvent, type RelayServer } from '../../src/snownet/index.ts';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { socketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import { SimNetwork, type SimAgent, type SimNat } from '../support/sim-network.ts';
import { TestTurnServer, type TestTurnServerOptions } from '../support/turn-server.ts';

export const RELAY_PASSWORD = 'relay-password';

/** A node plus what a portal would relay: candidate events go to the peer's node. */
export class NodeAgent implements SimAgent {
  readonly received: { connection: string; packet: Uint8Array; owner?: unknown }[] = [];
  readonly events: NodeEvent[] = [];
  peer: NodeAgent | undefined;
  signalling = true;
  /** Tells the network the peer's node was called from this agent's event. */
  wakePeer: (peer: NodeAgent) => void = () => undefined;

  constructor(readonly name: string, readonly node: Node, readonly peerId: string) {}

  handleDatagram(from: SocketAddr, to: SocketAddr, payload: Uint8Array, now: number): void {
    const result = this.node.decapsulate(to, from, payload, now);
    if (typeof result !== 'string') this.received.push({ connection: result.connection, packet: result.packet.slice(), owner: result.owner });
    this.drainEvents(now);
  }
  handleTimeout(now: number): void {
    this.node.handleTimeout(now);
    this.drainEvents(now);
  }
  /** Datagrams returned by `encapsulate`, waiting for the network. */
  readonly outbox: Transmit[] = [];

  pollTransmit(): Transmit | undefined {
    return this.outbox.shift() ?? this.node.pollTransmit();
  }
  pollTimeout(): number | undefined {
    return this.node.pollTimeout();
  }

  /** Encrypts a packet for the peer and puts it on the network; false when the node held or dropped it. */
  send(packet: Uint8Array, now: number): boolean {
    const transmit = this.node.encapsulate(this.peerId, packet, now);
    if (transmit === undefined) return false;
    this.outbox.push({ ...transmit, payload: transmit.payload.slice() });
    return true;
  }

  /** Signals the portal holds until the peer has a connection to give them to. */
  private readonly pendingSignals: { add: boolean; candidate: string }[] = [];

  drainEvents(now: number): void {
    for (let e = this.node.pollEvent(); e !== undefined; e = this.node.pollEvent()) {
      this.events.push(e);
      if (!this.signalling) continue;
      if (e.kind === 'newIceCandidates') for (const c of e.candidates) this.pendingSignals.push({ add: true, candidate: c });
      if (e.kind === 'invalidatedIceCandidates') for (const c of e.candidates) this.pendingSignals.push({ add: false, candidate: c });
    }
    this.flushSignals(now);
  }

  flushSignals(now: number): void {
    const peer = this.peer;
    if (peer === undefined || !peer.node.hasConnection(this.name)) return;
    const signals = this.pendingSignals.splice(0);
    for (const { add, candidate } of signals) {
      if (add) peer.node.addRemoteCandidate(this.name, candidate, now);
      else peer.node.removeRemoteCandidate(this.name, candidate, now);
    }
    if (signals.length > 0) this.wakePeer(peer);
  }
}

export interface Topology {
  readonly clientNat?: SimNat['kind'];
  readonly gatewayNat?: SimNat['kind'];
  readonly seed?: number;
  readonly loss?: number;
  readonly relay?: Partial<Pick<TestTurnServerOptions, 'deniedPeer' | 'signErrors' | 'password'>>;
}

export const RELAY_ADDR = socketAddr('192.0.2.100', 3478);

export function relayServer(id = 'relay-1', addr = RELAY_ADDR): RelayServer {
  return { id, v4: addr, v6: undefined, username: '1999999999:salt', password: RELAY_PASSWORD };
}

export function ipv4UdpPacket(src: string, dst: string, payload: Uint8Array): Uint8Array {
  const packet = new Uint8Array(28 + payload.length);
  const view = new DataView(packet.buffer);
  view.setUint8(0, 0x45);
  view.setUint16(2, packet.length);
  view.setUint8(8, 64);
  view.setUint8(9, 17);
  packet.set(src.split('.').map(Number), 12);
  packet.set(dst.split('.').map(Number), 16);
  view.setUint16(20, 1234);
  view.setUint16(22, 5678);
  view.setUint16(24, 8 + payload.length);
  packet.set(payload, 28);
  return packet;
}

export function keyPair(rng: RandomSource): Uint8Array {
  const key = new Uint8Array(32);
  rng.fill(key);
  return key;
}

export class Scenario {
  readonly rng: RandomSource;
  readonly net: SimNetwork;
  readonly relay: TestTurnServer;
  readonly client: NodeAgent;
  readonly gateway: NodeAgent;
  readonly clientKey: Uint8Array;
  readonly gatewayKey: Uint8Array;
  /** The preshared key of the last `connect`. */
  presharedKey: Uint8Array = new Uint8Array(32);

  constructor(topology: Topology = {}) {
    this.rng = seededRandom(topology.seed ?? 1);
    this.net = new SimNetwork(this.rng, { latencyMs: 5, loss: topology.loss ?? 0, wakeAllOnRun: true });
    this.relay = new TestTurnServer({ listen: [RELAY_ADDR], relayIpv4: '192.0.2.100', password: () => RELAY_PASSWORD, ...topology.relay });
    this.net.addHost('relay', ['192.0.2.100'], this.relay, { port: 3478 });
    this.clientKey = keyPair(this.rng);
    this.gatewayKey = keyPair(this.rng);
    const clientNode = new Node({ role: 'client', privateKey: this.clientKey, rng: this.rng, now: 0 });
    const gatewayNode = new Node({ role: 'server', privateKey: this.gatewayKey, rng: this.rng, now: 0 });
    this.client = new NodeAgent('client', clientNode, 'gateway');
    this.gateway = new NodeAgent('gateway', gatewayNode, 'client');
    this.client.peer = this.gateway;
    this.gateway.peer = this.client;
    this.client.wakePeer = this.gateway.wakePeer = (peer) => this.net.wake(peer);
    const clientNat: SimNat | undefined = topology.clientNat && { publicIp: '198.51.100.1', kind: topology.clientNat };
    const gatewayNat: SimNat | undefined = topology.gatewayNat && { publicIp: '203.0.113.1', kind: topology.gatewayNat };
    this.net.addHost('client', [clientNat ? '192.168.1.2' : '198.51.100.2'], this.client, clientNat ? { nat: clientNat } : {});
    this.net.addHost('gateway', [gatewayNat ? '192.168.2.2' : '203.0.113.2'], this.gateway, gatewayNat ? { nat: gatewayNat } : {});
    clientNode.updateRelays([], [relayServer()], 0);
    gatewayNode.updateRelays([], [relayServer()], 0);
  }

  /** Lets relays allocate, then authorizes the flow on both sides as the portal would. */
  connect(credentialsSeed = 'a'): void {
    this.net.runUntil(this.net.now + 500);
    const clientCreds = { ufrag: `c${credentialsSeed}`, password: `client-password-${credentialsSeed}-xxxx` };
    const gatewayCreds = { ufrag: `g${credentialsSeed}`, password: `gateway-password-${credentialsSeed}-xxx` };
    const psk = keyPair(this.rng);
    this.presharedKey = psk;
    const gatewayParams: ConnectionParams = { localCredentials: gatewayCreds, remoteCredentials: clientCreds, remotePublicKey: this.client.node.publicKey, presharedKey: psk };
    const clientParams: ConnectionParams = { localCredentials: clientCreds, remoteCredentials: gatewayCreds, remotePublicKey: this.gateway.node.publicKey, presharedKey: psk };
    this.gateway.node.upsertConnection('client', gatewayParams, this.net.now);
    this.gateway.drainEvents(this.net.now);
    this.client.node.upsertConnection('gateway', clientParams, this.net.now);
    this.client.drainEvents(this.net.now);
    this.gateway.flushSignals(this.net.now);
  }

  /** Sends a packet from `from` every 50 ms until the other side decrypts one; returns whether it did. */
  deliver(from: NodeAgent, body = 'hello', timeoutMs = 5_000): boolean {
    const to = from === this.client ? this.gateway : this.client;
    const before = to.received.length;
    const packet = ipv4UdpPacket('100.64.0.1', '10.0.0.1', new TextEncoder().encode(body));
    return this.net.runUntilCondition(() => {
      if (to.received.length > before) return true;
      from.send(packet, this.net.now);
      return false;
    }, timeoutMs, 50);
  }
}
