/** How many histories to run, and how to replay a failing one, from the environment. */
import fc from 'fast-check';

export interface SimSettings {
  readonly runs: number;
  readonly lossRuns: number;
  readonly minCommands: number;
  readonly maxCommands: number;
  /** fast-check parameters; with SIM_SEED (and SIM_PATH) set, replays exactly that case. */
  /** `testName`: a pattern naming the test, for the replay hint. */
  assertParameters(runs: number, testName: string): fc.Parameters<unknown>;
}

/**
 * - CI (`CI` set): 200 histories of 50..60 commands, plus 20 with loss.
 * - locally: 20 histories, plus 2 with loss.
 * - `SIM_RUNS=N`: N histories (N/10 with loss); `SIM_SOAK=1`: 2000.
 * - `SIM_SEED=s SIM_PATH=p`: replay the case fast-check reported (path optional: then the whole run for seed s).
 */
export function simSettings(env: NodeJS.ProcessEnv): SimSettings {
  const explicit = env['SIM_RUNS'] !== undefined ? Number(env['SIM_RUNS']) : undefined;
  const runs = explicit ?? (env['SIM_SOAK'] ? 2_000 : env['CI'] ? 200 : 20);
  const seed = env['SIM_SEED'] !== undefined ? Number(env['SIM_SEED']) : undefined;
  const path = env['SIM_PATH'];
  return {
    runs,
    lossRuns: Math.max(1, Math.round(runs / 10)),
    minCommands: 50,
    maxCommands: 60,
    assertParameters(numRuns, testName) {
      return {
        numRuns,
        ...(seed !== undefined ? { seed } : {}),
        ...(path !== undefined ? { path, endOnFailure: true } : {}),
        reporter: (details) => report(details, testName),
      };
    },
  };
}

/** fast-check's own report, plus the command that replays the failure. */
function report(details: fc.RunDetails<unknown>, testName: string): void {
  if (!details.failed) return;
  const replay = `SIM_SEED=${details.seed} SIM_PATH=${details.counterexamplePath ?? ''} node --import tsx --test --test-name-pattern='${testName}' test/sim/sim.test.ts`;
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  const summary = `Property failed after ${details.numRuns} histories (shrunk ${details.numShrinks} times)`;
  const history = (details.counterexample as readonly unknown[] | null)?.[0];
  throw new Error(`${summary}\n${error}\n\n${describeHistory(history)}\n\nReplay with: ${replay}`);
}

/** The shrunk history, one command a line. */
function describeHistory(value: unknown): string {
  if (typeof value !== 'object' || value === null || !('config' in value) || !('commands' in value)) return `Counterexample: ${fc.stringify(value)}`;
  const commands = value.commands as readonly unknown[];
  const lines = commands.map((c, i) => `  ${i}: ${String(c)}`).filter((line) => !line.endsWith('{"kind":"step","ms":0}'));
  const elided = commands.length - lines.length;
  return [`World: ${JSON.stringify(value.config)}`, `Commands (${elided} zero-length steps left out):`, ...lines].join('\n');
}
