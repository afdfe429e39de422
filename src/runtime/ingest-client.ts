// The flow-log ingest connection (reference: rust/libs/flow-log-upload/src/ingest.rs and http-client at
// gateway-1.6.0): one connection to the ingest host, HTTP/2 when the server offers it by ALPN, HTTP/1.1
// otherwise, over a socket the caller may supply (ours bypass the tunnel routes). Built on node:http2 and
// node:https; no HTTP is written by hand.
//
// Beyond the reference (which speaks only HTTPS to port 443): an `http:` API URL is spoken in cleartext
// HTTP/1.1 (the development portal), and the URL's port is honoured. Redirects follow the reference's rules:
// HTTPS only, to port 443 (or a port the caller allows, for tests), no credentials, fragment dropped.

import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { INGEST_PATH, UPLOAD_MAX_REDIRECTS, UPLOAD_REQUEST_TIMEOUT_MS } from '../flow-logs/index.ts';

export interface IngestResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

export interface IngestClientOptions {
  /** A connected TCP socket to `host:port` (marked to bypass the tunnel); node's own connect when absent. */
  readonly createSocket?: (host: string, port: number) => Promise<Socket>;
  /** Extra trusted CAs (tests). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  readonly requestTimeoutMs?: number;
  /** Ports a redirect may point at (the reference: 443 only). */
  readonly redirectPorts?: readonly number[];
}

/** `<base>/ingestion/flow_logs`, resolved as a URL join (the reference's `Url::join` with an absolute path). */
export function ingestEndpoint(baseUrl: string): URL {
  const base = new URL(baseUrl);
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new Error(`Invalid flow-log API URL \`${baseUrl}\``);
  return new URL(INGEST_PATH, base);
}

/** Seconds of a numeric `Retry-After`, else undefined (the reference reads only the seconds form). */
export function retryAfterMs(headers: IngestResponse['headers']): number | undefined {
  const value = headers['retry-after'];
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return Number(text.trim()) * 1000;
}

/** Where a redirect leads, or an error by the reference's rules. */
export function redirectUrl(current: URL, location: string | undefined, allowedPorts: readonly number[] = [443]): URL {
  if (location === undefined) throw new Error('Flow-log upload redirect has no Location header');
  let next: URL;
  try {
    next = new URL(location, current);
  } catch {
    throw new Error('Invalid flow-log upload redirect URL');
  }
  if (next.protocol !== 'https:') throw new Error('Flow-log upload redirect must use HTTPS');
  const port = next.port === '' ? 443 : Number(next.port);
  if (!allowedPorts.includes(port)) throw new Error('Flow-log upload redirect must use port 443');
  if (next.username !== '' || next.password !== '') throw new Error('Flow-log upload redirect must not contain credentials');
  next.hash = '';
  return next;
}

type Transport =
  | { readonly kind: 'h2'; readonly session: http2.ClientHttp2Session }
  | { readonly kind: 'h1'; readonly agent: http.Agent; readonly secure: boolean };

export class IngestClient {
  private redirects = 0;
  private closedFlag = false;

  private constructor(
    private url: URL,
    private transport: Transport,
    private readonly options: IngestClientOptions,
  ) {}

  static async connect(url: URL, options: IngestClientOptions = {}): Promise<IngestClient> {
    return new IngestClient(url, await openTransport(url, options), options);
  }

  get endpoint(): URL {
    return this.url;
  }

  /** HTTP/2 or HTTP/1.1 (what ALPN chose). */
  get protocol(): 'h2' | 'http/1.1' {
    return this.transport.kind === 'h2' ? 'h2' : 'http/1.1';
  }

  /** The connection is gone: the client must be replaced (a new pass reconnects). */
  get isClosed(): boolean {
    if (this.closedFlag) return true;
    return this.transport.kind === 'h2' && (this.transport.session.closed || this.transport.session.destroyed);
  }

  async send(token: string, body: string): Promise<IngestResponse> {
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const timeout = this.options.requestTimeoutMs ?? UPLOAD_REQUEST_TIMEOUT_MS;
    const transport = this.transport;
    return transport.kind === 'h2' ? h2Request(transport.session, this.url, headers, body, timeout) : h1Request(transport, this.url, headers, body, timeout);
  }

  /** Follows a 301/302/307/308 answer: the next `send` goes to the new URL (a new connection for a new host). */
  async followRedirect(response: IngestResponse): Promise<void> {
    if (this.redirects >= UPLOAD_MAX_REDIRECTS) throw new Error(`Flow-log upload exceeded ${UPLOAD_MAX_REDIRECTS} redirects`);
    const location = response.headers['location'];
    const next = redirectUrl(this.url, Array.isArray(location) ? location[0] : location, this.options.redirectPorts);
    if (next.host !== this.url.host || next.protocol !== this.url.protocol) {
      const transport = await openTransport(next, this.options);
      closeTransport(this.transport);
      this.transport = transport;
    }
    this.url = next;
    this.redirects++;
  }

  close(): void {
    this.closedFlag = true;
    closeTransport(this.transport);
  }
}

function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

async function openTransport(url: URL, options: IngestClientOptions): Promise<Transport> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = portOf(url);
  const timeout = options.requestTimeoutMs ?? UPLOAD_REQUEST_TIMEOUT_MS;
  if (url.protocol === 'http:') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    if (options.createSocket !== undefined) useSocketFactory(agent, () => options.createSocket!(host, port));
    return { kind: 'h1', agent, secure: false };
  }
  const raw = options.createSocket === undefined ? undefined : await withTimeout(options.createSocket(host, port), timeout, 'connect');
  const socket = await withTimeout(
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        host,
        port,
        servername: isIpLiteral(host) ? undefined : host,
        ALPNProtocols: ['h2', 'http/1.1'],
        ...(options.ca === undefined ? {} : { ca: [...tls.rootCertificates, ...(Array.isArray(options.ca) ? options.ca : [options.ca])] as (string | Buffer)[] }),
        ...(raw === undefined ? {} : { socket: raw }),
      });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    }),
    timeout,
    'TLS handshake',
  );
  if (socket.alpnProtocol === 'h2') {
    const session = http2.connect(url.origin, { createConnection: () => socket });
    session.on('error', () => undefined);
    session.unref();
    return { kind: 'h2', session };
  }
  // HTTP/1.1: the first request takes the socket the handshake opened; later ones (after it closed) a new one.
  let first: tls.TLSSocket | undefined = socket;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ...(options.ca === undefined ? {} : { ca: [...tls.rootCertificates, ...(Array.isArray(options.ca) ? options.ca : [options.ca])] as (string | Buffer)[] }) });
  useSocketFactory(agent, async () => {
    if (first !== undefined && !first.destroyed) {
      const s = first;
      first = undefined;
      return s;
    }
    const rawNext = options.createSocket === undefined ? undefined : await options.createSocket(host, port);
    return new Promise<Socket>((resolve, reject) => {
      const s = tls.connect({
        host,
        port,
        servername: isIpLiteral(host) ? undefined : host,
        ALPNProtocols: ['http/1.1'],
        ...(options.ca === undefined ? {} : { ca: [...tls.rootCertificates, ...(Array.isArray(options.ca) ? options.ca : [options.ca])] as (string | Buffer)[] }),
        ...(rawNext === undefined ? {} : { socket: rawNext }),
      });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  });
  return { kind: 'h1', agent, secure: true };
}

/** Makes an agent open its connections through `open` (asynchronously, as node's agents allow). */
function useSocketFactory(agent: http.Agent, open: () => Promise<Socket>): void {
  (agent as unknown as { createConnection: (options: unknown, callback: (error: Error | null, socket?: Socket) => void) => undefined }).createConnection = (_options, callback) => {
    open().then(
      (socket) => callback(null, socket),
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
    );
    return undefined;
  };
}

function closeTransport(transport: Transport): void {
  if (transport.kind === 'h2') transport.session.close();
  else transport.agent.destroy();
}

function h2Request(session: http2.ClientHttp2Session, url: URL, headers: Record<string, string>, body: string, timeoutMs: number): Promise<IngestResponse> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({ ':method': 'POST', ':path': `${url.pathname}${url.search}`, ':authority': url.host, ...headers, 'content-length': String(Buffer.byteLength(body)) });
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), timeoutMs);
    let status = 0;
    let responseHeaders: IngestResponse['headers'] = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[':status']);
      responseHeaders = h as IngestResponse['headers'];
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      clearTimeout(timer);
      if (status === 0) reject(new Error('HTTP/2 stream ended without a response'));
      else resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks).toString('utf8') });
    });
    stream.on('close', () => {
      clearTimeout(timer);
      if (status === 0) reject(new Error(`HTTP/2 stream closed (code ${stream.rstCode})`));
    });
    stream.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    stream.end(body);
  });
}

function h1Request(transport: { readonly agent: http.Agent; readonly secure: boolean }, url: URL, headers: Record<string, string>, body: string, timeoutMs: number): Promise<IngestResponse> {
  return new Promise((resolve, reject) => {
    const request = (transport.secure ? https : http).request(url, {
      method: 'POST',
      agent: transport.agent,
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      timeout: timeoutMs,
    });
    request.on('timeout', () => request.destroy(new Error('Flow-log upload request timed out')));
    request.on('error', reject);
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.end(body);
  });
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
