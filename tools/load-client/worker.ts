/**
 * The load client's worker: many client-role nodes in one process, each with its own UDP socket
 * (node:dgram, so thousands of sockets share the event loop), registered with the development
 * portal and connected to the gateway through its client API (tools/test-client/portal-api.ts).
 * No TUN device: packets are made here (UDP to the resource's echo port) and replies counted.
 *
 * Talks JSON lines: commands on stdin ({"cmd":"rate","pps":N}, {"cmd":"stats"}, {"cmd":"quit"}),
 * events and replies on stdout ({"event":"progress"...}, {"event":"connected"...}, {"event":"stats"...}).
 */
import dgram from 'node:dgram';
import { randomBytes, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { makeUdpPacket, parseIp, type IpAddr } from '../../src/ip/index.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { Node, type RelayServer } from '../../src/snownet/index.ts';
import { systemRandom } from '../../src/util/random.ts';
import { parseSocketAddr, socketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import { relayCredentials } from '../dev-portal/credentials.ts';
import { PortalApi, type FlowGrant } from '../test-client/portal-api.ts';

export interface WorkerOptions {
  readonly portal: string;
  readonly resourceId: string;
  readonly clients: number;
  readonly relay: string;
  readonly relaySecret: string;
  /** The address every client binds its socket to (the namespace's own). */
  readonly local: string;
  /** The resource's address: packets go to its UDP echo (port 7). */
  readonly target: string;
  /** Clients connecting at the same time. */
  readonly concurrency: number;
  readonly connectTimeoutMs: number;
}

const CANDIDATE_POLL_WAIT_MS = 2_000;
const CONNECT_ATTEMPTS = 3;
const ECHO_PORT = 7;
const PAYLOAD = new Uint8Array(100).fill(0x6c);

type Emit = (event: Record<string, unknown>) => void;

class LoadClient {
  readonly id = randomUUID();
  established = false;
  failed: string | undefined;
  sent = 0;
  received = 0;
  private readonly node: Node;
  private readonly publicKey: string;
  private readonly api: PortalApi;
  private readonly socket = dgram.createSocket('udp4');
  private local: SocketAddr | undefined;
  private gatewayId: string | undefined;
  private tunIp: IpAddr | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;
  private readonly early: { kind: 'candidates' | 'invalidated'; candidates: readonly string[] }[] = [];

  constructor(private readonly options: WorkerOptions) {
    const now = performance.now();
    // Small batches: a load client holds thousands of nodes, and sends one packet at a time.
    this.node = new Node({ role: 'client', privateKey: randomBytes(32), rng: systemRandom(), now, unixOffsetMs: Date.now() - now, transportBatchCapacity: 4 });
    this.publicKey = Buffer.from(this.node.publicKey).toString('base64');
    this.api = new PortalApi(options.portal, this.id);
  }

  async connect(): Promise<void> {
    const registration = await this.api.register(this.publicKey);
    this.tunIp = parseIp(registration.ipv4);
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(0, this.options.local, () => resolve());
    });
    this.local = socketAddr(this.options.local, this.socket.address().port);
    this.socket.on('message', (message, rinfo) => this.handleDatagram(message, rinfo));
    const now = performance.now();
    this.node.updateRelays([], [this.relayServer()], now);
    this.flush(now);
    const grant = await this.api.requestFlow(this.options.resourceId, this.publicKey);
    this.gatewayId = grant.gateway_id;
    this.node.upsertConnection(grant.gateway_id, connectionParams(grant), performance.now());
    for (const event of this.early.splice(0)) this.applyCandidates(event.kind, event.candidates);
    this.flush(performance.now());
    const deadline = performance.now() + this.options.connectTimeoutMs;
    let after = 0;
    while (!this.established && this.failed === undefined && performance.now() < deadline) {
      const { events, next } = await this.api.candidates(after, CANDIDATE_POLL_WAIT_MS);
      after = next;
      for (const event of events) this.applyCandidates(event.kind, event.candidates);
      this.flush(performance.now());
    }
    if (!this.established && this.failed === undefined) this.failed = `no WireGuard session within ${this.options.connectTimeoutMs} ms (${this.node.connectionState(grant.gateway_id) ?? 'gone'})`;
  }

  /** One UDP packet to the resource's echo port through the tunnel. */
  sendPacket(): void {
    if (!this.established || this.closed || this.gatewayId === undefined || this.tunIp === undefined) return;
    const now = performance.now();
    const packet = makeUdpPacket(this.tunIp, parseIp(this.options.target)!, 40_000, ECHO_PORT, PAYLOAD);
    const transmit = this.node.encapsulate(this.gatewayId, packet, now);
    if (transmit !== undefined) {
      this.send(transmit);
      this.sent++;
    }
    this.flush(now);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    try {
      this.socket.close();
    } catch {
      // Never bound.
    }
  }

  private applyCandidates(kind: 'candidates' | 'invalidated', candidates: readonly string[]): void {
    if (this.gatewayId === undefined) {
      this.early.push({ kind, candidates });
      return;
    }
    const now = performance.now();
    for (const candidate of candidates) {
      if (kind === 'candidates') this.node.addRemoteCandidate(this.gatewayId, candidate, now);
      else this.node.removeRemoteCandidate(this.gatewayId, candidate, now);
    }
  }

  private handleDatagram(message: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed || this.local === undefined) return;
    const now = performance.now();
    const result = this.node.decapsulate(this.local, socketAddr(rinfo.address, rinfo.port), message, now);
    if (typeof result !== 'string') this.received++;
    this.flush(now);
  }

  private handleTimeout(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.closed) return;
    const now = performance.now();
    this.node.handleTimeout(now);
    this.flush(now);
  }

  private flush(now: number): void {
    if (this.closed) return;
    for (let event = this.node.pollEvent(); event !== undefined; event = this.node.pollEvent()) {
      switch (event.kind) {
        case 'newIceCandidates':
          this.api.sendCandidates(event.connection, event.candidates).catch(() => undefined);
          break;
        case 'invalidatedIceCandidates':
          this.api.invalidateCandidates(event.connection, event.candidates).catch(() => undefined);
          break;
        case 'connectionEstablished':
          this.established = true;
          break;
        case 'connectionFailed':
          this.established = false;
          this.failed = event.reason;
          break;
      }
    }
    for (let transmit = this.node.pollTransmit(); transmit !== undefined; transmit = this.node.pollTransmit()) this.send(transmit);
    const at = this.node.pollTimeout() ?? Infinity;
    if (at === this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = at === Infinity ? undefined : setTimeout(() => this.handleTimeout(), Math.max(0, at - now));
  }

  private send(transmit: Transmit): void {
    if (transmit.destination.family !== 4) return;
    // The node reuses its buffers: dgram sends later, so it gets a copy.
    this.socket.send(Buffer.from(transmit.payload), transmit.destination.port, transmit.destination.address);
  }

  private relayServer(): RelayServer {
    const credentials = relayCredentials('coturn', this.options.relaySecret, this.publicKey, Math.floor(Date.now() / 1000) + 24 * 3600);
    const v4 = parseSocketAddr(this.options.relay);
    if (v4 === undefined) throw new Error(`not a relay address: ${this.options.relay}`);
    return { id: 'load-relay', v4, v6: undefined, username: credentials.username, password: credentials.password };
  }
}

function connectionParams(grant: FlowGrant): Parameters<Node['upsertConnection']>[1] {
  return {
    localCredentials: { ufrag: grant.client_ice_credentials.username, password: grant.client_ice_credentials.password },
    remoteCredentials: { ufrag: grant.gateway_ice_credentials.username, password: grant.gateway_ice_credentials.password },
    remotePublicKey: new Uint8Array(Buffer.from(grant.gateway_public_key, 'base64')),
    presharedKey: new Uint8Array(Buffer.from(grant.preshared_key, 'base64')),
  };
}

export async function runWorker(options: WorkerOptions): Promise<void> {
  configureLogging({ filter: LogFilter.parse('off') });
  const emit: Emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
  const clients = Array.from({ length: options.clients }, () => new LoadClient(options));
  const started = performance.now();
  let next = 0;
  let done = 0;
  const errors = new Map<string, number>();
  let retries = 0;
  const connectOne = async (): Promise<void> => {
    for (let index = next++; index < clients.length; index = next++) {
      // A client whose attempt failed (the portal busy, a flow unanswered) starts over, as a person would.
      for (let attempt = 1; attempt <= CONNECT_ATTEMPTS; attempt++) {
        const client = attempt === 1 ? clients[index]! : (clients[index] = new LoadClient(options));
        try {
          await client.connect();
        } catch (error) {
          client.failed = error instanceof Error ? error.message : String(error);
        }
        if (client.established) break;
        client.close();
        // Ids vary; the rest of a message says what went wrong.
        const reason = (client.failed ?? 'unknown').replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>');
        errors.set(reason, (errors.get(reason) ?? 0) + 1);
        if (attempt < CONNECT_ATTEMPTS) retries++;
      }
      if (++done % 100 === 0) emit({ event: 'progress', done, established: clients.filter((c) => c.established).length });
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, clients.length) }, connectOne));
  emit({
    event: 'connected',
    established: clients.filter((c) => c.established).length,
    failed: clients.filter((c) => !c.established).length,
    retries,
    errors: Object.fromEntries([...errors].slice(0, 5)),
    ms: Math.round(performance.now() - started),
  });

  let pacer: NodeJS.Timeout | undefined;
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as { cmd: string; pps?: number };
    switch (command.cmd) {
      case 'rate': {
        if (pacer !== undefined) clearInterval(pacer);
        pacer = undefined;
        const pps = command.pps ?? 0;
        const live = clients.filter((c) => c.established);
        if (pps > 0 && live.length > 0) {
          // Every 10 ms, the packets due since the last tick, each from the next client in turn; a
          // tick late by more than 50 ms sends only 50 ms worth (a starved process does not spin).
          let last = performance.now();
          let owed = 0;
          let turn = 0;
          pacer = setInterval(() => {
            const now = performance.now();
            owed += (Math.min(now - last, 50) / 1000) * pps;
            last = now;
            for (; owed >= 1; owed--) live[turn++ % live.length]!.sendPacket();
          }, 10);
        }
        emit({ event: 'rate', pps });
        break;
      }
      case 'stats':
        emit({
          event: 'stats',
          established: clients.filter((c) => c.established).length,
          sent: clients.reduce((sum, c) => sum + c.sent, 0),
          received: clients.reduce((sum, c) => sum + c.received, 0),
        });
        break;
      case 'quit':
        if (pacer !== undefined) clearInterval(pacer);
        for (const client of clients) client.close();
        emit({ event: 'quit' });
        process.exit(0);
    }
  }
}
