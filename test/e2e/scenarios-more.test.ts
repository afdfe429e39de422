/**
 * More end-to-end scenarios on the namespace lab (prefix `fzm`, so this file can run next to
 * e2e.test.ts): resource updates, expiry, `init` authorizations, gateway restart, GOODBYE on the last
 * revocation, access kept through a failed connection, an Internet resource and two clients behind
 * one DNS proxy IP on one stack; relay loss on a relayed stack.
 * Needs root, the Debian tools .ci/run installs, and `npm run build` (dist/) plus the native addon.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { labPrefix, labUp, type Lab } from '../../tools/lab/lab.ts';
import { privilegedSkipReason } from '../support/env.ts';
import { http, probe, tcpConnect, udpEcho, type Probe } from './probes.ts';
import { REPO_ROOT, startGatewayStack, waitFor, type GatewayStack } from './stack.ts';

const skip =
  privilegedSkipReason('ip', 'nft', 'turnserver', 'dnsmasq', 'curl') ??
  (existsSync(`${REPO_ROOT}dist/bin/firezone-gateway.js`) ? undefined : 'needs the built gateway (npm run build)') ??
  (existsSync(`${REPO_ROOT}build/Release/firezone_native.node`) ? undefined : 'needs the native addon (npm ci)');

// Overridable so a developer's run does not tear down the lab of a CI run of the same file.
const PREFIX = process.env['FZ_E2E_MORE_PREFIX'] ?? 'fzm';
// Tagged like the lab's own namespaces: parallel checkouts must not share (and kill -9) it.
const SECOND_CLIENT_NS = `${labPrefix(PREFIX)}-c2`;
const SHARED_SOURCE_PORT = 20_007;
const SECOND_CLIENT_ADDRESS = '10.77.0.5';
const WEB = '10.78.0.2';
const ECHO = '10.78.0.3';
const TEMP = '10.78.0.4';
const JOINED = 'Joined gateway room on portal';

type Json = Record<string, unknown>;

function sh(command: readonly string[], input?: string): string {
  return execFileSync(command[0]!, command.slice(1), { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
}

function removeNamespace(name: string): void {
  try {
    sh(['ip', 'link', 'del', `${labPrefix(PREFIX)}c2a`]);
  } catch {
    // Only left behind by an interrupted set-up.
  }
  try {
    for (const pid of sh(['ip', 'netns', 'pids', name]).split('\n').filter(Boolean)) sh(['kill', '-9', pid]);
    sh(['ip', 'netns', 'del', name]);
  } catch {
    // Absent.
  }
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** One more host on the lab's wan bridge, without NAT, for a second test client. */
function addBridgeHost(lab: Lab, name: string, address: string): void {
  removeNamespace(name);
  const left = `${labPrefix(PREFIX)}c2a`;
  const right = `${labPrefix(PREFIX)}c2b`;
  sh(['ip', 'netns', 'add', name]);
  sh(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  sh(['ip', 'link', 'add', left, 'type', 'veth', 'peer', 'name', right]);
  sh(['ip', 'link', 'set', left, 'netns', name]);
  sh(['ip', 'link', 'set', right, 'netns', lab.ns.wan]);
  sh(['ip', '-n', name, 'link', 'set', left, 'name', 'eth0']);
  sh(['ip', '-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
  sh(['ip', '-n', name, 'link', 'set', 'eth0', 'up']);
  sh(['ip', '-n', lab.ns.wan, 'link', 'set', right, 'master', 'br0']);
  sh(['ip', '-n', lab.ns.wan, 'link', 'set', right, 'up']);
  mkdirSync(`/etc/netns/${name}`, { recursive: true });
  writeFileSync(`/etc/netns/${name}/resolv.conf`, `nameserver ${lab.addresses.portal}\n`);
  writeFileSync(`/etc/netns/${name}/hosts`, '127.0.0.1 localhost\n');
}

/** One UDP echo attempt with a short timeout: for checks that expect silence. */
function udpOnce(lab: Lab, address: string, text: string, ns: string = lab.ns.client): Probe {
  return probe(lab, ['udp', address, '7', text, '--tries', '1'], 1_000, ns);
}

// Sends `count` datagrams `<tag>-<i>` from a fixed source port and prints every reply with its sender.
const BURST_SCRIPT = `
const dgram = require('node:dgram');
const [host, tag, count, port] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
const replies = [];
socket.on('message', (m, r) => replies.push({ text: m.toString(), from: r.address + ':' + r.port }));
socket.bind(Number(port), () => {
  let i = 0;
  const timer = setInterval(() => {
    socket.send(tag + '-' + i, 7, host);
    if (++i >= Number(count)) {
      clearInterval(timer);
      setTimeout(() => { process.stdout.write(JSON.stringify(replies) + '\\n'); socket.close(); }, 1500);
    }
  }, 10);
});`;

function udpBurst(ns: string, host: string, tag: string, count: number, sourcePort: number): Promise<{ text: string; from: string }[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, 'node', '-e', BURST_SCRIPT, host, tag, String(count), String(sourcePort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`udp burst in ${ns} exited ${code}: ${err}`));
      else resolve(JSON.parse(out.trim()) as { text: string; from: string }[]);
    });
  });
}

function firstIpv4(reply: Json): string | undefined {
  return (reply['proxy_ips'] as string[] | undefined)?.find((ip) => !ip.includes(':'));
}

async function gatewayRecord(stack: GatewayStack): Promise<Json> {
  const state = await stack.admin('GET', '/admin/state');
  const gateway = (state['gateways'] as Json[] | undefined)?.[0];
  assert.ok(gateway !== undefined, `the portal knows the gateway: ${JSON.stringify(state)}`);
  return gateway;
}

/** Each stack keeps its logs in its own folder, so a failure of the first can be read after the second ran. */
function logDir(name: string): string {
  const dir = `/tmp/${labPrefix(PREFIX)}-${name}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

describe('one gateway, many portal events: DNS with two clients, resource_updated, expiry, init authorizations, restart, Internet resource', { skip }, () => {
  let lab: Lab | undefined;
  let stack: GatewayStack | undefined;

  before(async () => {
    lab = labUp({ prefix: PREFIX });
    stack = await startGatewayStack(lab, {
      logDir: logDir('events'),
      portalArgs: ['--send-init-authorizations'],
      resources: [
        { name: 'web', type: 'cidr', address: `${WEB}/32`, filters: [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }] },
        { name: 'echo', type: 'cidr', address: `${ECHO}/32` },
        { name: 'temp', type: 'cidr', address: `${TEMP}/32` },
        { name: 'app', type: 'dns', address: '*.lab.test' },
        { name: 'internet', type: 'internet' },
      ],
      dnsNames: { 'app.lab.test': ECHO },
    });
  });
  after(async () => {
    await stack?.stop().catch(() => undefined);
    removeNamespace(SECOND_CLIENT_NS);
    lab?.down();
  });

  test('two clients reach one DNS resource through the same proxy IP and each gets only its own replies', async () => {
    const { lab } = stack!;
    addBridgeHost(lab, SECOND_CLIENT_NS, SECOND_CLIENT_ADDRESS);
    assert.equal(await stack!.portalDialect(), 'v2', 'the gateway joined on /gateway/v2/websocket');
    const second = await stack!.addClient(SECOND_CLIENT_NS);
    await stack!.connectClient('app', { domain: 'app.lab.test' });
    await second.connect('app', { domain: 'app.lab.test' });
    const resourceId = stack!.resourceIds['app'];
    const proxyA = firstIpv4(await stack!.client.command({ cmd: 'proxy_ips', resource_id: resourceId, domain: 'app.lab.test' }));
    const proxyB = firstIpv4(await second.client.command({ cmd: 'proxy_ips', resource_id: resourceId, domain: 'app.lab.test' }));
    assert.ok(proxyA !== undefined && proxyA.startsWith('100.9'), `client 1 has a proxy IP: ${proxyA}`);
    assert.equal(proxyB, proxyA, 'both clients use the same proxy IP');
    await waitFor(() => udpEcho(lab, proxyA, 'one').reply === 'one', 15_000, 'UDP echo from client 1');
    await waitFor(() => udpEcho(lab, proxyA, 'two', SECOND_CLIENT_NS).reply === 'two', 15_000, 'UDP echo from client 2');

    // Same proxy IP, same destination port and the same source port on both clients, at the same time. The
    // port is below the kernel's ephemeral range (32768-60999), where a socket of the client itself may sit
    // (40007 once failed with EADDRINUSE in CI).
    const [repliesA, repliesB] = await Promise.all([
      udpBurst(lab.ns.client, proxyA, 'alpha', 30, SHARED_SOURCE_PORT),
      udpBurst(SECOND_CLIENT_NS, proxyA, 'bravo', 30, SHARED_SOURCE_PORT),
    ]);
    for (const [name, tag, replies] of [['client 1', 'alpha', repliesA], ['client 2', 'bravo', repliesB]] as const) {
      assert.ok(replies.length >= 25, `${name} got its echoes back (${replies.length}/30)`);
      assert.deepEqual(replies.filter((r) => !r.text.startsWith(`${tag}-`)), [], `${name} got only its own replies`);
      assert.deepEqual([...new Set(replies.map((r) => r.from))], [`${proxyA}:7`], `${name} sees the replies come from the proxy IP`);
    }
    assert.equal(http(lab, `http://${proxyA}/`, 3_000, SECOND_CLIENT_NS).ok, true, 'HTTP from client 2');
  });

  test('resource_updated on a live tunnel: TCP 80 only becomes UDP 7 only for the next packets', async () => {
    const { lab } = stack!;
    await stack!.connectClient('web');
    assert.equal(tcpConnect(lab, WEB, 80), 'connected', 'TCP 80 is allowed');
    assert.equal(udpOnce(lab, WEB, 'before').ok, false, 'UDP is outside the filters');

    const updated = await stack!.admin('PUT', `/admin/resources/${stack!.resourceIds['web']}`, {
      type: 'cidr',
      name: 'web',
      address: `${WEB}/32`,
      filters: [{ protocol: 'udp', port_range_start: 7, port_range_end: 7 }],
    });
    assert.equal(updated['resource_updated_sent'], 1, `the portal pushed resource_updated: ${JSON.stringify(updated)}`);
    await waitFor(() => udpEcho(lab, WEB, 'after').reply === 'after', 10_000, 'UDP 7 to be allowed');
    assert.equal(tcpConnect(lab, WEB, 80), 'unreachable', 'TCP 80 is now answered by ICMP prohibited');
  });

  test('expiry: an authorization with expires_at a few seconds ahead works, then stops', async () => {
    const { lab } = stack!;
    // The client connects through its own API (route and flow, no expiry), then the admin API authorizes
    // the same client and resource again with an expiry, which replaces the first one on the gateway.
    await stack!.connectClient('temp');
    const expiresAt = Math.floor(Date.now() / 1000) + 4;
    await stack!.admin('POST', '/admin/authorizations', { client_id: stack!.clientId, resource_id: stack!.resourceIds['temp'], expires_at: expiresAt });
    assert.equal(udpEcho(lab, TEMP, 'in time').reply, 'in time', 'the authorization works before it expires');
    await sleep(Math.max(0, expiresAt * 1000 + 1_500 - Date.now()));
    assert.equal(udpOnce(lab, TEMP, 'too late').ok, false, 'the authorization has expired');
    const temp = stack!.resourceIds['temp']!.toLowerCase();
    assert.match(stack!.gatewayLog(), new RegExp(`Access to resource expired.*${temp}`), 'the gateway logs the expiry');
    assert.equal(udpEcho(lab, WEB, 'still').reply, 'still', 'the other resources of the client stay');
    await stack!.client.command({ cmd: 'disconnect', resource_id: stack!.resourceIds['temp'] });
  });

  test('init with authorizations: a flow revoked while the gateway was away is gone after it rejoins', async () => {
    const { lab } = stack!;
    await stack!.connectClient('echo');
    assert.equal(udpEcho(lab, ECHO, 'allowed').reply, 'allowed');
    const joinsBefore = count(stack!.gatewayLog(), JOINED);

    // Keep the gateway away from the portal (it reconnects at once after a hiccup), drop its socket, and
    // revoke while no gateway is joined: the portal pushes no reject_access, only its model changes, and
    // the next `init` lists the remaining authorizations.
    lab.exec(lab.ns.gateway, ['nft', '-f', '-'], {
      input: ['table ip portalblock {', '  chain out {', '    type filter hook output priority filter; policy accept;', `    ip daddr ${lab.addresses.portal} tcp dport 8081 reject with tcp reset`, '  }', '}'].join('\n'),
    });
    try {
      await stack!.admin('POST', '/admin/gateways/drop', {});
      await waitFor(async () => (await gatewayRecord(stack!))['connected'] === false, 5_000, 'the portal to forget the socket');
      const revoked = await stack!.admin('POST', '/admin/revoke', { client_id: stack!.clientId, resource_id: stack!.resourceIds['echo'] });
      assert.equal(revoked['revoked'], 1, JSON.stringify(revoked));
    } finally {
      lab.exec(lab.ns.gateway, ['nft', 'delete', 'table', 'ip', 'portalblock']);
    }
    await waitFor(() => count(stack!.gatewayLog(), JOINED) > joinsBefore, 20_000, 'the gateway to rejoin');
    const echo = stack!.resourceIds['echo']!.toLowerCase();
    await waitFor(() => new RegExp(`Revoking resource authorization.*${echo}`).test(stack!.gatewayLog()), 5_000, 'the init to revoke the echo resource');

    assert.equal(udpOnce(lab, ECHO, 'revoked').ok, false, 'the revoked resource is unreachable');
    assert.equal(udpEcho(lab, WEB, 'kept').reply, 'kept', 'a resource listed in init stays');
    assert.doesNotMatch(stack!.gatewayLog(), new RegExp(`Revoking resource authorization.*${stack!.resourceIds['web']!.toLowerCase()}`));
  });

  test('gateway restart: a new key, the client authorizes again and traffic flows', async () => {
    const { lab } = stack!;
    const keyBefore = (await gatewayRecord(stack!))['publicKey'];
    assert.equal(typeof keyBefore, 'string');
    assert.equal(await stack!.stopGateway('SIGTERM'), 0);
    assert.equal(udpOnce(lab, WEB, 'gateway down').ok, false, 'nothing answers while the gateway is down');
    // The old process left its TURN allocation on coturn for the 5-tuple <gateway>:52625 -> relay; the new
    // key means new relay credentials, which coturn refuses for that allocation (441, or no answer), so
    // the new process would run without a relay for the allocation's lifetime. A new source address gives
    // the new process its own 5-tuple (see the report on the restart).
    const restartAddress = '10.77.0.6';
    lab.exec(lab.ns.gateway, ['ip', 'addr', 'add', `${restartAddress}/24`, 'dev', 'eth0']);
    lab.exec(lab.ns.gateway, ['ip', 'route', 'replace', '10.77.0.0/24', 'dev', 'eth0', 'src', restartAddress]);
    stack!.startGateway(); // a new log
    await waitFor(async () => {
      const record = await gatewayRecord(stack!);
      return record['joined'] === true && record['publicKey'] !== keyBefore;
    }, 20_000, 'the restarted gateway to join with a new key');
    // coturn has been seen to leave the restarted gateway's first allocations unanswered for up to half a minute;
    // the gateway asks for its relays again each time (no_relays) until one is made. Connect once it has one.
    await waitFor(async () => allocationsCreated(stack!.gatewayLog()) > 0, 60_000, 'the restarted gateway to hold a relay allocation');
    await stack!.connectClient('web');
    assert.equal(udpEcho(lab, WEB, 'restarted').reply, 'restarted');
    assert.equal(tcpConnect(lab, WEB, 80), 'unreachable', 'the updated filters still apply after the restart');
  });

  test('a client that loses its last resource gets GOODBYE and drops its connection at once', async () => {
    const { lab } = stack!;
    await stack!.connectClient('web');
    assert.equal(udpEcho(lab, WEB, 'before').reply, 'before');
    const goodbyes = Number(((await stack!.client.command({ cmd: 'state' }))['stats'] as Json)['goodbyes']);
    const revoked = await stack!.admin('POST', '/admin/revoke', { client_id: stack!.clientId });
    assert.ok(Number(revoked['revoked']) >= 1, JSON.stringify(revoked));
    const revokedAt = Date.now();
    await waitFor(async () => Number(((await stack!.client.command({ cmd: 'state' }))['stats'] as Json)['goodbyes']) > goodbyes, 3_000, 'the GOODBYE');
    const state = await stack!.client.command({ cmd: 'state' });
    const connections = state['connections'] as Json[];
    assert.ok(connections.length > 0 && connections.every((c) => c['state'] === undefined), `the connection is gone: ${JSON.stringify(connections)}`);
    assert.ok(Date.now() - revokedAt < 3_000);
    assert.match(stack!.gatewayLog(), /Connection closed proactively \(sent goodbye\)/);
  });

  test("a client whose connection fails and comes back keeps its access: the gateway keeps the client's state (1.6.0)", async () => {
    const { lab } = stack!;
    await stack!.connectClient('web');
    assert.equal(udpEcho(lab, WEB, 'first').reply, 'first');
    // The portal authorizes another resource for this client under a key the client does not have: the gateway
    // replaces the connection, no candidates ever come for the new one, and it fails after 10 s.
    const failures = count(stack!.gatewayLog(), 'noRemoteCandidates');
    const stranger = Buffer.alloc(32, 9).toString('base64');
    await stack!.admin('POST', '/admin/authorizations?wait=0', { client_id: stack!.clientId, resource_id: stack!.resourceIds['temp'], public_key: stranger });
    await stack!.client.command({ cmd: 'drop_connections' });
    await waitFor(() => count(stack!.gatewayLog(), 'noRemoteCandidates') > failures, 20_000, 'the gateway to fail the connection');
    assert.equal(udpOnce(lab, WEB, 'no connection').ok, false, 'no connection, no traffic');
    // The client comes back on a new connection for another resource; web is not authorized again.
    await stack!.connectClient('temp');
    await waitFor(() => udpEcho(lab, WEB, 'kept').reply === 'kept', 10_000, 'web, authorized before the failure, to work again');
  });

  test('Internet resource: a public address behind the gateway is reached; the private resource network is refused (1.6.0)', async () => {
    const { lab } = stack!;
    // A public (TEST-NET-3) address for the resource host: the resources' namespace maps it to TEMP.
    const PUBLIC = '203.0.113.80';
    lab.exec(lab.ns.resources, ['nft', '-f', '-'], {
      input: ['table ip public {', '  chain pre {', '    type nat hook prerouting priority dstnat; policy accept;', `    ip daddr ${PUBLIC} dnat to ${TEMP}`, '  }', '}'].join('\n'),
    });
    lab.exec(lab.ns.gateway, ['ip', 'route', 'replace', `${PUBLIC}/32`, 'via', TEMP, 'dev', 'eth1']);
    assert.equal(udpOnce(lab, PUBLIC, 'no route yet').ok, false, 'nothing routes to the public address before');
    await stack!.connectClient('internet', { routes: [`${PUBLIC}/32`, '10.78.0.0/24'] });
    const page = http(lab, `http://${PUBLIC}/`);
    assert.equal(page.ok, true, `HTTP to ${PUBLIC} through the Internet resource: ${JSON.stringify(page)}`);
    assert.match(page.body ?? '', new RegExp(lab.addresses.gatewayLan.replaceAll('.', '\\.')), 'the resource sees the gateway masquerading');
    assert.equal(udpEcho(lab, PUBLIC, 'internet').reply, 'internet');
    // Private destinations are refused to an Internet-resource client with ICMP network unreachable, even
    // where a CIDR resource of the same client covers them.
    assert.equal(tcpConnect(lab, TEMP, 80), 'unreachable', 'the private resource network is refused');
    assert.equal(udpOnce(lab, ECHO, 'private').ok, false);
    assert.equal(tcpConnect(lab, WEB, 80), 'unreachable', 'even the CIDR resource the client holds');
  });
});

describe('relay loss announced by relays_presence: a relayed connection through the removed relay fails', { skip }, () => {
  let lab: Lab | undefined;
  let stack: GatewayStack | undefined;

  before(async () => {
    lab = labUp({ prefix: PREFIX, clientNat: 'symmetric' });
    stack = await startGatewayStack(lab, { logDir: logDir('relay'), resources: [{ name: 'corp', type: 'cidr', address: '10.78.0.0/24' }] });
  });
  after(async () => {
    await stack?.stop().catch(() => undefined);
    lab?.down();
  });

  test('the gateway fails the connection over its removed relay and traffic stops', async () => {
    const { lab } = stack!;
    // Only the gateway's own allocation can carry the path: nothing from the client directly, nothing
    // from coturn's relayed ports (the client's allocation); the TURN server port stays open.
    lab.exec(lab.ns.gateway, ['nft', '-f', '-'], {
      input: [
        'table ip fw {',
        '  chain input {',
        '    type filter hook input priority filter; policy accept;',
        `    ip saddr ${lab.addresses.client.startsWith('192.168') ? '10.77.0.2' : lab.addresses.client} drop`,
        `    ip saddr ${lab.addresses.relay} udp sport 49152-49999 drop`,
        '  }',
        '}',
      ].join('\n'),
    });
    await stack!.connectClient('corp', { routes: ['10.78.0.0/24'] });
    const clientState = await stack!.client.command({ cmd: 'state' });
    assert.match(JSON.stringify(clientState), /relay/, `the path is relayed: ${JSON.stringify(clientState)}`);
    assert.equal(udpEcho(lab, WEB, 'relayed').reply, 'relayed');
    assert.match(stack!.gatewayLog(), /Nominated path.*relay/, 'the gateway nominated a path through its relay');

    // Deleting the relay pushes relays_presence {disconnected_ids: [id], connected: []}.
    const state = await stack!.admin('GET', '/admin/state');
    const relayId = String((state['relays'] as Json[])[0]?.['id']);
    const removed = await stack!.admin('DELETE', `/admin/relays/${relayId}`);
    assert.equal(removed['deleted'], relayId);
    await waitFor(() => /Connection failed.*relayGone/i.test(stack!.gatewayLog()), 10_000, 'the gateway to fail the connection over the removed relay');
    assert.equal(udpOnce(lab, WEB, 'relay gone').ok, false, 'the connection through the removed relay carries nothing');
  });

  test(
    'the gateway logs the removed relay as the reference does',
    () => {
      assert.match(stack!.gatewayLog(), /Removed TURN server/);
    },
  );
});

function allocationsCreated(log: string): number {
  return log.split('Allocation created').length - 1;
}
