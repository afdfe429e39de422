/** The gateway event loop on a simulated network with a client node: the shared set-up of the loop tests. */
import { GatewayState } from '../../src/gateway/index.ts';
import { parseIp } from '../../src/ip/index.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { decodeIngress, type IngressMessage } from '../../src/portal/index.ts';
import { GatewayEventLoop, type EventLoopOptions, type PacketSink } from '../../src/runtime/event-loop.ts';
import type { FlowLogs } from '../../src/runtime/flow-logs.ts';
import type { TunReadBatch } from '../../src/runtime/tun-device.ts';
import { MemoryUdpSocket, type DatagramSocket } from '../../src/runtime/udp-socket.ts';
import { Node } from '../../src/snownet/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import type { TransportCipher } from '../../src/wireguard/index.ts';
import { SimNetwork, type SimAgent } from '../support/sim-network.ts';
import { TestTurnServer } from '../support/turn-server.ts';
import { NodeAgent, RELAY_ADDR, RELAY_PASSWORD, keyPair } from '../snownet/harness.ts';

configureLogging({ filter: LogFilter.parse('off') });

export const CLIENT_ID = '3abd725a-733b-4801-ac16-72f26cd98a24';
export const RESOURCE_ID = 'c7793628-8579-465b-83e3-1a5d4af4db3b';
export const GATEWAY_TUN = { ipv4: '100.115.164.78', ipv6: 'fd00:2021:1111::2c:f6ab' };
export const CLIENT_TUN = { ipv4: '100.93.74.51', ipv6: 'fd00:2021:1111::f:853b' };

export function message(event: string, payload: unknown): IngressMessage {
  const decoded = decodeIngress(event, payload);
  if (!decoded.ok) throw new Error(JSON.stringify(decoded.error));
  return decoded.message;
}

/** The gateway event loop on the simulated network: in-memory socket, fake TUN, fake timer. */
export interface GatewayHostOptions {
  readonly state?: GatewayState;
  /** Makes the transport cipher of each node (gateway and client); node:crypto when absent. */
  readonly transportCipher?: () => TransportCipher;
  /** Replaces the in-memory socket as the loop's v4 socket (it still receives through `socket`). */
  readonly socket?: (memory: MemoryUdpSocket) => DatagramSocket;
  /** Replaces the TUN sink that records copies in `tunWrites`. */
  readonly tun?: (recording: PacketSink) => PacketSink;
  /** Flow logs for the loop (test/flow-logs). */
  readonly flowLogs?: FlowLogs;
  /** Extra loop options (capabilities). */
  readonly loop?: Partial<Pick<EventLoopOptions, 'iceless'>>;
}

export class GatewayHost implements SimAgent {
  readonly socket: MemoryUdpSocket;
  readonly tunWrites: Uint8Array[] = [];
  readonly portalSent: { event: string; payload: Readonly<Record<string, unknown>> }[] = [];
  reconnects = 0;
  readonly loop: GatewayEventLoop;
  readonly node: Node;
  private timerAt: number | undefined;
  private sentIndex = 0;

  constructor(readonly net: SimNetwork, options: GatewayHostOptions = {}) {
    const rng = seededRandom(7);
    this.node = new Node({ role: 'server', privateKey: keyPair(rng), rng, now: 0, ...(options.transportCipher ? { transportCipher: options.transportCipher() } : {}) });
    this.socket = new MemoryUdpSocket({ family: 4, onDatagrams: (batch) => this.loop.handleDatagrams(batch) });
    const recording: PacketSink = { write: (p) => (this.tunWrites.push(p.slice()), true) };
    this.loop = new GatewayEventLoop({
      node: this.node,
      state: options.state ?? new GatewayState(),
      sockets: { v4: options.socket?.(this.socket) ?? this.socket, v6: undefined },
      tun: options.tun?.(recording) ?? recording,
      portal: { send: (event, payload) => this.portalSent.push({ event, payload }), reconnect: () => void this.reconnects++ },
      resolver: { resolve: async () => ['10.0.0.9'] },
      configureInterface: async () => undefined,
      clock: () => net.now,
      wallClock: () => 1_700_000_000_000 + net.now,
      rng,
      onFatal: (error) => {
        throw error;
      },
      setTimer: (_callback, delay) => (this.timerAt = net.now + delay),
      clearTimer: () => (this.timerAt = undefined),
      ...(options.flowLogs === undefined ? {} : { flowLogs: options.flowLogs }),
      ...options.loop,
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
    const sent = this.socket.sent[this.sentIndex];
    if (sent === undefined) return undefined;
    this.sentIndex++;
    return { source: sent.source, destination: sent.destination, payload: sent.payload };
  }
  pollTimeout(): number | undefined {
    return this.timerAt;
  }

  tunPacket(packet: Uint8Array): void {
    const batch: TunReadBatch = { queue: 0, count: 1, buffer: packet, offset: () => 0, length: () => packet.length, packet: () => packet };
    this.loop.handleTunPackets(batch);
  }
}

export function setUp(filters: unknown[] = [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }, { protocol: 'icmp' }], options: GatewayHostOptions = {}) {
  const rng = seededRandom(3);
  const net = new SimNetwork(rng, { wakeAllOnRun: true });
  const relay = new TestTurnServer({ listen: [RELAY_ADDR], relayIpv4: '192.0.2.100', password: () => RELAY_PASSWORD });
  net.addHost('relay', ['192.0.2.100'], relay, { port: 3478 });
  const gateway = new GatewayHost(net, options);
  net.addHost('gateway', ['203.0.113.2'], gateway);
  const clientNode = new Node({ role: 'client', privateKey: keyPair(rng), rng, now: 0, ...(options.transportCipher ? { transportCipher: options.transportCipher() } : {}) });
  const client = new NodeAgent(CLIENT_ID, clientNode, 'gateway');
  net.addHost('client', ['198.51.100.2'], client);
  const relays = [{ type: 'turn', id: '0a133356-7a9e-4b9a-b413-0d95a5720fd8', addr: '192.0.2.100:3478', username: '1999999999:salt', password: RELAY_PASSWORD, expires_at: 1999999999 }];
  clientNode.updateRelays([], [{ id: 'r', v4: RELAY_ADDR, v6: undefined, username: '1999999999:salt', password: RELAY_PASSWORD }], 0);
  gateway.loop.handlePortalMessage(message('init', { interface: GATEWAY_TUN, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true }, relays }));
  net.runUntil(500);

  const psk = Buffer.from(keyPair(rng)).toString('base64');
  const gatewayCreds = { username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' };
  const clientCreds = { username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' };
  clientNode.upsertConnection('gateway', {
    localCredentials: { ufrag: clientCreds.username, password: clientCreds.password },
    remoteCredentials: { ufrag: gatewayCreds.username, password: gatewayCreds.password },
    remotePublicKey: gateway.node.publicKey,
    presharedKey: Buffer.from(psk, 'base64'),
  }, net.now);
  gateway.loop.handlePortalMessage(message('authorize_flow', {
    ref: 'flow-ref-1',
    resource: { id: RESOURCE_ID, name: 'corp', type: 'cidr', address: '10.0.0.0/24', filters },
    client: { id: CLIENT_ID, public_key: Buffer.from(clientNode.publicKey).toString('base64'), preshared_key: psk, ...CLIENT_TUN },
    client_ice_credentials: clientCreds,
    gateway_ice_credentials: gatewayCreds,
    expires_at: null,
  }));
  // The portal's part: candidates both ways.
  const relayCandidates = (): void => {
    for (const sent of gateway.portalSent.splice(0)) {
      if (sent.event === 'broadcast_ice_candidates') {
        for (const c of sent.payload['candidates'] as string[]) clientNode.addRemoteCandidate('gateway', c, net.now);
      } else {
        portalLog.push(sent);
      }
    }
    for (const e of client.events.splice(0)) {
      if (e.kind === 'newIceCandidates') gateway.loop.handlePortalMessage(message('ice_candidates', { client_id: CLIENT_ID, candidates: e.candidates }));
    }
  };
  const portalLog: { event: string; payload: Readonly<Record<string, unknown>> }[] = [];
  client.signalling = false;
  relayCandidates();
  return { net, gateway, client, clientNode, portalLog, relayCandidates, relay };
}

export const src = parseIp(CLIENT_TUN.ipv4)!;
export const resource = parseIp('10.0.0.5')!;

export function runUntil(env: ReturnType<typeof setUp>, condition: () => boolean, ms = 5_000): boolean {
  return env.net.runUntilCondition(() => {
    env.relayCandidates();
    return condition();
  }, ms, 20);
}

