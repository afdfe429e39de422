/**
 * The dev portal's client API as the load worker uses it (the same requests as
 * tools/test-client/portal-api.ts), over node:http with one keep-alive agent shared by every client
 * of the process, a bounded number of sockets, a deadline per request, and retries of the errors a
 * busy machine produces.
 *
 * Why not fetch: with fetch every failure of the transport is one `TypeError: fetch failed`, its
 * agent cannot be bounded or tuned without the undici package, and nothing retries. On a loaded
 * machine the dev portal (one Node process) stalls for seconds; a keep-alive socket it closes for
 * idleness during such a stall, while our next request on it is already in flight, comes back as
 * ECONNRESET (reproduced by pausing the portal for 7 s: 25 of 500 attempts failed so, none with 3 s
 * pauses). Such errors, and the portal's 503/504 while the gateway is slow, are tried again here.
 */
import http from 'node:http';
import type { FlowGrant, CandidateEvent, ClientRegistration } from '../test-client/portal-api.ts';

export interface PortalClientOptions {
  /** Sockets open to the portal at most (requests beyond wait for one). */
  readonly maxSockets: number;
  /** A request not answered within this long fails (and may be tried again). */
  readonly requestTimeoutMs: number;
  /** Tries per request, the first included. */
  readonly attempts: number;
}

export class PortalHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Counts what was tried again, by reason, for the report. */
export type RetryCounter = (reason: string) => void;

/** Network errors worth another try: the connection went away or never came, or the deadline passed. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_SOCKET']);

export class PortalClient {
  private readonly agent: http.Agent;
  private readonly url: URL;

  constructor(
    base: string,
    private readonly options: PortalClientOptions,
    private readonly retried: RetryCounter,
  ) {
    this.url = new URL(base);
    // An idle socket is dropped by us well before the portal would drop it (it announces its own
    // keep-alive timeout; Node's agent also keeps 1 s under that announcement).
    this.agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets, maxFreeSockets: options.maxSockets, timeout: 15_000, scheduling: 'lifo' });
  }

  register(clientId: string, publicKey: string): Promise<ClientRegistration> {
    return this.request('POST', '/admin/clients', { id: clientId, public_key: publicKey });
  }

  /** The portal waits up to 10 s for the gateway's answer and says 504 when none came: tried again. */
  requestFlow(clientId: string, resourceId: string, publicKey: string): Promise<FlowGrant> {
    return this.request('POST', `/clients/${clientId}/flows`, { resource_id: resourceId, public_key: publicKey });
  }

  candidates(clientId: string, after: number, waitMs: number): Promise<{ events: CandidateEvent[]; next: number }> {
    return this.request('GET', `/clients/${clientId}/candidates?after=${after}&wait_ms=${waitMs}`, undefined, waitMs);
  }

  async sendCandidates(clientId: string, gatewayId: string, candidates: readonly string[], invalidated: boolean): Promise<void> {
    await this.request('POST', `/clients/${clientId}/${invalidated ? 'invalidate_candidates' : 'candidates'}`, { candidates, gateway_id: gatewayId });
  }

  close(): void {
    this.agent.destroy();
  }

  private async request<T>(method: string, path: string, body: unknown, extraWaitMs = 0): Promise<T> {
    let delay = 200;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(method, path, body, this.options.requestTimeoutMs + extraWaitMs);
      } catch (error) {
        const reason = transientReason(error);
        if (reason === undefined || attempt >= this.options.attempts) throw error;
        this.retried(`${method} ${routeOf(path)}: ${reason}`);
        // Exponential backoff with jitter, so the clients that failed together do not come back together.
        await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  private once<T>(method: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const request = http.request(
        {
          agent: this.agent,
          host: this.url.hostname,
          port: this.url.port,
          method,
          path,
          headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', reject);
          response.on('end', () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch {
              parsed = text;
            }
            const status = response.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              const reason = typeof parsed === 'object' && parsed !== null && 'error' in parsed ? String((parsed as { error: unknown }).error) : text;
              reject(new PortalHttpError(status, `${method} ${routeOf(path)}: ${status} ${reason}`));
              return;
            }
            resolve(parsed as T);
          });
        },
      );
      const timer = setTimeout(() => request.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
      request.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.end(payload);
    });
  }
}

/** Why an error is worth another try, or undefined when it is not. */
export function transientReason(error: unknown): string | undefined {
  if (error instanceof PortalHttpError) return error.status === 502 || error.status === 503 || error.status === 504 ? String(error.status) : undefined;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return code;
  if (error instanceof Error && error.message === 'socket hang up') return 'socket hang up';
  return undefined;
}

/** /clients/<id>/flows -> /clients/:id/flows, so reasons can be counted. */
function routeOf(path: string): string {
  return path.split('?')[0]!.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, ':id');
}
