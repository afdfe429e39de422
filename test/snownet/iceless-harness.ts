/** A client and a gateway node with ICE-less connections, one or two test TURN relays, optional NATs. */
import { Node, type ConnectionParams } from '../../src/snownet/index.ts';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { socketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import { SimNetwork, type SimNat } from '../support/sim-network.ts';
import { TestTurnServer } from '../support/turn-server.ts';
import { ipv4UdpPacket, keyPair, NodeAgent, RELAY_PASSWORD, relayServer } from './harness.ts';

export interface IcelessTopology {
  readonly clientNat?: SimNat['kind'];
  readonly gatewayNat?: SimNat['kind'];
  readonly relays?: 1 | 2;
  readonly seed?: number;
  /** The client host's addresses (the first one is where relay traffic comes from). */
  readonly clientIps?: readonly string[];
}

export const RELAY_IPS = ['192.0.2.100', '192.0.2.101'] as const;
export const CLIENT_IP = '198.51.100.2';
export const GATEWAY_IP = '203.0.113.2';

export class IcelessScenario {
  readonly rng: RandomSource;
  readonly net: SimNetwork;
  readonly relays: TestTurnServer[] = [];
  readonly client: NodeAgent;
  readonly gateway: NodeAgent;
  private readonly presharedKey: Uint8Array;

  constructor(topology: IcelessTopology = {}) {
    this.rng = seededRandom(topology.seed ?? 1);
    this.net = new SimNetwork(this.rng, { latencyMs: 5, wakeAllOnRun: true });
    const servers = [];
    for (let i = 0; i < (topology.relays ?? 1); i++) {
      const ip = RELAY_IPS[i]!;
      const relay = new TestTurnServer({ listen: [socketAddr(ip, 3478)], relayIpv4: ip, password: () => RELAY_PASSWORD });
      this.relays.push(relay);
      this.net.addHost(`relay-${i + 1}`, [ip], relay, { port: 3478 });
      servers.push(relayServer(`relay-${i + 1}`, socketAddr(ip, 3478)));
    }
    const clientNode = new Node({ role: 'client', privateKey: keyPair(this.rng), rng: this.rng, now: 0 });
    const gatewayNode = new Node({ role: 'server', privateKey: keyPair(this.rng), rng: this.rng, now: 0 });
    this.presharedKey = keyPair(this.rng);
    this.client = new NodeAgent('client', clientNode, 'gateway');
    this.gateway = new NodeAgent('gateway', gatewayNode, 'client');
    this.client.peer = this.gateway;
    this.gateway.peer = this.client;
    this.client.wakePeer = this.gateway.wakePeer = (peer) => this.net.wake(peer);
    const clientNat: SimNat | undefined = topology.clientNat && { publicIp: '198.51.100.1', kind: topology.clientNat };
    const gatewayNat: SimNat | undefined = topology.gatewayNat && { publicIp: '203.0.113.1', kind: topology.gatewayNat };
    this.net.addHost('client', topology.clientIps ?? [clientNat ? '192.168.1.2' : CLIENT_IP], this.client, clientNat ? { nat: clientNat } : {});
    this.net.addHost('gateway', [gatewayNat ? '192.168.2.2' : GATEWAY_IP], this.gateway, gatewayNat ? { nat: gatewayNat } : {});
    clientNode.updateRelays([], servers, 0);
    gatewayNode.updateRelays([], servers, 0);
  }

  /** Lets relays allocate, then authorizes an ICE-less flow on both sides, gateway first, as the portal does. */
  connect(): void {
    this.net.runUntil(this.net.now + 500);
    const params = (remote: Node): ConnectionParams => ({
      localCredentials: { ufrag: 'unused', password: 'unused-password-xxxxxx' },
      remoteCredentials: { ufrag: 'unused', password: 'unused-password-xxxxxx' },
      remotePublicKey: remote.publicKey,
      presharedKey: this.presharedKey,
      useIceless: true,
    });
    this.gateway.node.upsertConnection('client', params(this.client.node), this.net.now);
    this.gateway.drainEvents(this.net.now);
    this.client.node.upsertConnection('gateway', params(this.gateway.node), this.net.now);
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

  /**
   * Keeps data flowing both ways once a second for `ms` (as TCP would); returns how many packets
   * each side got.
   */
  traffic(ms: number): { gateway: number; client: number } {
    const before = { gateway: this.gateway.received.length, client: this.client.received.length };
    const request = ipv4UdpPacket('100.64.0.1', '10.0.0.1', new TextEncoder().encode('request'));
    const answer = ipv4UdpPacket('10.0.0.1', '100.64.0.1', new TextEncoder().encode('answer'));
    const end = this.net.now + ms;
    while (this.net.now < end) {
      this.client.send(request, this.net.now);
      this.gateway.send(answer, this.net.now);
      this.net.runUntil(Math.min(end, this.net.now + 1_000));
    }
    return { gateway: this.gateway.received.length - before.gateway, client: this.client.received.length - before.client };
  }
}

/** Whether a datagram is between the two hosts' own addresses (not through a relay). */
export function isDirect(from: SocketAddr, to: SocketAddr, a: string, b: string): boolean {
  return (from.address === a && to.address === b) || (from.address === b && to.address === a);
}
