/**
 * Exponential backoff with the defaults of Rust's `backoff` 0.4 as the reference gateway uses it
 * (spec portal-protocol §1.12): interval 500 ms growing x1.5, each delay uniform in
 * [0.5·I, 1.5·I], interval capped at 60 s (so delays up to 90 s), no maximum elapsed time.
 */
import type { RandomSource } from '../util/random.ts';

export const BACKOFF_INITIAL_INTERVAL_MS = 500;
export const BACKOFF_MULTIPLIER = 1.5;
export const BACKOFF_RANDOMIZATION_FACTOR = 0.5;
export const BACKOFF_MAX_INTERVAL_MS = 60_000;

export class ExponentialBackoff {
  private currentIntervalMs = BACKOFF_INITIAL_INTERVAL_MS;
  private readonly rng: RandomSource;

  constructor(rng: RandomSource) {
    this.rng = rng;
  }

  /** The interval the next delay is drawn around. */
  get intervalMs(): number {
    return this.currentIntervalMs;
  }

  nextDelayMs(): number {
    const delta = BACKOFF_RANDOMIZATION_FACTOR * this.currentIntervalMs;
    const min = this.currentIntervalMs - delta;
    const delay = min + this.rng.float() * (2 * delta);
    this.currentIntervalMs =
      this.currentIntervalMs >= BACKOFF_MAX_INTERVAL_MS / BACKOFF_MULTIPLIER
        ? BACKOFF_MAX_INTERVAL_MS
        : this.currentIntervalMs * BACKOFF_MULTIPLIER;
    return delay;
  }
}
