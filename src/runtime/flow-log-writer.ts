// The flow-log spool writer: persists ingest tokens and flow reports under the spool root for the uploader.
//
// The event loop hands over tokens (on `create_authorization`) and reports (drained from the tracker) and
// returns at once; one asynchronous loop writes them in order, each file atomically (spool-files.ts). Reports
// queue up to `capacity`; beyond that they are dropped, counted and logged (the first and every 1000th), so a
// burst of flows or a stalled disk costs bounded memory and never the packet path. Tokens are never dropped.
//
// Only reports of an authorization whose token allows uploads are written, and only into a directory that
// holds that token (as the reference does). A write that fails because of the environment (full disk,
// read-only or unwritable directory, I/O error) is retried with a growing delay, keeping its place in the
// queue, so nothing already reported is lost while the disk recovers within the queue's bound.

import { access } from 'node:fs/promises';
import { join } from 'node:path';
import {
  recordPayload,
  reportFileName,
  serializeReport,
  spoolRouteOf,
  TOKEN_FILE,
  WRITER_QUEUE_CAPACITY,
  WRITER_RETRY_INITIAL_MS,
  WRITER_RETRY_MAX_MS,
} from '../flow-logs/index.ts';
import type { FlowRecord, IngestToken } from '../flow-logs/index.ts';
import { createLogger, errorChain, Level } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import { ensurePrivateDir, errorCode, isTransientFsError, listDir, removeTemporaries, writePrivateFileAtomic } from './spool-files.ts';

export interface FlowLogWriterOptions {
  readonly root: string;
  readonly capacity?: number;
  readonly logger?: Logger;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
}

export interface FlowLogWriterStats {
  reportsWritten: number;
  tokensWritten: number;
  /** Reports dropped because the queue was full. */
  dropped: number;
  /** Reports not written because no token file exists for their authorization. */
  withoutToken: number;
  /** Writes given up on (errors other than the environment's). */
  failed: number;
  /** Writes retried after a full disk, a read-only directory and the like. */
  retries: number;
}

type Job =
  | { readonly kind: 'token'; readonly dir: string; readonly raw: string }
  | { readonly kind: 'report'; readonly dir: string; readonly record: FlowRecord };

export class FlowLogWriter {
  readonly stats: FlowLogWriterStats = { reportsWritten: 0, tokensWritten: 0, dropped: 0, withoutToken: 0, failed: 0, retries: 0 };
  private readonly root: string;
  private readonly capacity: number;
  private readonly logger: Logger;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly queue: (Job | undefined)[] = [];
  private head = 0;
  private queuedReports = 0;
  private readonly dirsWithToken = new Set<string>();
  private running: Promise<void> | undefined;
  private started = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;

  constructor(options: FlowLogWriterOptions) {
    this.root = options.root;
    this.capacity = options.capacity ?? WRITER_QUEUE_CAPACITY;
    this.logger = options.logger ?? createLogger('flow_log_writer');
    this.retryInitialMs = options.retryInitialMs ?? WRITER_RETRY_INITIAL_MS;
    this.retryMaxMs = options.retryMaxMs ?? WRITER_RETRY_MAX_MS;
  }

  /** Persists an authorization's token where the uploader expects it, if the token allows uploads. */
  writeToken(token: IngestToken): void {
    if (this.closed || token.claims.uploads_enabled !== true) return;
    const route = spoolRouteOf(token.claims);
    if (route === undefined) {
      this.logger.warn('Ingest token has an invalid role or policy_authorization_id; not spooling it');
      return;
    }
    this.enqueue({ kind: 'token', dir: join(this.root, route.role, route.authorizationId), raw: token.raw });
  }

  /** Queues a report for the spool; reports of tokens without uploads are not written. */
  writeRecord(record: FlowRecord): void {
    if (this.closed || record.token.claims.uploads_enabled !== true) return;
    const route = spoolRouteOf(record.token.claims);
    if (route === undefined) return;
    if (this.queuedReports >= this.capacity) {
      this.stats.dropped++;
      if (this.stats.dropped === 1 || this.stats.dropped % 1000 === 0) {
        this.logger.warn('Flow-log writer cannot keep up; dropping reports', { dropped: this.stats.dropped });
      }
      return;
    }
    this.queuedReports++;
    this.enqueue({ kind: 'report', dir: join(this.root, route.role, route.authorizationId), record });
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Resolves once everything queued so far is written (or given up on), or after `timeoutMs`; true if drained. */
  async drain(timeoutMs = Infinity): Promise<boolean> {
    this.kick();
    const running = this.running;
    if (running === undefined) return true;
    if (timeoutMs === Infinity) {
      await running;
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const drained = await Promise.race([running.then(() => true), timeout]);
    clearTimeout(timer);
    return drained;
  }

  /** Stops writing; whatever is still queued is abandoned. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wakeRetry?.();
  }

  private enqueue(job: Job): void {
    this.queue.push(job);
    this.kick();
  }

  private kick(): void {
    if (this.running !== undefined || this.closed || this.head === this.queue.length) return;
    this.running = this.run().finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  private async run(): Promise<void> {
    if (!this.started) {
      this.started = true;
      await this.removeStaleTemporaries();
    }
    let delay = this.retryInitialMs;
    let failing = false;
    while (!this.closed && this.head < this.queue.length) {
      const job = this.queue[this.head]!;
      try {
        await this.perform(job);
      } catch (error) {
        if (isTransientFsError(error)) {
          if (!failing) this.logger.warn('Failed to write to the flow-log spool; retrying', { error: errorChain(error) });
          failing = true;
          this.stats.retries++;
          await this.sleep(delay);
          delay = Math.min(delay * 2, this.retryMaxMs);
          continue;
        }
        this.stats.failed++;
        this.logger.warn('Failed to write flow-log file', { error: errorChain(error) });
      }
      if (failing) this.logger.info('Flow-log spool writable again');
      failing = false;
      delay = this.retryInitialMs;
      this.dequeue();
    }
  }

  private async perform(job: Job): Promise<void> {
    if (job.kind === 'token') {
      await ensurePrivateDir(job.dir);
      await writePrivateFileAtomic(join(job.dir, TOKEN_FILE), job.raw);
      this.dirsWithToken.add(job.dir);
      this.stats.tokensWritten++;
      return;
    }
    if (!(await this.hasToken(job.dir))) {
      this.stats.withoutToken++;
      if (this.logger.enabled(Level.Debug)) this.logger.debug('No ingest token on disk for authorization; not spooling report', { dir: job.dir });
      return;
    }
    const payload = recordPayload(job.record);
    const name = reportFileName(payload, job.record.close === undefined ? 'start' : 'end');
    if (name === undefined) {
      this.stats.failed++;
      return;
    }
    try {
      await writePrivateFileAtomic(join(job.dir, name), serializeReport(payload));
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      this.dirsWithToken.delete(job.dir);
      this.stats.withoutToken++;
      return;
    }
    this.stats.reportsWritten++;
  }

  private async hasToken(dir: string): Promise<boolean> {
    if (this.dirsWithToken.has(dir)) return true;
    try {
      await access(join(dir, TOKEN_FILE));
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return false;
      throw error;
    }
    this.dirsWithToken.add(dir);
    return true;
  }

  private dequeue(): void {
    const job = this.queue[this.head];
    this.queue[this.head++] = undefined;
    if (job?.kind === 'report') this.queuedReports--;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeRetry = resolve;
      this.retryTimer = setTimeout(resolve, ms);
    });
  }

  /** A crash between writing and renaming leaves a temporary file; it is never read, only removed here. */
  private async removeStaleTemporaries(): Promise<void> {
    let removed = 0;
    try {
      for (const role of await listDir(this.root)) {
        for (const authorization of await listDir(join(this.root, role)).catch(() => [])) {
          removed += await removeTemporaries(join(this.root, role, authorization)).catch(() => 0);
        }
      }
    } catch (error) {
      this.logger.debug('Could not look for stale temporary spool files', { error: errorChain(error) });
    }
    if (removed > 0) this.logger.info('Removed temporary flow-log files left by an earlier run', { removed });
  }
}
