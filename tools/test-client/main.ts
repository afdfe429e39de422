// The headless test client's command line (run inside the client's network namespace, as root):
//   node --import tsx tools/test-client/main.ts --portal http://10.0.0.1:8081 --client-id <uuid> \
//     --relay 10.0.0.1:3478 --relay-secret s3cret [--tun tun-fzclient] [--port 0] [--hosts-file <path>]
//     [--connect <resource id>]...
// Prints {"event":"ready",...} on stdout, then answers the JSON-line commands of control.ts read from stdin.
// Logs go to stderr (RUST_LOG filter, default info). Stops on `quit`, end of stdin, SIGINT or SIGTERM.
import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { TestClient, type RelayOption } from './client.ts';
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
}

function writeLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function main(): Promise<void> {
  const program = new Command('test-client')
    .description('Headless Firezone test client: a client-role node with its own TUN device, driven by JSON lines on stdin')
    .requiredOption('--portal <url>', 'dev portal base URL (http://host:port)')
    .requiredOption('--client-id <uuid>', 'the client id to register with the dev portal')
    .option('--relay <addr[,addr]>', 'TURN relay (coturn) address(es), one relay per flag', collect, [])
    .option('--relay-secret <secret>', 'coturn static-auth-secret of the --relay relays')
    .option('--tun <name>', 'TUN device name', 'tun-fzclient')
    .option('--port <port>', 'data-plane UDP port (0: ephemeral)', parsePort, 0)
    .option('--hosts-file <path>', 'rewrite this hosts file with "<proxy ip> <domain>" lines for DNS resources')
    .option('--connect <resource-id>', 'connect to this resource at start-up (repeatable)', collect, []);
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
    ...(cli.hostsFile === undefined ? {} : { hostsFile: cli.hostsFile }),
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

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('must be a port number');
  return port;
}

main().catch((error: unknown) => {
  process.stderr.write(`test-client: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
