/**
 * Configures `tun-firezone` after every portal `init` (operations §3), with iproute2 commands.
 *
 * Routing choice: the reference's policy rule, not main-table routes. Each family gets one rule
 * "not fwmark 0xfd002021 lookup 539098368" and the client ranges are routed to the TUN in that
 * table. Our own sockets carry the mark and so never loop back into the tunnel, the main table
 * stays untouched, and `ip rule` / `ip route show table 539098368` look exactly like the Rust
 * gateway's (drop-in checklist row 13). Destinations without a route in the table fall through
 * to the main table.
 *
 * Idempotent: addresses are flushed and re-added, the rule is added only when missing (the
 * kernel accepts duplicate rules without a priority), routes are `replace`d and any other route
 * in the table is removed.
 */
import { execFile } from 'node:child_process';
import { createLogger } from '../log/index.ts';

export const TUN_MTU = 1280;
export const FIREZONE_TABLE = 0x2021fd00;
export const FIREZONE_MARK_TEXT = '0xfd002021';
export const CLIENT_ROUTE_V4 = '100.64.0.0/11';
export const CLIENT_ROUTE_V6 = 'fd00:2021:1111::/107';
const TIMEOUT_MS = 5000;

const logger = createLogger('tun::linux');

export interface TunAddresses {
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `ip <args>`; injectable so the command sequence can be tested without root. */
export type IpRunner = (args: readonly string[]) => Promise<CommandResult>;

export interface InterfaceConfigOptions {
  readonly run?: IpRunner;
  readonly timeoutMs?: number;
}

/** The caller adds the reference's outer context ("Failed to update TUN interface"). */
export class InterfaceConfigError extends Error {
  readonly code = 'TUN_CONFIG_FAILED';
}

/** Applies addresses, MTU, link state, rules and routes; throws InterfaceConfigError when the addresses cannot be set. */
export async function applyInterfaceConfig(
  name: string,
  addresses: TunAddresses,
  options: InterfaceConfigOptions = {},
): Promise<void> {
  const run = options.run ?? runIp;
  const timeoutMs = options.timeoutMs ?? TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new InterfaceConfigError(`Timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([configure(run, name, addresses), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function configure(run: IpRunner, name: string, addresses: TunAddresses): Promise<void> {
  await must(run, ['address', 'flush', 'dev', name], 'Failed to set TUN interface IPs');
  await must(run, ['link', 'set', 'dev', name, 'mtu', String(TUN_MTU)], 'Failed to set TUN interface MTU');
  const v4 = await run(['-4', 'address', 'add', `${addresses.ipv4}/32`, 'dev', name]);
  const v6 = await run(['-6', 'address', 'add', `${addresses.ipv6}/128`, 'dev', name, 'nodad']);
  if (v4.code !== 0 && v6.code !== 0) {
    throw new InterfaceConfigError(`Failed to set TUN interface IPs: ${v4.stderr.trim()}`);
  }
  if (v4.code !== 0) logger.warn('Failed to set IPv4 address on TUN interface', { error: v4.stderr.trim() });
  if (v6.code !== 0) logger.warn('Failed to set IPv6 address on TUN interface', { error: v6.stderr.trim() });
  await must(run, ['link', 'set', 'dev', name, 'up'], 'Failed to bring TUN interface up');

  const families: { flag: '-4' | '-6'; route: string; label: string }[] = [];
  if (v4.code === 0) families.push({ flag: '-4', route: CLIENT_ROUTE_V4, label: 'ipv4' });
  if (v6.code === 0) families.push({ flag: '-6', route: CLIENT_ROUTE_V6, label: 'ipv6' });
  for (const family of families) await ensureRule(run, family.flag, family.label);
  logger.info('Setting new routes', { new_routes: families.map((f) => f.route).join(', ') });
  for (const family of families) await setRoutes(run, name, family.flag, family.route);
}

async function ensureRule(run: IpRunner, flag: '-4' | '-6', label: string): Promise<void> {
  const listed = await run(['-j', flag, 'rule', 'show']);
  if (listed.code === 0 && hasFirezoneRule(listed.stdout)) return;
  const added = await run([
    flag, 'rule', 'add', 'not', 'fwmark', FIREZONE_MARK_TEXT, 'table', String(FIREZONE_TABLE), 'protocol', 'kernel',
  ]);
  if (added.code !== 0 && !/File exists/.test(added.stderr)) {
    logger.warn(`Couldn't add ip rule for ${label}, packets won't be routed`, { error: added.stderr.trim() });
  }
}

async function setRoutes(run: IpRunner, name: string, flag: '-4' | '-6', route: string): Promise<void> {
  const table = String(FIREZONE_TABLE);
  const replaced = await run([flag, 'route', 'replace', route, 'dev', name, 'table', table, 'proto', 'static']);
  if (replaced.code !== 0 && !/File exists|not supported/i.test(replaced.stderr)) {
    logger.warn('Failed to add route', { route, error: replaced.stderr.trim() });
  }
  const listed = await run(['-j', flag, 'route', 'show', 'table', table]);
  if (listed.code !== 0) return;
  for (const stale of staleRoutes(listed.stdout, route)) {
    const removed = await run([flag, 'route', 'del', stale, 'table', table]);
    if (removed.code !== 0 && !/No such|not found/i.test(removed.stderr)) {
      logger.warn('Failed to remove route', { route: stale, error: removed.stderr.trim() });
    }
  }
}

function hasFirezoneRule(json: string): boolean {
  const rules = parseJsonArray(json);
  return rules.some(
    (rule) =>
      'not' in rule &&
      String(rule['fwmark']) === FIREZONE_MARK_TEXT &&
      String(rule['table']) === String(FIREZONE_TABLE),
  );
}

function staleRoutes(json: string, wanted: string): string[] {
  const [wantedPrefix] = wanted.split('/');
  const stale: string[] = [];
  for (const route of parseJsonArray(json)) {
    const dst = String(route['dst']);
    if (dst === wanted || dst.split('/')[0] === wantedPrefix) continue;
    stale.push(dst);
  }
  return stale;
}

function parseJsonArray(json: string): Record<string, unknown>[] {
  try {
    const value: unknown = JSON.parse(json || '[]');
    return Array.isArray(value) ? (value as Record<string, unknown>[]) : [];
  } catch {
    return [];
  }
}

async function must(run: IpRunner, args: readonly string[], context: string): Promise<void> {
  const result = await run(args);
  if (result.code !== 0) {
    throw new InterfaceConfigError(`${context}: ${result.stderr.trim()}`);
  }
}

export const IPROUTE2_MISSING =
  '`ip` was not found: install the iproute2 package (Debian and Ubuntu: apt-get install iproute2; Alpine: apk add iproute2)';
export const IPROUTE2_WITHOUT_JSON =
  '`ip` does not support JSON output (`ip -j`), as the busybox applet does not: install the iproute2 package (Debian and Ubuntu: apt-get install iproute2; Alpine: apk add iproute2)';

/**
 * Checks at start-up that `ip` is iproute2 and answers `-j` with JSON, so a host without it
 * fails with the package to install rather than with an empty reason on the first `init`.
 */
export async function checkIproute2(run: IpRunner = runIp): Promise<void> {
  const result = await run(['-j', 'link', 'show', 'lo']);
  if (result.code === COMMAND_NOT_FOUND) throw new Error(IPROUTE2_MISSING);
  if (result.code !== 0 || !Array.isArray(parseJson(result.stdout))) {
    const detail = result.stderr.trim().split('\n')[0] ?? '';
    throw new Error(detail === '' ? IPROUTE2_WITHOUT_JSON : `${IPROUTE2_WITHOUT_JSON} (ip said: ${detail})`);
  }
}

const COMMAND_NOT_FOUND = 127;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function runIp(args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile('ip', args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error !== null && error.code === 'ENOENT') {
        resolve({ code: COMMAND_NOT_FOUND, stdout: '', stderr: IPROUTE2_MISSING });
        return;
      }
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}
