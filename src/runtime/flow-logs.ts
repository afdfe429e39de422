// Flow logs in the running gateway (spec gateway-1.6 §4.3): the tracker fed by the event loop, its reports
// logged on the `flow_logs` target and handed to the spool writer, and the upload settings of `init` passed
// on to the uploader.
//
// Tracking is on when the portal's `init` asks for uploads (`upload_interval_secs > 0`) or `--flow-logs`
// forces it (as 1.6.0 decides in its event loop). While it is off the policy core has no flow observer and
// the data path pays nothing. Each authorization's ingest token reaches the tracker (attribution of its
// flows) and, when it allows uploads, the spool (the writer writes only those).

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import type { FlowObserver } from '../gateway/index.ts';
import { DEFAULT_SPOOL_DIR, FlowTracker, logFlowRecord } from '../flow-logs/index.ts';
import type { IngestToken } from '../flow-logs/index.ts';
import { createLogger } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import { FlowLogUploader } from './flow-log-uploader.ts';
import { FlowLogWriter } from './flow-log-writer.ts';
import { connectMarkedTcp } from './native.ts';

/** `init.flow_logs` as the portal module gives it. */
export interface FlowLogsInit {
  readonly apiUrl: string;
  readonly uploadIntervalSecs: number;
  readonly uploadBatchSize: number;
}

/** Where `init`'s upload settings go (the uploader persists them as `upload.json`); undefined = uploads off. */
export interface UploadSettingsSink {
  configure(settings: FlowLogsInit | undefined): void;
}

/** What the spool writer takes (FlowLogWriter). */
export type ReportSink = Pick<FlowLogWriter, 'writeToken' | 'writeRecord'>;

/** The policy core's side: it loads the observer with each packet it lets through (see GatewayState). */
export interface FlowObservable {
  observeFlows(observer: FlowObserver | undefined): void;
}

export interface FlowLogsOptions {
  /** `--flow-logs` / `FIREZONE_FLOW_LOGS`: track (and log) whatever the portal says. */
  readonly forced: boolean;
  /** Monotonic ms now, and the wall clock (unix ms) at that instant. */
  readonly now: number;
  readonly unixMs: number;
  /** The spool writer; without one nothing is spooled. */
  readonly writer?: ReportSink | undefined;
  readonly uploads?: UploadSettingsSink | undefined;
  /** The `flow_logs` target the reports are logged on. */
  readonly logger?: Logger;
  readonly trackerLogger?: Logger;
  readonly maxFlowsPerClient?: number;
  readonly maxFlows?: number;
}

export interface FlowLogsStats {
  /** Reports logged / handed to the writer. */
  reports: number;
}

export class FlowLogs {
  readonly tracker: FlowTracker;
  readonly stats: FlowLogsStats = { reports: 0 };
  private readonly forced: boolean;
  private readonly writer: ReportSink | undefined;
  private readonly uploads: UploadSettingsSink | undefined;
  private readonly logger: Logger;
  private readonly observables: FlowObservable[] = [];

  constructor(options: FlowLogsOptions) {
    this.forced = options.forced;
    this.writer = options.writer;
    this.uploads = options.uploads;
    this.logger = options.logger ?? createLogger('flow_logs');
    this.tracker = new FlowTracker({
      now: options.now,
      unixMs: options.unixMs,
      ...(options.trackerLogger === undefined ? {} : { logger: options.trackerLogger }),
      ...(options.maxFlows === undefined ? {} : { maxFlows: options.maxFlows }),
      ...(options.maxFlowsPerClient === undefined ? {} : { maxFlowsPerClient: options.maxFlowsPerClient }),
    });
    this.setEnabled(this.forced);
  }

  get enabled(): boolean {
    return this.tracker.enabled;
  }

  /** The policy core that attributes packets; it gets the tracker's tuple while tracking is on. */
  attach(state: FlowObservable): void {
    this.observables.push(state);
    state.observeFlows(this.enabled ? this.tracker.packet : undefined);
  }

  /** `init`: tracking on iff the portal asks for uploads or `--flow-logs`; the upload settings go to the uploader. */
  init(config: FlowLogsInit | undefined): void {
    const uploads = config !== undefined && config.uploadIntervalSecs > 0;
    this.setEnabled(this.forced || uploads);
    this.uploads?.configure(uploads ? config : undefined);
  }

  /** `create_authorization`: the authorization's ingest token (attribution; spooled when it allows uploads). */
  authorize(clientId: string, resourceId: string, token: IngestToken | undefined): void {
    if (token === undefined) {
      this.tracker.revoke(clientId, resourceId);
      return;
    }
    this.writer?.writeToken(token);
    this.tracker.authorize(clientId, resourceId, token);
  }

  revoke(clientId: string, resourceId: string): void {
    this.tracker.revoke(clientId, resourceId);
  }

  removeClient(clientId: string): void {
    this.tracker.removeClient(clientId);
  }

  /** `init`'s authorizations: for every listed client, the resources not listed lose their token. */
  retainAuthorizations(authorizations: readonly { readonly clientId: string; readonly resourceId: string }[]): void {
    const keep = new Map<string, Set<string>>();
    for (const { clientId, resourceId } of authorizations) {
      const cid = clientId.toLowerCase();
      let set = keep.get(cid);
      if (set === undefined) keep.set(cid, (set = new Set()));
      set.add(resourceId.toLowerCase());
    }
    this.tracker.retainAuthorizations(keep);
  }

  /** A client -> resource packet the policy let through (its tuple already loaded by the policy core). */
  clientToResource(clientId: string, resourceId: string, domain: string | undefined, from: SocketAddr, to: SocketAddr, now: number): void {
    this.tracker.clientToResource(clientId, resourceId, domain, from, to, now);
  }

  /** A resource -> client packet handed to the client's tunnel (tuple loaded by the policy core). */
  resourceToClient(clientId: string, resourceId: string, now: number): void {
    this.tracker.resourceToClient(clientId, resourceId, now);
  }

  handleTimeout(now: number): void {
    this.tracker.handleTimeout(now);
  }

  pollTimeout(): number | undefined {
    return this.tracker.pollTimeout();
  }

  /** Logs and spools the reports produced since the last call (after every input of the event loop). */
  flush(): void {
    for (let record = this.tracker.pollRecord(); record !== undefined; record = this.tracker.pollRecord()) {
      this.stats.reports++;
      logFlowRecord(this.logger, record);
      this.writer?.writeRecord(record);
    }
  }

  /** Shutdown: every open flow is reported completed now. */
  closeAll(now: number): void {
    this.tracker.closeAll(now);
    this.flush();
  }

  private setEnabled(enabled: boolean): void {
    this.tracker.setEnabled(enabled);
    for (const state of this.observables) state.observeFlows(enabled ? this.tracker.packet : undefined);
  }
}

export interface StartedFlowLogs {
  readonly flowLogs: FlowLogs;
  readonly uploader: FlowLogUploader;
  readonly writer: FlowLogWriter;
  /** Shutdown: waits (bounded) for the writer to put the last reports on disk, then stops the uploader. */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * Flow logs of the running gateway: the spool under `root` (`FZ_FLOW_LOGS_DIR` overrides the reference's
 * /var/lib/firezone/flow_logs, for labs running several gateways), the writer and the uploader, whose
 * connections carry our mark so they bypass the tunnel routes.
 */
export function startFlowLogs(options: { readonly forced: boolean; readonly now: number; readonly mark?: number; readonly env?: NodeJS.ProcessEnv }): StartedFlowLogs {
  const env = options.env ?? process.env;
  const root = env['FZ_FLOW_LOGS_DIR'] || DEFAULT_SPOOL_DIR;
  const writer = new FlowLogWriter({ root });
  const mark = options.mark;
  const uploader = new FlowLogUploader({
    root,
    client: mark === undefined ? {} : { createSocket: (host, port) => connectBypassingTunnel(host, port, mark) },
  });
  const flowLogs = new FlowLogs({ forced: options.forced, now: options.now, unixMs: Date.now(), writer, uploads: uploader });
  uploader.start();
  return {
    flowLogs,
    uploader,
    writer,
    async close(timeoutMs = 2_000): Promise<void> {
      await writer.drain(timeoutMs);
      writer.close();
      await uploader.stop();
    },
  };
}

async function connectBypassingTunnel(host: string, port: number, mark: number): Promise<Socket> {
  const { address } = isIP(host) === 0 ? await lookup(host) : { address: host };
  return new Promise((resolve, reject) => {
    const socket = connectMarkedTcp({ host: address, port, mark });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
