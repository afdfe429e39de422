// Connectivity-check schedule per candidate pair (str0m's, with snownet's timing profiles).
//
// The delay after the Nth attempt is min(initialRto * 2^(N-1), maxRto). N counts every attempt while
// they are answered, so a healthy pair settles on one check per maxRto: that is consent and keepalive.
// Once the oldest trailing unanswered attempt is older than maxRto/2, N counts only the trailing
// unanswered attempts, so a loss is retried quickly. A pair with maxRetransmits trailing unanswered
// attempts and a final maxRto of silence has failed.

export type Millis = number;

export interface StunTiming {
  readonly initialRto: Millis;
  readonly maxRto: Millis;
  readonly maxRetransmits: number;
}

/** `Connecting` and `Connected` connections: ICE timeout 15.25 s, keepalive every 1.5 s. */
export const ACTIVE_TIMING: StunTiming = Object.freeze({ initialRto: 250, maxRto: 1500, maxRetransmits: 12 });

/** `Idle` connections: one check per 25 s, ICE timeout 100 s. */
export const IDLE_TIMING: StunTiming = Object.freeze({ initialRto: 25_000, maxRto: 25_000, maxRetransmits: 4 });

/**
 * The gateway's `Connecting` and `Connected` connections (1.6.0 `IceConfig::server_default`): a gateway cannot
 * dial a client, so it is slow to give one up. ICE timeout about 10 min, keepalive every 15 s.
 */
export const SERVER_ACTIVE_TIMING: StunTiming = Object.freeze({ initialRto: 250, maxRto: 15_000, maxRetransmits: 45 });

/** The gateway's `Idle` connections (1.6.0 `IceConfig::server_idle`): one check per 25 s, ICE timeout 1000 s. */
export const SERVER_IDLE_TIMING: StunTiming = Object.freeze({ initialRto: 25_000, maxRto: 25_000, maxRetransmits: 40 });

/** Delay after the `attempts`th attempt (attempts >= 1). */
export function resendDelay(timing: StunTiming, attempts: number): Millis {
  if (attempts <= 0) return 0;
  const exponent = Math.min(attempts - 1, 30);
  return Math.min(timing.initialRto * 2 ** exponent, timing.maxRto);
}

/** Σ over n = 0..maxRetransmits of delay(n), with delay(0) = 0: how long an unanswered pair survives. */
export function iceTimeout(timing: StunTiming): Millis {
  let total = 0;
  for (let n = 1; n <= timing.maxRetransmits; n++) total += resendDelay(timing, n);
  return total;
}

/** What the schedule needs to know about a pair's attempts. */
export interface AttemptHistory {
  /** Every attempt ever sent on the pair. */
  readonly attempts: number;
  /** Attempts since the last answered one. */
  readonly trailingUnanswered: number;
  readonly lastSentAt: Millis;
  /** When the first of the trailing unanswered attempts was sent (meaningless when there are none). */
  readonly firstUnansweredAt: Millis;
}

/** When the next check is due; -Infinity when the pair has never been checked. */
export function nextAttemptAt(timing: StunTiming, history: AttemptHistory): Millis {
  if (history.attempts === 0) return -Infinity;
  const steady = history.lastSentAt + resendDelay(timing, history.attempts);
  if (history.trailingUnanswered === 0) return steady;
  const restartAt = history.firstUnansweredAt + timing.maxRto / 2;
  const restarted = Math.max(restartAt, history.lastSentAt + resendDelay(timing, history.trailingUnanswered));
  return Math.min(steady, restarted);
}

/** When the pair counts as failed, or Infinity while it may still succeed. */
export function failsAt(timing: StunTiming, history: AttemptHistory): Millis {
  if (history.trailingUnanswered < timing.maxRetransmits) return Infinity;
  return history.lastSentAt + timing.maxRto;
}
