/**
 * The whole system on the namespace lab: coturn as the relay and the development portal in the
 * "wan" namespace, the real gateway binary in the gateway namespace, the headless test client in
 * the client namespace, and resources (HTTP, UDP echo, DNS) in the resources namespace.
 * Used by the e2e suite, the demo and the throughput benchmark.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab } from '../../tools/lab/lab.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PORTAL_TOKEN = 'dev-token';
export const RELAY_SECRET = 'lab-relay-secret';
export const GATEWAY_ID = '4694E56C-7643-4A15-9DF3-638E5B05F570';

export interface WireFilter {
  readonly protocol: 'tcp' | 'udp' | 'icmp';
  readonly port_range_start?: number;
  readonly port_range_end?: number;
}

export interface ResourceSpec {
  readonly name: string;
  readonly type: 'cidr' | 'dns' | 'internet';
  readonly address?: string;
  readonly filters?: readonly WireFilter[];
}

export interface StackOptions {
  readonly resources: readonly ResourceSpec[];
  /** Extra environment for the gateway and the test client (RUST_LOG, ...). */
  readonly gatewayEnv?: Readonly<Record<string, string>>;
  readonly clientEnv?: Readonly<Record<string, string>>;
  /** Extra node flags for the gateway process (e.g. --cpu-prof for profiling). */
  readonly gatewayNodeArgs?: readonly string[];
  /** Names served by the resources' DNS server: name -> address. */
  readonly dnsNames?: Readonly<Record<string, string>>;
  readonly logDir?: string;
  /**
   * Extra command-line flags for the dev portal. By default it plays today's portal, which serves both paths, so the
   * gateway joins on `/gateway/v2/websocket`; `['--era', 'legacy']` plays a 1.4.13-era portal (404 on v2, so the
   * gateway falls back to `/gateway/websocket` and the v1 dialect).
   */
  readonly portalArgs?: readonly string[];
  /** The caller runs the gateway itself (a package in a container): it is neither started nor awaited. */
  readonly externalGateway?: boolean;
  /** Extra command-line flags for the first test client (e.g. `--iceless`). */
  readonly clientArgs?: readonly string[];
  /** Multiplies the start-up waits (dev portal up, gateway joined) for callers that run on a busy machine; 1 by default. */
  readonly startWaitScale?: number;
}

type Json = Record<string, unknown>;

export class ClientHandle {
  private nextId = 1;
  private readonly pending = new Map<number, (reply: Json) => void>();
  readonly events: Json[] = [];

  constructor(readonly process: ChildProcess) {
    const lines = createInterface({ input: process.stdout! });
    lines.on('line', (line) => {
      let message: Json;
      try {
        message = JSON.parse(line) as Json;
      } catch {
        return;
      }
      const id = message['id'];
      if (typeof id === 'number' && this.pending.has(id)) {
        this.pending.get(id)!(message);
        this.pending.delete(id);
      } else {
        this.events.push(message);
      }
    });
  }

  command(command: Json, timeoutMs = 30_000): Promise<Json> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`test client did not answer ${JSON.stringify(command)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.process.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    });
  }

  async waitForEvent(name: string, timeoutMs = 20_000): Promise<Json> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const event = this.events.find((e) => e['event'] === name);
      if (event !== undefined) return event;
      await sleep(50);
    }
    throw new Error(`test client sent no ${name} event within ${timeoutMs} ms`);
  }
}

/** A test client started with `GatewayStack.addClient`. */
export interface ExtraClient {
  readonly clientId: string;
  readonly client: ClientHandle;
  connect(resource: string, extra?: Json): Promise<number>;
}

export interface GatewayStack {
  readonly lab: Lab;
  readonly portal: string;
  readonly resourceIds: Readonly<Record<string, string>>;
  readonly clientId: string;
  readonly client: ClientHandle;
  admin(method: string, path: string, body?: unknown): Promise<Json>;
  /** Connects the client to a resource; resolves with the set-up time in ms (request to tunnel up). */
  connectClient(resource: string, extra?: Json): Promise<number>;
  /**
   * Starts another test client, in `ns` (any namespace on the lab's wan bridge) with its own TUN device and id;
   * `program` runs another client built on the test client's process (tools/attacker/main.ts).
   */
  addClient(ns: string, options?: { tun?: string; hostsFile?: string; program?: string; args?: readonly string[] }): Promise<ExtraClient>;
  startGateway(): void;
  stopGateway(signal?: NodeJS.Signals): Promise<number | null>;
  startPortal(): Promise<void>;
  stopPortal(): Promise<void>;
  gatewayLog(): string;
  /** The path the joined gateway's socket is on, as the portal saw it: `v2`, `v1`, or null when none is joined. */
  portalDialect(): Promise<string | null>;
  /** The running gateway's process id (benchmarks read its CPU time from /proc). */
  gatewayPid(): number | undefined;
  stop(): Promise<void>;
}

export async function startGatewayStack(lab: Lab, options: StackOptions): Promise<GatewayStack> {
  const logDir = options.logDir ?? '/tmp';
  const portal = `http://${lab.addresses.portal}:8081`;
  const gatewayLogPath = `${logDir}/${lab.prefix}-gateway.log`;
  const processes: ChildProcess[] = [];
  let gateway: ChildProcess | undefined;
  let portalProcess: ChildProcess | undefined;

  const wanSegment = lab.addresses.relay.slice(0, lab.addresses.relay.lastIndexOf('.'));
  lab.spawn(lab.ns.wan, [
    'turnserver', '-n', '--no-cli', '--no-tls', '--no-dtls', `--listening-ip=${lab.addresses.relay}`, `--relay-ip=${lab.addresses.relay}`,
    '--listening-port=3478', '--min-port=49152', '--max-port=49999', '--realm=firezone', '--use-auth-secret',
    `--static-auth-secret=${RELAY_SECRET}`, `--userdb=${logDir}/${lab.prefix}-turndb`, '--log-file=stdout', '--simple-log',
    `--pidfile=${logDir}/${lab.prefix}-turn.pid`,
    // coturn marks a relayed socket "to be closed" after any failed sendto() and silently drops
    // everything on that allocation from then on. The wan namespace has no route to the NATed
    // LANs, so one relayed check to a peer's private host candidate (ENETUNREACH) would kill the
    // allocation. Refuse peers outside the wan segment instead (ChannelBind gets 403).
    '--denied-peer-ip=0.0.0.0-255.255.255.255', `--allowed-peer-ip=${wanSegment}.0-${wanSegment}.255`,
  ], { log: `${logDir}/${lab.prefix}-turn.log` });

  // Resources: an HTTP server, a UDP echo, and DNS for the names of DNS resources.
  for (const address of lab.addresses.resources) {
    lab.spawn(lab.ns.resources, ['node', '--import', 'tsx', `${REPO_ROOT}tools/test-client/resource-server.ts`, '--listen', address, '--udp-port', '7', '--http-port', '80'], { log: `${logDir}/${lab.prefix}-resources-${address}.log` });
  }
  const dnsArgs = Object.entries(options.dnsNames ?? {}).map(([name, address]) => `--address=/${name}/${address}`);
  // The site's DNS server: authoritative for the lab names (NXDOMAIN for the rest, as a server on an offline site).
  lab.spawn(lab.ns.resources, ['dnsmasq', '-k', '--user=root', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${lab.addresses.resources[0]}`, `--pid-file=${logDir}/${lab.prefix}-dnsmasq.pid`, '--local=/#/', ...dnsArgs]);

  // A restarted portal remembers its records, as the real one keeps them in its database.
  const portalState = `${logDir}/${lab.prefix}-portal-state.json`;
  rmSync(portalState, { force: true });
  // Generous start-up waits: they end as soon as the process is up, and tsx starts slowly on 2 loaded cores.
  const startPortal = async (): Promise<void> => {
    portalProcess = lab.spawn(lab.ns.wan, [
      'node', '--import', 'tsx', `${REPO_ROOT}tools/dev-portal/main.ts`, '--listen', `${lab.addresses.portal}:8081`, '--token', PORTAL_TOKEN,
      '--relay', `${lab.addresses.relay}:3478`, '--relay-secret', RELAY_SECRET, '--state', portalState, ...(options.portalArgs ?? []),
    ], { log: `${logDir}/${lab.prefix}-portal.log` });
    await waitFor(() => curl(lab, 'GET', `${portal}/admin/state`).ok, 60_000 * (options.startWaitScale ?? 1), 'dev portal');
  };
  const stopPortal = async (): Promise<void> => {
    portalProcess?.kill('SIGTERM');
    await exited(portalProcess);
  };
  await startPortal();

  // The portal listens inside the wan namespace; the admin API is reached from there too.
  const admin = async (method: string, path: string, body?: unknown): Promise<Json> => {
    const response = curl(lab, method, `${portal}${path}`, body);
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${response.text}`);
    return response.text === '' ? {} : (JSON.parse(response.text) as Json);
  };

  const resourceIds: Record<string, string> = {};
  for (const resource of options.resources) {
    const created = await admin('POST', '/admin/resources', {
      type: resource.type,
      name: resource.name,
      ...(resource.address === undefined ? {} : { address: resource.address }),
      filters: resource.filters ?? [],
    });
    const id = String((created['resource'] as Json | undefined)?.['id'] ?? created['id']);
    resourceIds[resource.name] = id;
    await admin('POST', '/admin/policies', { resource_id: id });
  }

  const startGateway = (): void => {
    // The log stream opens asynchronously: without this, a previous run's "Joined" line in the same file
    // would satisfy the wait below before the new gateway has joined.
    writeFileSync(gatewayLogPath, '');
    gateway = lab.spawn(lab.ns.gateway, ['node', '--enable-source-maps', ...(options.gatewayNodeArgs ?? []), `${REPO_ROOT}dist/bin/firezone-gateway.js`, PORTAL_TOKEN], {
      env: {
        ...process.env,
        FIREZONE_API_URL: `ws://${lab.addresses.portal}:8081`,
        FIREZONE_ID: GATEWAY_ID,
        FIREZONE_NAME: 'lab-gateway',
        HEALTH_CHECK_ADDR: `${lab.addresses.gatewayLan}:8080`,
        RUST_LOG: 'info',
        // Each lab's own flow-log spool (the default, /var/lib/firezone/flow_logs, is the host's).
        FZ_FLOW_LOGS_DIR: `${logDir}/${lab.prefix}-flow_logs`,
        ...options.gatewayEnv,
      },
      log: gatewayLogPath,
    });
    processes.push(gateway);
  };
  const stopGateway = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    const child = gateway;
    if (child === undefined || child.exitCode !== null) return child?.exitCode ?? null;
    child.kill(signal);
    return exited(child);
  };
  if (options.externalGateway !== true) {
    startGateway();
    await waitFor(() => gatewayLog().includes('Joined gateway room on portal'), 60_000 * (options.startWaitScale ?? 1), 'gateway joining the portal');
  }

  const extraClients: ClientHandle[] = [];
  const spawnClient = async (ns: string, id: string, extraArgs: readonly string[], logName: string, program = 'tools/test-client/main.ts'): Promise<ClientHandle> => {
    const child = lab.spawn(ns, [
      'node', '--import', 'tsx', `${REPO_ROOT}${program}`, '--portal', portal, '--client-id', id,
      '--relay', `${lab.addresses.relay}:3478`, '--relay-secret', RELAY_SECRET, ...extraArgs,
    ], { env: { ...process.env, RUST_LOG: 'info', ...options.clientEnv }, interactive: true, log: `${logDir}/${lab.prefix}-${logName}.log` });
    const handle = new ClientHandle(child);
    await handle.waitForEvent('ready');
    return handle;
  };
  const connectWith = async (handle: ClientHandle, resource: string, extra: Json): Promise<number> => {
    const id = resourceIds[resource];
    if (id === undefined) throw new Error(`unknown resource ${resource}`);
    const started = performance.now();
    const reply = await handle.command({ cmd: 'connect', resource_id: id, ...extra }, 40_000);
    if (reply['ok'] !== true) throw new Error(`connect ${resource}: ${String(reply['error'])}`);
    return performance.now() - started;
  };

  const clientId = randomUUID();
  const client = await spawnClient(lab.ns.client, clientId, ['--hosts-file', `/etc/netns/${lab.ns.client}/hosts`, ...(options.clientArgs ?? [])], 'client');

  function gatewayLog(): string {
    try {
      return readFileSync(gatewayLogPath, 'utf8');
    } catch {
      return '';
    }
  }

  return {
    lab,
    portal,
    resourceIds,
    clientId,
    client,
    admin,
    connectClient: (resource, extra = {}) => connectWith(client, resource, extra),
    async addClient(ns, clientOptions = {}) {
      const id = randomUUID();
      const args = ['--tun', clientOptions.tun ?? 'tun-fzclient', ...(clientOptions.hostsFile === undefined ? [] : ['--hosts-file', clientOptions.hostsFile]), ...(clientOptions.args ?? [])];
      const handle = await spawnClient(ns, id, args, `client-${extraClients.length + 2}`, clientOptions.program);
      extraClients.push(handle);
      return { clientId: id, client: handle, connect: (resource, extra = {}) => connectWith(handle, resource, extra) };
    },
    startGateway,
    stopGateway,
    startPortal,
    stopPortal,
    gatewayLog,
    async portalDialect() {
      const gateways = (await admin('GET', '/admin/state'))['gateways'] as Json[];
      const joined = gateways.find((g) => g['joined'] === true);
      return joined === undefined ? null : String(joined['dialect']);
    },
    gatewayPid: () => (gateway !== undefined && gateway.exitCode === null ? gateway.pid : undefined),
    async stop() {
      for (const handle of [client, ...extraClients]) await handle.command({ cmd: 'quit' }, 2_000).catch(() => undefined);
      await stopGateway();
      for (const child of processes) if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

function curl(lab: Lab, method: string, url: string, body?: unknown): { ok: boolean; status: number; text: string } {
  const args = ['curl', '-sS', '-X', method, '-H', 'content-type: application/json', '-w', '\n%{http_code}', '--max-time', '40'];
  // The body goes through stdin: a large one (a hostile portal message) would not fit in argv.
  if (body !== undefined) args.push('--data-binary', '@-');
  try {
    const out = lab.exec(lab.ns.wan, [...args, url], { timeoutMs: 45_000, ...(body === undefined ? {} : { input: JSON.stringify(body) }) });
    const split = out.lastIndexOf('\n');
    const status = Number(out.slice(split + 1));
    return { ok: status >= 200 && status < 300, status, text: out.slice(0, split) };
  } catch (error) {
    return { ok: false, status: 0, text: String((error as { stderr?: unknown }).stderr ?? error) };
  }
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await condition()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function exited(child: ChildProcess | undefined): Promise<number | null> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
