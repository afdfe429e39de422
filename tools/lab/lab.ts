/**
 * The namespace lab: client, gateway, relay/portal ("wan") and resources as network namespaces,
 * optionally with NAT routers in front of the client and the gateway.
 *
 *   client 10.77.0.2 ─┐                                   (with NAT: client 192.168.71.2 ── natc 10.77.0.2)
 *                     ├─ br0 in wan: 10.77.0.1 (dev portal), 10.77.0.10 (coturn)
 *   gateway 10.77.0.3 ┘                                   (with NAT: gateway 192.168.72.2 ── natg 10.77.0.3)
 *   gateway eth1 10.78.0.1 ── resources 10.78.0.2 (+ .3, .4 for more services)
 *
 * The gateway namespace forwards and masquerades the client tunnel ranges towards the resources,
 * as the reference's packaging does. NAT routers drop unsolicited inbound packets like home
 * routers (without that, hole punching through two Linux NATs fails); `symmetric` NATs map every
 * destination to a new port, so only relayed paths work.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';

export type NatMode = 'none' | 'port-preserving' | 'symmetric';

export interface LabOptions {
  /** Namespace name prefix; keep it short (interface names are derived from it). */
  readonly prefix?: string;
  readonly clientNat?: NatMode;
  readonly gatewayNat?: NatMode;
}

export interface Lab {
  readonly prefix: string;
  readonly ns: { readonly wan: string; readonly client: string; readonly gateway: string; readonly resources: string; readonly natc?: string; readonly natg?: string };
  readonly addresses: {
    readonly portal: string;
    readonly relay: string;
    readonly client: string;
    readonly gateway: string;
    readonly gatewayLan: string;
    readonly resources: readonly string[];
  };
  /** Runs a command in a namespace and returns its stdout. Throws on a non-zero exit. */
  exec(ns: string, command: readonly string[], options?: { input?: string; timeoutMs?: number }): string;
  /**
   * Starts a long-running process in a namespace; it is killed by `down()`. Output goes to `log`;
   * with `interactive` the caller owns stdin and stdout (only stderr is logged).
   */
  spawn(ns: string, command: readonly string[], options?: { env?: NodeJS.ProcessEnv; log?: string; interactive?: boolean }): ChildProcess;
  down(): void;
}

const WAN_NET = '10.77.0';
const RES_NET = '10.78.0';

function run(command: readonly string[], input?: string, timeoutMs = 30_000): string {
  return execFileSync(command[0]!, command.slice(1), { input, timeout: timeoutMs, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

function tryRun(command: readonly string[]): void {
  try {
    run(command);
  } catch {
    // Clean-up of things that may not exist.
  }
}

export function labNamespaces(prefix: string): string[] {
  return ['wan', 'client', 'gw', 'res', 'natc', 'natg'].map((n) => `${prefix}-${n}`);
}

/** Removes every namespace of a lab (and the processes in them), whatever state it is in. */
export function labDown(prefix: string): void {
  for (const ns of labNamespaces(prefix)) {
    try {
      const pids = run(['ip', 'netns', 'pids', ns]).split('\n').filter(Boolean);
      for (const pid of pids) tryRun(['kill', '-9', pid]);
    } catch {
      // Namespace absent.
    }
  }
  for (const ns of labNamespaces(prefix)) {
    tryRun(['ip', 'netns', 'del', ns]);
    rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
  }
}

/**
 * `FZ_LAB_TAG` (one or two characters) is appended to every lab prefix, so that several checkouts
 * can run their namespace suites on one machine at the same time.
 */
export function labPrefix(prefix: string): string {
  return prefix + (process.env['FZ_LAB_TAG'] ?? '');
}

export function labUp(options: LabOptions = {}): Lab {
  const prefix = labPrefix(options.prefix ?? 'fzl');
  const clientNat = options.clientNat ?? 'none';
  const gatewayNat = options.gatewayNat ?? 'none';
  labDown(prefix);

  const ns = {
    wan: `${prefix}-wan`,
    client: `${prefix}-client`,
    gateway: `${prefix}-gw`,
    resources: `${prefix}-res`,
    ...(clientNat !== 'none' ? { natc: `${prefix}-natc` } : {}),
    ...(gatewayNat !== 'none' ? { natg: `${prefix}-natg` } : {}),
  };
  const children: ChildProcess[] = [];
  const ip = (...args: string[]): string => run(['ip', ...args]);
  const inNs = (name: string, ...command: string[]): string => run(['ip', 'netns', 'exec', name, ...command]);

  try {
    for (const name of Object.values(ns)) {
      ip('netns', 'add', name);
      ip('-n', name, 'link', 'set', 'lo', 'up');
    }
    ip('-n', ns.wan, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', ns.wan, 'addr', 'add', `${WAN_NET}.1/24`, 'dev', 'br0');
    ip('-n', ns.wan, 'addr', 'add', `${WAN_NET}.10/24`, 'dev', 'br0');
    ip('-n', ns.wan, 'link', 'set', 'br0', 'up');

    let port = 0;
    /** A veth pair from `a` (named `aName`) to `b` (named `bName`). */
    const link = (a: string, aName: string, b: string, bName: string): void => {
      const left = `${prefix}v${port}a`;
      const right = `${prefix}v${port++}b`;
      ip('link', 'add', left, 'type', 'veth', 'peer', 'name', right);
      ip('link', 'set', left, 'netns', a);
      ip('link', 'set', right, 'netns', b);
      ip('-n', a, 'link', 'set', left, 'name', aName);
      ip('-n', b, 'link', 'set', right, 'name', bName);
      ip('-n', a, 'link', 'set', aName, 'up');
      ip('-n', b, 'link', 'set', bName, 'up');
    };
    const toWan = (name: string, wanAddress: string, portName: string): void => {
      link(name, 'eth0', ns.wan, portName);
      ip('-n', ns.wan, 'link', 'set', portName, 'master', 'br0');
      ip('-n', name, 'addr', 'add', `${wanAddress}/24`, 'dev', 'eth0');
    };

    const site = (host: string, nat: string | undefined, mode: NatMode, wanAddress: string, lanNet: string, portName: string): string => {
      if (nat === undefined) {
        toWan(host, wanAddress, portName);
        return wanAddress;
      }
      toWan(nat, wanAddress, portName);
      link(nat, 'lan0', host, 'eth0');
      ip('-n', nat, 'addr', 'add', `${lanNet}.1/24`, 'dev', 'lan0');
      ip('-n', host, 'addr', 'add', `${lanNet}.2/24`, 'dev', 'eth0');
      ip('-n', host, 'route', 'add', 'default', 'via', `${lanNet}.1`);
      inNs(nat, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
      const masquerade = mode === 'symmetric' ? 'masquerade random,fully-random' : 'masquerade';
      run(['ip', 'netns', 'exec', nat, 'nft', '-f', '-'], [
        'table inet filter {',
        '  chain input {',
        '    type filter hook input priority filter; policy accept;',
        '    iifname "eth0" ct state new drop',
        '  }',
        '  chain forward {',
        '    type filter hook forward priority filter; policy accept;',
        '    iifname "eth0" ct state new drop',
        '  }',
        '}',
        'table ip nat {',
        '  chain post {',
        '    type nat hook postrouting priority srcnat; policy accept;',
        `    oifname "eth0" ${masquerade}`,
        '  }',
        '}',
      ].join('\n'));
      return `${lanNet}.2`;
    };

    const clientAddress = site(ns.client, ns.natc, clientNat, `${WAN_NET}.2`, '192.168.71', 'p-client');
    const gatewayAddress = site(ns.gateway, ns.natg, gatewayNat, `${WAN_NET}.3`, '192.168.72', 'p-gw');

    link(ns.gateway, 'eth1', ns.resources, 'eth0');
    ip('-n', ns.gateway, 'addr', 'add', `${RES_NET}.1/24`, 'dev', 'eth1');
    for (const host of [2, 3, 4]) ip('-n', ns.resources, 'addr', 'add', `${RES_NET}.${host}/24`, 'dev', 'eth0');
    ip('-n', ns.resources, 'route', 'add', 'default', 'via', `${RES_NET}.1`);

    // What the reference's packaging sets up on a gateway host.
    for (const sysctl of ['net.ipv4.ip_forward=1', 'net.ipv4.conf.all.src_valid_mark=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1']) {
      inNs(ns.gateway, 'sysctl', '-qw', sysctl);
    }
    run(['ip', 'netns', 'exec', ns.gateway, 'nft', '-f', '-'], [
      'table ip fz {',
      '  chain post {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      '    ip saddr 100.64.0.0/11 oifname "eth1" masquerade',
      '  }',
      '}',
      'table ip6 fz {',
      '  chain post {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      '    ip6 saddr fd00:2021:1111::/107 oifname "eth1" masquerade',
      '  }',
      '}',
    ].join('\n'));

    // The gateway resolves DNS resources with the resources' DNS server (dnsmasq, started by the caller).
    mkdirSync(`/etc/netns/${ns.gateway}`, { recursive: true });
    writeFileSync(`/etc/netns/${ns.gateway}/resolv.conf`, `nameserver ${RES_NET}.2\n`);
    mkdirSync(`/etc/netns/${ns.client}`, { recursive: true });
    writeFileSync(`/etc/netns/${ns.client}/resolv.conf`, `nameserver ${WAN_NET}.1\n`);
    writeFileSync(`/etc/netns/${ns.client}/hosts`, '127.0.0.1 localhost\n');

    return {
      prefix,
      ns,
      addresses: {
        portal: `${WAN_NET}.1`,
        relay: `${WAN_NET}.10`,
        client: clientAddress,
        gateway: gatewayAddress,
        gatewayLan: `${RES_NET}.1`,
        resources: [`${RES_NET}.2`, `${RES_NET}.3`, `${RES_NET}.4`],
      },
      exec: (name, command, execOptions) => run(['ip', 'netns', 'exec', name, ...command], execOptions?.input, execOptions?.timeoutMs),
      spawn: (name, command, spawnOptions) => {
        const interactive = spawnOptions?.interactive === true;
        const child = spawn('ip', ['netns', 'exec', name, ...command], {
          env: spawnOptions?.env ?? process.env,
          stdio: [interactive ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        });
        const logged = interactive ? [child.stderr] : [child.stdout, child.stderr];
        if (spawnOptions?.log !== undefined) {
          const log = createWriteStream(spawnOptions.log);
          for (const stream of logged) stream?.pipe(log, { end: false });
        } else {
          for (const stream of logged) stream?.resume();
        }
        children.push(child);
        return child;
      },
      down: () => {
        for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
        labDown(prefix);
      },
    };
  } catch (error) {
    for (const child of children) child.kill('SIGKILL');
    labDown(prefix);
    throw error;
  }
}
