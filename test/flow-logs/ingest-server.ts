// An in-process ingest server for the uploader tests: HTTPS with a throw-away self-signed certificate for
// 127.0.0.1, HTTP/2 with HTTP/1.1 fallback (or HTTP/1.1 only, or cleartext), answering from a script.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let certificate: { key: string; cert: string } | undefined;

/** A self-signed certificate for IP 127.0.0.1 (made once per process with openssl). */
export function testCertificate(): { key: string; cert: string } {
  if (certificate !== undefined) return certificate;
  const dir = mkdtempSync(join(tmpdir(), 'fz-ingest-cert-'));
  try {
    const result = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr}`);
    certificate = { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
    return certificate;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly httpVersion: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  readonly flows: Record<string, unknown>[];
}

export interface Answer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  /** Never answer (the client times out or goes away). */
  readonly hang?: boolean;
}

export type Script = (request: ReceivedRequest, index: number) => Answer;

export class IngestServer {
  readonly requests: ReceivedRequest[] = [];
  /** Flows of the requests answered 2xx. */
  readonly stored: Record<string, unknown>[] = [];
  private server!: http.Server | https.Server | http2.Http2SecureServer;
  private readonly hanging: http.ServerResponse[] = [];
  private readonly sessions: http2.ServerHttp2Session[] = [];
  private readonly sockets: import('node:net').Socket[] = [];
  port = 0;

  constructor(
    private script: Script,
    private readonly mode: 'h2' | 'h1' | 'cleartext' = 'h2',
  ) {}

  setScript(script: Script): void {
    this.script = script;
  }

  get origin(): string {
    return `${this.mode === 'cleartext' ? 'http' : 'https'}://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<this> {
    const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        let flows: Record<string, unknown>[] = [];
        try {
          flows = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { flow_logs: Record<string, unknown>[] }).flow_logs;
        } catch {
          // Recorded as an empty request.
        }
        const request: ReceivedRequest = {
          method: req.method ?? '',
          path: req.url ?? '',
          httpVersion: req.httpVersion,
          authorization: req.headers['authorization'] as string | undefined,
          contentType: req.headers['content-type'] as string | undefined,
          flows,
        };
        this.requests.push(request);
        const answer = this.script(request, this.requests.length - 1);
        if (answer.hang) {
          this.hanging.push(res as http.ServerResponse);
          return;
        }
        if (answer.status >= 200 && answer.status < 300) this.stored.push(...flows);
        const out = res as http.ServerResponse;
        out.writeHead(answer.status, answer.headers ?? {});
        out.end('{}');
      });
    };
    const { key, cert } = this.mode === 'cleartext' ? { key: '', cert: '' } : testCertificate();
    this.server =
      this.mode === 'h2'
        ? http2.createSecureServer({ key, cert, allowHTTP1: true }, handler)
        : this.mode === 'h1'
          ? https.createServer({ key, cert }, handler)
          : http.createServer(handler);
    this.server.on('session', (session: http2.ServerHttp2Session) => this.sessions.push(session));
    this.server.on('connection', (socket: import('node:net').Socket) => this.sockets.push(socket));
    this.server.on('secureConnection', (socket: import('node:net').Socket) => this.sockets.push(socket));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
