/**
 * A token bucket's rule in the caller's time: `capacity` tokens, refilled continuously at `ratePerSecond`.
 * The rule is shared; each bucket is just its level and when it was last updated, kept by its owner
 * (thousands of clients each have one). Refilling is computed on demand, so an idle bucket costs nothing.
 */
export class TokenBucketRule {
  constructor(
    readonly capacity: number,
    readonly ratePerSecond: number,
  ) {}

  /** The level of a bucket that held `tokens` at `updatedAt`, at `now` (not before `updatedAt`). */
  levelAt(tokens: number, updatedAt: number, now: number): number {
    if (now <= updatedAt) return tokens;
    return Math.min(this.capacity, tokens + ((now - updatedAt) * this.ratePerSecond) / 1000);
  }
}
