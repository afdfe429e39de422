// The flow-log uploader (reference: rust/libs/flow-log-upload at gateway-1.6.0; spec gateway-1.6 §4.3).
//
// `init`'s settings are persisted as `<root>/upload.json` ({"api_url","interval","batch_size"}; interval 0
// removes it = uploads off), so an uploader started later (a restart) finds them. Each pass: prune the
// authorization directories whose token expired or is missing, then for each directory POST up to
// `batch_size` of its oldest reports to `<api_url>/ingestion/flow_logs` as `{"flow_logs": [payload, …]}`
// with `Authorization: Bearer <token>`, one batch per directory per pass. A `.start` whose `.end` is on disk is
// not sent (the end report supersedes it; both files go when it lands); a corrupt report is deleted.
//
// Answers: 2xx deletes the batch's files (nothing is deleted otherwise, so a crash or restart mid-batch sends
// it again, and the portal upserts by flow identity); 413 splits the batch in halves; 429 waits `Retry-After`
// (or 1 s) and retries without spending the retry budget; 408/5xx and transport failures retry with
// exponential backoff for up to 5 minutes, then the batch waits for the next pass; 301/302/307/308 are
// followed (HTTPS only); anything else keeps the batch for the next pass. The next pass comes after 1 s while
// a backlog remains, else after the interval; 30 s while uploads are off.
//
// Everything here is asynchronous file and network IO (libuv's pool, the ingest connection); the event loop
// only calls `configure` and `nudge`, which return at once. A failed write of `upload.json` (full disk,
// read-only directory) keeps the settings in memory and is retried each pass.

import { readFile, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  classifyReportFile,
  DEFAULT_UPLOAD_BATCH_SIZE,
  END_SUFFIX,
  MAX_UPLOAD_BATCH_SIZE,
  parseReport,
  SPOOL_PRUNE_MIN_AGE_MS,
  START_SUFFIX,
  TOKEN_FILE,
  tokenExpiry,
  UPLOAD_BACKOFF_INITIAL_MS,
  UPLOAD_BACKOFF_MAX_MS,
  UPLOAD_BACKOFF_MULTIPLIER,
  UPLOAD_BACKOFF_RANDOMIZATION,
  UPLOAD_CATCHUP_MS,
  UPLOAD_CONFIG_FILE,
  UPLOAD_DISABLED_POLL_MS,
  UPLOAD_MAX_RETRY_MS,
} from '../flow-logs/index.ts';
import { createLogger, errorChain } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import type { FlowLogsInit, UploadSettingsSink } from './flow-logs.ts';
import { IngestClient, ingestEndpoint, retryAfterMs } from './ingest-client.ts';
import type { IngestClientOptions, IngestResponse } from './ingest-client.ts';
import { ensurePrivateDir, errorCode, listDir, writePrivateFileAtomic } from './spool-files.ts';

/** `upload.json` as the reference writes it. */
export interface UploadConfig {
  readonly api_url: string;
  /** Seconds. */
  readonly interval: number;
  readonly batch_size: number;
}

export interface FlowLogUploaderOptions {
  readonly root: string;
  readonly logger?: Logger;
  readonly client?: IngestClientOptions;
  /** Timing (tests shorten them); the reference's values by default. */
  readonly catchupMs?: number;
  readonly disabledPollMs?: number;
  readonly maxRetryMs?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** Wall clock, unix ms (token expiry, directory age). */
  readonly wallClock?: () => number;
  /** Random in [0, 1) for the backoff's jitter. */
  readonly random?: () => number;
}

export interface FlowLogUploaderStats {
  passes: number;
  requests: number;
  /** Flows the portal stored (their files deleted). */
  uploaded: number;
  /** Batches split after a 413. */
  splits: number;
  retries: number;
  rateLimited: number;
  /** Batches left for a later pass (retries exhausted, rejected, connection lost). */
  deferred: number;
  corruptDeleted: number;
  pruned: number;
  configWriteFailures: number;
}

interface Pending {
  readonly payload: unknown;
  /** Deleted once the flow landed: the report sent, and for an end report its start. */
  readonly files: readonly string[];
}

type Outcome = 'stored' | 'spooled';

export const enum UploadAction {
  Delete,
  Partition,
  RateLimited,
  Retry,
  Redirect,
  Defer,
}

export function classifyStatus(status: number): UploadAction {
  if (status >= 200 && status < 300) return UploadAction.Delete;
  if (status === 413) return UploadAction.Partition;
  if (status === 429) return UploadAction.RateLimited;
  if (status === 408 || (status >= 500 && status < 600)) return UploadAction.Retry;
  if (status === 301 || status === 302 || status === 307 || status === 308) return UploadAction.Redirect;
  return UploadAction.Defer;
}

export function clampBatchSize(batchSize: number): number {
  if (!Number.isFinite(batchSize) || batchSize <= 0) return DEFAULT_UPLOAD_BATCH_SIZE;
  return Math.min(Math.floor(batchSize), MAX_UPLOAD_BATCH_SIZE);
}

export class FlowLogUploader implements UploadSettingsSink {
  readonly stats: FlowLogUploaderStats = {
    passes: 0,
    requests: 0,
    uploaded: 0,
    splits: 0,
    retries: 0,
    rateLimited: 0,
    deferred: 0,
    corruptDeleted: 0,
    pruned: 0,
    configWriteFailures: 0,
  };
  private readonly root: string;
  private readonly logger: Logger;
  private readonly wallClock: () => number;
  private readonly random: () => number;
  /** Settings from `init` not yet persisted (null: remove the file); undefined when nothing is pending. */
  private unpersisted: UploadConfig | null | undefined;
  /** What this process was told last (authoritative over the file while it runs). */
  private current: UploadConfig | null | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private nudged = false;
  private stopped = true;
  /** `stop` was called: waits end early, the pass under way ends after its current request. */
  private halting = false;

  constructor(private readonly options: FlowLogUploaderOptions) {
    this.root = options.root;
    this.logger = options.logger ?? createLogger('flow_log_upload');
    this.wallClock = options.wallClock ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  /** `init`'s settings (undefined: uploads off). Persisted in the background; a pass follows. */
  configure(settings: FlowLogsInit | undefined): void {
    const config: UploadConfig | null =
      settings === undefined || settings.uploadIntervalSecs <= 0
        ? null
        : { api_url: settings.apiUrl, interval: settings.uploadIntervalSecs, batch_size: clampBatchSize(settings.uploadBatchSize) };
    this.current = config;
    this.unpersisted = config;
    this.nudge();
  }

  /** Starts the loop: prune, then a first pass at once. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.halting = false;
    this.logger.info('Flow-log uploader started');
    this.running = this.loop();
  }

  /** Runs a pass now instead of waiting out the interval. */
  nudge(): void {
    this.nudged = true;
    clearTimeout(this.timer);
    this.wake?.();
  }

  /** Ends the loop once the pass under way (if any) is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halting = true;
    this.nudge();
    await this.running;
  }

  /** One pass; returns how long to wait before the next. Public for tests. */
  async pass(): Promise<number> {
    this.stats.passes++;
    await this.persistConfig();
    let config: UploadConfig | undefined;
    try {
      config = this.current === undefined ? await this.readConfig() : (this.current ?? undefined);
    } catch (error) {
      this.logger.error('Failed to load flow-log upload config', { error: errorChain(error) });
      return this.options.disabledPollMs ?? UPLOAD_DISABLED_POLL_MS;
    }
    if (config === undefined) return this.options.disabledPollMs ?? UPLOAD_DISABLED_POLL_MS;
    const interval = config.interval * 1000;
    try {
      return (await this.uploadPending(config)) ? (this.options.catchupMs ?? UPLOAD_CATCHUP_MS) : interval;
    } catch (error) {
      this.logger.error('Flow-log upload pass failed', { error: errorChain(error) });
      return interval;
    }
  }

  /**
   * Removes authorization directories whose token expired or is missing (older than a minute: a token may be
   * on its way), since nothing in them can ever be uploaded. An unreadable token keeps its directory.
   */
  async prune(): Promise<void> {
    const now = this.wallClock();
    for (const dir of await this.authorizationDirs()) {
      if (!(await this.shouldPrune(dir, now))) continue;
      try {
        await rm(dir, { recursive: true, force: true });
        this.stats.pruned++;
        this.logger.debug('Pruned stale flow-log spool directory', { dir });
      } catch (error) {
        this.logger.warn('Failed to prune flow-log spool directory', { dir, error: errorChain(error) });
      }
    }
  }

  // ---- The loop ----------------------------------------------------------------------------------------------

  private async loop(): Promise<void> {
    try {
      await this.prune();
    } catch (error) {
      this.logger.warn('Failed to walk flow-log spool', { error: errorChain(error) });
    }
    while (!this.stopped) {
      this.nudged = false;
      const delay = await this.pass();
      if (this.stopped) break;
      if (this.nudged) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, delay);
        this.timer.unref();
      });
      this.wake = undefined;
    }
    this.logger.info('Flow-log uploader stopped');
  }

  private async persistConfig(): Promise<void> {
    const config = this.unpersisted;
    if (config === undefined) return;
    const path = join(this.root, UPLOAD_CONFIG_FILE);
    try {
      if (config === null) {
        await unlink(path).catch((error: unknown) => {
          if (errorCode(error) !== 'ENOENT') throw error;
        });
      } else {
        await ensurePrivateDir(this.root);
        await writePrivateFileAtomic(path, JSON.stringify(config));
      }
      if (this.unpersisted === config) this.unpersisted = undefined;
    } catch (error) {
      this.stats.configWriteFailures++;
      this.logger.warn('Failed to persist flow-log upload config; keeping it in memory', { error: errorChain(error) });
    }
  }

  private async readConfig(): Promise<UploadConfig | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.root, UPLOAD_CONFIG_FILE), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    const value = JSON.parse(text) as Partial<UploadConfig>;
    if (typeof value.api_url !== 'string' || typeof value.interval !== 'number' || !Number.isInteger(value.interval) || value.interval < 0) {
      throw new Error('Failed to parse upload config');
    }
    return { api_url: value.api_url, interval: value.interval, batch_size: typeof value.batch_size === 'number' ? value.batch_size : DEFAULT_UPLOAD_BATCH_SIZE };
  }

  /** One batch per authorization directory; true when a backlog remains. */
  private async uploadPending(config: UploadConfig): Promise<boolean> {
    const url = ingestEndpoint(config.api_url);
    await this.prune();
    let client: IngestClient | undefined;
    let backlog = false;
    try {
      for (const dir of await this.authorizationDirs()) {
        if (this.halting) return backlog;
        let collected: { token: string; batch: Pending[]; backlog: boolean } | undefined;
        try {
          collected = await this.collectBatch(dir, clampBatchSize(config.batch_size));
        } catch (error) {
          this.logger.warn('Failed to upload flow-log batch', { dir, error: errorChain(error) });
          continue;
        }
        if (collected === undefined) continue;
        if (client === undefined) {
          try {
            client = await IngestClient.connect(url, this.options.client);
          } catch (error) {
            // Routine while the portal is unreachable: the next pass tries again.
            this.logger.info('Failed to open flow-log ingest connection', { error: errorChain(error) });
            return false;
          }
        }
        if (client.isClosed) return true;
        try {
          const outcome = await this.submit(client, collected.token, collected.batch);
          if (collected.backlog && outcome === 'stored') backlog = true;
        } catch (error) {
          this.logger.warn('Failed to upload flow-log batch', { dir, error: errorChain(error) });
        }
      }
    } finally {
      client?.close();
    }
    return backlog;
  }

  private async authorizationDirs(): Promise<string[]> {
    const dirs: string[] = [];
    for (const role of await listDir(this.root)) {
      const rolePath = join(this.root, role);
      if (!(await isDirectory(rolePath))) continue;
      for (const authorization of await listDir(rolePath)) {
        const path = join(rolePath, authorization);
        if (await isDirectory(path)) dirs.push(path);
      }
    }
    return dirs;
  }

  private async shouldPrune(dir: string, now: number): Promise<boolean> {
    let token: string;
    try {
      token = await readFile(join(dir, TOKEN_FILE), 'utf8');
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') {
        this.logger.warn('Failed to read ingest token', { dir, error: errorChain(error) });
        return false;
      }
      const modified = await stat(dir).then(
        (s) => s.mtimeMs,
        () => undefined,
      );
      if (modified === undefined || now - modified < SPOOL_PRUNE_MIN_AGE_MS) return false;
      this.logger.error('Flow-log spool directory has no ingest token', { dir });
      return true;
    }
    const exp = tokenExpiry(token);
    if (exp === undefined) {
      this.logger.error('Failed to decode ingest token expiry', { dir });
      return false;
    }
    return exp <= Math.floor(now / 1000);
  }

  /** The token and up to `batchSize` flows, oldest first; undefined when there is nothing to send. */
  private async collectBatch(dir: string, batchSize: number): Promise<{ token: string; batch: Pending[]; backlog: boolean } | undefined> {
    let token: string;
    try {
      token = (await readFile(join(dir, TOKEN_FILE), 'utf8')).trim();
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    const names = (await readdir(dir)).filter((name) => classifyReportFile(name) !== undefined).sort();
    const present = new Set(names);
    const batch: Pending[] = [];
    let backlog = false;
    for (const name of names) {
      if (batch.length === batchSize) {
        backlog = true;
        break;
      }
      const kind = classifyReportFile(name)!;
      if (kind.kind === 'start' && present.has(`${kind.stem}${END_SUFFIX}`)) continue;
      const path = join(dir, name);
      let payload: unknown;
      try {
        payload = await this.readReport(path);
      } catch (error) {
        // One unreadable report must not block the rest; it stays for a later pass.
        this.logger.warn('Failed to load flow-log report', { path, error: errorChain(error) });
        continue;
      }
      if (payload === undefined) continue;
      batch.push({ payload, files: kind.kind === 'end' ? [path, join(dir, `${kind.stem}${START_SUFFIX}`)] : [path] });
    }
    return batch.length === 0 ? undefined : { token, batch, backlog };
  }

  /** A verified payload; a corrupt report is deleted (it could never be uploaded) and yields undefined. */
  private async readReport(path: string): Promise<unknown> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    const parsed = parseReport(text);
    if (parsed.ok) return parsed.payload;
    this.stats.corruptDeleted++;
    this.logger.warn('Corrupt flow-log report, deleting', { path, error: parsed.error });
    await unlink(path).catch(() => undefined);
    return undefined;
  }

  private async submit(client: IngestClient, token: string, batch: readonly Pending[]): Promise<Outcome> {
    if (batch.length === 0) return 'stored';
    const body = `{"flow_logs":[${batch.map((flow) => JSON.stringify(flow.payload)).join(',')}]}`;
    const backoff = new Backoff(this.options, this.random);
    for (;;) {
      let response: IngestResponse;
      try {
        this.stats.requests++;
        response = await client.send(token, body);
      } catch (error) {
        this.logger.info('Flow-log upload request failed', { error: errorChain(error) });
        if (client.isClosed || !(await this.sleepBackoff(backoff))) return this.defer();
        continue;
      }
      switch (classifyStatus(response.status)) {
        case UploadAction.Delete:
          await this.deleteAll(batch);
          this.stats.uploaded += batch.length;
          this.logger.debug('Uploaded flow-log batch', { flows: batch.length });
          return 'stored';
        case UploadAction.Partition: {
          if (batch.length <= 1) {
            this.logger.warn('A single flow exceeds the upload size limit; keeping it');
            return this.defer();
          }
          this.stats.splits++;
          const middle = Math.floor(batch.length / 2);
          const first = await this.submit(client, token, batch.slice(0, middle));
          const second = await this.submit(client, token, batch.slice(middle));
          return first === 'stored' && second === 'stored' ? 'stored' : 'spooled';
        }
        case UploadAction.RateLimited: {
          this.stats.rateLimited++;
          const wait = retryAfterMs(response.headers) ?? (this.options.catchupMs ?? UPLOAD_CATCHUP_MS);
          this.logger.debug('Flow-log upload rate-limited; waiting', { ms: wait });
          if (!(await this.sleep(wait))) return this.defer();
          break;
        }
        case UploadAction.Retry:
          this.logger.info('Flow-log upload transient failure; backing off', { status: response.status });
          if (!(await this.sleepBackoff(backoff))) return this.defer();
          break;
        case UploadAction.Redirect:
          await client.followRedirect(response);
          break;
        case UploadAction.Defer:
          this.logger.info('Flow-log upload rejected; keeping the batch', { status: response.status, body: response.body.slice(0, 500) });
          return this.defer();
      }
    }
  }

  private defer(): Outcome {
    this.stats.deferred++;
    return 'spooled';
  }

  private async sleepBackoff(backoff: Backoff): Promise<boolean> {
    const delay = backoff.next();
    if (delay === undefined) return false;
    this.stats.retries++;
    return this.sleep(delay);
  }

  /** Waits `ms`; false when the uploader stopped meanwhile. */
  private async sleep(ms: number): Promise<boolean> {
    if (this.halting) return false;
    await new Promise<void>((resolve) => setTimeout(resolve, ms));
    return !this.halting;
  }

  private async deleteAll(batch: readonly Pending[]): Promise<void> {
    for (const flow of batch) {
      for (const path of flow.files) {
        try {
          await unlink(path);
        } catch (error) {
          // A shipped end lists its start, which may already be gone; a read-only directory keeps the files
          // and the next pass sends them again (the portal upserts by flow identity).
          if (errorCode(error) !== 'ENOENT') this.logger.warn('Failed to delete uploaded flow-log report', { path, error: errorChain(error) });
        }
      }
    }
  }
}

/** The `backoff` crate's exponential backoff as the reference configures it (max interval 60 s, 5 min in all). */
class Backoff {
  private interval: number;
  private elapsed = 0;
  private readonly max: number;
  private readonly budget: number;

  constructor(
    options: Pick<FlowLogUploaderOptions, 'backoffInitialMs' | 'backoffMaxMs' | 'maxRetryMs'>,
    private readonly random: () => number,
  ) {
    this.interval = options.backoffInitialMs ?? UPLOAD_BACKOFF_INITIAL_MS;
    this.max = options.backoffMaxMs ?? UPLOAD_BACKOFF_MAX_MS;
    this.budget = options.maxRetryMs ?? UPLOAD_MAX_RETRY_MS;
  }

  next(): number | undefined {
    if (this.elapsed >= this.budget) return undefined;
    const delta = UPLOAD_BACKOFF_RANDOMIZATION * this.interval;
    const delay = this.interval - delta + this.random() * 2 * delta;
    this.interval = Math.min(this.interval * UPLOAD_BACKOFF_MULTIPLIER, this.max);
    this.elapsed += delay;
    return delay;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
