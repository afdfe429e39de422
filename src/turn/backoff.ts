// Retransmission schedule of one request: sends at 0, 1, 2.5, 4.75 s; given up at 8.125 s.
import { REQUEST_BACKOFF_MULTIPLIER, REQUEST_MAX_ELAPSED, REQUEST_TIMEOUT } from './constants.ts';

export interface Backoff {
  readonly startedAt: number;
  readonly maxElapsed: number;
  interval: number;
  nextAt: number;
}

export function newBackoff(now: number, interval = REQUEST_TIMEOUT, maxElapsed = REQUEST_MAX_ELAPSED): Backoff {
  return { startedAt: now, maxElapsed, interval, nextAt: now + interval };
}

/** Whether the request should be given up rather than sent again at `now`. */
export function backoffExpired(backoff: Backoff, now: number): boolean {
  return now - backoff.startedAt >= backoff.maxElapsed;
}

/** Moves the deadline after a retransmission at `now`. */
export function advanceBackoff(backoff: Backoff, now: number): void {
  backoff.interval *= REQUEST_BACKOFF_MULTIPLIER;
  backoff.nextAt = now + backoff.interval;
}
