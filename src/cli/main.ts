import { arch, release, type, uptime } from 'node:os';
import { configureLogging, createLogger, errorChain, Level, LogFilter, registerSecret } from '../log/index.ts';
import { resolveGatewayId, type IdStore, fileIdStore } from './identity.ts';
import { parseCommandLine, type GatewayOptions } from './options.ts';
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
  readonly idStore?: IdStore;
  readonly hasPermissions?: () => boolean;
  /** Resolves with the name of the first termination signal received. */
  readonly waitForSignal: () => Promise<'SIGINT' | 'SIGTERM'>;
}

const log = createLogger('firezone_gateway');

/** Runs the gateway command; resolves with the process exit code. */
export async function main(context: MainContext): Promise<number> {
  const parsed = parseCommandLine(context.argv, { env: context.env });
  if (parsed.kind === 'exit') {
    (parsed.code === 0 ? context.stdout : context.stderr)(parsed.output);
    return parsed.code;
  }
  const options = parsed.options;

  if (!options.noCheck && !(context.hasPermissions ?? hasRequiredPermissions)()) {
    context.stderr(PERMISSION_MESSAGE);
    return 1;
  }

  registerSecret(options.token);
  try {
    configureLogging({ filter: LogFilter.parse(logFilterSpec(context.env)), format: options.logFormat });
  } catch (error) {
    context.stderr(`Failed to start Gateway: Failed to set up logging: Failed to parse directives: ${errorChain(error)}\n`);
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
  log.debug('Command line', { ...options, token: '<redacted>' });

  let gateway: StartedGateway;
  try {
    const { id, source } = resolveGatewayId(options.firezoneId, context.idStore ?? fileIdStore());
    log.info('Using Firezone ID', { id, source });
    gateway = await context.startGateway(options, id);
  } catch (error) {
    reportFatal(context, error);
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
    log.info(outcome.signal === 'SIGINT' ? 'Received CTRL+C, goodbye!' : 'Received SIGTERM, goodbye!');
    try {
      await gateway.stop();
    } catch (error) {
      log.warn('Error during shutdown', { error: errorChain(error) });
    }
    return 0;
  }
  if (outcome.kind === 'failed') {
    reportFatal(context, outcome.error);
    await gateway.stop().catch(() => undefined);
    return 1;
  }
  return 0;
}

/** RUST_LOG semantics, except that an unset or empty filter means `info` rather than silence. */
export function logFilterSpec(env: Readonly<Record<string, string | undefined>>): string {
  const spec = env.RUST_LOG?.trim();
  return spec === undefined || spec === '' ? 'info' : spec;
}

function reportFatal(context: MainContext, error: unknown): void {
  const message = `Failed to start Gateway: ${errorChain(error)}`;
  if (log.enabled(Level.Error)) log.error(message);
  else context.stderr(message + '\n');
}
