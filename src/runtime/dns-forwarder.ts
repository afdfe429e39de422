/**
 * The gateway's DNS forwarder on `<tun ipv4>:53535` and `[<tun ipv6>]:53535`, UDP and TCP
 * (gateway-core §6). Every well-formed query goes unchanged to the fastest upstream from
 * /etc/resolv.conf over the transport it arrived on; the answer comes back byte for byte,
 * truncated (TC) above 1200 bytes on UDP, or as SERVFAIL when the upstream fails or times out.
 *
 * Upstream choice: every 60 s each nameserver is probed with `A firezone.dev` over UDP and TCP
 * (2 s timeout, NOERROR required); the fastest is the one with the smallest RTT ever observed.
 * With no nameserver answered yet, queries get SERVFAIL at once.
 *
 * Bounds (the reference has the first only): at most 1000 queries wait upstream at once, across
 * transports, and a query beyond that is dropped; TCP connections close after 10 s without
 * traffic; a client source holds at most 32 connections and the forwarder 256, and a new one
 * beyond either cap closes the least recently active (of that source, else of all), so a flood of
 * connections costs its sender its own older connections first; a connection's queries are
 * answered one at a time and reading pauses while one waits upstream or an answer waits to be
 * sent, so a client that streams queries without reading answers gets TCP backpressure instead of
 * buffers that grow; a connection's remaining queries are dropped when it closes. Each kind of
 * shedding logs one WARN a minute.
 *
 * Upstream TCP connections carry SO_MARK 0xfd002021 like the reference's. Deviation: upstream UDP
 * queries go through node:dgram, which exposes no fd, so they are unmarked; that only matters if
 * an upstream lived inside 100.64.0.0/11 or fd00:2021:1111::/107, which no real resolver does.
 */
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { isIPv6 } from 'node:net';
import { createLogger, errorChain } from '../log/index.ts';
import { WarningLimiter } from '../util/warning-limiter.ts';
import { connectMarkedTcp } from './native.ts';
import { FIREZONE_MARK } from './udp-socket.ts';

export const DNS_SERVER_PORT = 53535;
export const MAX_UDP_RESPONSE = 1200;
export const MAX_UPSTREAM_UDP_DATAGRAM = 1500;
export const QUERY_TIMEOUT_MS = 5000;
export const PROBE_INTERVAL_MS = 60_000;
export const PROBE_TIMEOUT_MS = 2000;
export const PROBE_DOMAIN = 'firezone.dev';
export const MAX_INFLIGHT_QUERIES = 1000;
export const TCP_IDLE_TIMEOUT_MS = 10_000;
export const MAX_TCP_CONNECTIONS = 256;
export const MAX_TCP_CONNECTIONS_PER_SOURCE = 32;
/** A length prefix and the largest message it can announce. */
const MAX_TCP_FRAME = 2 + 0xffff;

const HEADER_SIZE = 12;
const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;
const RCODE_SERVFAIL = 2;
const TYPE_A = 1;
const CLASS_IN = 1;

const logger = createLogger('dns_over_tcp');

// ---------------------------------------------------------------------------------------------
// Message checks and builders (pure)

export interface DnsMessageInfo {
  readonly id: number;
  readonly flags: number;
  readonly isResponse: boolean;
  readonly rcode: number;
  /** Offset just past the (single) question. */
  readonly questionEnd: number;
}

/**
 * Checks what the reference requires of a message: a header, exactly one question and an answer
 * section that parses. Returns undefined for anything else.
 */
export function inspectDnsMessage(message: Uint8Array): DnsMessageInfo | undefined {
  if (message.length < HEADER_SIZE) return undefined;
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const flags = view.getUint16(2);
  if (view.getUint16(4) !== 1) return undefined;
  let offset = skipName(message, HEADER_SIZE);
  if (offset === undefined || offset + 4 > message.length) return undefined;
  const questionEnd = offset + 4;
  offset = questionEnd;
  const answers = view.getUint16(6);
  for (let i = 0; i < answers; i++) {
    const next = skipName(message, offset);
    if (next === undefined || next + 10 > message.length) return undefined;
    const rdLength = view.getUint16(next + 8);
    offset = next + 10 + rdLength;
    if (offset > message.length) return undefined;
  }
  return { id: view.getUint16(0), flags, isResponse: (flags & FLAG_QR) !== 0, rcode: flags & 0x000f, questionEnd };
}

/** SERVFAIL for a query: same ID, opcode and RD, QR set, the question copied, no records. */
export function buildServfail(query: Uint8Array, info: DnsMessageInfo): Uint8Array {
  const response = query.slice(0, info.questionEnd);
  const view = new DataView(response.buffer);
  view.setUint16(2, FLAG_QR | (info.flags & 0x7800) | (info.flags & FLAG_RD) | RCODE_SERVFAIL);
  view.setUint16(4, 1);
  view.setUint16(6, 0);
  view.setUint16(8, 0);
  view.setUint16(10, 0);
  return response;
}

/** Fits a response into a UDP reply: unchanged if small enough, else header + question with TC. */
export function fitUdpResponse(response: Uint8Array, info: DnsMessageInfo, max = MAX_UDP_RESPONSE): Uint8Array {
  if (response.length <= max) return response;
  const truncated = response.slice(0, info.questionEnd);
  const view = new DataView(truncated.buffer);
  view.setUint16(2, info.flags | FLAG_TC);
  view.setUint16(4, 1);
  view.setUint16(6, 0);
  view.setUint16(8, 0);
  view.setUint16(10, 0);
  return truncated;
}

/** `A <domain>` with RD set. */
export function buildQuery(id: number, domain: string, type = TYPE_A): Uint8Array {
  const labels = domain.split('.').filter((l) => l.length > 0);
  const nameLength = labels.reduce((sum, l) => sum + 1 + Buffer.byteLength(l), 1);
  const query = new Uint8Array(HEADER_SIZE + nameLength + 4);
  const view = new DataView(query.buffer);
  view.setUint16(0, id);
  view.setUint16(2, FLAG_RD);
  view.setUint16(4, 1);
  let offset = HEADER_SIZE;
  for (const label of labels) {
    const bytes = Buffer.from(label);
    query[offset++] = bytes.length;
    query.set(bytes, offset);
    offset += bytes.length;
  }
  query[offset++] = 0;
  view.setUint16(offset, type);
  view.setUint16(offset + 2, CLASS_IN);
  return query;
}

function skipName(message: Uint8Array, offset: number): number | undefined {
  for (let labels = 0; labels < 128; labels++) {
    const length = message[offset];
    if (length === undefined) return undefined;
    if (length === 0) return offset + 1;
    if ((length & 0xc0) === 0xc0) return offset + 2 <= message.length ? offset + 2 : undefined;
    if ((length & 0xc0) !== 0) return undefined;
    offset += 1 + length;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Upstream choice

/** Smallest RTT ever observed per nameserver; never cleared, as in the reference. */
export class UpstreamTable {
  readonly #best = new Map<string, number>();

  recordRtt(server: string, rttMs: number): void {
    const best = this.#best.get(server);
    if (best === undefined || rttMs < best) this.#best.set(server, rttMs);
  }

  fastest(): string | undefined {
    let fastest: string | undefined;
    let fastestRtt = Infinity;
    for (const [server, rtt] of this.#best) {
      if (rtt < fastestRtt) {
        fastest = server;
        fastestRtt = rtt;
      }
    }
    return fastest;
  }
}

// ---------------------------------------------------------------------------------------------
// The forwarder

export interface DnsForwarderOptions {
  readonly upstreams: readonly string[];
  readonly upstreamPort?: number;
  readonly listenPort?: number;
  readonly queryTimeoutMs?: number;
  readonly probeIntervalMs?: number;
  readonly probeTimeoutMs?: number;
  readonly maxInflightQueries?: number;
  readonly tcpIdleTimeoutMs?: number;
  readonly maxTcpConnections?: number;
  readonly maxTcpConnectionsPerSource?: number;
}

/** What the forwarder shed or bounded, for tests and metrics. */
export interface DnsForwarderStats {
  /** Queries dropped because `maxInflightQueries` were already waiting upstream. */
  queriesDropped: number;
  /** TCP connections closed after `tcpIdleTimeoutMs` without traffic. */
  tcpIdleClosed: number;
  /** TCP connections closed to make room for a new one. */
  tcpEvicted: number;
  /** The most bytes ever buffered for one TCP connection (a partial or waiting query). */
  tcpMaxBufferedBytes: number;
}

export interface DnsListenAddresses {
  readonly ipv4?: string | undefined;
  readonly ipv6?: string | undefined;
}

export class DnsBindError extends Error {
  readonly code = 'DNS_BIND_FAILED';
}

type Transport = 'udp' | 'tcp';

interface Listener {
  readonly udp: UdpSocket;
  readonly tcp: Server;
  readonly address: string;
  closed: boolean;
}

type Shedding = 'queries' | 'connections';

interface TcpConnection {
  readonly source: string;
  readonly listener: Listener;
}

export class DnsForwarder {
  readonly upstreams: UpstreamTable = new UpstreamTable();
  readonly stats: DnsForwarderStats = { queriesDropped: 0, tcpIdleClosed: 0, tcpEvicted: 0, tcpMaxBufferedBytes: 0 };
  readonly #options: Required<DnsForwarderOptions>;
  #listeners: Listener[] = [];
  #probeTimer: NodeJS.Timeout | undefined;
  #nextProbeId = 1;
  #closed = false;
  #inflight = 0;
  /** Every open TCP connection, least recently active first (re-inserted on activity). */
  readonly #tcpConnections = new Map<Socket, TcpConnection>();
  /** The same per client source address, in the same order. */
  readonly #tcpBySource = new Map<string, Set<Socket>>();
  readonly #warnings = new WarningLimiter<Shedding>();

  constructor(options: DnsForwarderOptions) {
    this.#options = {
      upstreamPort: 53,
      listenPort: DNS_SERVER_PORT,
      queryTimeoutMs: QUERY_TIMEOUT_MS,
      probeIntervalMs: PROBE_INTERVAL_MS,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
      maxInflightQueries: MAX_INFLIGHT_QUERIES,
      tcpIdleTimeoutMs: TCP_IDLE_TIMEOUT_MS,
      maxTcpConnections: MAX_TCP_CONNECTIONS,
      maxTcpConnectionsPerSource: MAX_TCP_CONNECTIONS_PER_SOURCE,
      ...options,
    };
  }

  /** Open TCP connections. */
  get tcpConnectionCount(): number {
    return this.#tcpConnections.size;
  }

  /** Starts the periodic probes; the returned promise settles when the first round finishes. */
  startProbing(): Promise<void> {
    if (this.#probeTimer !== undefined) return Promise.resolve();
    this.#probeTimer = setInterval(() => void this.probeAll(), this.#options.probeIntervalMs);
    this.#probeTimer.unref();
    return this.probeAll();
  }

  /** Probes every upstream once over UDP and TCP. */
  async probeAll(): Promise<void> {
    const probes: Promise<void>[] = [];
    for (const server of this.#options.upstreams) {
      for (const transport of ['udp', 'tcp'] as const) probes.push(this.#probe(server, transport));
    }
    await Promise.all(probes);
  }

  /**
   * Closes the current listeners and binds UDP and TCP on each given address. Throws
   * DnsBindError only when no address could be bound (fatal in the reference).
   */
  async rebind(addresses: DnsListenAddresses): Promise<void> {
    await this.#closeListeners();
    const errors: string[] = [];
    for (const address of [addresses.ipv4, addresses.ipv6]) {
      if (address === undefined) continue;
      try {
        this.#listeners.push(await this.#listen(address));
      } catch (error) {
        errors.push(`${address}: ${errorChain(error as Error)}`);
      }
    }
    if (this.#listeners.length === 0) {
      throw new DnsBindError(`Failed to bind DNS server at ${errors.join(', ') || 'no address'}`);
    }
    for (const error of errors) logger.warn('Failed to bind DNS server', { error });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#probeTimer);
    await this.#closeListeners();
  }

  /** Answers one query (exposed for tests); undefined means "send nothing". */
  async answer(query: Uint8Array, transport: Transport): Promise<Uint8Array | undefined> {
    const info = inspectDnsMessage(query);
    if (info === undefined || info.isResponse) {
      logger.debug('Dropping malformed DNS query', { transport, length: query.length });
      return undefined;
    }
    const server = this.upstreams.fastest();
    if (server === undefined) return buildServfail(query, info);
    if (this.#inflight >= this.#options.maxInflightQueries) {
      this.stats.queriesDropped++;
      this.#warn('queries', 'Too many DNS queries waiting upstream, dropping query', { limit: this.#options.maxInflightQueries });
      return undefined;
    }
    this.#inflight++;
    try {
      const response =
        transport === 'udp'
          ? await queryUdp(server, this.#options.upstreamPort, query, this.#options.queryTimeoutMs)
          : await queryTcp(server, this.#options.upstreamPort, query, this.#options.queryTimeoutMs);
      const responseInfo = inspectDnsMessage(response);
      if (responseInfo === undefined || !responseInfo.isResponse) return buildServfail(query, info);
      return transport === 'udp' ? fitUdpResponse(response, responseInfo) : response;
    } catch (error) {
      logger.debug('Upstream DNS query failed', { server, transport, error: error as Error });
      return buildServfail(query, info);
    } finally {
      this.#inflight--;
    }
  }

  async #probe(server: string, transport: Transport): Promise<void> {
    const id = this.#nextProbeId++ & 0xffff;
    const query = buildQuery(id, PROBE_DOMAIN);
    const started = performance.now();
    try {
      const response =
        transport === 'udp'
          ? await queryUdp(server, this.#options.upstreamPort, query, this.#options.probeTimeoutMs)
          : await queryTcp(server, this.#options.upstreamPort, query, this.#options.probeTimeoutMs);
      const info = inspectDnsMessage(response);
      // The reference needs NOERROR; NXDOMAIN also proves a working server (one on a site
      // without Internet access cannot resolve firezone.dev, yet serves the site's names).
      if (info === undefined || !info.isResponse || info.id !== id || (info.rcode !== RCODE_NOERROR && info.rcode !== RCODE_NXDOMAIN)) return;
      if (this.#closed) return;
      this.upstreams.recordRtt(server, performance.now() - started);
    } catch (error) {
      logger.debug('DNS upstream probe failed', { server, transport, error: error as Error });
    }
  }

  async #listen(address: string): Promise<Listener> {
    const port = this.#options.listenPort;
    const udp = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', ipv6Only: isIPv6(address) });
    const tcp = createServer((socket) => this.#serveTcp(socket, listener));
    const listener: Listener = { udp, tcp, address, closed: false };
    udp.on('message', (message, remote) => void this.#onUdpQuery(listener, message, remote));
    udp.on('error', (error) => logger.debug('DNS UDP socket error', { error }));
    const udpBound = once(udp, 'listening');
    udp.bind({ address, port });
    try {
      await udpBound;
    } catch (error) {
      udp.close();
      throw error;
    }
    tcp.listen({ host: address, port, ipv6Only: isIPv6(address) });
    try {
      await once(tcp, 'listening');
    } catch (error) {
      udp.close();
      throw error;
    }
    tcp.on('error', (error) => logger.debug('DNS TCP listener error', { error }));
    return listener;
  }

  async #onUdpQuery(listener: Listener, query: Buffer, remote: RemoteInfo): Promise<void> {
    const response = await this.answer(query, 'udp');
    if (response === undefined || listener.closed) return;
    listener.udp.send(response, remote.port, remote.address, (error) => {
      if (error) logger.debug('Failed to send DNS response', { error });
    });
  }

  /**
   * One DNS-over-TCP connection: frames read into a buffer of at most one frame plus one chunk,
   * answered in order, one at a time. Reading pauses while a query is upstream or an answer waits
   * in the socket's write buffer, so the kernel's windows hold what the client sends meanwhile.
   */
  #serveTcp(socket: Socket, listener: Listener): void {
    const connection: TcpConnection = { source: socket.remoteAddress ?? '', listener };
    this.#admitTcp(socket, connection);
    let pending: Buffer = Buffer.alloc(0);
    let busy = false;
    socket.setNoDelay(true);
    socket.setTimeout(this.#options.tcpIdleTimeoutMs, () => {
      this.stats.tcpIdleClosed++;
      socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.#forgetTcp(socket, connection.source));
    const next = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      socket.pause();
      try {
        while (!socket.destroyed && pending.length >= 2) {
          const length = pending.readUInt16BE(0);
          if (pending.length < 2 + length) break;
          const query = pending.subarray(2, 2 + length);
          pending = pending.subarray(2 + length);
          const response = await this.answer(query, 'tcp');
          if (socket.destroyed) return;
          if (response === undefined) continue;
          const frame = Buffer.allocUnsafe(2 + response.length);
          frame.writeUInt16BE(response.length, 0);
          frame.set(response, 2);
          if (!socket.write(frame)) await drained(socket);
        }
      } finally {
        busy = false;
        if (!socket.destroyed) socket.resume();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      this.#touchTcp(socket, connection);
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (pending.length > this.stats.tcpMaxBufferedBytes) this.stats.tcpMaxBufferedBytes = pending.length;
      if (pending.length > MAX_TCP_FRAME + chunk.length) {
        socket.destroy();
        return;
      }
      void next();
    });
    socket.on('end', () => socket.end());
  }

  /** Makes room for a new connection: the source's least recently active beyond its cap, then the forwarder's. */
  #admitTcp(socket: Socket, connection: TcpConnection): void {
    let ofSource = this.#tcpBySource.get(connection.source);
    if (ofSource === undefined) {
      ofSource = new Set();
      this.#tcpBySource.set(connection.source, ofSource);
    }
    if (ofSource.size >= this.#options.maxTcpConnectionsPerSource) {
      const oldest = ofSource.values().next();
      if (oldest.done !== true) this.#evictTcp(oldest.value);
    }
    if (this.#tcpConnections.size >= this.#options.maxTcpConnections) {
      const oldest = this.#tcpConnections.keys().next();
      if (oldest.done !== true) this.#evictTcp(oldest.value);
    }
    this.#tcpConnections.set(socket, connection);
    ofSource.add(socket);
  }

  #evictTcp(socket: Socket): void {
    this.stats.tcpEvicted++;
    this.#warn('connections', 'Too many DNS-over-TCP connections, closing the least recently active', {
      limit: this.#options.maxTcpConnections,
      per_source: this.#options.maxTcpConnectionsPerSource,
    });
    this.#forgetTcp(socket, this.#tcpConnections.get(socket)?.source ?? '');
    socket.destroy();
  }

  #touchTcp(socket: Socket, connection: TcpConnection): void {
    if (!this.#tcpConnections.delete(socket)) return;
    this.#tcpConnections.set(socket, connection);
    const ofSource = this.#tcpBySource.get(connection.source);
    if (ofSource?.delete(socket) === true) ofSource.add(socket);
  }

  #forgetTcp(socket: Socket, source: string): void {
    this.#tcpConnections.delete(socket);
    const ofSource = this.#tcpBySource.get(source);
    if (ofSource === undefined) return;
    ofSource.delete(socket);
    if (ofSource.size === 0) this.#tcpBySource.delete(source);
  }

  #warn(kind: Shedding, message: string, fields: Record<string, unknown>): void {
    const suppressed = this.#warnings.allow(kind, performance.now());
    if (suppressed !== undefined) logger.warn(message, { ...fields, suppressed });
  }

  async #closeListeners(): Promise<void> {
    const listeners = this.#listeners;
    this.#listeners = [];
    await Promise.all(
      listeners.map(async (listener) => {
        listener.closed = true;
        listener.udp.close();
        const closed = new Promise<void>((resolve) => listener.tcp.close(() => resolve()));
        for (const [socket, connection] of [...this.#tcpConnections]) if (connection.listener === listener) socket.destroy();
        await closed;
      }),
    );
  }
}

/** Resolves once `socket` can take more writes, or is gone. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}

// ---------------------------------------------------------------------------------------------
// Upstream transports: a fresh socket per query

function queryUdp(server: string, port: number, query: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIPv6(server) ? 'udp6' : 'udp4');
    let finished = false;
    const timer = setTimeout(() => finish(new Error('DNS query timed out')), timeoutMs);
    const finish = (error: Error | undefined, response?: Uint8Array): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.close();
      if (error !== undefined) reject(error);
      else resolve(response!);
    };
    socket.on('error', (error) => finish(error));
    socket.on('message', (message: Buffer) => {
      finish(undefined, message.length > MAX_UPSTREAM_UDP_DATAGRAM ? message.subarray(0, MAX_UPSTREAM_UDP_DATAGRAM) : message);
    });
    // An unreachable upstream fails the connect (ENETUNREACH): answer the query with an error, never throw.
    socket.connect(port, server, (error?: Error) => {
      if (error) finish(error);
      else if (!finished) socket.send(query, (sendError) => sendError && finish(sendError));
    });
  });
}

function queryTcp(server: string, port: number, query: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = connectMarkedTcp({ host: server, port, mark: FIREZONE_MARK });
    let received: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error('DNS query timed out')), timeoutMs);
    const finish = (error: Error | undefined, response?: Uint8Array): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else resolve(response!);
    };
    socket.on('error', (error) => finish(error));
    socket.on('connect', () => {
      const frame = Buffer.allocUnsafe(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      frame.set(query, 2);
      socket.write(frame);
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length >= 2 + length) finish(undefined, received.subarray(2, 2 + length));
    });
    socket.on('end', () => finish(new Error('upstream closed the connection')));
  });
}
