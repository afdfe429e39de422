/**
 * The liveness endpoint (operations §4): `GET`/`HEAD /healthz` answer 200 with an empty body for
 * as long as the process runs; other paths 404, other methods on /healthz 405. Failing to bind
 * is logged and otherwise ignored, as the gateway must keep running without it.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { createLogger } from '../log/index.ts';
import { parseSocketAddr, socketAddr, type SocketAddr } from '../util/socket-addr.ts';

export const DEFAULT_HEALTH_CHECK_ADDR = socketAddr('0.0.0.0', 8080);

const logger = createLogger('firezone_gateway');

export class HealthServer {
  readonly #server: Server;
  #address: SocketAddr | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Starts listening; resolves even when the bind fails (check `address`). */
  static async start(address: SocketAddr | string = DEFAULT_HEALTH_CHECK_ADDR): Promise<HealthServer> {
    const target = typeof address === 'string' ? parseSocketAddr(address) : address;
    const server = createServer((request, response) => {
      if (request.url !== '/healthz') {
        response.writeHead(404, { 'content-length': '0' }).end();
        return;
      }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405, { allow: 'GET,HEAD', 'content-length': '0' }).end();
        return;
      }
      response.writeHead(200, { 'content-length': '0' }).end();
    });
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
