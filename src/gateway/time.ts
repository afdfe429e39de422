/**
 * Converts a portal `expires_at` (Unix seconds, null = never) to the monotonic clock the state runs on, given
 * the same instant on both clocks.
 */
export function expiresAtToMonotonic(expiresAtUnixSeconds: number | null | undefined, nowMonotonicMs: number, nowWallClockMs: number): number | undefined {
  if (expiresAtUnixSeconds === null || expiresAtUnixSeconds === undefined) return undefined;
  return nowMonotonicMs + (expiresAtUnixSeconds * 1000 - nowWallClockMs);
}
