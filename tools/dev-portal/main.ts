// Command line for the development portal:
//   node --import tsx tools/dev-portal/main.ts --listen 127.0.0.1:8081 --token dev-token \
//     --relay 10.0.0.3:3478 --relay-secret s3cret [--era head|legacy] [--config portal.json]
// Prints one JSON line with the URLs once listening; stops on SIGINT/SIGTERM.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Command, InvalidArgumentError } from 'commander';
import { parseSocketAddr } from '../../src/util/socket-addr.ts';
import { startDevPortal } from './server.ts';
import type { DevPortalOptions, DevPortalRoute, PortalEra } from './server.ts';
import { checkRelay, checkResource, isSocketAddrText } from './model.ts';
import type { Policy, RelayConfig, Resource } from './model.ts';
import type { RelayCredentialScheme } from './credentials.ts';
import { flowLogIngestion } from './flow-log-ingestion.ts';

interface CliOptions {
  listen: string;
  token: string[];
  relay: string[];
  relaySecret: string | undefined;
  relayCredentials: RelayCredentialScheme;
  accountSlug: string;
  idleTimeoutMs: number;
  sendInitAuthorizations: boolean;
  era: PortalEra;
  flowLogsInterval: number;
  iceless: boolean;
  state: string | undefined;
  config: string | undefined;
}

/** Extra HTTP routes of the command-line portal (each in its own file, e.g. the flow-log ingestion endpoint). */
const ROUTES: DevPortalRoute[] = [flowLogIngestion()];

/**
 * `--config` file shape (all optional):
 * `{"resources":[<admin resource body>], "clients":[{"id","public_key","ipv4"?,"ipv6"?}],
 *   "policies":[{"resource_id","client_ids"?}], "relays":[{"id"?,"addresses":[...],"secret"}]}`
 */
interface ConfigFile {
  resources?: unknown[];
  clients?: { id: string; public_key: string; ipv4?: string; ipv6?: string }[];
  policies?: { id?: string; resource_id: string; client_ids?: string[] }[];
  relays?: unknown[];
}

async function main(): Promise<void> {
  const program = new Command('dev-portal')
    .description('Development portal speaking the Firezone gateway channel (Phoenix V1 JSON)')
    .option('--listen <addr>', 'address to listen on (admin, client and gateway APIs)', '127.0.0.1:8081')
    .option('--token <token>', 'accepted gateway token (repeatable)', collect, [])
    .option('--relay <addr[,addr]>', 'TURN relay address(es), one relay per flag; v4 and v6 separated by a comma', collect, [])
    .option('--relay-secret <secret>', 'shared secret of the --relay relays (coturn static-auth-secret)')
    .option('--relay-credentials <scheme>', 'coturn (HMAC-SHA1 REST API) or firezone (portal sha256 formula)', parseScheme, 'coturn')
    .option('--account-slug <slug>', 'account slug sent in init', 'dev')
    .option('--idle-timeout-ms <ms>', 'close a gateway socket after this long without inbound data', parseNumber, 37_000)
    .option('--era <era>', 'head (today\'s portal: v2 and v1 paths) or legacy (a 1.4.13-era portal: v1 only, 404 on v2)', parseEra, 'head')
    .option('--send-init-authorizations', 'legacy: list the authorized flows in init (head always does)', false)
    .option('--flow-logs-interval <secs>', 'head: init.flow_logs.upload_interval_secs (0 turns uploads off)', parseCount, 60)
    .option('--no-iceless', 'head: the account\'s iceless feature flag is off (use_iceless is never true)')
    .option('--state <file>', 'remember gateways, clients, resources, policies and authorizations across restarts in this file')
    .option('--config <file>', 'JSON file with resources, clients, policies and relays');
  program.parse();
  const cli = program.opts<CliOptions>();

  const listen = parseSocketAddr(cli.listen);
  if (listen === undefined) throw new InvalidArgumentError(`--listen: not an address: ${cli.listen}`);
  const tokens = cli.token.length > 0 ? cli.token : [process.env['DEV_PORTAL_TOKEN'] ?? 'dev-token'];
  const config: ConfigFile = cli.config === undefined ? {} : (JSON.parse(readFileSync(cli.config, 'utf8')) as ConfigFile);

  const relays: RelayConfig[] = [];
  for (const spec of cli.relay) {
    const addresses = spec.split(',');
    if (!addresses.every(isSocketAddrText)) throw new InvalidArgumentError(`--relay: not ip:port: ${spec}`);
    if (cli.relaySecret === undefined) throw new InvalidArgumentError('--relay needs --relay-secret');
    relays.push({ id: stableUuid(spec), addresses, secret: cli.relaySecret });
  }
  for (const entry of config.relays ?? []) relays.push(unwrap(checkRelay(entry, () => stableUuid(JSON.stringify(entry)))));
  const resources: Resource[] = (config.resources ?? []).map((entry) =>
    unwrap(checkResource(entry, () => stableUuid(JSON.stringify(entry)))),
  );
  const policies: Policy[] = (config.policies ?? []).map((p) => ({
    id: p.id ?? stableUuid(JSON.stringify(p)),
    resourceId: p.resource_id,
    clientIds: p.client_ids,
  }));
  const clients = (config.clients ?? []).map((c) => ({ id: c.id, publicKey: c.public_key, ipv4: c.ipv4, ipv6: c.ipv6 }));

  const options: DevPortalOptions = {
    host: listen.address,
    port: listen.port,
    tokens,
    accountSlug: cli.accountSlug,
    relays,
    relayCredentialScheme: cli.relayCredentials,
    idleTimeoutMs: cli.idleTimeoutMs,
    sendInitAuthorizations: cli.sendInitAuthorizations,
    era: cli.era,
    flowLogs: { upload_interval_secs: cli.flowLogsInterval, upload_batch_size: 1000 },
    icelessEnabled: cli.iceless,
    routes: ROUTES,
    ...(cli.state === undefined ? {} : { statePath: cli.state }),
    resources,
    policies,
    clients,
    log: (line) => process.stderr.write(`${new Date().toISOString()} dev-portal: ${line}\n`),
  };
  const portal = await startDevPortal(options);
  process.stdout.write(`${JSON.stringify({ listening: portal.url, api_url: portal.apiUrl, admin: `${portal.url}/admin/state`, era: cli.era })}\n`);
  const stop = (): void => void portal.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
}

function parseEra(value: string): PortalEra {
  if (value !== 'head' && value !== 'legacy') throw new InvalidArgumentError('must be head or legacy');
  return value;
}

function parseScheme(value: string): RelayCredentialScheme {
  if (value !== 'coturn' && value !== 'firezone') throw new InvalidArgumentError('must be coturn or firezone');
  return value;
}

/** A UUID that stays the same across runs for the same input, so restarts keep relay and resource ids. */
function stableUuid(seed: string): string {
  const hex = createHash('sha256').update(seed).digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function unwrap<T>(checked: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!checked.ok) throw new InvalidArgumentError(`--config: ${checked.error}`);
  return checked.value;
}

main().catch((error: unknown) => {
  process.stderr.write(`dev-portal: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
