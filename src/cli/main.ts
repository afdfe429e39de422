import { arch, release, type, uptime } from 'node:os';
import { configureLogging, createLogger, errorChain, Level, LogFilter, registerSecret } from '../log/index.ts';
import { readSystemdCredential, type ReadFile } from './credentials.ts';
import { fileIdHost, resolveGatewayId, type IdHost } from './identity.ts';
import { raiseSocketBufferLimits, type WriteSysctl } from './inc-buf.ts';
import { parseCommandLine, type CommandLine, type GatewayOptions } from './options.ts';
import { hasRequiredPermissions, PERMISSION_MESSAGE } from './permissions.ts';
import { buildCommit, IMPLEMENTATION } from './build-info.ts';
import { GATEWAY_VERSION } from './version.ts';

export interface StartedGateway {
  /** Settles when the gateway stops on its own: resolves on a clean stop, rejects on a fatal error. */
  readonly done: Promise<void>;
  /** Graceful shutdown: close sockets, remove the TUN device. */
  stop(): Promise<void>;
}

export type StartGateway = (options: GatewayOptions, firezoneId: string) => Promise<StartedGateway>;

export interface MainContext {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly startGateway: StartGateway;
  readonly idHost?: IdHost;
  readonly hasPermissions?: () => boolean;
  /** Writes `/proc/sys/net/core/{rmem,wmem}_max` (tests replace it). */
  readonly writeSysctl?: WriteSysctl;
  /** Reads the systemd credential file (tests replace it). */
  readonly readCredential?: ReadFile;
  /** Resolves with the name of the first termination signal received. */
  readonly waitForSignal: () => Promise<'SIGINT' | 'SIGTERM'>;
}

const log = createLogger('firezone_gateway');

/**
 * Runs the gateway command; resolves with the process exit code. The steps and their order are
 * 1.6.0's: arguments (exit 2), permissions (exit 1), logging, the socket buffer limits, the id,
 * the token, then the gateway. A failure before the gateway runs is logged as its error chain at
 * INFO, a failure of the running gateway as `Eventloop failed: ...` at ERROR; both exit 1.
 */
export async function main(context: MainContext): Promise<number> {
  const parsed = parseCommandLine(context.argv, { env: context.env });
  if (parsed.kind === 'exit') {
    (parsed.code === 0 ? context.stdout : context.stderr)(parsed.output);
    return parsed.code;
  }
  const commandLine = parsed.options;

  if (!commandLine.noCheck && !(context.hasPermissions ?? hasRequiredPermissions)()) {
    context.stderr(PERMISSION_MESSAGE);
    return 1;
  }

  if (commandLine.token !== undefined) registerSecret(commandLine.token);
  try {
    configureLogging({ filter: LogFilter.parse(logFilterSpec(context.env, commandLine.flowLogs)), format: commandLine.logFormat });
  } catch (error) {
    context.stderr(`Failed to set up logging: Failed to parse directives: ${errorChain(error)}\n`);
    return 1;
  }

  log.info('`gateway` started logging', {
    arch: arch(),
    os: `${type()} ${release()}`,
    version: GATEWAY_VERSION,
    implementation: IMPLEMENTATION,
    commit: buildCommit(),
    node: process.version,
    system_uptime: Math.round(uptime()),
  });
  log.debug('Command line', { ...commandLine, token: commandLine.token === undefined ? undefined : '<redacted>' });

  let options: GatewayOptions;
  let id: string;
  try {
    if (!commandLine.noIncBuf) raiseSocketBufferLimits(log, context.writeSysctl);
    const resolved = resolveGatewayId(commandLine.firezoneId, context.idHost ?? fileIdHost());
    id = resolved.id;
    log.info('Using Firezone ID', { id, source: resolved.source });
    if (resolved.note !== undefined) log[resolved.note.level](resolved.note.message);
    const token = commandLine.token ?? readSystemdCredential('FIREZONE_TOKEN', context.env, context.readCredential);
    registerSecret(token);
    options = { ...commandLine, token };
  } catch (error) {
    reportFatal(context, errorChain(error), Level.Info);
    return 1;
  }
  logCompatibilityNotes(commandLine);

  let gateway: StartedGateway;
  try {
    gateway = await context.startGateway(options, id);
  } catch (error) {
    reportFatal(context, errorChain(error), Level.Info);
    return 1;
  }

  const outcome = await Promise.race([
    context.waitForSignal().then((signal) => ({ kind: 'signal' as const, signal })),
    gateway.done.then(
      () => ({ kind: 'stopped' as const }),
      (error: unknown) => ({ kind: 'failed' as const, error }),
    ),
  ]);

  if (outcome.kind === 'signal') {
    log.info('Received SIGINT/SIGTERM', { signal: outcome.signal });
    try {
      await gateway.stop();
    } catch (error) {
      log.warn('Error during shutdown', { error: errorChain(error) });
    }
    log.info('Goodbye!');
    return 0;
  }
  if (outcome.kind === 'failed') {
    reportFatal(context, `Eventloop failed: ${errorChain(outcome.error)}`, Level.Error);
    await gateway.stop().catch(() => undefined);
    return 1;
  }
  log.info('Goodbye!');
  return 0;
}

/**
 * The log filter as 1.6.0 builds it: `RUST_LOG`, `info` when it is unset (an empty value silences
 * the gateway), and `flow_logs=trace` appended with `--flow-logs`.
 */
export function logFilterSpec(env: Readonly<Record<string, string | undefined>>, flowLogs = false): string {
  const spec = env.RUST_LOG ?? 'info';
  return flowLogs ? `${spec},flow_logs=trace` : spec;
}

/** What this gateway accepts from 1.6.0's surface but does differently, said once at start. */
function logCompatibilityNotes(commandLine: CommandLine): void {
  if (commandLine.metrics === 'sentry') {
    log.info('Metrics exporter `sentry` (the default) sends nothing: this gateway has no Sentry; set FIREZONE_METRICS to `stdout` or `otel-collector` to export metrics');
  }
  if (commandLine.ignoredTunThreads !== undefined) {
    log.info('FIREZONE_NUM_TUN_THREADS is ignored, as by the official gateway since 1.4.16: the TUN device has one queue', {
      value: commandLine.ignoredTunThreads,
    });
  }
}

/** The reference logs its fatal error; when the filter hides that level, stderr still gets it. */
function reportFatal(context: MainContext, message: string, level: Level.Info | Level.Error): void {
  if (!log.enabled(level)) {
    context.stderr(message + '\n');
    return;
  }
  if (level === Level.Error) log.error(message);
  else log.info(message);
}
