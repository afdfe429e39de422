/**
 * The whole simulated world: the real gateway (event loop, GatewayState, server node) on a simulated network
 * with TURN relays, clients (real client-role nodes), resources behind the fake TUN device and a portal that
 * issues real, schema-checked messages. Commands change the world; after each one the world checks itself
 * against the reference model and reports violations.
 */
import { GatewayState } from '../../src/gateway/index.ts';
import { decodeDomainStatus, makeAssignedIpsPacket, makeGoodbyePacket, parseIp } from '../../src/ip/index.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { decodeIngress, PhoenixChannel } from '../../src/portal/index.ts';
import { Node, type NodeEvent } from '../../src/snownet/index.ts';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import { SimNetwork, type NatKind, type SimAgent } from '../support/sim-network.ts';
import { TestTurnServer } from '../support/turn-server.ts';
import { ClientHost, DnsHost, GatewayHost, JitteredAgent, PortalHost, WALL_CLOCK_BASE_MS } from './hosts.ts';
import { answer, equalBytes, isAnswerTo, isP2pControl, makePacket, readTag, sameTranslation, unreachableInfo } from './packets.ts';
import { inProxyRange, MAX_TRANSIT_MS, ReferenceModel, type ModelFilter, type Protocol, type ResourceDef } from './model.ts';

export const GATEWAY_TUN = { v4: '100.64.0.1', v6: 'fd00:2021:1111::1' };
const GATEWAY_IP = '203.0.113.2';
const GATEWAY_CONNECTION = 'gateway';
const GOODBYE_EVENT = 2;
const RELAY_PASSWORD = 'relay-password';
const RELAY_USERNAME = '1999999999:salt';
/** A tunnel address no client holds. */
export const STRANGER_TUN = { v4: '100.64.0.250', v6: 'fd00:2021:1111::fa' };
/** Long enough for ICE, the WireGuard handshake and a relay allocation. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Two handshake retransmissions (REKEY_TIMEOUT 5 s plus jitter) after a cookie reply. */
const BURST_HANDSHAKE_TIMEOUT_MS = 12_000;
/** Every packet's fate is known after this long, except for rekeys (then up to MAX_TRANSIT_MS). */
const SETTLE_MS = 100;
/** How long an unanswered AssignedIps may still be answered (the client may hold it for a handshake). */
const RESOLVE_REQUEST_MEMORY_MS = 120_000;
/** Within this long of the last answer, the gateway's WireGuard session can still carry a GOODBYE (sessions last 180 s, rekeyed after 120 s). */
const GOODBYE_SESSION_AGE_MS = 30_000;
/** Longer than the gateway's ICE timeout (about 615 s) and WireGuard's 540 s without a session. */
const CONNECTION_FAILURE_WAIT_MS = 700_000;

export const V4_NETWORKS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32', '172.16.0.0/12', '192.168.7.0/24'];
export const V6_NETWORKS = ['fd10::/16', 'fd10:1::/32', 'fd10:1:2::/48', '2001:db8::/32'];
/**
 * Resource-side addresses: inside, between and outside the networks above, a DNS proxy IP, the gateway, another
 * client's tunnel address (no hair-pinning), link-local and multicast.
 */
export const V4_HOSTS = ['10.1.2.3', '10.1.2.9', '10.1.5.5', '10.9.9.9', '172.16.3.4', '192.168.7.1', '8.8.8.8', '100.96.0.5', GATEWAY_TUN.v4, '100.96.0.1', '100.96.0.2', '100.96.0.3', '100.64.0.11', '169.254.169.254', '224.0.0.251'];
export const V6_HOSTS = ['fd10:1:2::5', 'fd10:1:9::1', 'fd10:9::1', '2001:db8::1', '2606:4700::1', 'fd00:2021:1111:8000::5', GATEWAY_TUN.v6, 'fd00:2021:1111:8000::1', 'fd00:2021:1111:8000::3', 'fd00:2021:1111::11', 'fe80::1', 'ff02::fb'];
/** What an Internet-resource client tries behind the gateway: every range it may not reach, and two it may. */
export const INTERNET_PROBES = ['169.254.169.254', '127.0.0.1', '10.1.2.3', '172.16.3.4', '192.168.7.1', '240.0.0.1', '255.255.255.255', '224.0.0.251', '8.8.8.8', 'fe80::1', '::1', '::ffff:10.1.2.3', 'fd10:1:2::5', 'ff02::fb', '2606:4700::1'];
/** The Internet resource every world has (besides its random resources). */
export const INTERNET_RESOURCE: ResourceConfig = { id: 'c7793628-8579-465b-83e3-1a5d4af4dbff', type: 'internet', address: '', filters: [] };

/** What the site's DNS answers (undefined: resolution fails), and the proxy IPs clients give each name. */
export const DNS_RECORDS: Readonly<Record<string, readonly string[] | undefined>> = {
  'a.example.com': ['10.1.2.3', '172.16.3.4', 'fd10:1:2::5'],
  'b.example.com': ['192.168.7.1'],
  'c.example.com': undefined,
  'd.other.test': ['10.9.9.9'],
};
export const DOMAINS = Object.keys(DNS_RECORDS);
const DOMAIN_PROXIES: Readonly<Record<string, readonly string[]>> = {
  'a.example.com': ['100.96.0.1', '100.96.0.2', 'fd00:2021:1111:8000::1'],
  'b.example.com': ['100.96.0.3', 'fd00:2021:1111:8000::3'],
  'c.example.com': ['100.96.0.4'],
  'd.other.test': ['100.96.0.6'],
};
const V4_PROXIES = Object.values(DOMAIN_PROXIES).flat().filter((ip) => !ip.includes(':'));
const V6_PROXIES = Object.values(DOMAIN_PROXIES).flat().filter((ip) => ip.includes(':'));
export const PORTS = [22, 53, 80, 443, 999, 1000, 1001, 8080, 65535];

export interface ResourceConfig extends ResourceDef {
  readonly filters: readonly ModelFilter[];
}

export interface WorldConfig {
  readonly seed: number;
  readonly clientNats: readonly ('none' | NatKind)[];
  /** Relays online at the start (0..RELAY_COUNT). */
  readonly relays: number;
  readonly latencyMs: number;
  /** Extra random delay per datagram, 0..jitterMs: datagrams get reordered. */
  readonly jitterMs: number;
  /** Datagram loss; with loss only safety is checked. */
  readonly loss: number;
  readonly resources: readonly ResourceConfig[];
}

export const RELAY_COUNT = 2;

export interface PacketSpec {
  readonly family: 4 | 6;
  /** Index into V4_HOSTS / V6_HOSTS. */
  readonly host: number;
  readonly protocol: Protocol;
  readonly port: number;
  /** 0: the client's own address; 1: another client's; 2: a resource's. */
  readonly spoof: 0 | 1 | 2;
  /** To a DNS proxy IP (`host` picks which) instead of a resource-side host. */
  readonly proxy: boolean;
  /** An explicit destination instead of `host`. */
  readonly target?: string;
}

export interface InboundSpec {
  readonly family: 4 | 6;
  readonly host: number;
  readonly protocol: Protocol;
  readonly port: number;
  /** To a tunnel address no client holds. */
  readonly stranger: boolean;
}

/** The partition budget of the simulated gateway (FIREZONE_MAX_PARTITION_TIME; 24 h in production, short here). */
export const SIM_MAX_PARTITION_MS = 120_000;
/** The longest reconnect step (60 s plus jitter below 500 ms): the gateway may give up this much before the budget. */
const SIM_LAST_STEP_MS = 60_500;
const JOIN_ACK = '{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}';

export type SimCommand =
  | { readonly kind: 'step'; readonly ms: number }
  | { readonly kind: 'authorize'; readonly client: number; readonly resource: number; readonly expiresInSeconds: number | null }
  /** Clients `from`..`to - 1` authorized at once (a burst, as people arrive in the morning), each for resource `client`; no expiry. */
  | { readonly kind: 'authorizeBurst'; readonly from: number; readonly to: number }
  | { readonly kind: 'reject'; readonly client: number; readonly resource: number }
  | { readonly kind: 'update'; readonly resource: number; readonly filters: readonly ModelFilter[] }
  | { readonly kind: 'partition' }
  /**
   * The portal is unreachable for `ms` (both ways, signalling too). The gateway's channel retries on 1.6.0's
   * reconnect schedule in virtual time; within the partition budget (SIM_MAX_PARTITION_MS) it joins again and
   * gets a fresh `init`, beyond it the gateway gives up (exits) and the history ends there.
   */
  | { readonly kind: 'portalOutage'; readonly ms: number }
  | { readonly kind: 'reinit'; readonly withAuthorizations: boolean }
  | { readonly kind: 'relayDown'; readonly relay: number }
  | { readonly kind: 'relayUp'; readonly relay: number }
  | { readonly kind: 'roam'; readonly client: number; readonly resource: number }
  | { readonly kind: 'send'; readonly client: number; readonly packets: readonly PacketSpec[] }
  /**
   * The client's p2p-control AssignedIps for a DNS resource: the gateway resolves and sets up its NAT. `renumber`:
   * with the proxy IPs of another name (a client that signed out and in again): the gateway resets the client's NAT.
   */
  | { readonly kind: 'resolve'; readonly client: number; readonly resource: number; readonly domain: number; readonly renumber: boolean }
  | { readonly kind: 'inbound'; readonly client: number; readonly packets: readonly InboundSpec[] }
  /** The client signs out: it says GOODBYE and drops its connection; the gateway forgets it at once. */
  | { readonly kind: 'goodbye'; readonly client: number }
  /**
   * The client's connection breaks without a word (it crashed, the network went away): the gateway's side fails
   * after its ICE timeout, its policy state stays, and the client comes back with `resource` on a new connection.
   */
  | { readonly kind: 'drop'; readonly client: number; readonly resource: number }
  /** The client takes the Internet resource and tries private, link-local, loopback, multicast and public addresses. */
  | { readonly kind: 'internet'; readonly client: number; readonly probes: readonly { readonly target: number; readonly protocol: Protocol; readonly port: number }[] };

interface SimClient {
  readonly index: number;
  readonly id: string;
  readonly tun: { readonly v4: string; readonly v6: string };
  readonly nat: 'none' | NatKind;
  host: ClientHost;
  /** Bumped for new ICE credentials; `roams` for a new address and key. */
  epoch: number;
  roams: number;
  psk: Uint8Array;
  /** The gateway accepted a connection with this client's current credentials and has not lost it since. */
  gatewayHasConnection: boolean;
  /**
   * A relay went away: a connection through it fails, and (known issues, see README) connections that do
   * not use it may stall too. Packets need not arrive until the client's next connection.
   */
  stalled: boolean;
  /** GOODBYEs the gateway sent this client. */
  goodbyes: number;
  /** When an answer last came back through the tunnel (the gateway's WireGuard session is fresh). */
  lastReplyAt: number;
  /** The client's node has a WireGuard session on its current connection (its `connectionEstablished`). */
  sessionUp: boolean;
}

interface ResolveRequest {
  readonly client: number;
  readonly resource: string;
  readonly domain: string;
  readonly at: number;
  readonly answers: string[];
}

interface Flow {
  readonly tag: number;
  readonly client: number;
  readonly direction: 'out' | 'in';
  readonly packet: Uint8Array;
  readonly expect: 'allow' | 'deny' | 'unknown';
  /** A DNS proxy IP it was sent to, and the real address the gateway must translate it to. */
  readonly proxy: string | undefined;
  readonly translatedTo: string | undefined;
  /** For denied outbound packets: whether the ICMP reply is required (true), forbidden (false) or optional. */
  readonly icmp: boolean | undefined;
  readonly icmpCode: 'prohibited' | 'unreachable';
  /** Whether an allowed packet must arrive (a live connection without loss). */
  readonly mustArrive: boolean;
  tunCopies: number;
  replies: number;
  icmpReplies: number;
}

/** Test-only hooks: a deliberately broken gateway or TUN device, to show the invariants catch it. */
export interface WorldHooks {
  readonly makeState?: () => GatewayState;
  /**
   * Only connections whose path runs through a departing relay may break (the default;
   * `SIM_LENIENT_RELAYS=1` lets any connection stall when a relay leaves).
   */
  readonly strictRelayLoss?: boolean;
}

let capturedLogProblems: string[] = [];
configureLogging({
  filter: LogFilter.parse('warn'),
  format: 'json',
  sink: {
    write(line: string) {
      const record = JSON.parse(line) as { level?: string; message?: string };
      if (record.level === 'ERROR' || record.message === 'Failed to handle portal message') capturedLogProblems.push(line.trim());
    },
  },
});

export class World {
  readonly net: SimNetwork;
  readonly model: ReferenceModel;
  readonly gateway: GatewayHost;
  readonly clients: SimClient[] = [];
  private readonly clientsById = new Map<string, SimClient>();
  readonly violations: string[] = [];
  /** Relay ids the gateway was told about (init / relays_presence). */
  private readonly gatewayRelays = new Set<string>();
  private readonly relayOnline: boolean[] = [];
  private readonly portal: PortalHost;
  private readonly dns: DnsHost;
  /** AssignedIps sent and the DomainStatus answers they got (answers come in order per client, resource and name). */
  private resolveRequests: ResolveRequest[] = [];
  private readonly rng: RandomSource;
  private readonly resources: { def: ResourceDef; filters: readonly ModelFilter[] }[];
  /** What the portal believes: client/resource -> expiry (monotonic ms or undefined). */
  private readonly portalGrants = new Map<string, number | undefined>();
  private partitioned = false;
  /** The portal's WebSocket is down (a `portalOutage`): nothing passes either way. */
  private portalDown = false;
  /** The gateway gave up on the portal (the partition budget ran out): the process would have exited. */
  gatewayExited = false;
  /** The gateway's channel state machine, driven in virtual time during outages (joined at the start). */
  private readonly channel: PhoenixChannel<never>;
  private readonly flowsAuthorized = new Set<string>();
  /** What the model learns when the gateway answers an authorize_flow. */
  private readonly pendingFlows = new Map<string, () => void>();
  private nextRef = 0;
  private nextTag = 0;
  private readonly flows = new Map<number, Flow>();
  reconnects = 0;
  private readonly strictRelayLoss: boolean;
  /** What the history exercised, to check that histories do more than nothing. */
  readonly stats = {
    flowsAuthorized: 0,
    packets: 0,
    skippedSends: 0,
    allowed: 0,
    denied: 0,
    delivered: 0,
    prohibited: 0,
    unreachable: 0,
    repliesToClients: 0,
    roams: 0,
    connectionFailures: 0,
    dnsActive: 0,
    translated: 0,
    renumbered: 0,
    goodbyesSent: 0,
    noRelaysSent: 0,
    goodbyesReceived: 0,
    reconnectedAfterFailure: 0,
    portalOutagesSurvived: 0,
  };

  constructor(readonly config: WorldConfig, hooks: WorldHooks = {}) {
    capturedLogProblems = [];
    this.strictRelayLoss = hooks.strictRelayLoss ?? process.env['SIM_LENIENT_RELAYS'] !== '1';
    this.rng = seededRandom(config.seed);
    this.channel = new PhoenixChannel<never>({
      topic: 'gateway',
      rng: seededRandom(config.seed ^ 0x5eed),
      decode: (event) => ({ ok: false, error: { code: 'unknownEvent', event } }),
      maxPartitionMs: SIM_MAX_PARTITION_MS,
    });
    this.channel.connect(0);
    this.channel.handleConnected(0);
    this.channel.handleFrame(JOIN_ACK, 0);
    while (this.channel.pollFrame() !== undefined || this.channel.pollEvent() !== undefined);
    this.net = new SimNetwork(this.rng, { latencyMs: config.latencyMs, loss: config.loss });
    this.resources = [...config.resources, INTERNET_RESOURCE].map((r) => ({ def: { id: r.id, type: r.type, address: r.address }, filters: r.filters }));
    this.model = new ReferenceModel(new Map(this.resources.map((r) => [r.def.id, r.def])), GATEWAY_TUN);
    const clock = (): number => this.net.now;

    for (let r = 0; r < RELAY_COUNT; r++) {
      const ip = relayIp(r);
      const server = new TestTurnServer({ listen: [socketAddr(ip, 3478)], relayIpv4: ip, password: () => RELAY_PASSWORD });
      this.net.addHost(`relay${r}`, [ip], this.jittered(server), { port: 3478 });
      this.relayOnline.push(r < config.relays);
      this.net.setOnline(`relay${r}`, r < config.relays);
    }
    this.portal = new PortalHost(clock, () => this.net.wake('portal'));
    this.net.addHost('portal', ['192.0.2.250'], this.portal);
    // Answers reach the gateway's event loop from the DNS host's timer.
    this.dns = new DnsHost(DNS_RECORDS, clock, () => this.net.wake('gateway'));
    this.net.addHost('dns', ['192.0.2.251'], this.dns);
    this.dns.wakeSelf = () => this.net.wake('dns');
    this.gateway = new GatewayHost({
      rng: seededRandom(config.seed ^ 0x5eed),
      privateKey: this.key(),
      state: hooks.makeState?.() ?? new GatewayState(),
      clock,
      onPortalSend: (event, payload) => this.fromGateway(event, payload),
      onReconnect: () => {
        this.reconnects++;
        this.portal.enqueue(() => this.sendInit(true));
      },
      onTunWrite: (packet) => this.onTunWrite(packet),
      resolver: this.dns,
    });
    this.gateway.node.onEvent = (event) => {
      if (event.kind !== 'connectionFailed') return;
      this.stats.connectionFailures++;
      if (process.env['SIM_TRACE']) console.log(this.net.now, 'gateway connection failed', event.connection, event.reason);
      const client = this.clientsById.get(event.connection);
      // The gateway keeps the client's policy state (1.6.0): the model does not change.
      if (client !== undefined) client.gatewayHasConnection = false;
    };
    this.net.addHost('gateway', [GATEWAY_IP], this.jittered(this.gateway));

    config.clientNats.forEach((nat, index) => {
      const client: SimClient = {
        index,
        id: `3abd725a-733b-4801-ac16-${(0x72f26cd98a20 + index).toString(16)}`,
        tun: clientTun(index),
        nat,
        host: undefined as unknown as ClientHost,
        epoch: 0,
        roams: 0,
        psk: this.key(),
        gatewayHasConnection: false,
        stalled: false,
        goodbyes: 0,
        lastReplyAt: -Infinity,
        sessionUp: false,
      };
      client.host = this.newClientHost(client);
      this.clients.push(client);
      this.clientsById.set(client.id, client);
    });

    this.sendInit(false);
    this.net.runUntil(500);
  }

  // ---- commands --------------------------------------------------------------------------------------------

  apply(command: SimCommand): void {
    if (this.gatewayExited) return;
    switch (command.kind) {
      case 'portalOutage':
        this.portalOutage(command.ms);
        break;
      case 'step':
        this.net.runUntil(this.net.now + command.ms);
        break;
      case 'authorize':
        this.authorize(this.client(command.client), this.resource(command.resource), command.expiresInSeconds);
        break;
      case 'authorizeBurst':
        this.authorizeBurst(command.from, command.to);
        break;
      case 'reject':
        this.reject(this.client(command.client), this.resource(command.resource));
        break;
      case 'update':
        this.update(this.resource(command.resource), command.filters);
        break;
      case 'partition':
        this.partitioned = true;
        break;
      case 'reinit':
        this.reinit(command.withAuthorizations);
        break;
      case 'relayDown':
        this.setRelay(command.relay % RELAY_COUNT, false);
        break;
      case 'relayUp':
        this.setRelay(command.relay % RELAY_COUNT, true);
        break;
      case 'roam':
        this.roam(this.client(command.client), this.resource(command.resource));
        break;
      case 'send':
        this.send(this.client(command.client), command.packets);
        break;
      case 'resolve':
        this.resolve(this.client(command.client), this.dnsResource(command.resource), command.domain % DOMAINS.length, command.renumber);
        break;
      case 'inbound':
        this.inbound(this.client(command.client), command.packets);
        break;
      case 'goodbye':
        this.goodbye(this.client(command.client));
        break;
      case 'drop':
        this.drop(this.client(command.client), this.resource(command.resource));
        break;
      case 'internet':
        this.internet(this.client(command.client), command.probes);
        break;
    }
    this.model.expire(this.net.now);
    // A client the gateway forgot (its last resource went) had its connection closed there, GOODBYE or not.
    // So did one whose last grant came due before its WireGuard session was confirmed there (no GOODBYE could go):
    // the client notices by its WireGuard timeouts and starts over.
    for (const client of this.clients) {
      if (this.model.clientPresence(client.id, this.net.now, this.net.now) === 'absent' || !this.gateway.node.hasConnection(client.id)) client.gatewayHasConnection = false;
    }
    this.checkState();
  }

  /** One line per client: both ends of its connection and what the gateway holds (for SIM_TRACE). */
  describeClients(): string {
    return this.clients
      .map((c) => {
        const path = c.host.node.connectionPath(GATEWAY_CONNECTION);
        const gatewayPath = this.gateway.node.connectionPath(c.id);
        const where = (p: typeof path): string => (p === undefined ? '-' : `${p.kind}:${p.destination.address}`);
        return `[c${c.index} ${c.host.node.connectionState(GATEWAY_CONNECTION) ?? 'none'} ${where(path)} | gw ${this.gateway.node.connectionState(c.id) ?? 'none'} ${where(gatewayPath)} ${c.stalled ? 'stalled ' : ''}holds ${this.gateway.state.clientResourceIds(c.id).length}]`;
      })
      .join(' ');
  }

  /** Throws with every violation seen so far (the world's invariants). */
  assertInvariants(): void {
    const problems = [...this.violations, ...capturedLogProblems.map((line) => `log: ${line}`)];
    if (problems.length > 0) throw new Error(`invariant violated at t=${this.net.now}ms:\n  ${problems.slice(0, 10).join('\n  ')}`);
  }

  private authorize(client: SimClient, resource: { def: ResourceDef; filters: readonly ModelFilter[] }, expiresInSeconds: number | null, retried = false): void {
    if (this.partitioned) return;
    const flow = this.startAuthorization(client, resource, expiresInSeconds);
    if (flow.expectAccepted) this.net.runUntilCondition(flow.connected, CONNECT_TIMEOUT_MS, 10);
    else this.settle();
    if (flow.finish(!retried) === 'retry') this.authorize(client, resource, expiresInSeconds, true);
  }

  private authorizeBurst(from: number, to: number): void {
    if (this.partitioned) return;
    const flows: ReturnType<World['startAuthorization']>[] = [];
    for (let index = from; index < to; index++) flows.push(this.startAuthorization(this.client(index), this.resource(index), null));
    const expected = flows.filter((flow) => flow.expectAccepted);
    const clients = expected.map((flow) => flow.client);
    // All at once: a connection's set-up takes a few round trips, whatever the burst's size. Its WireGuard
    // handshakes may take longer: past the gateway's handshake rate limit (whitepaper §5.4.7, 100 a second)
    // an initiator gets a cookie reply and tries again, with MAC2, after REKEY_TIMEOUT (5 s). Until then its
    // packets wait for the session, so the burst is over when every session is up.
    if (expected.length > 0) {
      this.net.runUntilCondition(() => expected.every((flow) => flow.connected()), CONNECT_TIMEOUT_MS, 50);
      this.net.runUntilCondition(() => clients.every((client) => client.sessionUp), BURST_HANDSHAKE_TIMEOUT_MS, 50);
    } else this.settle();
    for (const flow of flows) flow.finish(false);
  }

  /**
   * Sends `authorize_flow` and starts the client's side; the caller runs the network, then `finish` checks what
   * came back, or (`mayRetry`) says the client must ask again (a stale GOODBYE dropped the new connection).
   */
  private startAuthorization(
    client: SimClient,
    resource: { def: ResourceDef; filters: readonly ModelFilter[] },
    expiresInSeconds: number | null,
  ): { client: SimClient; expectAccepted: boolean; connected: () => boolean; finish: (mayRetry: boolean) => 'done' | 'retry' } {
    const now = this.net.now;
    const goodbyesBefore = client.goodbyes;
    // A client whose gateway side is gone or stalled notices (WireGuard timeouts) and starts over.
    const newConnection = !client.host.node.hasConnection(GATEWAY_CONNECTION) || !client.gatewayHasConnection || client.stalled;
    if (newConnection) {
      client.host.node.removeConnection(GATEWAY_CONNECTION);
      client.epoch++;
      client.gatewayHasConnection = false;
      client.stalled = false;
      client.lastReplyAt = -Infinity;
      client.sessionUp = false;
    }
    const expectAccepted = (!newConnection && client.gatewayHasConnection) || this.gatewayRelays.size > 0;
    const ref = `flow-${++this.nextRef}`;
    const expiresAt = expiresInSeconds === null ? null : Math.floor((WALL_CLOCK_BASE_MS + now) / 1000) + expiresInSeconds;
    const expiresAtMonotonic = expiresAt === null ? undefined : expiresAt * 1000 - WALL_CLOCK_BASE_MS;
    this.pendingFlows.set(ref, () => {
      client.gatewayHasConnection = true;
      this.stats.flowsAuthorized++;
      this.model.authorize(client.id, resource.def.id, resource.filters, expiresAtMonotonic, this.net.now);
      this.portalGrants.set(`${client.id}/${resource.def.id}`, expiresAtMonotonic);
    });
    this.toGateway('authorize_flow', {
      ref,
      resource: resourcePayload(resource.def, resource.filters),
      client: {
        id: client.id,
        public_key: base64(client.host.node.publicKey),
        preshared_key: base64(client.psk),
        ipv4: client.tun.v4,
        ipv6: client.tun.v6,
      },
      client_ice_credentials: clientCredentials(client),
      gateway_ice_credentials: gatewayCredentials(client),
      expires_at: expiresAt,
    });
    if (newConnection) {
      const local = clientCredentials(client);
      const remote = gatewayCredentials(client);
      client.host.node.upsertConnection(
        GATEWAY_CONNECTION,
        {
          localCredentials: { ufrag: local.username, password: local.password },
          remoteCredentials: { ufrag: remote.username, password: remote.password },
          remotePublicKey: this.gateway.node.publicKey,
          presharedKey: client.psk,
        },
        now,
      );
      client.host.drainEvents(now);
    }
    this.net.wake(clientHostName(client));
    const connected = (): boolean => this.flowsAuthorized.has(ref) && this.clientReady(client) && this.gatewayReady(client);
    const finish = (mayRetry: boolean): 'done' | 'retry' => {
      this.pendingFlows.delete(ref);
      const accepted = this.flowsAuthorized.has(ref);
      // A GOODBYE for the connection's previous life (its last resource expired as this flow was asked for) can
      // arrive after the new authorization: the client drops the connection and, as the reference's client does on
      // its next packet, asks again.
      if (accepted && mayRetry && client.goodbyes > goodbyesBefore && !(this.clientReady(client) && this.gatewayReady(client))) return 'retry';
      // With loss a relay allocation can fail and the node drop the relay: then nothing is certain.
      if (accepted !== expectAccepted && this.config.loss === 0) {
        this.violations.push(`authorize_flow ${ref} for client ${client.index}: expected ${expectAccepted ? 'flow_authorized' : 'no answer (no relays)'}, got ${accepted ? 'flow_authorized' : 'nothing'}`);
      }
      // A grant that came due before the connection was up (one second from now rounds down to the next second
      // boundary) leaves the client with nothing: the gateway forgets it and closes the half-made connection.
      this.model.expire(this.net.now);
      const forgotten = this.model.clientPresence(client.id, this.net.now, this.net.now) === 'absent';
      if (accepted && this.config.loss === 0 && !client.stalled && !forgotten && !(this.clientReady(client) && this.gatewayReady(client))) {
        this.violations.push(`client ${client.index} not connected ${CONNECT_TIMEOUT_MS}ms after flow ${ref} was authorized`);
      }
      return 'done';
    };
    return { client, expectAccepted, connected, finish };
  }

  private reject(client: SimClient, resource: { def: ResourceDef }): void {
    this.portalGrants.delete(`${client.id}/${resource.def.id}`);
    if (this.partitioned) return;
    const lastOne = this.model.certainResources(client.id, this.net.now)?.join() === resource.def.id;
    const expectGoodbye = lastOne && this.goodbyeExpected(client);
    const goodbyes = client.goodbyes;
    this.model.reject(client.id, resource.def.id);
    this.toGateway('reject_access', { client_id: client.id, resource_id: resource.def.id, flow_id: resource.def.id });
    this.settle();
    if (expectGoodbye) this.awaitGoodbye(client, goodbyes, 'lost its last resource');
  }

  /** The gateway must say GOODBYE when it closes the client's connection: a live one with a fresh WireGuard session. */
  private goodbyeExpected(client: SimClient): boolean {
    return this.config.loss === 0 && client.gatewayHasConnection && !client.stalled && this.clientReady(client) && this.gatewayReady(client) && this.net.now - client.lastReplyAt <= GOODBYE_SESSION_AGE_MS;
  }

  private awaitGoodbye(client: SimClient, before: number, why: string): void {
    this.net.runUntilCondition(() => client.goodbyes > before, MAX_TRANSIT_MS, 10);
    if (client.goodbyes === before) this.violations.push(`client ${client.index} ${why}: no GOODBYE came`);
    else if (this.clientReady(client)) this.violations.push(`client ${client.index}: its connection is still up after GOODBYE`);
  }

  /**
   * The portal is unreachable for `ms`: every attempt of the gateway's channel fails until then. Invariants: the
   * gateway sends no ICE candidates meanwhile (they would be lost; it holds them); it gives up exactly when the
   * outage outlasts the budget (cumulative backoff delay, so never before the budget minus the last step); within
   * it, it joins again, advertises its capabilities and takes the fresh `init` (policy as in `reinit`), and the
   * data plane keeps working throughout (the histories' later sends judge that).
   */
  private portalOutage(ms: number): void {
    this.net.runUntil(this.net.now); // what the portal already queued is delivered before the cut
    const end = this.net.now + ms;
    this.portalDown = true;
    this.gateway.loop.portalDisconnected();
    this.channel.handleDisconnected('portal unreachable', this.net.now);
    for (;;) {
      let fatal = false;
      for (let event = this.channel.pollEvent(); event !== undefined; event = this.channel.pollEvent()) if (event.kind === 'fatal') fatal = true;
      while (this.channel.pollFrame() !== undefined);
      if (fatal) {
        this.gatewayExited = true;
        if (this.net.now < end - ms + SIM_MAX_PARTITION_MS - SIM_LAST_STEP_MS) {
          this.violations.push(`the gateway gave up on the portal after ${this.net.now - (end - ms)}ms of a ${ms}ms outage, within the ${SIM_MAX_PARTITION_MS}ms budget`);
        }
        return;
      }
      const at = this.channel.pollTimeout();
      if (at === undefined) throw new Error('the channel neither retries nor gives up');
      if (at >= end) this.net.runUntil(end);
      if (this.net.now >= end) this.portalDown = false;
      this.net.runUntil(at);
      this.channel.handleTimeout(at);
      if (this.portalDown) {
        this.channel.handleDisconnected('failed to connect socket', at);
        continue;
      }
      this.channel.handleConnected(at);
      this.channel.handleFrame(JOIN_ACK, at);
      break;
    }
    while (this.channel.pollFrame() !== undefined || this.channel.pollEvent() !== undefined);
    if (ms > SIM_MAX_PARTITION_MS) this.violations.push(`the gateway outlived a ${ms}ms outage, beyond the ${SIM_MAX_PARTITION_MS}ms budget`);
    this.stats.portalOutagesSurvived++;
    this.gateway.loop.portalJoined('v2');
    this.reinit(true);
  }

  /** The portal comes back with `init`: a client whose every authorization is unlisted is closed with GOODBYE. */
  private reinit(withAuthorizations: boolean): void {
    this.partitioned = false;
    const now = this.net.now;
    const emptied = this.clients.filter((client) => {
      if (!withAuthorizations) return false;
      const held = this.model.certainResources(client.id, now);
      if (held === undefined || held.length === 0) return false;
      return held.every((resourceId) => {
        const expiresAt = this.portalGrants.get(`${client.id}/${resourceId}`);
        return !this.portalGrants.has(`${client.id}/${resourceId}`) || (expiresAt !== undefined && expiresAt <= now);
      });
    });
    const expected = emptied.filter((client) => this.goodbyeExpected(client)).map((client) => ({ client, before: client.goodbyes }));
    this.sendInit(withAuthorizations);
    this.settle();
    for (const { client, before } of expected) this.awaitGoodbye(client, before, 'lost every authorization in init');
  }

  private update(resource: { def: ResourceDef; filters: readonly ModelFilter[] }, filters: readonly ModelFilter[]): void {
    if (resource.def.type === 'internet') return;
    resource.filters = filters;
    if (this.partitioned) return;
    this.toGateway('resource_updated', resourcePayload(resource.def, filters));
    this.settle();
    this.model.resourceUpdated(resource.def.id, filters);
  }

  private setRelay(relay: number, online: boolean): void {
    if (this.partitioned || this.relayOnline[relay] === online) return;
    this.relayOnline[relay] = online;
    this.net.setOnline(`relay${relay}`, online);
    const id = relayId(relay);
    if (online) {
      this.toGateway('relays_presence', { disconnected_ids: [], connected: [relayPayload(relay)] });
      this.gatewayRelays.add(id);
    } else {
      this.toGateway('relays_presence', { disconnected_ids: [id], connected: [] });
      this.gatewayRelays.delete(id);
    }
    for (const client of this.clients) {
      if (!online && (!this.strictRelayLoss || this.pathUsesRelay(client, relay))) client.stalled = true;
      if (online) client.host.node.updateRelays([], [clientRelay(relay)], this.net.now);
      else client.host.node.updateRelays([id], [], this.net.now);
      client.host.drainEvents(this.net.now);
      this.net.wake(clientHostName(client));
    }
    this.settle();
  }

  private roam(client: SimClient, resource: { def: ResourceDef; filters: readonly ModelFilter[] }): void {
    if (this.partitioned) return;
    client.host.retired = true;
    this.net.setOnline(clientHostName(client), false);
    this.net.wake(clientHostName(client));
    client.roams++;
    this.stats.roams++;
    client.psk = this.key();
    client.host = this.newClientHost(client);
    this.authorize(client, resource, null);
  }

  private send(client: SimClient, specs: readonly PacketSpec[]): void {
    if (!this.clientReady(client)) {
      this.stats.skippedSends++;
      return;
    }
    const sentAt = this.net.now;
    const outbound: Flow[] = [];
    for (const spec of specs) {
      const hosts = spec.proxy ? (spec.family === 4 ? V4_PROXIES : V6_PROXIES) : spec.family === 4 ? V4_HOSTS : V6_HOSTS;
      const destination = spec.target ?? hosts[spec.host % hosts.length]!;
      const source = this.sourceFor(client, spec);
      const tag = this.tag();
      const packet = makePacket(source, destination, spec.protocol, 40_000 + (tag % 20_000), spec.port, tag);
      const verdict = this.model.outbound(client.id, client.tun, source, destination, spec.protocol, spec.port, sentAt);
      // A packet the node holds for a handshake leaves whenever that completes: its verdict is anyone's guess.
      const onItsWay = client.host.send(GATEWAY_CONNECTION, packet, sentAt);
      this.net.wake(clientHostName(client));
      const expect = !onItsWay ? 'unknown' : verdict.kind === 'unreachable' || verdict.kind === 'drop' ? 'deny' : verdict.kind;
      const presence = this.model.clientPresence(client.id, sentAt, sentAt + MAX_TRANSIT_MS);
      const live = client.gatewayHasConnection && !client.stalled && this.config.loss === 0;
      const flow: Flow = {
        tag,
        client: client.index,
        direction: 'out',
        packet,
        expect,
        proxy: inProxyRange(destination) ? destination : undefined,
        translatedTo: onItsWay && verdict.kind === 'allow' ? verdict.translatedTo : undefined,
        icmpCode: verdict.kind === 'unreachable' ? 'unreachable' : 'prohibited',
        icmp: expect !== 'deny' || verdict.kind === 'drop' ? false : presence === 'present' ? (live ? true : undefined) : presence === 'absent' ? false : undefined,
        mustArrive: expect === 'allow' && live,
        tunCopies: 0,
        replies: 0,
        icmpReplies: 0,
      };
      this.flows.set(tag, flow);
      outbound.push(flow);
      this.stats.packets++;
      if (expect === 'allow') this.stats.allowed++;
      if (flow.translatedTo !== undefined) this.stats.translated++;
      if (expect === 'deny') this.stats.denied++;
      if (verdict.kind === 'unreachable' && onItsWay) this.stats.unreachable++;
    }
    this.waitFor(outbound);
    for (const flow of outbound) this.checkOutbound(flow);
  }

  private resolve(client: SimClient, resource: { def: ResourceDef }, domainIndex: number, renumber: boolean): void {
    if (!this.clientReady(client)) return;
    const now = this.net.now;
    const domain = DOMAINS[domainIndex]!;
    // Renumbered: the proxy IPs of another name, as a client hands out after signing in again.
    const proxies = DOMAIN_PROXIES[renumber ? DOMAINS[(domainIndex + 1) % DOMAINS.length]! : domain]!;
    const resolved = DNS_RECORDS[domain];
    const packet = makeAssignedIpsPacket({ resource: resource.def.id, domain, proxyIps: proxies.map((p) => parseIp(p)!) })!;
    const expected = this.model.domainStatus(client.id, resource.def.id, domain, resolved, now);
    const goodbyesBefore = client.goodbyes;
    const connected = client.gatewayHasConnection && !client.stalled && this.config.loss === 0;
    this.resolveRequests = this.resolveRequests.filter((r) => r.answers.length === 0 && now - r.at < RESOLVE_REQUEST_MEMORY_MS);
    // An older identical request still unanswered: its answer cannot be told from this one's.
    const ambiguous = this.resolveRequests.some((r) => r.client === client.index && r.resource === resource.def.id && r.domain === domain);
    const request: ResolveRequest = { client: client.index, resource: resource.def.id, domain, at: now, answers: [] };
    this.resolveRequests.push(request);
    client.host.send(GATEWAY_CONNECTION, packet, now);
    this.net.wake(clientHostName(client));
    if (renumber) this.stats.renumbered++;
    this.net.runUntil(this.net.now + SETTLE_MS);
    if (expected !== 'none' && connected) this.net.runUntilCondition(() => request.answers.length > 0, MAX_TRANSIT_MS - SETTLE_MS, 10);
    // A GOODBYE for grants that came due as they were re-authorized may close the connection under the request.
    const live = connected && client.goodbyes === goodbyesBefore;
    const status = request.answers[0];
    if (status === 'Active') this.stats.dnsActive++;
    if (status === undefined) this.model.dnsMayArrive(client.id, domain, proxies, now + RESOLVE_REQUEST_MEMORY_MS);
    if (ambiguous) {
      if (expected !== 'none') this.model.dnsMaybe(client.id, domain, proxies);
      return;
    }
    if (expected === 'none' && status !== undefined) this.violations.push(`AssignedIps for ${domain} from a client the gateway does not know got ${status}`);
    if ((expected === 'Active' || expected === 'Inactive') && live && status !== expected) {
      this.violations.push(`AssignedIps for ${domain} (resource ${resource.def.type} ${resource.def.address}) from client ${client.index}: expected ${expected}, got ${status ?? 'nothing'}`);
    }
    // The gateway set up NAT (and reset it on renumbering) whenever the client held the resource and the name resolved.
    const setUp = this.model.grants.get(client.id)?.has(resource.def.id) === true && resolved !== undefined;
    if (status === 'Active') this.model.dnsSetUp(client.id, resource.def.id, domain, proxies, resolved ?? [], true, now);
    else if (status === 'Inactive' && expected === 'Inactive' && setUp) this.model.dnsSetUp(client.id, resource.def.id, domain, proxies, [], false, now);
    else if (status === undefined && expected !== 'none' && expected !== 'Inactive') this.model.dnsMaybe(client.id, domain, proxies);
    else if (status === undefined && expected === 'Inactive' && setUp) this.model.dnsMaybe(client.id, domain, proxies);
  }

  private goodbye(client: SimClient): void {
    if (!this.clientReady(client) || !client.gatewayHasConnection || client.stalled || this.config.loss > 0) {
      this.stats.skippedSends++;
      return;
    }
    const sent = client.host.send(GATEWAY_CONNECTION, makeGoodbyePacket(), this.net.now);
    this.net.wake(clientHostName(client));
    client.host.node.removeConnection(GATEWAY_CONNECTION);
    client.gatewayHasConnection = false;
    if (!sent) return;
    this.stats.goodbyesSent++;
    this.net.runUntilCondition(() => !this.gateway.node.hasConnection(client.id), MAX_TRANSIT_MS, 10);
    this.model.forget(client.id);
    if (this.gateway.state.hasClient(client.id)) this.violations.push(`client ${client.index} said GOODBYE, the gateway kept its state`);
    if (this.gateway.node.hasConnection(client.id)) this.violations.push(`client ${client.index} said GOODBYE, the gateway kept its connection`);
  }

  private drop(client: SimClient, resource: { def: ResourceDef; filters: readonly ModelFilter[] }): void {
    if (this.partitioned || !this.gateway.node.hasConnection(client.id)) return;
    client.host.node.removeConnection(GATEWAY_CONNECTION);
    this.net.wake(clientHostName(client));
    this.net.runUntilCondition(() => !this.gateway.node.hasConnection(client.id), CONNECTION_FAILURE_WAIT_MS, 1_000);
    if (this.gateway.node.hasConnection(client.id)) this.violations.push(`client ${client.index} went silent, the gateway's connection never failed`);
    this.model.expire(this.net.now);
    this.checkState();
    this.stats.reconnectedAfterFailure++;
    this.authorize(client, resource, null);
  }

  private internet(client: SimClient, probes: readonly { readonly target: number; readonly protocol: Protocol; readonly port: number }[]): void {
    this.authorize(client, this.resources.find((r) => r.def.id === INTERNET_RESOURCE.id)!, null);
    this.model.expire(this.net.now);
    this.send(
      client,
      probes.map((probe) => {
        const target = INTERNET_PROBES[probe.target % INTERNET_PROBES.length]!;
        const family = target.includes(':') ? (6 as const) : (4 as const);
        return { family, host: 0, target, protocol: probe.protocol, port: probe.port, spoof: 0 as const, proxy: false };
      }),
    );
  }

  private inbound(client: SimClient, specs: readonly InboundSpec[]): void {
    const sentAt = this.net.now;
    const inbound: Flow[] = [];
    for (const spec of specs) {
      const hosts = spec.family === 4 ? V4_HOSTS : V6_HOSTS;
      const source = hosts[spec.host % hosts.length]!;
      const tun = spec.stranger ? STRANGER_TUN : client.tun;
      const destination = spec.family === 4 ? tun.v4 : tun.v6;
      const tag = this.tag();
      const packet = makePacket(source, destination, spec.protocol, spec.port, 40_000 + (tag % 20_000), tag, true);
      const expect = spec.stranger ? 'deny' : this.model.inbound(client.id, source, spec.protocol, spec.port, sentAt);
      const flow: Flow = {
        tag,
        client: spec.stranger ? -1 : client.index,
        direction: 'in',
        packet,
        expect,
        proxy: undefined,
        translatedTo: undefined,
        icmpCode: 'prohibited',
        icmp: false,
        mustArrive: expect === 'allow' && client.gatewayHasConnection && !client.stalled && this.clientReady(client) && this.config.loss === 0,
        tunCopies: 0,
        replies: 0,
        icmpReplies: 0,
      };
      this.flows.set(tag, flow);
      inbound.push(flow);
      this.gateway.readFromTun(packet.slice());
      this.net.wake('gateway');
    }
    this.waitFor(inbound);
    for (const flow of inbound) {
      if (flow.mustArrive && flow.replies !== 1) this.violations.push(`${describe(flow)}: allowed, reached its client ${flow.replies} times`);
      if (flow.expect === 'deny' && flow.replies > 0) this.violations.push(`${describe(flow)}: denied, reached a client`);
      if (flow.replies > 1) this.violations.push(`${describe(flow)}: duplicated (${flow.replies})`);
    }
  }

  // ---- the world's side of the gateway ---------------------------------------------------------------------

  private onTunWrite(packet: Uint8Array): Uint8Array | undefined {
    const flow = this.flows.get(readTag(packet));
    if (flow === undefined || flow.direction !== 'out') {
      this.violations.push(`the TUN device got a packet nobody sent (${packet.length} bytes)`);
      return undefined;
    }
    flow.tunCopies++;
    this.stats.delivered++;
    if (flow.expect === 'deny') this.violations.push(`${describe(flow)}: denied by the model, reached the resource`);
    if (flow.translatedTo !== undefined) {
      if (!sameTranslation(packet, flow.packet, flow.translatedTo)) this.violations.push(`${describe(flow)}: not translated to ${flow.translatedTo} as the model says`);
    } else if (flow.proxy === undefined && !equalBytes(packet, flow.packet)) {
      this.violations.push(`${describe(flow)}: altered on the way to the resource`);
    }
    return answer(packet);
  }

  private onClientPacket(client: SimClient, packet: Uint8Array): void {
    if (isP2pControl(packet) && packet[40] === GOODBYE_EVENT) {
      client.goodbyes++;
      this.stats.goodbyesReceived++;
      const now = this.net.now;
      const racing = this.model.goodbyeMayOvertakeAuthorization(client.id, now);
      if (!racing && this.model.clientPresence(client.id, now - MAX_TRANSIT_MS, now) === 'present') this.violations.push(`client ${client.index} got a GOODBYE while it holds resources`);
      // As the reference's client does: the connection goes at once.
      client.host.node.removeConnection(GATEWAY_CONNECTION);
      client.gatewayHasConnection = false;
      return;
    }
    if (isP2pControl(packet)) {
      const status = decodeDomainStatus(packet.subarray(48));
      if (typeof status === 'string') {
        this.violations.push(`client ${client.index} got a malformed p2p control packet (${status})`);
        return;
      }
      const request = this.resolveRequests.find((r) => r.client === client.index && r.resource === status.resource && r.domain === status.domain && r.answers.length === 0);
      if (request === undefined) this.violations.push(`client ${client.index} got a DomainStatus for ${status.domain} nobody asked for`);
      else request.answers.push(status.status);
      return;
    }
    const icmp = unreachableInfo(packet);
    const tag = icmp === undefined ? readTag(packet) : icmp.tag;
    const flow = this.flows.get(tag);
    if (flow === undefined) {
      this.violations.push(`client ${client.index} got a packet nobody sent`);
      return;
    }
    if (flow.client !== client.index) {
      this.violations.push(`${describe(flow)}: a ${icmp === undefined ? 'packet' : 'ICMP error'} for client ${flow.client} reached client ${client.index}`);
      return;
    }
    if (icmp === undefined) {
      flow.replies++;
      client.lastReplyAt = this.net.now;
      this.stats.repliesToClients++;
      if (flow.direction === 'out' && !isAnswerTo(packet, flow.packet)) this.violations.push(`${describe(flow)}: the answer reached the client with the wrong addresses or ports (NAT)`);
      return;
    }
    flow.icmpReplies++;
    this.stats.prohibited++;
    const v4 = flow.packet[0]! >> 4 === 4;
    const wanted = flow.icmpCode === 'prohibited' ? (v4 ? [3, 13] : [1, 1]) : v4 ? [3, 0] : [1, 3];
    if (flow.expect === 'deny' && (icmp.type !== wanted[0] || icmp.code !== wanted[1])) this.violations.push(`${describe(flow)}: ICMP ${icmp.type}/${icmp.code} instead of ${flow.icmpCode}`);
    if (!icmp.quotesOriginal(flow.packet)) this.violations.push(`${describe(flow)}: the ICMP error does not quote the packet`);
  }

  private fromGateway(event: string, payload: Readonly<Record<string, unknown>>): void {
    if (this.portalDown) {
      // A real channel drops what it cannot send; candidates would be lost, so the gateway must hold them.
      if (event.startsWith('broadcast_')) this.violations.push(`the gateway sent ${event} while the portal was unreachable`);
      return;
    }
    switch (event) {
      case 'set_snownet_capabilities':
        return;
      case 'no_relays':
        // The last relay failed (1.6.0 asks for a new set): the simulated portal's relays come back on their own.
        this.stats.noRelaysSent++;
        return;
      case 'flow_authorized': {
        const ref = String(payload['ref']);
        this.flowsAuthorized.add(ref);
        this.pendingFlows.get(ref)?.();
        this.pendingFlows.delete(ref);
        return;
      }
      case 'broadcast_ice_candidates':
      case 'broadcast_invalidated_ice_candidates': {
        const add = event === 'broadcast_ice_candidates';
        const ids = payload['client_ids'] as string[];
        const candidates = payload['candidates'] as string[];
        this.portal.enqueue(() => {
          for (const id of ids) {
            const client = this.clientsById.get(id);
            if (client === undefined || !client.host.node.hasConnection(GATEWAY_CONNECTION)) continue;
            for (const candidate of candidates) {
              if (add) client.host.node.addRemoteCandidate(GATEWAY_CONNECTION, candidate, this.net.now);
              else client.host.node.removeRemoteCandidate(GATEWAY_CONNECTION, candidate, this.net.now);
            }
            client.host.drainEvents(this.net.now);
            this.net.wake(clientHostName(client));
          }
        });
        return;
      }
      default:
        this.violations.push(`the gateway sent an unexpected portal event ${event}`);
    }
  }

  private fromClient(client: SimClient, event: NodeEvent): void {
    if (process.env['SIM_TRACE'] && event.kind === 'connectionFailed') console.log(this.net.now, 'client connection failed', client.index, event.reason);
    if (event.kind === 'connectionEstablished') client.sessionUp = true;
    if (event.kind === 'newIceCandidates') this.toGateway('ice_candidates', { client_id: client.id, candidates: event.candidates }, true);
    if (event.kind === 'invalidatedIceCandidates') this.toGateway('invalidate_ice_candidates', { client_id: client.id, candidates: event.candidates }, true);
  }

  /** Signalling goes through even while the policy channel is partitioned (a simplification). */
  private toGateway(event: string, payload: unknown, signalling = false): void {
    if (this.portalDown || (this.partitioned && !signalling)) return;
    const decoded = decodeIngress(event, payload);
    if (!decoded.ok) throw new Error(`the simulated portal built an invalid ${event}: ${JSON.stringify(decoded.error)}`);
    this.portal.enqueue(() => {
      this.gateway.loop.handlePortalMessage(decoded.message);
      this.net.wake('gateway');
    });
  }

  private sendInit(withAuthorizations: boolean): void {
    const relays: unknown[] = [];
    for (let r = 0; r < RELAY_COUNT; r++) {
      if (!this.relayOnline[r]) continue;
      relays.push(relayPayload(r));
      this.gatewayRelays.add(relayId(r));
    }
    const now = this.net.now;
    const listed = new Set<string>();
    for (const [key, expiresAt] of this.portalGrants) {
      if (expiresAt !== undefined && expiresAt <= now) this.portalGrants.delete(key);
      else listed.add(key);
    }
    const authorizations = [...listed].map((key) => {
      const [clientId, resourceId] = key.split('/') as [string, string];
      return { client_id: clientId, resource_id: resourceId };
    });
    this.toGateway('init', {
      interface: { ipv4: GATEWAY_TUN.v4, ipv6: GATEWAY_TUN.v6 },
      config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
      relays,
      ...(withAuthorizations ? { authorizations } : {}),
    });
    if (withAuthorizations) this.model.retain(listed);
  }

  // ---- invariants ------------------------------------------------------------------------------------------

  private checkOutbound(flow: Flow): void {
    if (flow.tunCopies > 1) this.violations.push(`${describe(flow)}: reached the resource ${flow.tunCopies} times`);
    if (flow.mustArrive) {
      if (flow.tunCopies !== 1) this.violations.push(`${describe(flow)}: allowed, never reached the resource`);
      else if (flow.replies !== 1) this.violations.push(`${describe(flow)}: allowed, the resource's answer reached the client ${flow.replies} times`);
    }
    if (flow.expect === 'allow' && flow.icmpReplies > 0) this.violations.push(`${describe(flow)}: allowed, yet answered with ICMP prohibited`);
    if (flow.expect === 'deny') {
      if (flow.icmp === true && flow.icmpReplies !== 1) this.violations.push(`${describe(flow)}: denied, ICMP prohibited arrived ${flow.icmpReplies} times`);
      if (flow.icmp === false && flow.icmpReplies > 0) this.violations.push(`${describe(flow)}: from a client the gateway does not know, yet answered with ICMP`);
    }
  }

  /** Bounded state: once the model is certain, the gateway holds exactly what the model holds. */
  private checkState(): void {
    const state = this.gateway.state;
    const now = this.net.now;
    for (const client of this.clients) {
      const expected = this.model.certainResources(client.id, now);
      if (expected === undefined) continue;
      const presence = this.model.clientPresence(client.id, now, now);
      if (presence === 'absent' && state.hasClient(client.id)) this.violations.push(`client ${client.index}: the gateway still holds a client with no authorizations`);
      if (presence !== 'present') continue;
      const actual = state.clientResourceIds(client.id).sort();
      if (actual.join() !== expected.join()) this.violations.push(`client ${client.index}: the gateway holds [${actual.join()}], the model [${expected.join()}]`);
    }
    if (state.clientCount > this.clients.length) this.violations.push(`the gateway holds ${state.clientCount} clients`);
  }

  // ---- helpers ---------------------------------------------------------------------------------------------

  private waitFor(flows: readonly Flow[]): void {
    this.net.runUntil(this.net.now + SETTLE_MS);
    const done = (): boolean =>
      flows.every((f) => {
        if (f.direction === 'in') return !f.mustArrive || f.replies > 0;
        if (f.mustArrive && (f.tunCopies === 0 || f.replies === 0)) return false;
        return !(f.icmp === true && f.icmpReplies === 0);
      });
    this.net.runUntilCondition(done, MAX_TRANSIT_MS - SETTLE_MS, 10);
  }

  private settle(): void {
    this.net.runUntil(this.net.now + 10);
  }

  private clientReady(client: SimClient): boolean {
    const state = client.host.node.connectionState(GATEWAY_CONNECTION);
    return state === 'connected' || state === 'idle';
  }

  /** Whether the client's traffic to the gateway runs through the relay (its own allocation or the gateway's). */
  private pathUsesRelay(client: SimClient, relay: number): boolean {
    const path = client.host.node.connectionPath(GATEWAY_CONNECTION);
    if (path === undefined) return false;
    return path.destination.address === relayIp(relay) || (path.kind === 'relay' && path.relay.address === relayIp(relay));
  }

  /** Only to wait for the connection to settle, never to decide what the gateway must do. */
  private gatewayReady(client: SimClient): boolean {
    const state = this.gateway.node.connectionState(client.id);
    return state === 'connected' || state === 'idle';
  }

  private sourceFor(client: SimClient, spec: PacketSpec): string {
    if (spec.spoof === 0) return spec.family === 4 ? client.tun.v4 : client.tun.v6;
    if (spec.spoof === 1) {
      const other = this.clients[(client.index + 1) % this.clients.length]!;
      const tun = other === client ? STRANGER_TUN : other.tun;
      return spec.family === 4 ? tun.v4 : tun.v6;
    }
    return spec.family === 4 ? '10.1.2.3' : 'fd10:1:2::5';
  }

  private newClientHost(client: SimClient): ClientHost {
    const node = new ClientHost(
      new Node({ role: 'client', privateKey: this.key(), rng: this.rng, now: this.net.now }),
      (packet) => this.onClientPacket(client, packet),
      (event) => this.fromClient(client, event),
    );
    const relays = [];
    for (let r = 0; r < RELAY_COUNT; r++) if (this.relayOnline[r]) relays.push(clientRelay(r));
    node.node.updateRelays([], relays, this.net.now);
    const name = clientHostName(client);
    const nat = client.nat;
    const publicIp = clientPublicIp(client.index, client.roams);
    if (nat === 'none') this.net.addHost(name, [publicIp], this.jittered(node));
    else this.net.addHost(name, [clientPrivateIp(client.index, client.roams)], this.jittered(node), { nat: { publicIp, kind: nat } });
    return node;
  }

  private jittered(agent: SimAgent): SimAgent {
    if (this.config.jitterMs === 0) return agent;
    return new JitteredAgent(agent, this.rng, this.config.jitterMs, () => this.net.now);
  }

  private client(index: number): SimClient {
    return this.clients[index % this.clients.length]!;
  }

  private resource(index: number): { def: ResourceDef; filters: readonly ModelFilter[] } {
    return this.resources[index % this.resources.length]!;
  }

  /** Mostly a DNS resource (any resource when the world has none, or for odd indices beyond them). */
  private dnsResource(index: number): { def: ResourceDef; filters: readonly ModelFilter[] } {
    const dns = this.resources.filter((r) => r.def.type === 'dns');
    if (dns.length === 0 || index >= 2 * dns.length) return this.resource(index);
    return dns[index % dns.length]!;
  }

  private key(): Uint8Array {
    const key = new Uint8Array(32);
    this.rng.fill(key);
    return key;
  }

  private tag(): number {
    this.nextTag = (this.nextTag % 0xffff) + 1;
    this.flows.delete(this.nextTag);
    return this.nextTag;
  }
}

/** Tunnel addresses; the first 230 as they always were, the rest clear of STRANGER_TUN. */
function clientTun(index: number): { v4: string; v6: string } {
  if (index < 230) return { v4: `100.64.0.${10 + index}`, v6: `fd00:2021:1111::${(0x10 + index).toString(16)}` };
  return { v4: `100.64.${1 + (index >> 8)}.${index & 0xff}`, v6: `fd00:2021:1111::1:${index.toString(16)}` };
}

function clientPublicIp(index: number, roams: number): string {
  if (index < 150) return `198.51.${100 + index}.${roams + 2}`;
  return `198.18.${(roams * 4 + (index >> 8)) & 0xff}.${index & 0xff}`;
}

function clientPrivateIp(index: number, roams: number): string {
  if (index < 200) return `192.168.${index}.${roams + 2}`;
  return `172.${16 + (index >> 8)}.${index & 0xff}.${roams + 2}`;
}

function clientHostName(client: SimClient): string {
  return `client${client.index}.${client.roams}`;
}

function relayIp(relay: number): string {
  return `192.0.2.${100 + relay}`;
}

function relayId(relay: number): string {
  return `0a133356-7a9e-4b9a-b413-0d95a5720f${(0xd0 + relay).toString(16)}`;
}

function relayPayload(relay: number): Record<string, unknown> {
  return { type: 'turn', id: relayId(relay), addr: `${relayIp(relay)}:3478`, username: RELAY_USERNAME, password: RELAY_PASSWORD, expires_at: 1999999999 };
}

function clientRelay(relay: number): { id: string; v4: ReturnType<typeof socketAddr>; v6: undefined; username: string; password: string } {
  return { id: relayId(relay), v4: socketAddr(relayIp(relay), 3478), v6: undefined, username: RELAY_USERNAME, password: RELAY_PASSWORD };
}

function clientCredentials(client: SimClient): { username: string; password: string } {
  return { username: `c${client.index}r${client.roams}e${client.epoch}`, password: `client-password-${client.index}-${client.roams}-${client.epoch}-xxxx` };
}

function gatewayCredentials(client: SimClient): { username: string; password: string } {
  return { username: `g${client.index}r${client.roams}e${client.epoch}`, password: `gateway-password-${client.index}-${client.roams}-${client.epoch}-xxx` };
}

function resourcePayload(def: ResourceDef, filters: readonly ModelFilter[]): Record<string, unknown> {
  if (def.type === 'internet') return { type: 'internet', id: def.id };
  return {
    type: def.type,
    id: def.id,
    name: `resource ${def.address}`,
    address: def.address,
    filters: filters.map((f) => (f.protocol === 'icmp' ? { protocol: 'icmp' } : { protocol: f.protocol, port_range_start: f.start, port_range_end: f.end })),
  };
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function describe(flow: Flow): string {
  const p = flow.packet;
  const v4 = p[0]! >> 4 === 4;
  const proto = v4 ? p[9]! : p[6]!;
  const name = proto === 6 ? 'tcp' : proto === 17 ? 'udp' : 'icmp';
  const l4 = v4 ? (p[0]! & 0x0f) * 4 : 40;
  const ports = name === 'icmp' ? '' : ` ${(p[l4]! << 8) | p[l4 + 1]!}->${(p[l4 + 2]! << 8) | p[l4 + 3]!}`;
  const address = (offset: number): string => (v4 ? [...p.subarray(offset, offset + 4)].join('.') : Buffer.from(p.subarray(offset, offset + 16)).toString('hex'));
  const src = address(v4 ? 12 : 8);
  const dst = address(v4 ? 16 : 24);
  return `packet #${flow.tag} (${flow.direction}, client ${flow.client}, ${name} ${src}->${dst}${ports}, model: ${flow.expect})`;
}
