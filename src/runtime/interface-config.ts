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
 *
 * Failures: an `ip` command that fails to set the addresses, MTU or link state is fatal, as the
 * reference's netlink errors are on every `init`. A command that does not finish within 5 s is
 * killed and the whole sequence retried after 1, 2, 4 ... 30 s, with a WARN each time, for as long
 * as no newer `init` supersedes it (the reference has no timeout to hit: its netlink calls wait).
 * A deadline is only declared missed once the event loop has had a turn to see the command's
 * exit: a timer that fires late because the loop was busy is not a timeout.
 */
import { execFile } from 'node:child_process';
import { createLogger } from '../log/index.ts';

export const TUN_MTU = 1280;
export const FIREZONE_TABLE = 0x2021fd00;
export const FIREZONE_MARK_TEXT = '0xfd002021';
export const CLIENT_ROUTE_V4 = '100.64.0.0/11';
export const CLIENT_ROUTE_V6 = 'fd00:2021:1111::/107';
const COMMAND_TIMEOUT_MS = 5000;
const RETRY_INITIAL_MS = 1000;
const RETRY_MAX_MS = 30_000;
/** How long a deadline that fired waits before it counts: enough loop turns for a pending child exit. */
const DEADLINE_GRACE_MS = 100;

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

/**
 * Runs `ip <args>`; injectable so the command sequence can be tested without root. `signal` aborts
 * a command that missed its deadline (the child is killed).
 */
export type IpRunner = (args: readonly string[], signal: AbortSignal) => Promise<CommandResult>;

export interface InterfaceConfigOptions {
  readonly run?: IpRunner;
  /** Per `ip` command. */
  readonly timeoutMs?: number;
  /** The first delay before a timed-out sequence is retried; doubled up to 30 s. */
  readonly retryDelayMs?: number;
  /** Stops retrying (a newer `init` supersedes this one); resolves without error. */
  readonly signal?: AbortSignal;
}

/** The caller adds the reference's outer context ("Failed to update TUN interface"). */
export class InterfaceConfigError extends Error {
  readonly code = 'TUN_CONFIG_FAILED';
}

/** An `ip` command that missed its deadline: retried, never fatal. */
export class InterfaceConfigTimeout extends Error {
  readonly code = 'TUN_CONFIG_TIMEOUT';
}

/**
 * Applies addresses, MTU, link state, rules and routes; throws InterfaceConfigError when the
 * addresses cannot be set. Timeouts are retried until the sequence completes or `signal` aborts.
 */
export async function applyInterfaceConfig(
  name: string,
  addresses: TunAddresses,
  options: InterfaceConfigOptions = {},
): Promise<void> {
  const run = withDeadline(options.run ?? runIp, options.timeoutMs ?? COMMAND_TIMEOUT_MS);
  let delay = options.retryDelayMs ?? RETRY_INITIAL_MS;
  for (let attempt = 1; ; attempt++) {
    if (isAborted(options.signal)) return;
    try {
      await configure(run, name, addresses);
      return;
    } catch (error) {
      if (!(error instanceof InterfaceConfigTimeout)) throw error;
      if (isAborted(options.signal)) return;
      logger.warn('Timed out updating the TUN interface, retrying', { attempt, error: error.message, retry_in_ms: delay });
    }
    await sleep(delay, options.signal);
    delay = Math.min(delay * 2, RETRY_MAX_MS);
  }
}

/**
 * A runner whose commands fail with InterfaceConfigTimeout after `timeoutMs`, counted only while
 * the loop runs: when the deadline timer fires, one more short timer lets the loop process a child
 * exit that was already pending (a busy loop fires timers first, before it reads exits).
 */
function withDeadline(run: IpRunner, timeoutMs: number): (args: readonly string[]) => Promise<CommandResult> {
  return (args) => {
    const abort = new AbortController();
    return new Promise<CommandResult>((resolve, reject) => {
      let settled = false;
      let timer = setTimeout(() => {
        timer = setTimeout(() => {
          if (settled) return;
          settled = true;
          abort.abort();
          reject(new InterfaceConfigTimeout(`\`ip ${args.join(' ')}\` did not finish within ${timeoutMs} ms`));
        }, DEADLINE_GRACE_MS);
      }, timeoutMs);
      run(args, abort.signal).then(
        (result) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(result);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  };
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

type Runner = (args: readonly string[]) => Promise<CommandResult>;

async function configure(run: Runner, name: string, addresses: TunAddresses): Promise<void> {
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

async function ensureRule(run: Runner, flag: '-4' | '-6', label: string): Promise<void> {
  const listed = await run(['-j', flag, 'rule', 'show']);
  if (listed.code === 0 && hasFirezoneRule(listed.stdout)) return;
  const added = await run([
    flag, 'rule', 'add', 'not', 'fwmark', FIREZONE_MARK_TEXT, 'table', String(FIREZONE_TABLE), 'protocol', 'kernel',
  ]);
  if (added.code !== 0 && !/File exists/.test(added.stderr)) {
    logger.warn(`Couldn't add ip rule for ${label}, packets won't be routed`, { error: added.stderr.trim() });
  }
}

async function setRoutes(run: Runner, name: string, flag: '-4' | '-6', route: string): Promise<void> {
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

async function must(run: Runner, args: readonly string[], context: string): Promise<void> {
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
  const result = await run(['-j', 'link', 'show', 'lo'], new AbortController().signal);
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

function runIp(args: readonly string[], signal: AbortSignal): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile('ip', args, { encoding: 'utf8', signal }, (error, stdout, stderr) => {
      if (error !== null && error.code === 'ENOENT') {
        resolve({ code: COMMAND_NOT_FOUND, stdout: '', stderr: IPROUTE2_MISSING });
        return;
      }
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}
