/**
 * The headless test client: the mirror image of the gateway's event loop. One connectivity node
 * in the `client` role (ICE controlling, starts WireGuard on nomination), its own TUN device,
 * UDP sockets with packet info, and the dev portal's client API for flows and ICE candidates.
 *
 * Packets read from the TUN go to the gateway whose resource route matches their destination;
 * packets from the tunnel are written to the TUN, except p2p control packets: DomainStatus settles
 * the DNS-resource assignments, GOODBYE (the gateway dropped this client) drops the connection at
 * once, as the reference's client does.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { formatCidr } from '../../src/ip/cidr.ts';
import { PROTOCOL_FZ_P2P_CONTROL } from '../../src/ip/constants.ts';
import { IpPacket } from '../../src/ip/packet.ts';
import { decodeDomainStatusPacket, isP2pControlPacket, P2P_EVENT_GOODBYE, p2pControlEventType } from '../../src/ip/p2p-control.ts';
import { createLogger, errorChain } from '../../src/log/index.ts';
import { TunDevice, type TunReadBatch } from '../../src/runtime/tun-device.ts';
import { dataPathMode, offloadsFor, transportCipherFor } from '../../src/runtime/data-path.ts';
import { UdpSocket, type UdpDatagramBatch } from '../../src/runtime/udp-socket.ts';
import { Node, type RelayServer } from '../../src/snownet/index.ts';
import { systemRandom } from '../../src/util/random.ts';
import { parseSocketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import { relayCredentials } from '../dev-portal/credentials.ts';
import { DomainAssignments, type AssignmentStatus } from './domain-assignments.ts';
import { CLIENT_TUN_NAME, ClientInterface } from './interface.ts';
import { PortalApi, type FlowGrant } from './portal-api.ts';
import { ProxyIpAllocator } from './proxy-ips.ts';
import { RouteTable } from './route-table.ts';

const log = createLogger('test_client');
const CANDIDATE_POLL_WAIT_MS = 5_000;
const RELAY_CREDENTIAL_LIFETIME_S = 24 * 3600;

export interface RelayOption {
  /** `ip:port`, one per family. */
  readonly addresses: readonly string[];
  /** coturn's `static-auth-secret`. */
  readonly secret: string;
  readonly id?: string;
}

export interface TestClientOptions {
  /** The dev portal's base URL, `http://host:port`. */
  readonly portalUrl: string;
  readonly clientId: string;
  readonly tunName?: string;
  /** Data-plane UDP port; 0 (default) picks an ephemeral one. */
  readonly port?: number;
  readonly relays: readonly RelayOption[];
  /** Advertise ICE-less connections with every flow request; the grant says whether the portal chose one. */
  readonly iceless?: boolean;
  /** The client version the portal's version gate sees (`--client-version`); none by default (served by every gateway). */
  readonly clientVersion?: string;
  /** When set, rewritten with `<proxy ip> <domain>` lines for every DNS resource (an /etc/hosts file). */
  readonly hostsFile?: string;
  /** The WireGuard private key (32 bytes); a fresh random one when absent. */
  readonly privateKey?: Uint8Array;
  readonly onEvent?: (event: ClientEvent) => void;
  /** Sees every packet decrypted from a gateway before it is handled (the attacker tool counts replies with it). */
  readonly onTunnelPacket?: (gatewayId: string, packet: Uint8Array) => void;
  /** Sees every datagram received on the data-plane sockets before the node handles it. */
  readonly onDatagram?: (payload: Uint8Array, from: SocketAddr) => void;
}

export type PathKind = 'direct' | 'relay';

export type ClientEvent =
  | { readonly event: 'connection_established'; readonly gateway_id: string; readonly path: PathKind | undefined }
  | { readonly event: 'connection_failed'; readonly gateway_id: string; readonly reason: string }
  | { readonly event: 'goodbye'; readonly gateway_id: string }
  | { readonly event: 'domain_status'; readonly resource_id: string; readonly domain: string; readonly status: string };

export interface ConnectRequest {
  readonly resourceId: string;
  /** The name to assign proxy IPs for (DNS resources); defaults to the resource's address. */
  readonly domain?: string;
  /** Extra routes to the tunnel (CIDRs or addresses); the only routes an Internet resource gets. */
  readonly routes?: readonly string[];
  /** How long to wait for the WireGuard session (and the domain status). Default 15 s. */
  readonly timeoutMs?: number;
}

export interface ConnectResult {
  readonly resource_id: string;
  readonly resource_type: string;
  readonly gateway_id: string;
  readonly gateway_ipv4: string;
  readonly gateway_ipv6: string;
  readonly gateway_public_key: string;
  /** The connection's WireGuard PSK (from the grant), so another WireGuard implementation can take over. */
  readonly preshared_key: string;
  readonly flow_id: string;
  readonly path: PathKind | undefined;
  /** The connection runs the path agent instead of ICE. */
  readonly iceless: boolean;
  readonly routes: string[];
  readonly domain?: string;
  readonly proxy_ips?: readonly string[];
  readonly domain_status?: AssignmentStatus;
}

export interface ClientStateReport {
  readonly client_id: string;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly public_key: string;
  readonly port: number;
  readonly connections: {
    readonly gateway_id: string;
    readonly state: string | undefined;
    readonly established: boolean;
    readonly path: PathKind | undefined;
  }[];
  readonly resources: { readonly resource_id: string; readonly gateway_id: string; readonly type: string; readonly routes: string[] }[];
  readonly domains: { readonly resource_id: string; readonly domain: string; readonly proxy_ips: readonly string[]; readonly status: AssignmentStatus; readonly sends: number }[];
  readonly stats: { readonly tun_to_tunnel: number; readonly tunnel_to_tun: number; readonly unrouted: number; readonly goodbyes: number };
}

interface ResourceEntry {
  readonly resourceId: string;
  readonly gatewayId: string;
  readonly type: string;
}

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: () => void;
}

export class TestClient {
  readonly stats = { tunToTunnel: 0, tunnelToTun: 0, unrouted: 0, goodbyes: 0 };
  private readonly node: Node;
  private readonly publicKeyText: string;
  private readonly api: PortalApi;
  private readonly routes = new RouteTable();
  private readonly proxyIps = new ProxyIpAllocator();
  private readonly assignments = new DomainAssignments();
  private readonly resources = new Map<string, ResourceEntry>();
  private readonly established = new Set<string>();
  /** Remote candidates per gateway, kept so a connection created after they arrived still gets them. */
  private readonly remoteCandidates = new Map<string, Set<string>>();
  private readonly waiters: Waiter[] = [];
  private readonly packet = new IpPacket();
  /** Decrypted packets for the TUN device, written in one call per batch. */
  private readonly tunBatch: Uint8Array[] = [];
  private tunBatchCount = 0;
  private readonly abort = new AbortController();
  private tun: TunDevice | undefined;
  private iface: ClientInterface | undefined;
  private v4: UdpSocket | undefined;
  private v6: UdpSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;
  private ipv4 = '';
  private ipv6 = '';

  private constructor(private readonly options: TestClientOptions) {
    const privateKey = options.privateKey ?? cryptoRandomBytes(32);
    const now = performance.now();
    this.node = new Node({ role: 'client', privateKey, rng: systemRandom(), now, unixOffsetMs: Date.now() - now, transportCipher: transportCipherFor(dataPathMode()) });
    this.publicKeyText = Buffer.from(this.node.publicKey).toString('base64');
    this.api = new PortalApi(options.portalUrl.replace(/\/+$/, ''), options.clientId);
  }

  /** Registers with the portal, opens and configures the TUN device, binds the sockets, allocates on the relays. */
  static async start(options: TestClientOptions): Promise<TestClient> {
    const client = new TestClient(options);
    try {
      await client.open();
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  private async open(): Promise<void> {
    const registration = await this.api.register(this.publicKeyText);
    this.ipv4 = registration.ipv4;
    this.ipv6 = registration.ipv6;
    const name = this.options.tunName ?? CLIENT_TUN_NAME;
    this.tun = TunDevice.open(name, { offloads: offloadsFor(dataPathMode()), onPackets: (batch) => this.handleTunPackets(batch) });
    this.iface = new ClientInterface(this.tun.name, { ipv4: this.ipv4, ipv6: this.ipv6 });
    await this.iface.configure();
    const port = this.options.port ?? 0;
    this.v4 = UdpSocket.bind({ family: 4, port, mark: 0, offloads: offloadsFor(dataPathMode()), onDatagrams: (batch) => this.handleDatagrams(batch) });
    try {
      this.v6 = UdpSocket.bind({ family: 6, port: this.v4.port, mark: 0, offloads: offloadsFor(dataPathMode()), onDatagrams: (batch) => this.handleDatagrams(batch) });
    } catch (error) {
      log.info('No IPv6 socket', { error: errorChain(error) });
    }
    const now = performance.now();
    this.node.updateRelays([], this.relayServers(), now);
    this.flush(now);
    void this.pollCandidates();
    log.info('Test client started', { client_id: this.options.clientId, ipv4: this.ipv4, ipv6: this.ipv6, port: this.v4.port, tun: name });
  }

  get port(): number {
    return this.v4?.port ?? 0;
  }

  get tunnelIps(): { ipv4: string; ipv6: string } {
    return { ipv4: this.ipv4, ipv6: this.ipv6 };
  }

  get publicKey(): string {
    return this.publicKeyText;
  }

  /** Requests a flow for a resource, connects to its gateway, installs its routes and (DNS) assigns proxy IPs. */
  async connect(request: ConnectRequest): Promise<ConnectResult> {
    const grant = await this.api.requestFlow(request.resourceId, this.publicKeyText, this.options.iceless === true, this.options.clientVersion);
    const gatewayId = grant.gateway_id;
    const now = performance.now();
    // A relay the node gave up on (it stopped answering for a while) is configured again, as a
    // portal would announce it again to a real client.
    const known = new Set(this.node.relayIds());
    const missing = this.relayServers().filter((relay) => !known.has(relay.id));
    if (missing.length > 0) {
      log.info('Configuring relays again', { relays: missing.map((relay) => relay.id).join(', ') });
      this.node.updateRelays([], missing, now);
      this.flush(now);
    }
    const upsert = this.node.upsertConnection(gatewayId, connectionParams(grant), now);
    if (upsert === 'noTurnServers') throw new Error('no relays configured (pass --relay)');
    if (upsert === 'created') {
      this.established.delete(gatewayId);
      for (const candidate of this.remoteCandidates.get(gatewayId) ?? []) this.node.addRemoteCandidate(gatewayId, candidate, now);
    }
    this.resources.set(request.resourceId, { resourceId: request.resourceId, gatewayId, type: grant.resource.type });

    const targets = [...(request.routes ?? [])];
    if (grant.resource.type === 'cidr' && grant.resource.address !== undefined) targets.push(grant.resource.address);
    let domain: string | undefined;
    let proxyIps: string[] | undefined;
    if (grant.resource.type === 'dns') {
      domain = (request.domain ?? grant.resource.address ?? '').replace(/\.$/, '');
      if (domain === '' || /[*?[]/.test(domain)) throw new Error(`resource ${request.resourceId} is a pattern (${grant.resource.address}): give a domain`);
      const ips = this.proxyIps.allocate(request.resourceId, domain);
      if (ips === undefined) throw new Error('proxy IP ranges exhausted');
      proxyIps = [...ips.ipv4, ...ips.ipv6];
      targets.push(...proxyIps);
    }
    const installed: string[] = [];
    for (const target of targets) {
      const cidr = this.routes.add(target, gatewayId, request.resourceId);
      if (cidr === undefined) throw new Error(`not a route: ${target}`);
      await this.iface!.addRoute(cidr);
      installed.push(formatCidr(cidr));
    }
    if (domain !== undefined && proxyIps !== undefined) {
      this.assignments.assign(gatewayId, request.resourceId, domain, proxyIps, performance.now());
      await this.writeHostsFile();
    }
    this.flush(performance.now());

    const timeoutMs = request.timeoutMs ?? 15_000;
    const ready = (): boolean =>
      this.established.has(gatewayId) && (domain === undefined || this.assignments.get(request.resourceId, domain)?.status !== 'pending');
    if (!(await this.waitFor(ready, timeoutMs))) {
      const reason = this.established.has(gatewayId) ? 'no domain status from the gateway' : `no WireGuard session (connection ${this.node.connectionState(gatewayId) ?? 'gone'})`;
      throw new Error(`connect ${request.resourceId}: timed out after ${timeoutMs} ms: ${reason}`);
    }
    return {
      resource_id: request.resourceId,
      resource_type: grant.resource.type,
      gateway_id: gatewayId,
      gateway_ipv4: grant.gateway_ipv4,
      gateway_ipv6: grant.gateway_ipv6,
      gateway_public_key: grant.gateway_public_key,
      preshared_key: grant.preshared_key,
      flow_id: grant.flow_id,
      path: this.pathOf(gatewayId),
      iceless: this.node.pathAgentStats(gatewayId) !== undefined,
      routes: installed,
      ...(domain === undefined
        ? {}
        : { domain, proxy_ips: proxyIps, domain_status: this.assignments.get(request.resourceId, domain)?.status }),
    };
  }

  /** Re-sends AssignedIps for a domain already assigned and waits for the new status. */
  async reassign(resourceId: string, domain: string, timeoutMs = 10_000): Promise<AssignmentStatus | undefined> {
    const assignment = this.assignments.get(resourceId, domain);
    if (assignment === undefined) return undefined;
    this.assignments.assign(assignment.gatewayId, resourceId, assignment.domain, assignment.proxyIps, performance.now());
    this.flush(performance.now());
    await this.waitFor(() => this.assignments.get(resourceId, domain)?.status !== 'pending', timeoutMs);
    return this.assignments.get(resourceId, domain)?.status;
  }

  /** Removes a resource's routes (all resources when omitted); a gateway left without routes is disconnected. */
  async disconnect(resourceId?: string): Promise<string[]> {
    const ids = resourceId === undefined ? [...this.resources.keys()] : [resourceId];
    const removed: string[] = [];
    for (const id of ids) {
      const entry = this.resources.get(id);
      if (entry === undefined) continue;
      this.resources.delete(id);
      this.assignments.removeResource(id);
      for (const route of this.routes.removeResource(id)) await this.iface?.removeRoute(route.cidr);
      if (![...this.resources.values()].some((r) => r.gatewayId === entry.gatewayId)) {
        this.node.removeConnection(entry.gatewayId);
        this.established.delete(entry.gatewayId);
      }
      removed.push(id);
    }
    await this.writeHostsFile();
    this.flush(performance.now());
    return removed;
  }

  /**
   * Drops every gateway connection without a word (a crash, a lost network), keeping resources and routes: the
   * next `connect` builds a new connection.
   */
  dropConnections(): string[] {
    const gateways = [...new Set([...this.resources.values()].map((r) => r.gatewayId))].filter((id) => this.node.hasConnection(id));
    for (const id of gateways) {
      this.node.removeConnection(id);
      this.established.delete(id);
    }
    this.flush(performance.now());
    return gateways;
  }

  proxyIpsOf(resourceId: string, domain?: string): { domain: string; proxy_ips: readonly string[]; status: AssignmentStatus } | undefined {
    const assignment = domain === undefined ? this.assignments.all().find((a) => a.resourceId === resourceId) : this.assignments.get(resourceId, domain);
    return assignment === undefined ? undefined : { domain: assignment.domain, proxy_ips: assignment.proxyIps, status: assignment.status };
  }

  state(): ClientStateReport {
    const gateways = new Set([...this.resources.values()].map((r) => r.gatewayId));
    return {
      client_id: this.options.clientId,
      ipv4: this.ipv4,
      ipv6: this.ipv6,
      public_key: this.publicKeyText,
      port: this.port,
      connections: [...gateways].map((id) => ({
        gateway_id: id,
        state: this.node.connectionState(id),
        established: this.established.has(id),
        path: this.pathOf(id),
      })),
      resources: [...this.resources.values()].map((r) => ({
        resource_id: r.resourceId,
        gateway_id: r.gatewayId,
        type: r.type,
        routes: this.routes.routesOf(r.resourceId).map((route) => formatCidr(route.cidr)),
      })),
      domains: this.assignments.all().map((a) => ({ resource_id: a.resourceId, domain: a.domain, proxy_ips: a.proxyIps, status: a.status, sends: a.sends })),
      stats: { tun_to_tunnel: this.stats.tunToTunnel, tunnel_to_tun: this.stats.tunnelToTun, unrouted: this.stats.unrouted, goodbyes: this.stats.goodbyes },
    };
  }

  /**
   * Encrypts an IP packet to a gateway as if it had been read from the TUN device, whatever its
   * addresses (for tools that craft packets). The datagram is queued; `flushSockets` sends it.
   */
  sendPacket(gatewayId: string, packet: Uint8Array): boolean {
    const transmit = this.sealPacket(gatewayId, packet);
    return transmit !== undefined && this.send(transmit);
  }

  /** The datagram that carries `packet` to a gateway (not sent); its payload may be a pooled buffer. */
  sealPacket(gatewayId: string, packet: Uint8Array): Transmit | undefined {
    if (this.closed) return undefined;
    return this.node.encapsulate(gatewayId, packet, performance.now());
  }

  /** Queues a raw datagram on the data-plane socket of the destination's family (the address gateways know us by). */
  sendDatagram(payload: Uint8Array, destination: SocketAddr): boolean {
    if (this.closed) return false;
    return this.send({ source: undefined, destination, payload });
  }

  flushSockets(): void {
    this.v4?.flush();
    this.v6?.flush();
  }

  /** Where a gateway receives our datagrams on the nominated path: its own address (direct) or the relay. */
  gatewayAddress(gatewayId: string): SocketAddr | undefined {
    const path = this.node.connectionPath(gatewayId);
    if (path === undefined) return undefined;
    return path.kind === 'direct' ? path.destination : path.relay;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    if (this.timer !== undefined) clearTimeout(this.timer);
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
    this.v4?.close();
    this.v6?.close();
    this.tun?.close();
  }

  // --- inputs ---

  /** Datagrams of one socket read: data messages opened together, their packets written to the TUN in one call. */
  private handleDatagrams(batch: UdpDatagramBatch): void {
    if (this.closed) return;
    const now = performance.now();
    const { onDatagram } = this.options;
    const capacity = this.node.transportBatchCapacity;
    for (let i = 0; i < batch.count; i++) {
      onDatagram?.(batch.payload(i), batch.source(i));
      const result = this.node.decapsulateBatched(batch.destination(i), batch.source(i), batch.payload(i), batch.ecn(i), now);
      if (typeof result !== 'string') this.handleDecrypted(result.connection, result.packet);
      if ((i + 1) % capacity === 0) this.drainDecrypted(now);
    }
    this.drainDecrypted(now);
    this.flush(now);
  }

  private drainDecrypted(now: number): void {
    for (let d = this.node.pollDecrypted(now); d !== undefined; d = this.node.pollDecrypted(now)) this.handleDecrypted(d.connection, d.packet);
    if (this.tunBatchCount > 0) this.tun?.writeBatch(this.tunBatch, this.tunBatchCount);
    this.tunBatchCount = 0;
  }

  private handleDecrypted(gatewayId: string, packet: Uint8Array): void {
    this.options.onTunnelPacket?.(gatewayId, packet);
    if (packet[0]! >>> 4 === 6 && packet[6] === PROTOCOL_FZ_P2P_CONTROL && this.packet.parse(packet) === undefined && isP2pControlPacket(this.packet)) {
      this.handleControlPacket(gatewayId);
      return;
    }
    this.stats.tunnelToTun++;
    this.tunBatch[this.tunBatchCount++] = packet;
  }

  /** Packets read from the TUN: routed one by one, sealed together. */
  private handleTunPackets(batch: TunReadBatch): void {
    if (this.closed) return;
    const now = performance.now();
    for (let i = 0; i < batch.count; i++) {
      const packet = batch.packet(i);
      const gatewayId = this.routes.gatewayFor(packet);
      if (gatewayId === undefined) {
        this.stats.unrouted++;
        continue;
      }
      this.stats.tunToTunnel++;
      if (!this.node.queueEncapsulate(gatewayId, packet, now)) {
        this.drainSealed(now);
        this.node.queueEncapsulate(gatewayId, packet, now);
      }
    }
    this.drainSealed(now);
    this.flush(now);
  }

  private drainSealed(now: number): void {
    for (let t = this.node.pollSealed(now); t !== undefined; t = this.node.pollSealed(now)) this.send(t);
  }

  private handleControlPacket(gatewayId: string): void {
    if (p2pControlEventType(this.packet) === P2P_EVENT_GOODBYE) {
      log.info('Gateway said goodbye; dropping the connection', { gateway: gatewayId });
      this.stats.goodbyes++;
      this.node.removeConnection(gatewayId);
      this.established.delete(gatewayId);
      this.emit({ event: 'goodbye', gateway_id: gatewayId });
      return;
    }
    const status = decodeDomainStatusPacket(this.packet);
    if (typeof status === 'string') {
      log.debug('Ignoring p2p control packet', { gateway: gatewayId, error: status });
      return;
    }
    const settled = this.assignments.handleDomainStatus(gatewayId, status.resource, status.domain, status.status);
    if (settled === undefined) return;
    this.emit({ event: 'domain_status', resource_id: status.resource, domain: status.domain, status: status.status });
  }

  private handleTimeout(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.closed) return;
    const now = performance.now();
    this.node.handleTimeout(now);
    this.assignments.handleTimeout(now);
    this.flush(now);
  }

  private async pollCandidates(): Promise<void> {
    let after = 0;
    while (!this.closed) {
      try {
        const { events, next } = await this.api.candidates(after, CANDIDATE_POLL_WAIT_MS, this.abort.signal);
        after = next;
        if (this.closed) return;
        const now = performance.now();
        for (const event of events) this.applyCandidateEvent(event.kind, event.gateway_id, event.candidates, now);
        this.flush(now);
      } catch (error) {
        if (this.closed) return;
        log.warn('Polling candidates failed', { error: errorChain(error) });
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  private applyCandidateEvent(kind: 'candidates' | 'invalidated', gatewayId: string, candidates: readonly string[], now: number): void {
    let known = this.remoteCandidates.get(gatewayId);
    if (known === undefined) {
      known = new Set();
      this.remoteCandidates.set(gatewayId, known);
    }
    for (const candidate of candidates) {
      if (kind === 'candidates') {
        known.add(candidate);
        this.node.addRemoteCandidate(gatewayId, candidate, now);
      } else {
        known.delete(candidate);
        this.node.removeRemoteCandidate(gatewayId, candidate, now);
      }
    }
  }

  // --- outputs ---

  private flush(now: number): void {
    if (this.closed) return;
    for (let control = this.assignments.pollPacket(); control !== undefined; control = this.assignments.pollPacket()) {
      const transmit = this.node.encapsulate(control.gatewayId, control.packet, now);
      if (transmit !== undefined) this.send(transmit);
    }
    for (let event = this.node.pollEvent(); event !== undefined; event = this.node.pollEvent()) {
      switch (event.kind) {
        case 'newIceCandidates':
          this.api.sendCandidates(event.connection, event.candidates).catch((error: unknown) => log.warn('Sending candidates failed', { error: errorChain(error) }));
          break;
        case 'invalidatedIceCandidates':
          this.api.invalidateCandidates(event.connection, event.candidates).catch((error: unknown) => log.warn('Invalidating candidates failed', { error: errorChain(error) }));
          break;
        case 'connectionEstablished':
          this.established.add(event.connection);
          this.emit({ event: 'connection_established', gateway_id: event.connection, path: this.pathOf(event.connection) });
          break;
        case 'connectionFailed':
          this.established.delete(event.connection);
          this.emit({ event: 'connection_failed', gateway_id: event.connection, reason: event.reason });
          break;
      }
    }
    for (let transmit = this.node.pollTransmit(); transmit !== undefined; transmit = this.node.pollTransmit()) this.send(transmit);
    this.v4?.flush();
    this.v6?.flush();
    this.armTimer(now);
    this.wakeWaiters();
  }

  private send(transmit: Transmit): boolean {
    const socket = transmit.destination.family === 4 ? this.v4 : this.v6;
    return socket?.send(transmit.payload, transmit.destination, transmit.source, transmit.ecn) ?? false;
  }

  private armTimer(now: number): void {
    let at = Infinity;
    for (const deadline of [this.node.pollTimeout(), this.assignments.pollTimeout()]) if (deadline !== undefined && deadline < at) at = deadline;
    if (at === Infinity || at >= this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.handleTimeout(), Math.max(0, Math.ceil(at - now)));
  }

  private emit(event: ClientEvent): void {
    this.options.onEvent?.(event);
  }

  private waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve(check());
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        resolve(check());
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private wakeWaiters(): void {
    for (const waiter of [...this.waiters]) {
      if (!waiter.check()) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }

  private pathOf(gatewayId: string): PathKind | undefined {
    return this.node.connectionPath(gatewayId)?.kind;
  }

  private relayServers(): RelayServer[] {
    const expiresAt = Math.floor(Date.now() / 1000) + RELAY_CREDENTIAL_LIFETIME_S;
    return this.options.relays.map((relay, index) => {
      const credentials = relayCredentials('coturn', relay.secret, this.publicKeyText, expiresAt);
      let v4;
      let v6;
      for (const text of relay.addresses) {
        const addr = parseSocketAddr(text);
        if (addr === undefined) throw new Error(`not a relay address: ${text}`);
        if (addr.family === 4) v4 = addr;
        else v6 = addr;
      }
      return { id: relay.id ?? `relay-${index}`, v4, v6, username: credentials.username, password: credentials.password };
    });
  }

  private async writeHostsFile(): Promise<void> {
    const path = this.options.hostsFile;
    if (path === undefined) return;
    const lines = ['127.0.0.1 localhost', '::1 localhost'];
    for (const assignment of this.assignments.all()) for (const ip of assignment.proxyIps) lines.push(`${ip} ${assignment.domain}`);
    await writeFile(path, `${lines.join('\n')}\n`);
  }
}

function connectionParams(grant: FlowGrant): Parameters<Node['upsertConnection']>[1] {
  return {
    localCredentials: { ufrag: grant.client_ice_credentials.username, password: grant.client_ice_credentials.password },
    remoteCredentials: { ufrag: grant.gateway_ice_credentials.username, password: grant.gateway_ice_credentials.password },
    remotePublicKey: new Uint8Array(Buffer.from(grant.gateway_public_key, 'base64')),
    presharedKey: new Uint8Array(Buffer.from(grant.preshared_key, 'base64')),
    useIceless: grant.use_iceless === true,
  };
}
