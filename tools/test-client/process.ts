/**
 * The test client as a process: command-line options, the JSON-line control loop on stdin and
 * stdout, and the signals that stop it. `main.ts` runs it as is; other tools (tools/attacker) run
 * it with extra commands and hooks on the client.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { TestClient, type RelayOption, type TestClientOptions } from './client.ts';
import { parseCommand, runCommand } from './control.ts';

interface CliOptions {
  portal: string;
  clientId: string;
  relay: string[];
  relaySecret: string | undefined;
  tun: string;
  port: number;
  hostsFile: string | undefined;
  connect: string[];
  iceless: boolean;
  clientVersion: string | undefined;
  privateKeyFile: string | undefined;
}

type Json = Record<string, unknown>;

/** Commands beyond control.ts: `handles` names them, `run` answers them (the reply gets the command's id). */
export interface ControlExtension {
  readonly hooks?: Pick<TestClientOptions, 'onTunnelPacket' | 'onDatagram'>;
  handles(cmd: unknown): boolean;
  run(client: TestClient, command: Json): Promise<Json>;
}

export function writeLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export async function runClientProcess(name: string, description: string, extension?: ControlExtension): Promise<void> {
  const program = new Command(name)
    .description(description)
    .requiredOption('--portal <url>', 'dev portal base URL (http://host:port)')
    .requiredOption('--client-id <uuid>', 'the client id to register with the dev portal')
    .option('--relay <addr[,addr]>', 'TURN relay (coturn) address(es), one relay per flag', collect, [])
    .option('--relay-secret <secret>', 'coturn static-auth-secret of the --relay relays')
    .option('--tun <name>', 'TUN device name', 'tun-fzclient')
    .option('--port <port>', 'data-plane UDP port (0: ephemeral)', parsePort, 0)
    .option('--hosts-file <path>', 'rewrite this hosts file with "<proxy ip> <domain>" lines for DNS resources')
    .option('--connect <resource-id>', 'connect to this resource at start-up (repeatable)', collect, [])
    .option('--iceless', 'advertise ICE-less connections (spec 1.6 §3.9): the portal may answer use_iceless', false)
    .option('--client-version <x.y.z>', 'the version the portal\'s gate sees in flow requests (default: none, any gateway serves it)')
    .option('--private-key-file <path>', 'the WireGuard private key, base64 as `wg genkey` writes it (default: a fresh one)');
  program.parse();
  const cli = program.opts<CliOptions>();
  configureLogging({ filter: LogFilter.parse(process.env['RUST_LOG'] ?? 'info'), sink: { write: (line) => process.stderr.write(line) } });
  if (cli.relay.length > 0 && cli.relaySecret === undefined) throw new InvalidArgumentError('--relay needs --relay-secret');
  const relays: RelayOption[] = cli.relay.map((spec) => ({ addresses: spec.split(','), secret: cli.relaySecret! }));

  const client = await TestClient.start({
    portalUrl: cli.portal,
    clientId: cli.clientId,
    tunName: cli.tun,
    port: cli.port,
    relays,
    iceless: cli.iceless,
    ...(cli.clientVersion === undefined ? {} : { clientVersion: cli.clientVersion }),
    ...(cli.privateKeyFile === undefined ? {} : { privateKey: readPrivateKey(cli.privateKeyFile) }),
    ...(cli.hostsFile === undefined ? {} : { hostsFile: cli.hostsFile }),
    ...extension?.hooks,
    onEvent: writeLine,
  });
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    client.close();
    setTimeout(() => process.exit(code), 50);
  };
  process.once('SIGINT', () => stop(0));
  process.once('SIGTERM', () => stop(0));
  writeLine({ event: 'ready', client_id: cli.clientId, ...client.tunnelIps, public_key: client.publicKey, port: client.port });

  for (const resourceId of cli.connect) writeLine(await runCommand(client, `startup-${resourceId}`, { cmd: 'connect', resource_id: resourceId }));

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    const extended = extensionCommand(line, extension);
    if (extended !== undefined) {
      void extension!.run(client, extended).then(
        (reply) => writeLine({ ...reply, id: extended['id'] ?? null }),
        (error: unknown) => writeLine({ id: extended['id'] ?? null, ok: false, error: error instanceof Error ? error.message : String(error) }),
      );
      return;
    }
    const parsed = parseCommand(line);
    if ('error' in parsed) {
      writeLine({ id: parsed.id, ok: false, error: parsed.error });
      return;
    }
    void runCommand(client, parsed.id, parsed.command).then((reply) => {
      writeLine(reply);
      if (parsed.command.cmd === 'quit') stop(0);
    });
  });
  lines.on('close', () => stop(0));
}

function extensionCommand(line: string, extension: ControlExtension | undefined): Json | undefined {
  if (extension === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return extension.handles((value as Json)['cmd']) ? (value as Json) : undefined;
}

function readPrivateKey(path: string): Uint8Array {
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new InvalidArgumentError(`${path}: not a base64 32-byte WireGuard key`);
  return key;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('must be a port number');
  return port;
}
