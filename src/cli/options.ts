import { availableParallelism } from 'node:os';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { parseSocketAddr, type SocketAddr } from '../util/socket-addr.ts';
import { implementationLine } from './build-info.ts';
import { BINARY_NAME, GATEWAY_VERSION } from './version.ts';

export type MetricsExporter = 'stdout' | 'otel-collector';
export type LogFormat = 'text' | 'json';

/** Everything the command line and environment decide, validated. */
export interface GatewayOptions {
  readonly token: string;
  readonly apiUrl: string;
  /** Undefined means: use the host name. An explicit empty value is kept and sent as empty. */
  readonly firezoneName: string | undefined;
  /** Undefined (or empty) means: read or generate the persisted id. */
  readonly firezoneId: string | undefined;
  readonly noTelemetry: boolean;
  readonly noCheck: boolean;
  readonly healthCheckAddr: SocketAddr;
  readonly tunThreads: number;
  readonly metrics: MetricsExporter | undefined;
  readonly otlpGrpcEndpoint: string | undefined;
  readonly validateChecksums: boolean;
  readonly logFormat: LogFormat;
  /** Advertise ICE-less connections (spec 1.6 §3.9); hidden `--no-iceless` / FIREZONE_NO_ICELESS=true turn it off for comparison. */
  readonly iceless: boolean;
}

export const DEFAULT_API_URL = 'wss://api.firezone.dev';
export const DEFAULT_HEALTH_CHECK_ADDR = '0.0.0.0:8080';

/** The reference's default: one TUN queue on small machines, two otherwise. */
export function defaultTunThreads(cpus: number = availableParallelism()): number {
  return cpus < 4 ? 1 : 2;
}

export type ParseOutcome =
  | { readonly kind: 'run'; readonly options: GatewayOptions }
  /** Help or version was printed: exit 0. */
  | { readonly kind: 'exit'; readonly code: number; readonly output: string };

export interface ParseContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cpus?: number;
}

/**
 * Parses argv (without the node and script entries) and the environment the way the
 * reference's clap definition does: flag beats env var beats default; usage errors exit 2.
 */
export function parseCommandLine(argv: readonly string[], context: ParseContext): ParseOutcome {
  const { env } = context;
  let output = '';
  let errorOutput = '';
  const program = buildProgram(env, context.cpus ?? availableParallelism());
  program.exitOverride();
  program.configureOutput({
    writeOut: (text) => (output += text),
    writeErr: (text) => (errorOutput += text),
    outputError: (text, write) => write(text),
  });

  try {
    applyEnv(program, env);
    program.parse([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') {
        return { kind: 'exit', code: 0, output };
      }
      return { kind: 'exit', code: 2, output: errorOutput || error.message };
    }
    throw error;
  }

  const opts = program.opts<Record<string, unknown>>();
  const token = program.args[0] ?? nonEmpty(env.FIREZONE_TOKEN);
  if (token === undefined) {
    return {
      kind: 'exit',
      code: 2,
      output:
        'error: the following required arguments were not provided:\n  <TOKEN>\n\n' +
        `Usage: ${BINARY_NAME} [OPTIONS] <TOKEN>\n\nFor more information, try '--help'.\n`,
    };
  }

  const strictBool = (flag: boolean, envName: string): boolean | string => {
    if (flag) return true;
    const raw = env[envName];
    if (raw === undefined) return false;
    if (raw === 'true') return true;
    if (raw === 'false' || raw === '') return false;
    return `error: invalid value '${raw}' for '${envName}': value was not a boolean (use true or false)\n\nFor more information, try '--help'.\n`;
  };
  const noTelemetry = strictBool(opts.telemetry === false, 'FIREZONE_NO_TELEMETRY');
  if (typeof noTelemetry === 'string') return { kind: 'exit', code: 2, output: noTelemetry };
  const validateChecksums = strictBool(opts.validateChecksums === true, 'FIREZONE_VALIDATE_CHECKSUMS');
  if (typeof validateChecksums === 'string') return { kind: 'exit', code: 2, output: validateChecksums };
  const noIceless = strictBool(opts.iceless === false, 'FIREZONE_NO_ICELESS');
  if (typeof noIceless === 'string') return { kind: 'exit', code: 2, output: noIceless };

  return {
    kind: 'run',
    options: {
      token,
      apiUrl: opts.apiUrl as string,
      firezoneName: opts.firezoneName as string | undefined,
      firezoneId: nonEmpty(opts.firezoneId as string | undefined),
      noTelemetry,
      noCheck: opts.check === false,
      healthCheckAddr: opts.healthCheckAddr as SocketAddr,
      tunThreads: opts.tunThreads as number,
      metrics: opts.metrics as MetricsExporter | undefined,
      otlpGrpcEndpoint: nonEmpty(opts.otlpGrpcEndpoint as string | undefined),
      validateChecksums,
      logFormat: opts.logFormat as LogFormat,
      iceless: !noIceless,
    },
  };
}

function buildProgram(env: ParseContext['env'], cpus: number): Command {
  const program = new Command(BINARY_NAME)
    .description('Firezone Gateway: connects to the Firezone portal and forwards authorized client traffic to resources.')
    .version(`${BINARY_NAME} ${GATEWAY_VERSION}\n${implementationLine()}`, '-V, --version', 'Print version')
    .helpOption('-h, --help', 'Print help')
    .usage('[OPTIONS] <TOKEN>')
    .argument('[TOKEN]', 'Token generated by the portal to authorize the Gateway [env: FIREZONE_TOKEN]')
    .allowExcessArguments(false)
    .showSuggestionAfterError(true);

  // Env vars come from the injected environment, not process.env, so parsing stays pure.
  const withEnv = (option: Option, name: string): Option => {
    ENV_VARS.set(option, name);
    option.description = `${option.description} [env: ${name}]`;
    return option;
  };

  program.addOption(
    withEnv(new Option('-u, --api-url <URL>', 'Portal URL (ws://, wss://, http:// or https://)').default(DEFAULT_API_URL), 'FIREZONE_API_URL').hideHelp(),
  );
  program.addOption(withEnv(new Option('-n, --firezone-name <NAME>', 'Friendly name shown in the portal [default: host name]'), 'FIREZONE_NAME'));
  program.addOption(withEnv(new Option('-i, --firezone-id <ID>', 'Identifier of this Gateway; must be unique per Gateway [default: generated and stored in /var/lib/firezone/gateway_id]'), 'FIREZONE_ID'));
  program.addOption(new Option('--no-telemetry', 'Disable telemetry; accepted for compatibility, this Gateway sends none [env: FIREZONE_NO_TELEMETRY]'));
  program.addOption(new Option('--no-check', 'Skip the check for root or the CAP_NET_ADMIN capability'));
  program.addOption(
    withEnv(new Option('--health-check-addr <ADDR>', 'Address of the HTTP health check endpoint').default(parseSocketAddr(DEFAULT_HEALTH_CHECK_ADDR), DEFAULT_HEALTH_CHECK_ADDR).argParser(parseHealthAddr), 'HEALTH_CHECK_ADDR').hideHelp(),
  );
  program.addOption(
    withEnv(new Option('--tun-threads <N>', 'Number of threads for the TUN device (queues)').default(defaultTunThreads(cpus)).argParser(parseCount), 'FIREZONE_NUM_TUN_THREADS'),
  );
  program.addOption(withEnv(new Option('--metrics <EXPORTER>', 'Where to export metrics').choices(['stdout', 'otel-collector']), 'FIREZONE_METRICS').hideHelp());
  program.addOption(withEnv(new Option('--otlp-grpc-endpoint <HOST:PORT>', 'OTLP gRPC collector for --metrics otel-collector'), 'OTLP_GRPC_ENDPOINT').hideHelp());
  program.addOption(new Option('--validate-checksums', 'Validate the checksums of all packets written to the TUN device [env: FIREZONE_VALIDATE_CHECKSUMS]').hideHelp());
  program.addOption(new Option('--no-iceless', 'Do not advertise ICE-less connections to the portal (for comparison) [env: FIREZONE_NO_ICELESS]').hideHelp());
  program.addOption(
    withEnv(new Option('--log-format <FORMAT>', 'Log line format: human-readable text or JSON lines').choices(['text', 'json']).default('text'), 'FIREZONE_LOG_FORMAT'),
  );

  return program;
}

const ENV_VARS = new WeakMap<Option, string>();

/** Sets option values from env vars; values given on the command line override them later. */
function applyEnv(program: Command, env: ParseContext['env']): void {
  for (const option of program.options) {
    const name = ENV_VARS.get(option);
    if (name === undefined) continue;
    const value = env[name];
    if (value === undefined) continue;
    if (option.argChoices && !option.argChoices.includes(value)) {
      throw new CommanderError(2, 'commander.invalidArgument', `error: invalid value '${value}' for '${name}'\n  [possible values: ${option.argChoices.join(', ')}]\n\nFor more information, try '--help'.\n`);
    }
    let parsed: unknown = value;
    if (option.parseArg) {
      try {
        parsed = option.parseArg(value, undefined);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new CommanderError(2, 'commander.invalidArgument', `error: invalid value '${value}' for '${name}': ${reason}\n\nFor more information, try '--help'.\n`);
      }
    }
    program.setOptionValueWithSource(option.attributeName(), parsed, 'env');
  }
}

function parseHealthAddr(value: string): SocketAddr {
  const addr = parseSocketAddr(value);
  if (addr === undefined) throw new InvalidArgumentError('invalid socket address syntax (expected IP:PORT)');
  return addr;
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('invalid digit found in string');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('number too large');
  return n;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
