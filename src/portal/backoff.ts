/**
 * The portal reconnect schedules of 1.6.0 (spec gateway-1.6 §1.7). The reference builds them on
 * `backon`'s exponential backoff with a total-delay budget:
 * - the first delay is the initial interval, each next one the previous times the multiplier,
 *   capped at the maximum interval;
 * - with jitter, a random share of the initial interval, in [0, initial), is added to each delay;
 * - the budget bounds the cumulative delay handed out (not wall time): a delay that would take the
 *   sum past it is refused, and the caller gives up.
 *
 * Two schedules: before the first join of the process, 1 s apart without jitter for at most 15 s
 * (`initialBackoff`); after it, 500 ms x1.5 with jitter, at most 60 s apart, for at most the
 * partition budget (`reconnectBackoff`, `FIREZONE_MAX_PARTITION_TIME`, 24 h by default).
 */
import type { RandomSource } from '../util/random.ts';

export const INITIAL_CONNECT_INTERVAL_MS = 1_000;
export const INITIAL_CONNECT_MAX_ELAPSED_MS = 15_000;

export const BACKOFF_INITIAL_INTERVAL_MS = 500;
export const BACKOFF_MULTIPLIER = 1.5;
export const BACKOFF_MAX_INTERVAL_MS = 60_000;

export interface RetryBackoffOptions {
  readonly initialIntervalMs: number;
  readonly maxIntervalMs: number;
  readonly multiplier: number;
  /** Adds a uniform share of the initial interval, [0, initial), to each delay. */
  readonly jitter: RandomSource | undefined;
  /** The budget of cumulative delay; undefined retries forever. */
  readonly maxElapsedMs: number | undefined;
}

export class RetryBackoff {
  private readonly o: RetryBackoffOptions;
  private current: number | undefined;
  private cumulativeMs = 0;

  constructor(options: RetryBackoffOptions) {
    this.o = options;
  }

  get maxElapsedMs(): number | undefined {
    return this.o.maxElapsedMs;
  }

  /** The delays handed out so far. */
  get elapsedMs(): number {
    return this.cumulativeMs;
  }

  /** The next delay, or undefined once the budget is spent. */
  nextDelayMs(): number | undefined {
    const { initialIntervalMs, maxIntervalMs, multiplier, jitter, maxElapsedMs } = this.o;
    this.current = this.current === undefined ? initialIntervalMs : Math.min(this.current * multiplier, maxIntervalMs);
    let delay = this.current;
    if (jitter !== undefined) delay += initialIntervalMs * jitter.float();
    if (maxElapsedMs !== undefined && this.cumulativeMs + delay > maxElapsedMs) return undefined;
    this.cumulativeMs += delay;
    return delay;
  }
}

/** Before the first join: 1 s apart, no jitter, 15 s in all (then the process gives up). */
export function initialBackoff(): RetryBackoff {
  return new RetryBackoff({
    initialIntervalMs: INITIAL_CONNECT_INTERVAL_MS,
    maxIntervalMs: INITIAL_CONNECT_INTERVAL_MS,
    multiplier: 1,
    jitter: undefined,
    maxElapsedMs: INITIAL_CONNECT_MAX_ELAPSED_MS,
  });
}

/** After a join: 500 ms x1.5 with jitter, at most 60 s apart, `maxPartitionMs` of delay in all. */
export function reconnectBackoff(rng: RandomSource, maxPartitionMs: number | undefined): RetryBackoff {
  return new RetryBackoff({
    initialIntervalMs: BACKOFF_INITIAL_INTERVAL_MS,
    maxIntervalMs: BACKOFF_MAX_INTERVAL_MS,
    multiplier: BACKOFF_MULTIPLIER,
    jitter: rng,
    maxElapsedMs: maxPartitionMs,
  });
}
