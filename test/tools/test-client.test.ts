import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseIp } from '../../src/ip/addr.ts';
import { IpPacket } from '../../src/ip/packet.ts';
import { decodeAssignedIpsPacket, isP2pControlPacket } from '../../src/ip/p2p-control.ts';
import { parseCommand } from '../../tools/test-client/control.ts';
import { ASSIGNED_IPS_RESEND_MS, DomainAssignments } from '../../tools/test-client/domain-assignments.ts';
import { ProxyIpAllocator } from '../../tools/test-client/proxy-ips.ts';
import { RouteTable } from '../../tools/test-client/route-table.ts';
import { makeUdpPacket } from '../../src/ip/make.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import { privilegedSkipReason } from '../support/env.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RESOURCE_A = '6f0c4b1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b';
const RESOURCE_B = '7a1d5c2f-3b4e-4f60-9bac-1d2e3f4a5b6c';

describe('test client: proxy IPs', () => {
  test('4 per family from the start of the proxy ranges, stable per (resource, domain)', () => {
    const allocator = new ProxyIpAllocator();
    const first = allocator.allocate(RESOURCE_A, 'echo.example.com')!;
    assert.deepEqual(first.ipv4, ['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4']);
    assert.deepEqual(first.ipv6, ['fd00:2021:1111:8000::', 'fd00:2021:1111:8000::1', 'fd00:2021:1111:8000::2', 'fd00:2021:1111:8000::3']);
    assert.equal(allocator.allocate(RESOURCE_A, 'ECHO.example.com'), first);
    const second = allocator.allocate(RESOURCE_B, 'echo.example.com')!;
    assert.equal(second.ipv4[0], '100.96.0.5');
    assert.equal(second.ipv6[0], 'fd00:2021:1111:8000::4');
  });
});

describe('test client: route table', () => {
  test('longest prefix wins; unrouted and non-IP packets have no gateway', () => {
    const routes = new RouteTable();
    routes.add('10.0.0.0/8', 'gw-wide', RESOURCE_A);
    routes.add('10.1.2.0/24', 'gw-narrow', RESOURCE_B);
    routes.add('fd00:2021:1111:8000::1', 'gw-v6', RESOURCE_B);
    const to = (destination: string): Uint8Array => {
      const src = parseIp(destination.includes(':') ? 'fd00:2021:1111::1' : '100.64.0.1')!;
      return makeUdpPacket(src, parseIp(destination)!, 1000, 2000, new Uint8Array(4));
    };
    assert.equal(routes.gatewayFor(to('10.1.2.3')), 'gw-narrow');
    assert.equal(routes.gatewayFor(to('10.9.9.9')), 'gw-wide');
    assert.equal(routes.gatewayFor(to('192.168.1.1')), undefined);
    assert.equal(routes.gatewayFor(to('fd00:2021:1111:8000::1')), 'gw-v6');
    assert.equal(routes.gatewayFor(to('fd00:2021:1111:8000::2')), undefined);
    assert.equal(routes.gatewayFor(new Uint8Array([0x10, 0, 0])), undefined);
    routes.removeResource(RESOURCE_B);
    assert.equal(routes.gatewayFor(to('10.1.2.3')), 'gw-wide');
    assert.equal(routes.add('not-a-cidr', 'x', RESOURCE_A), undefined);
  });
});

describe('test client: AssignedIps', () => {
  test('sent at once, repeated every 2 s while pending, stopped by the DomainStatus', () => {
    const assignments = new DomainAssignments();
    const proxies = ['100.96.0.1', 'fd00:2021:1111:8000::'];
    assert.ok(assignments.assign('gw', RESOURCE_A, 'echo.example.com', proxies, 1000));
    const first = assignments.pollPacket()!;
    assert.equal(first.gatewayId, 'gw');
    const view = new IpPacket();
    assert.equal(view.parse(first.packet), undefined);
    assert.ok(isP2pControlPacket(view));
    const decoded = decodeAssignedIpsPacket(view);
    assert.ok(typeof decoded !== 'string');
    assert.equal(decoded.resource, RESOURCE_A);
    assert.equal(decoded.domain, 'echo.example.com');
    assert.equal(decoded.proxyIps.length, 2);

    assert.equal(assignments.pollTimeout(), 1000 + ASSIGNED_IPS_RESEND_MS);
    assignments.handleTimeout(1000 + ASSIGNED_IPS_RESEND_MS - 1);
    assert.equal(assignments.pollPacket(), undefined);
    assignments.handleTimeout(1000 + ASSIGNED_IPS_RESEND_MS);
    assert.ok(assignments.pollPacket() !== undefined);

    assert.equal(assignments.handleDomainStatus('other-gw', RESOURCE_A, 'echo.example.com', 'Active'), undefined);
    assert.equal(assignments.handleDomainStatus('gw', RESOURCE_A, 'Echo.Example.com', 'Active')?.status, 'Active');
    assert.equal(assignments.pollTimeout(), undefined);
    assignments.handleTimeout(10_000);
    assert.equal(assignments.pollPacket(), undefined);
  });

  test('refuses proxy IPs that are not addresses', () => {
    assert.equal(new DomainAssignments().assign('gw', RESOURCE_A, 'a.example', ['100.96.0.300'], 0), false);
  });
});

describe('test client: control commands', () => {
  test('parses commands and reports bad ones with the id', () => {
    assert.deepEqual(parseCommand('{"id":1,"cmd":"connect","resource_id":"r","routes":["10.0.0.0/8"]}'), {
      id: 1,
      command: { cmd: 'connect', resource_id: 'r', routes: ['10.0.0.0/8'] },
    });
    assert.deepEqual(parseCommand('{"id":2,"cmd":"connect"}'), { id: 2, error: 'connect needs resource_id' });
    assert.deepEqual(parseCommand('{"id":3,"cmd":"fly"}'), { id: 3, error: 'unknown cmd "fly"' });
    assert.deepEqual(parseCommand('nope'), { id: null, error: 'not JSON' });
    assert.deepEqual(parseCommand('{"cmd":"disconnect"}'), { id: null, command: { cmd: 'disconnect' } });
  });
});

// --- end to end, in network namespaces ---

const PID = process.pid;
const NS = { wan: `fztc-w-${PID}`, client: `fztc-c-${PID}`, gateway: `fztc-g-${PID}`, resource: `fztc-r-${PID}` };
const WAN = { portal: '10.77.0.1', client: '10.77.0.2', gateway: '10.77.0.3' };
const WAN6 = { portal: 'fd77::1', client: 'fd77::2', gateway: 'fd77::3' };
const RESOURCE_IP = '10.88.0.2';
const RESOURCE_IP6 = 'fd88::2';
const PORTAL_PORT = 18081;
const RELAY_PORT = 3478;
const RELAY_SECRET = 'fztc-relay-secret';
const TOKEN = 'fztc-token';
const GATEWAY_FIREZONE_ID = 'fztc-gateway-1';
const CIDR_RESOURCE = { id: '1b2c3d4e-5f60-4718-89ab-cdef01234567', type: 'cidr', address: '10.88.0.0/24', name: 'lab network' };
const CIDR6_RESOURCE = { id: '5f607182-93a4-4b5c-8def-012345678901', type: 'cidr', address: 'fd88::/64', name: 'lab network v6' };
const DNS_RESOURCE = { id: '2c3d4e5f-6071-4829-9abc-def012345678', type: 'dns', address: 'echo.fztc.test', name: 'echo' };
const CLIENT_IDS = ['3d4e5f60-7182-493a-8bcd-ef0123456789', '4e5f6071-8293-4a4b-9cde-f01234567890'];

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

function inNs(ns: string, ...command: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('ip', ['netns', 'exec', ns, ...command], { encoding: 'utf8', cwd: REPO_ROOT, timeout: 20_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function probe(ns: string, ...args: string[]): Record<string, unknown> {
  const run = inNs(ns, process.execPath, '--import', 'tsx', 'tools/test-client/probe.ts', ...args);
  const line = run.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { ok: false, error: `probe failed: ${run.stderr}` };
  }
}

/** A child process in a namespace whose stdout is JSON lines; stderr is kept for failure messages. */
class LabProcess {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[] = [];
  stderr = '';
  private readonly listeners: (() => void)[] = [];

  constructor(
    readonly name: string,
    ns: string,
    command: string[],
    env: Record<string, string> = {},
  ) {
    this.child = spawn('ip', ['netns', 'exec', ns, 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...command], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.stderr += `[stdout] ${line}\n`;
      }
      for (const wake of this.listeners.splice(0)) wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-20_000);
    });
    this.child.on('exit', () => {
      for (const wake of this.listeners.splice(0)) wake();
    });
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async waitForLine(match: (line: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(match);
      if (found !== undefined) return found;
      if (this.exited) throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no matching line within ${timeoutMs} ms:\n${this.stderr.slice(-4000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.listeners.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private nextId = 1;

  /** Sends a control command and waits for its answer. */
  async command(command: Record<string, unknown>, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    return this.waitForLine((line) => line['id'] === id, timeoutMs);
  }

  stop(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        resolve();
      }, 3_000);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      // `ip netns exec` execs the command, so the child's pid is the program itself.
      this.child.kill('SIGTERM');
    });
  }
}

const skip = privilegedSkipReason('ip', 'iptables', 'ip6tables', 'turnserver', 'curl') ?? (isNativeAddonBuilt() ? undefined : 'needs the native addon (npm run build:native)');

describe('test client end to end (namespaces: portal + coturn, gateway, resource, client)', { skip }, () => {
  const processes: LabProcess[] = [];
  const etcNetns = `/etc/netns/${NS.gateway}`;
  // `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: the client rewrites it, programs see the names.
  const clientEtc = `/etc/netns/${NS.client}`;
  const clientHosts = `${clientEtc}/hosts`;
  const scratch = `/tmp/fztc-${PID}`;
  let gateway: LabProcess;
  let relay: LabProcess;

  const startClient = async (clientId: string, tun: string, hostsFile?: string): Promise<LabProcess> => {
    const client = new LabProcess(`client ${clientId.slice(0, 8)}`, NS.client, [
      process.execPath, '--import', 'tsx', 'tools/test-client/main.ts',
      '--portal', `http://${WAN.portal}:${PORTAL_PORT}`, '--client-id', clientId,
      '--relay', `${WAN.portal}:${RELAY_PORT}`, '--relay-secret', RELAY_SECRET, '--tun', tun,
      ...(hostsFile === undefined ? [] : ['--hosts-file', hostsFile]),
    ], { RUST_LOG: 'info' });
    processes.push(client);
    await client.waitForLine((line) => line['event'] === 'ready', 20_000);
    return client;
  };

  before(async () => {
    for (const ns of Object.values(NS)) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', NS.wan, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', NS.wan, 'address', 'add', `${WAN.portal}/24`, 'dev', 'br0');
    ip('-n', NS.wan, 'address', 'add', `${WAN6.portal}/64`, 'dev', 'br0', 'nodad');
    ip('-n', NS.wan, 'link', 'set', 'br0', 'up');
    for (const [ns, address, address6, port] of [[NS.client, WAN.client, WAN6.client, 'pc'], [NS.gateway, WAN.gateway, WAN6.gateway, 'pg']] as const) {
      ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', NS.wan);
      ip('-n', NS.wan, 'link', 'set', port, 'master', 'br0', 'up');
      ip('-n', ns, 'address', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', ns, 'address', 'add', `${address6}/64`, 'dev', 'eth0', 'nodad');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
    }
    ip('-n', NS.gateway, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.resource);
    ip('-n', NS.gateway, 'address', 'add', '10.88.0.1/24', 'dev', 'eth1');
    ip('-n', NS.gateway, 'link', 'set', 'eth1', 'up');
    ip('-n', NS.resource, 'address', 'add', `${RESOURCE_IP}/24`, 'dev', 'eth0');
    ip('-n', NS.resource, 'link', 'set', 'eth0', 'up');
    ip('-n', NS.resource, 'route', 'add', 'default', 'via', '10.88.0.1');
    ip('-n', NS.gateway, 'address', 'add', 'fd88::1/64', 'dev', 'eth1', 'nodad');
    ip('-n', NS.resource, 'address', 'add', `${RESOURCE_IP6}/64`, 'dev', 'eth0', 'nodad');
    ip('-n', NS.resource, '-6', 'route', 'add', 'default', 'via', 'fd88::1');
    assert.equal(inNs(NS.gateway, 'sysctl', '-qw', 'net.ipv4.ip_forward=1').status, 0);
    const masquerade = inNs(NS.gateway, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', '100.64.0.0/11', '-o', 'eth1', '-j', 'MASQUERADE');
    assert.equal(masquerade.status, 0, masquerade.stderr);
    assert.equal(inNs(NS.gateway, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1').status, 0);
    const masquerade6 = inNs(NS.gateway, 'ip6tables', '-t', 'nat', '-A', 'POSTROUTING', '-s', 'fd00:2021:1111::/107', '-o', 'eth1', '-j', 'MASQUERADE');
    assert.equal(masquerade6.status, 0, masquerade6.stderr);

    // The gateway resolves the DNS resource with getaddrinfo: `ip netns exec` mounts this over /etc/hosts.
    mkdirSync(etcNetns, { recursive: true });
    writeFileSync(`${etcNetns}/hosts`, `127.0.0.1 localhost\n${RESOURCE_IP} ${DNS_RESOURCE.address}\n${RESOURCE_IP6} ${DNS_RESOURCE.address}\n`);
    // The gateway probes its upstream nameservers at start; the host's has no route from this namespace, and an
    // ENETUNREACH from that probe currently crashes the gateway (dns-forwarder queryUdp ignores the connect error).
    writeFileSync(`${etcNetns}/resolv.conf`, 'nameserver 127.0.0.1\n');
    mkdirSync(clientEtc, { recursive: true });
    writeFileSync(clientHosts, '127.0.0.1 localhost\n');
    mkdirSync(scratch, { recursive: true });
    writeFileSync(`${scratch}/portal.json`, JSON.stringify({
      resources: [CIDR_RESOURCE, CIDR6_RESOURCE, DNS_RESOURCE],
      policies: [{ resource_id: CIDR_RESOURCE.id }, { resource_id: CIDR6_RESOURCE.id }, { resource_id: DNS_RESOURCE.id }],
    }));

    relay = new LabProcess('coturn', NS.wan, [
      'turnserver', '-n', '--no-cli', '--no-tls', '--no-dtls', '--use-auth-secret', `--static-auth-secret=${RELAY_SECRET}`,
      '--realm=firezone', `--listening-ip=${WAN.portal}`, `--relay-ip=${WAN.portal}`, `--relay-ip=${WAN6.portal}`, `--listening-port=${RELAY_PORT}`,
      '--min-port=49152', '--max-port=65535', '--allow-loopback-peers', '--no-stdout-log', `--pidfile=${scratch}/turnserver.pid`,
      '--log-file=stdout', '--simple-log', `--userdb=${scratch}/turndb`,
    ]);
    processes.push(relay);
    const portal = new LabProcess('dev portal', NS.wan, [
      process.execPath, '--import', 'tsx', 'tools/dev-portal/main.ts', '--listen', `${WAN.portal}:${PORTAL_PORT}`,
      '--token', TOKEN, '--relay', `${WAN.portal}:${RELAY_PORT}`, '--relay-secret', RELAY_SECRET, '--config', `${scratch}/portal.json`,
    ]);
    processes.push(portal);
    const resource = new LabProcess('resource', NS.resource, [
      process.execPath, '--import', 'tsx', 'tools/test-client/resource-server.ts', '--listen', RESOURCE_IP, '--udp-port', '7777', '--http-port', '8080',
    ]);
    processes.push(resource);
    const resource6 = new LabProcess('resource v6', NS.resource, [
      process.execPath, '--import', 'tsx', 'tools/test-client/resource-server.ts', '--listen', RESOURCE_IP6, '--udp-port', '7777', '--http-port', '8080',
    ]);
    processes.push(resource6);
    await portal.waitForLine((line) => 'listening' in line, 20_000);
    await resource.waitForLine((line) => 'listening' in line, 20_000);
    await resource6.waitForLine((line) => 'listening' in line, 20_000);

    gateway = new LabProcess('gateway', NS.gateway, [process.execPath, '--import', 'tsx', 'src/bin/firezone-gateway.ts'], {
      FIREZONE_API_URL: `ws://${WAN.portal}:${PORTAL_PORT}`,
      FIREZONE_TOKEN: TOKEN,
      FIREZONE_ID: GATEWAY_FIREZONE_ID,
      FIREZONE_NAME: 'fztc-gateway',
      HEALTH_CHECK_ADDR: '127.0.0.1:18080',
      RUST_LOG: 'info',
    });
    processes.push(gateway);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const state = inNs(NS.wan, 'curl', '-s', `http://${WAN.portal}:${PORTAL_PORT}/admin/state`);
      const joined = state.status === 0 && (JSON.parse(state.stdout) as { gateways: { joined: boolean }[] }).gateways.some((g) => g.joined);
      if (joined) break;
      if (gateway.exited || Date.now() > deadline) throw new Error(`the gateway did not join the portal:\n${gateway.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  after(async () => {
    await Promise.allSettled(processes.map((p) => p.stop()));
    for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(etcNetns, { recursive: true, force: true });
    rmSync(clientEtc, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  test('CIDR resource over a direct path: UDP echo and HTTP through the tunnel', async (t) => {
    const client = await startClient(CLIENT_IDS[0]!, 'tun-fzclient', clientHosts);
    const started = performance.now();
    const connected = await client.command({ cmd: 'connect', resource_id: CIDR_RESOURCE.id, timeout_ms: 15_000 });
    t.diagnostic(`connect (flow request to WireGuard session): ${Math.round(performance.now() - started)} ms`);
    assert.equal(connected['ok'], true, `${JSON.stringify(connected)}\n--- client\n${client.stderr}\n--- gateway\n${gateway.stderr.slice(-6000)}`);
    assert.equal(connected['path'], 'direct');
    assert.deepEqual(connected['routes'], ['10.88.0.0/24']);

    const echo = probe(NS.client, 'udp', RESOURCE_IP, '7777', 'hello through the tunnel');
    assert.equal(echo['ok'], true, `${JSON.stringify(echo)}\n--- client\n${client.stderr}\n--- gateway\n${gateway.stderr.slice(-6000)}`);
    assert.equal(echo['reply'], 'hello through the tunnel');
    assert.equal(echo['from'], `${RESOURCE_IP}:7777`);

    const page = inNs(NS.client, 'curl', '-s', '--max-time', '5', `http://${RESOURCE_IP}:8080/hello`);
    assert.equal(page.status, 0, page.stderr);
    // The gateway's kernel masquerades the client's tunnel address onto its resource-side interface.
    assert.deepEqual(JSON.parse(page.stdout), { path: '/hello', peer: '10.88.0.1' });

    const state = await client.command({ cmd: 'state' });
    const stats = state['stats'] as Record<string, number>;
    assert.ok(stats['tun_to_tunnel']! > 0 && stats['tunnel_to_tun']! > 0, JSON.stringify(stats));
    const connections = state['connections'] as { established: boolean; path: string }[];
    assert.deepEqual(connections.map((c) => [c.established, c.path]), [[true, 'direct']]);
  });

  test('IPv6 CIDR resource: UDP echo and HTTP over IPv6 through the same gateway connection', async () => {
    const client = processes.find((p) => p.name.startsWith('client') && !p.exited) ?? (await startClient(CLIENT_IDS[0]!, 'tun-fzclient', clientHosts));
    const connected = await client.command({ cmd: 'connect', resource_id: CIDR6_RESOURCE.id, timeout_ms: 15_000 });
    assert.equal(connected['ok'], true, `${JSON.stringify(connected)}\n--- client\n${client.stderr}\n--- gateway\n${gateway.stderr.slice(-6000)}`);
    assert.deepEqual(connected['routes'], ['fd88::/64']);
    const echo = probe(NS.client, 'udp', RESOURCE_IP6, '7777', 'hello over v6');
    assert.equal(echo['ok'], true, `${JSON.stringify(echo)}\n--- gateway\n${gateway.stderr.slice(-6000)}`);
    assert.equal(echo['reply'], 'hello over v6');
    assert.equal(echo['from'], `${RESOURCE_IP6}:7777`);
    const page = inNs(NS.client, 'curl', '-s', '--max-time', '5', `http://[${RESOURCE_IP6}]:8080/v6`);
    assert.equal(page.status, 0, page.stderr);
    assert.deepEqual(JSON.parse(page.stdout), { path: '/v6', peer: 'fd88::1' });
  });

  test('DNS resource: proxy IPs announced with AssignedIps, Active status, traffic to a proxy IP reaches the resource', async () => {
    const client = processes.find((p) => p.name.startsWith('client') && !p.exited) ?? (await startClient(CLIENT_IDS[0]!, 'tun-fzclient', clientHosts));
    const connected = await client.command({ cmd: 'connect', resource_id: DNS_RESOURCE.id, timeout_ms: 15_000 });
    assert.equal(connected['ok'], true, `${JSON.stringify(connected)}\n--- client\n${client.stderr}\n--- gateway\n${gateway.stderr.slice(-6000)}`);
    assert.equal(connected['domain'], DNS_RESOURCE.address);
    assert.equal(connected['domain_status'], 'Active');
    const proxies = connected['proxy_ips'] as string[];
    assert.equal(proxies.length, 8);
    assert.equal(proxies[0], '100.96.0.1');

    const echo = probe(NS.client, 'udp', proxies[0]!, '7777', 'via a proxy IP');
    assert.equal(echo['ok'], true, `${JSON.stringify(echo)}\n--- gateway\n${gateway.stderr.slice(-6000)}`);
    assert.equal(echo['reply'], 'via a proxy IP');
    // The gateway translates the reply's source back to the proxy IP.
    assert.equal(echo['from'], `${proxies[0]}:7777`);

    const lookup = await client.command({ cmd: 'proxy_ips', resource_id: DNS_RESOURCE.id });
    assert.deepEqual(lookup['proxy_ips'], proxies);

    const echo6 = probe(NS.client, 'udp', proxies[4]!, '7777', 'via an IPv6 proxy IP');
    assert.equal(echo6['reply'], 'via an IPv6 proxy IP', JSON.stringify(echo6));
    assert.equal(echo6['from'], `${proxies[4]}:7777`);

    // By name: the client wrote its proxy IPs into the namespace's hosts file.
    const page = inNs(NS.client, 'curl', '-4', '-s', '--max-time', '5', `http://${DNS_RESOURCE.address}:8080/by-name`);
    assert.equal(page.status, 0, page.stderr);
    assert.deepEqual(JSON.parse(page.stdout), { path: '/by-name', peer: '10.88.0.1' });

    const again = await client.command({ cmd: 'reassign', resource_id: DNS_RESOURCE.id, domain: DNS_RESOURCE.address });
    assert.equal(again['status'], 'Active');

    // A name the resource's address does not cover: the gateway answers Inactive (gateway-core §5.3 step 2).
    const foreign = await client.command({ cmd: 'connect', resource_id: DNS_RESOURCE.id, domain: 'other.fztc.test', timeout_ms: 15_000 });
    assert.equal(foreign['ok'], true, JSON.stringify(foreign));
    assert.equal(foreign['domain_status'], 'Inactive');
    assert.equal((foreign['proxy_ips'] as string[])[0], '100.96.0.5');

    const disconnected = await client.command({ cmd: 'disconnect', resource_id: DNS_RESOURCE.id });
    assert.deepEqual(disconnected['disconnected'], [DNS_RESOURCE.id]);
    const state = await client.command({ cmd: 'state' });
    const remaining = (state['resources'] as { resource_id: string }[]).map((r) => r.resource_id);
    assert.ok(!remaining.includes(DNS_RESOURCE.id) && remaining.includes(CIDR_RESOURCE.id), JSON.stringify(remaining));
    const gone = probe(NS.client, 'udp', proxies[0]!, '7777', 'after disconnect', '--tries', '1', '--timeout-ms', '500');
    assert.equal(gone['ok'], false, 'the proxy IP is no longer routed into the tunnel');
    const still = probe(NS.client, 'udp', RESOURCE_IP, '7777', 'cidr still up');
    assert.equal(still['reply'], 'cidr still up', 'the gateway connection stays for the CIDR resource');
  });

  test('relayed path: with direct UDP blocked the client still reaches the resource through coturn', async (t) => {
    const block = inNs(NS.client, 'iptables', '-A', 'OUTPUT', '-o', 'eth0', '-p', 'udp', '!', '--dport', String(RELAY_PORT), '-j', 'DROP');
    assert.equal(block.status, 0, block.stderr);
    try {
      const client = await startClient(CLIENT_IDS[1]!, 'tun-fzclient2');
      const started = performance.now();
      const connected = await client.command({ cmd: 'connect', resource_id: CIDR_RESOURCE.id, timeout_ms: 10_000 });
      t.diagnostic(`connect over the relay: ${Math.round(performance.now() - started)} ms`);
      assert.equal(connected['ok'], true, `${JSON.stringify(connected)}\n--- client\n${client.stderr}\n--- gateway\n${gateway.stderr.slice(-6000)}\n--- coturn\n${relay.stderr.slice(-6000)}`);
      assert.equal(connected['path'], 'relay');
      // Two TUN devices route 10.88.0.0/24 now; the newer route (this client's) replaced the first.
      const echo = probe(NS.client, 'udp', RESOURCE_IP, '7777', 'relayed');
      assert.equal(echo['ok'], true, `${JSON.stringify(echo)}\n--- client\n${client.stderr}`);
      assert.equal(echo['reply'], 'relayed');
    } finally {
      inNs(NS.client, 'iptables', '-D', 'OUTPUT', '-o', 'eth0', '-p', 'udp', '!', '--dport', String(RELAY_PORT), '-j', 'DROP');
    }
  });
});
