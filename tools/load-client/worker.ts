/**
 * The load client's worker: many client-role nodes in one process, each with its own UDP socket
 * (node:dgram, so thousands of sockets share the event loop), registered with the development
 * portal and connected to the gateway through its client API (./portal.ts).
 * No TUN device: packets are made here (UDP to the resource's echo port) and replies counted.
 *
 * Talks JSON lines: commands on stdin ({"cmd":"rate","pps":N}, {"cmd":"stop"}, {"cmd":"report"},
 * {"cmd":"stats"}, {"cmd":"quit"}), events and replies on stdout ({"event":"progress"...},
 * {"event":"connected"...}, {"event":"second"...}, {"event":"report"...}).
 */
import dgram from 'node:dgram';
import { randomBytes, randomUUID } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { makeUdpPacket, parseIp, type IpAddr } from '../../src/ip/index.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { Node, type RelayServer } from '../../src/snownet/index.ts';
import { systemRandom } from '../../src/util/random.ts';
import { parseSocketAddr, socketAddr, type SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import { relayCredentials } from '../dev-portal/credentials.ts';
import type { FlowGrant } from '../test-client/portal-api.ts';
import { PortalClient, transientReason } from './portal.ts';

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
/** Whole attempts per client (a new identity each): for a connection that failed, not for HTTP errors. */
const CONNECT_ATTEMPTS = 3;
const HTTP_ATTEMPTS = 6;
const HTTP_TIMEOUT_MS = 30_000;
const ECHO_PORT = 7;
const SOURCE_PORT = 40_000;
const PAYLOAD_BYTES = 100;
const IPV4_HEADER = 20;
/** The most a late pacer tick sends to catch up, in milliseconds' worth of the rate. */
const MAX_CATCH_UP_MS = 250;
const UDP_HEADER = 8;

type Emit = (event: Record<string, unknown>) => void;

/** Per-second counts of the rate phase, by the second a packet was sent in. */
class RateLog {
  readonly sent: number[] = [];
  readonly returned: number[] = [];
  readonly rtts: number[][] = [];
  readonly notSent: number[] = [];
  startedAt = 0;

  second(now: number): number {
    return Math.max(0, Math.floor((now - this.startedAt) / 1000));
  }

  add(array: number[], second: number): void {
    while (array.length <= second) array.push(0);
    array[second]!++;
  }
}

class LoadClient {
  readonly id = randomUUID();
  established = false;
  failed: string | undefined;
  sent = 0;
  received = 0;
  /** Packets the node queued or dropped instead of sealing (no session yet, a handshake under way). */
  unsealed = 0;
  private readonly node: Node;
  private readonly publicKey: string;
  private readonly socket = dgram.createSocket('udp4');
  private readonly payload = new Uint8Array(PAYLOAD_BYTES).fill(0x6c);
  private readonly payloadView = new DataView(this.payload.buffer);
  private local: SocketAddr | undefined;
  private gatewayId: string | undefined;
  private tunIp: IpAddr | undefined;
  private target: IpAddr | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;
  private readonly early: { kind: 'candidates' | 'invalidated'; candidates: readonly string[] }[] = [];

  constructor(
    private readonly options: WorkerOptions,
    private readonly api: PortalClient,
    private readonly log: RateLog,
  ) {
    const now = performance.now();
    // Small batches: a load client holds thousands of nodes, and sends one packet at a time.
    this.node = new Node({ role: 'client', privateKey: randomBytes(32), rng: systemRandom(), now, unixOffsetMs: Date.now() - now, transportBatchCapacity: 4 });
    this.publicKey = Buffer.from(this.node.publicKey).toString('base64');
  }

  get stats(): Node['stats'] {
    return this.node.stats;
  }

  state(): string {
    if (this.gatewayId === undefined) return 'none';
    return this.node.connectionState(this.gatewayId) ?? 'gone';
  }

  /** The nominated path: direct, relay, or none yet. */
  path(): string {
    if (this.gatewayId === undefined) return 'none';
    return this.node.connectionPath(this.gatewayId)?.kind ?? 'none';
  }

  async connect(): Promise<void> {
    const registration = await this.api.register(this.id, this.publicKey);
    this.tunIp = parseIp(registration.ipv4);
    this.target = parseIp(this.options.target);
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(0, this.options.local, () => resolve());
    });
    this.local = socketAddr(this.options.local, this.socket.address().port);
    this.socket.on('message', (message, rinfo) => this.handleDatagram(message, rinfo));
    const now = performance.now();
    this.node.updateRelays([], [this.relayServer()], now);
    this.flush(now);
    const grant = await this.api.requestFlow(this.id, this.options.resourceId, this.publicKey);
    this.gatewayId = grant.gateway_id;
    const upsert = this.node.upsertConnection(grant.gateway_id, connectionParams(grant), performance.now());
    if (upsert === 'noTurnServers') throw new Error('the node has no relay left (its allocation failed)');
    for (const event of this.early.splice(0)) this.applyCandidates(event.kind, event.candidates);
    this.flush(performance.now());
    const deadline = performance.now() + this.options.connectTimeoutMs;
    let after = 0;
    while (!this.established && this.failed === undefined && performance.now() < deadline) {
      const { events, next } = await this.api.candidates(this.id, after, CANDIDATE_POLL_WAIT_MS);
      after = next;
      for (const event of events) this.applyCandidates(event.kind, event.candidates);
      this.flush(performance.now());
    }
    if (!this.established && this.failed === undefined) this.failed = `no WireGuard session within ${this.options.connectTimeoutMs} ms (${this.state()})`;
  }

  /** One UDP packet to the resource's echo port through the tunnel, stamped with its send time. */
  sendPacket(now: number): boolean {
    if (!this.established || this.closed || this.gatewayId === undefined || this.tunIp === undefined || this.target === undefined) return false;
    this.payloadView.setFloat64(0, now);
    const packet = makeUdpPacket(this.tunIp, this.target, SOURCE_PORT, ECHO_PORT, this.payload);
    const transmit = this.node.encapsulate(this.gatewayId, packet, now);
    this.sent++;
    this.log.add(this.log.sent, this.log.second(now));
    if (transmit !== undefined) this.send(transmit);
    else this.unsealed++;
    this.flush(now);
    return true;
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
    if (typeof result !== 'string') {
      this.received++;
      this.echoed(result.packet, now);
    }
    this.flush(now);
  }

  /** An echo of one of our packets: its round trip, counted against the second it was sent in. */
  private echoed(packet: Uint8Array, now: number): void {
    const at = IPV4_HEADER + UDP_HEADER;
    if (packet.length < at + 8 || packet[0] !== 0x45 || packet[9] !== 17) return;
    const sentAt = new DataView(packet.buffer, packet.byteOffset + at, 8).getFloat64(0);
    if (!(sentAt >= this.log.startedAt && sentAt <= now)) return;
    const second = this.log.second(sentAt);
    this.log.add(this.log.returned, second);
    while (this.log.rtts.length <= second) this.log.rtts.push([]);
    this.log.rtts[second]!.push(now - sentAt);
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
        case 'invalidatedIceCandidates':
          // Tried again by the portal client; one lost for good only slows this client's ICE.
          this.api.sendCandidates(this.id, event.connection, event.candidates, event.kind === 'invalidatedIceCandidates').catch(() => undefined);
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

function countInto(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

export async function runWorker(options: WorkerOptions): Promise<void> {
  configureLogging({ filter: LogFilter.parse('off') });
  const emit: Emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
  const retried = new Map<string, number>();
  // Each connecting client holds at most one long poll and a few candidate posts at a time.
  const api = new PortalClient(options.portal, { maxSockets: options.concurrency * 2 + 16, requestTimeoutMs: HTTP_TIMEOUT_MS, attempts: HTTP_ATTEMPTS }, (reason) => countInto(retried, reason));
  const log = new RateLog();
  const clients: LoadClient[] = [];
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  const loopDelay = monitorEventLoopDelay({ resolution: 20 });
  loopDelay.enable();
  let next = 0;
  let done = 0;
  const errors = new Map<string, number>();
  let restarts = 0;
  const progress = setInterval(() => emit({ event: 'progress', done, established: clients.filter((c) => c?.established).length, ms: Math.round(performance.now() - started) }), 10_000);
  // A pool of `concurrency` runners: a new client starts as soon as one is through (connected or given up).
  const connectOne = async (): Promise<void> => {
    for (let index = next++; index < options.clients; index = next++) {
      // A client whose connection failed starts over with a new identity, as a person would restart it.
      for (let attempt = 1; attempt <= CONNECT_ATTEMPTS; attempt++) {
        const client = (clients[index] = new LoadClient(options, api, log));
        try {
          await client.connect();
        } catch (error) {
          const transient = transientReason(error);
          client.failed = (error instanceof Error ? error.message : String(error)) + (transient !== undefined && !(error instanceof Error && error.message.includes(transient)) ? ` (${transient}, after ${HTTP_ATTEMPTS} tries)` : '');
        }
        if (client.established) break;
        client.close();
        // Ids vary; the rest of a message says what went wrong.
        countInto(errors, (client.failed ?? 'unknown').replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>'));
        if (attempt < CONNECT_ATTEMPTS) restarts++;
      }
      done++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.clients) }, connectOne));
  clearInterval(progress);
  const connectCpu = process.cpuUsage(cpuStart);
  emit({
    event: 'connected',
    established: clients.filter((c) => c.established).length,
    failed: clients.filter((c) => !c.established).length,
    restarts,
    errors: Object.fromEntries([...errors].sort((a, b) => b[1] - a[1]).slice(0, 6)),
    retried: Object.fromEntries([...retried].sort((a, b) => b[1] - a[1]).slice(0, 6)),
    ms: Math.round(performance.now() - started),
    handshakes: clients.reduce((sum, c) => sum + c.stats.handshakes, 0),
    cpuSeconds: (connectCpu.user + connectCpu.system) / 1e6,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelayMaxMs: loopDelay.max / 1e6,
  });

  let pacer: NodeJS.Timeout | undefined;
  let short = 0;
  const stopRate = (): void => {
    if (pacer !== undefined) clearInterval(pacer);
    pacer = undefined;
  };
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as { cmd: string; pps?: number };
    switch (command.cmd) {
      case 'rate': {
        stopRate();
        const pps = command.pps ?? 0;
        const live = clients.filter((c) => c.established);
        if (pps > 0 && live.length > 0) {
          // Every 10 ms, the packets due since the last tick, each from the next client in turn. A
          // tick that comes late (this process starved of CPU on a loaded machine: ticks a second
          // apart were seen) makes up for at most MAX_CATCH_UP_MS, so a stall never turns into one
          // huge burst; what it leaves out is counted and reported as not sent.
          let last = performance.now();
          log.startedAt = last;
          let owed = 0;
          let turn = 0;
          pacer = setInterval(() => {
            const now = performance.now();
            const elapsed = now - last;
            owed += (Math.min(elapsed, MAX_CATCH_UP_MS) / 1000) * pps;
            if (elapsed > MAX_CATCH_UP_MS) short += ((elapsed - MAX_CATCH_UP_MS) / 1000) * pps;
            last = now;
            for (; owed >= 1; owed--) {
              // A client that lost its connection is skipped (and counted).
              let tries = 0;
              while (!live[turn++ % live.length]!.sendPacket(now) && ++tries < live.length) log.add(log.notSent, log.second(now));
            }
          }, 10);
        }
        emit({ event: 'rate', pps, live: live.length });
        break;
      }
      case 'stats': {
        const states = new Map<string, number>();
        const paths = new Map<string, number>();
        for (const client of clients) {
          countInto(states, client.state());
          countInto(paths, client.path());
        }
        const usage = process.cpuUsage();
        emit({
          event: 'stats',
          established: clients.filter((c) => c.established).length,
          states: Object.fromEntries(states),
          paths: Object.fromEntries(paths),
          sent: clients.reduce((sum, c) => sum + c.sent, 0),
          received: clients.reduce((sum, c) => sum + c.received, 0),
          unsealed: clients.reduce((sum, c) => sum + c.unsealed, 0),
          handshakes: clients.reduce((sum, c) => sum + c.stats.handshakes, 0),
          wireguardDropped: clients.reduce((sum, c) => sum + c.stats.wireguardDropped, 0),
          short: Math.round(short),
          cpuSeconds: (usage.user + usage.system) / 1e6,
          rssBytes: process.memoryUsage.rss(),
          loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
          loopDelayMaxMs: loopDelay.max / 1e6,
        });
        loopDelay.reset();
        break;
      }
      case 'report': {
        // Per second of the rate phase (by the second a packet was sent in): sent, came back, round trips.
        const seconds = Array.from({ length: log.sent.length }, (_, second) => {
          const rtts = (log.rtts[second] ?? []).slice().sort((a, b) => a - b);
          return {
            sent: log.sent[second] ?? 0,
            returned: log.returned[second] ?? 0,
            notSent: log.notSent[second] ?? 0,
            rttP50: percentile(rtts, 0.5),
            rttP99: percentile(rtts, 0.99),
            rttMax: rtts.at(-1) ?? NaN,
          };
        });
        emit({ event: 'report', seconds });
        break;
      }
      case 'quit':
        stopRate();
        for (const client of clients) client.close();
        api.close();
        emit({ event: 'quit' });
        process.exit(0);
        break;
      default:
        break;
    }
  }
}
