/**
 * At most one warning per kind per interval: what a flood of rejected input may cost in logs.
 * Counts what it held back, so the next warning can say how many were suppressed. Sans-IO: the
 * caller passes `now` (monotonic ms). The kinds are a small fixed set chosen by the caller.
 */
export class WarningLimiter<K extends string = string> {
  readonly #intervalMs: number;
  readonly #nextAllowedAt = new Map<K, number>();
  readonly #suppressed = new Map<K, number>();

  constructor(intervalMs = 60_000) {
    this.#intervalMs = intervalMs;
  }

  /**
   * Whether a warning of `kind` may be logged now. When it may, returns how many were held back
   * since the last one (0 or more); otherwise undefined.
   */
  allow(kind: K, now: number): number | undefined {
    const nextAt = this.#nextAllowedAt.get(kind);
    if (nextAt !== undefined && now < nextAt) {
      this.#suppressed.set(kind, (this.#suppressed.get(kind) ?? 0) + 1);
      return undefined;
    }
    this.#nextAllowedAt.set(kind, now + this.#intervalMs);
    const suppressed = this.#suppressed.get(kind) ?? 0;
    this.#suppressed.delete(kind);
    return suppressed;
  }
}
