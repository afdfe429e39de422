/** fast-check run count: at least 10,000 in CI (`CI` set), `local` otherwise to keep local runs short. */
export function numRuns(local: number): number {
  return process.env['CI'] ? Math.max(10_000, local) : local;
}
