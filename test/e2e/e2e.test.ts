/**
 * End to end, with real processes and real packets in network namespaces: the built gateway
 * binary, the development portal, coturn, the headless test client and resource servers.
 * Needs root, the Debian tools .ci/run installs, and `npm run build` (dist/) plus the native addon.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { labUp, type Lab, type NatMode } from '../../tools/lab/lab.ts';
import { privilegedSkipReason } from '../support/env.ts';
import { http, tcpConnect, udpEcho } from './probes.ts';
import { REPO_ROOT, startGatewayStack, waitFor, type GatewayStack, type StackOptions } from './stack.ts';

const skip =
  privilegedSkipReason('ip', 'nft', 'turnserver', 'dnsmasq', 'curl', 'dig') ??
  (existsSync(`${REPO_ROOT}dist/bin/firezone-gateway.js`) ? undefined : 'needs the built gateway (npm run build)') ??
  (existsSync(`${REPO_ROOT}build/Release/firezone_native.node`) ? undefined : 'needs the native addon (npm ci)');

const RESOURCE_NET = '10.78.0.0/24';

function nft(lab: Lab, ns: string, ...commands: string[]): void {
  for (const command of commands) lab.exec(ns, ['nft', command]);
}

/** Packets counted by the one counter in the namespace's `fzecn` table. */
function nftCount(lab: Lab, ns: string): number {
  const match = /counter packets (\d+)/.exec(lab.exec(ns, ['nft', 'list', 'table', 'ip', 'fzecn']));
  return Number(match?.[1] ?? 0);
}

/**
 * One lab, one stack, one test. The dev portal plays today's portal unless the stack's `portalArgs` say otherwise,
 * and the gateway joins on the v2 path; `dialect: 'v1'` is for the scenario run against a 1.4.13-era portal.
 */
function scenario(
  name: string,
  options: { clientNat?: NatMode; gatewayNat?: NatMode; dialect?: 'v1' | 'v2'; stack: StackOptions },
  body: (stack: GatewayStack) => Promise<void>,
): void {
  describe(name, { skip }, () => {
    let lab: Lab | undefined;
    let stack: GatewayStack | undefined;
    before(async () => {
      lab = labUp({ prefix: 'fze', clientNat: options.clientNat ?? 'none', gatewayNat: options.gatewayNat ?? 'none' });
      stack = await startGatewayStack(lab, options.stack);
    });
    after(async () => {
      await stack?.stop().catch(() => undefined);
      lab?.down();
    });
    test(name, async () => {
      assert.equal(await stack!.portalDialect(), options.dialect ?? 'v2', 'the path the gateway joined on');
      await body(stack!);
    });
  });
}

scenario(
  'direct path: a CIDR resource with TCP/UDP/ICMP filters, allowed and prohibited, then revoked',
  {
    stack: {
      resources: [
        {
          name: 'corp',
          type: 'cidr',
          address: RESOURCE_NET,
          filters: [{ protocol: 'tcp', port_range_start: 80, port_range_end: 80 }, { protocol: 'icmp' }],
        },
      ],
    },
  },
  async (stack) => {
    const { lab } = stack;
    await stack.connectClient('corp', { routes: [RESOURCE_NET] });
    const state = await stack.client.command({ cmd: 'state' });
    assert.match(JSON.stringify(state), /direct/, `the path is direct: ${JSON.stringify(state)}`);

    const page = http(lab, `http://${lab.addresses.resources[0]}/`);
    assert.equal(page.ok, true, `HTTP through the tunnel: ${JSON.stringify(page)}`);
    lab.exec(lab.ns.client, ['ping', '-c', '2', '-W', '2', lab.addresses.resources[1]!]);

    // ECN both ways (spec connectivity §1.3): the gateway's datagrams carry their inner packet's
    // codepoint, and CE on a client's datagram reaches the ECN-capable inner packet.
    lab.exec(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.tcp_ecn=1']);
    nft(lab, lab.ns.client, 'add table ip fzecn', 'add chain ip fzecn out { type filter hook output priority 0; }', 'add rule ip fzecn out udp dport 52625 ip ecn set ce');
    nft(lab, lab.ns.gateway, 'add table ip fzecn', 'add chain ip fzecn out { type filter hook output priority 0; }', 'add rule ip fzecn out udp sport 52625 ip ecn ect0 counter');
    nft(lab, lab.ns.resources, 'add table ip fzecn', 'add chain ip fzecn in { type filter hook input priority 0; }', 'add rule ip fzecn in tcp dport 80 ip ecn ce counter');
    assert.equal(http(lab, `http://${lab.addresses.resources[0]}/`).ok, true, 'HTTP with ECN');
    assert.ok(nftCount(lab, lab.ns.gateway) > 0, 'datagrams to the client carried ECT(0) from the resource\'s packets');
    assert.ok(nftCount(lab, lab.ns.resources) > 0, 'the resource saw Congestion Experienced that was set on the outer datagrams');

    assert.equal(tcpConnect(lab, lab.addresses.resources[0]!, 81), 'unreachable', 'a port outside the filter is answered by ICMP prohibited');
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'blocked').ok, false, 'UDP is not in the filters');

    await stack.admin('POST', '/admin/revoke', { client_id: stack.clientId, resource_id: stack.resourceIds['corp'] });
    await sleep(500);
    assert.notEqual(tcpConnect(lab, lab.addresses.resources[0]!, 80), 'connected', 'revoked access is gone');
  },
);

scenario(
  'relayed path: with direct UDP between client and gateway blocked, traffic goes through coturn',
  {
    clientNat: 'symmetric',
    stack: { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }] },
  },
  async (stack) => {
    const { lab } = stack;
    // A firewall in front of the gateway that only lets the relay and the portal in.
    lab.exec(lab.ns.gateway, ['nft', '-f', '-'], {
      input: ['table ip fw {', '  chain input {', '    type filter hook input priority filter; policy accept;', `    ip saddr ${lab.addresses.client.startsWith('192.168') ? '10.77.0.2' : lab.addresses.client} drop`, '  }', '}'].join('\n'),
    });
    await stack.connectClient('corp', { routes: [RESOURCE_NET] });
    const state = await stack.client.command({ cmd: 'state' });
    assert.match(JSON.stringify(state), /relay/, `the path is relayed: ${JSON.stringify(state)}`);
    const echo = udpEcho(lab, lab.addresses.resources[0]!, 'through the relay');
    assert.equal(echo.reply, 'through the relay', JSON.stringify(echo));
    assert.equal(http(lab, `http://${lab.addresses.resources[0]}/`).ok, true);
  },
);

scenario(
  'relay to relay: both sides behind symmetric NATs reach the resource through coturn',
  {
    clientNat: 'symmetric',
    gatewayNat: 'symmetric',
    stack: { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }] },
  },
  async (stack) => {
    const { lab } = stack;
    await stack.connectClient('corp', { routes: [RESOURCE_NET] });
    const state = await stack.client.command({ cmd: 'state' });
    assert.match(JSON.stringify(state), /relay/, `the path is relayed: ${JSON.stringify(state)}`);
    const echo = udpEcho(lab, lab.addresses.resources[0]!, 'relay to relay');
    assert.equal(echo.reply, 'relay to relay', JSON.stringify(echo));
  },
);

// The one scenario on the v1 path: a portal of the 1.4.13 days answers 404 on /gateway/v2/websocket and reads the
// token from the query only; the gateway falls back to /gateway/websocket and speaks authorize_flow / flow_authorized.
scenario(
  'DNS resource through a 1.4.13-era portal (v1 path): the client resolves the name to a proxy IP and reaches it over HTTP, UDP and ping',
  {
    dialect: 'v1',
    stack: {
      resources: [{ name: 'app', type: 'dns', address: '*.lab.test' }],
      dnsNames: { 'app.lab.test': '10.78.0.3' },
      portalArgs: ['--era', 'legacy'],
    },
  },
  async (stack) => {
    const { lab } = stack;
    await stack.connectClient('app', { domain: 'app.lab.test' });
    const acks = await stack.admin('GET', '/admin/received?event=flow_authorized');
    assert.ok(Array.isArray(acks) && acks.length > 0, 'the gateway acknowledged with the v1 name');
    const proxies = await stack.client.command({ cmd: 'proxy_ips', resource_id: stack.resourceIds['app'], domain: 'app.lab.test' });
    const proxy = (proxies['proxy_ips'] as string[] | undefined)?.find((ip) => !ip.includes(':'));
    assert.ok(proxy !== undefined && proxy.startsWith('100.9'), `a proxy IP: ${JSON.stringify(proxies)}`);
    await waitFor(() => http(lab, `http://${proxy}/`).ok, 15_000, 'HTTP to the proxy IP');
    const page = http(lab, 'http://app.lab.test/');
    assert.equal(page.ok, true, JSON.stringify(page));
    assert.equal(udpEcho(lab, proxy, 'dns resource').reply, 'dns resource');
    lab.exec(lab.ns.client, ['ping', '-c', '2', '-W', '2', proxy]);
  },
);

scenario(
  'portal outage: traffic keeps flowing while the portal is down, and the gateway rejoins when it returns',
  { stack: { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }] } },
  async (stack) => {
    const { lab } = stack;
    await stack.connectClient('corp', { routes: [RESOURCE_NET] });
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'before').reply, 'before');
    const joinsBefore = stack.gatewayLog().split('Joined gateway room on portal').length;
    await stack.stopPortal();
    await sleep(1_500);
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'during').reply, 'during', 'the data plane survives the outage');
    await stack.startPortal();
    await waitFor(() => stack.gatewayLog().split('Joined gateway room on portal').length > joinsBefore, 30_000, 'the gateway to rejoin');
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'after').reply, 'after');
  },
);

scenario(
  'gateway lifecycle: sockets, health, DNS forwarder on the tunnel IPs, marked portal socket; SIGTERM stops it cleanly',
  { stack: { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }], dnsNames: { 'app.lab.test': '10.78.0.3' } } },
  async (stack) => {
    const { lab } = stack;
    assert.match(lab.exec(lab.ns.gateway, ['ss', '-ulnH']), /0\.0\.0\.0:52625\b/, 'the data-plane socket is on 52625');
    let tunAddress: string | undefined;
    const readTunAddress = (): boolean => {
      tunAddress = /inet (\S+)\/32/.exec(lab.exec(lab.ns.gateway, ['ip', '-4', 'addr', 'show', 'tun-firezone']))?.[1];
      return tunAddress !== undefined;
    };
    await waitFor(readTunAddress, 10_000, 'init to give the TUN device its address');
    assert.match(lab.exec(lab.ns.gateway, ['ip', 'route', 'show', 'table', '539098368']), /100\.64\.0\.0\/11 dev tun-firezone/);
    for (const transport of ['+notcp', '+tcp']) {
      const answer = lab.exec(lab.ns.gateway, ['dig', '+short', '+time=3', '+tries=2', transport, '-p', '53535', `@${tunAddress}`, 'app.lab.test']).trim();
      assert.equal(answer, '10.78.0.3', `the DNS forwarder answers over ${transport === '+tcp' ? 'TCP' : 'UDP'}`);
    }
    const health = lab.exec(lab.ns.gateway, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${lab.addresses.gatewayLan}:8080/healthz`]);
    assert.equal(health, '200');
    const ready = lab.exec(lab.ns.gateway, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${lab.addresses.gatewayLan}:8080/readyz`]);
    assert.equal(ready, '200', '/readyz: joined to the portal and the TUN device configured');
    assert.match(lab.exec(lab.ns.gateway, ['ip', 'link', 'show', 'tun-firezone']), /mtu 1280/);
    const portalSocket = lab.exec(lab.ns.gateway, ['ss', '-tne', 'dst', `${lab.addresses.portal}:8081`]);
    assert.match(portalSocket, /fwmark:0xfd002021/, `the portal connection carries the gateway's mark: ${portalSocket}`);
    assert.equal(await stack.stopGateway('SIGTERM'), 0);
    assert.match(stack.gatewayLog(), /Received SIGINT\/SIGTERM signal=SIGTERM[\s\S]*Goodbye!/);
    assert.throws(() => lab.exec(lab.ns.gateway, ['ip', 'link', 'show', 'tun-firezone']), 'the TUN device is removed');
    // The event loop's slow-input warning measures the machine's load (50 ms on 2 shared cores), not the gateway's life.
    const warnings = stack.gatewayLog().split('\n').filter((line) => / WARN /.test(line) && !line.includes('An input kept the event loop busy'));
    assert.deepEqual(warnings, [], 'no warnings in a normal life (the reference CI asserts the same)');
  },
);
