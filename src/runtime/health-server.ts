/**
 * The health endpoints (operations §4, gateway 1.6 §4.1) on `HEALTH_CHECK_ADDR`:
 * - `/healthz`: liveness, 200 for as long as the process runs;
 * - `/readyz`: 200 once the portal is joined and the TUN device configured, 503 otherwise
 *   (the reference answers a constant 200; an orchestrator needs the real answer);
 * - `/metrics`: the Prometheus text format, only when a metrics handler is given.
 * `GET` and `HEAD` only (405 otherwise), other paths 404. Failing to bind is logged and
 * otherwise ignored, as the gateway must keep running without it.
 *
 * Anyone who can reach the port can open connections, so each one is bounded: the request
 * head must arrive within `headersTimeoutMs`, an idle keep-alive connection is closed after
 * `idleTimeoutMs`, and beyond `maxConnections` new connections are closed at once.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { createLogger } from '../log/index.ts';
import { parseSocketAddr, socketAddr, type SocketAddr } from '../util/socket-addr.ts';

export const DEFAULT_HEALTH_CHECK_ADDR = socketAddr('0.0.0.0', 8080);

export interface HealthLimits {
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
}

export const DEFAULT_HEALTH_LIMITS: HealthLimits = { headersTimeoutMs: 5_000, idleTimeoutMs: 10_000, maxConnections: 64 };

export type MetricsHandler = (request: IncomingMessage, response: ServerResponse) => void;

export interface HealthServerOptions {
  /** `/readyz`; without it the gateway counts as ready whenever it is alive. */
  readonly isReady?: () => boolean;
  /** Serves `/metrics`; without it that path is 404. */
  readonly metrics?: MetricsHandler;
  readonly limits?: Partial<HealthLimits>;
}

const logger = createLogger('firezone_gateway');

export class HealthServer {
  readonly #server: Server;
  #address: SocketAddr | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Starts listening; resolves even when the bind fails (check `address`). */
  static async start(address: SocketAddr | string = DEFAULT_HEALTH_CHECK_ADDR, options: HealthServerOptions = {}): Promise<HealthServer> {
    const target = typeof address === 'string' ? parseSocketAddr(address) : address;
    const limits = { ...DEFAULT_HEALTH_LIMITS, ...options.limits };
    const isReady = options.isReady ?? (() => true);
    const server = createServer(
      {
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout: limits.headersTimeoutMs,
        keepAliveTimeout: limits.idleTimeoutMs,
        // How often the header and request deadlines are checked; Node's default is 30 s.
        connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 2))),
      },
      (request, response) => route(request, response, isReady, options.metrics),
    );
    server.maxConnections = limits.maxConnections;
    // A connection that never sends a byte: the header deadline only starts with the first one.
    server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
    const health = new HealthServer(server);
    if (target === undefined) {
      logger.warn('Invalid health check address', { address: String(address) });
      return health;
    }
    try {
      server.listen(target.port, target.address);
      await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error))]);
      const bound = server.address();
      if (bound !== null && typeof bound === 'object') health.#address = socketAddr(bound.address, bound.port);
    } catch (error) {
      logger.warn('Failed to start health check server', { address: `${target.address}:${target.port}`, error: error as Error });
    }
    return health;
  }

  /** The bound address, or undefined when binding failed. */
  get address(): SocketAddr | undefined {
    return this.#address;
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function route(request: IncomingMessage, response: ServerResponse, isReady: () => boolean, metrics: MetricsHandler | undefined): void {
  const path = request.url ?? '';
  if (path !== '/healthz' && path !== '/readyz' && (path !== '/metrics' || metrics === undefined)) {
    response.writeHead(404, { 'content-length': '0' }).end();
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
    return;
  }
  if (path === '/metrics') {
    metrics!(request, response);
    return;
  }
  const status = path === '/healthz' || isReady() ? 200 : 503;
  response.writeHead(status, { 'content-length': '0' }).end();
}
