// Flow timestamps. The tracker turns the monotonic `now` into wall-clock time through one anchor taken when
// it is created (as the reference does), so a clock step during a flow cannot reorder its timestamps.
// Times are carried as integer unix microseconds and printed the way the reference's chrono prints a
// `DateTime<Utc>` (RFC 3339, `Z`, the fraction omitted when zero, else 3, 6 or 9 digits as needed).

export class UtcClock {
  constructor(
    private readonly anchorMonotonicMs: number,
    private readonly anchorUnixMs: number,
  ) {}

  /** Unix microseconds at monotonic `now`. */
  micros(now: number): number {
    return Math.round((this.anchorUnixMs + (now - this.anchorMonotonicMs)) * 1000);
  }
}

export function formatUtcMicros(micros: number): string {
  const seconds = Math.floor(micros / 1_000_000);
  const fraction = micros - seconds * 1_000_000;
  const base = new Date(seconds * 1000).toISOString().slice(0, 19);
  if (fraction === 0) return `${base}Z`;
  if (fraction % 1000 === 0) return `${base}.${String(fraction / 1000).padStart(3, '0')}Z`;
  return `${base}.${String(fraction).padStart(6, '0')}Z`;
}

/** Whole unix seconds of a timestamp as printed by `formatUtcMicros` (or any RFC 3339 text), or undefined. */
export function unixSecondsOf(text: string): number | undefined {
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}
