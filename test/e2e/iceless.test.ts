/**
 * ICE-less connections end to end (spec 1.6 §3.9, issue 22): the built gateway advertises
 * `set_snownet_capabilities {"iceless": true}`, the development portal answers a flow request of a
 * test client started with `--iceless` with `use_iceless`, and the connection runs the path agent
 * on both ends: bootstrapped over the relays, then promoted to the direct path by the probes inside
 * WireGuard when there is one (direct), or kept on coturn when direct UDP is blocked (relayed).
 * Lab prefix `fzi`, so this file can run next to the other e2e files.
 * Needs root, the Debian tools .ci/run installs, and `npm run build` (dist/) plus the native addon.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { labUp, type Lab, type NatMode } from '../../tools/lab/lab.ts';
import { privilegedSkipReason } from '../support/env.ts';
import { http, udpEcho } from './probes.ts';
import { REPO_ROOT, startGatewayStack, waitFor, type GatewayStack, type StackOptions } from './stack.ts';

const skip =
  privilegedSkipReason('ip', 'nft', 'turnserver', 'dnsmasq', 'curl') ??
  (existsSync(`${REPO_ROOT}dist/bin/firezone-gateway.js`) ? undefined : 'needs the built gateway (npm run build)') ??
  (existsSync(`${REPO_ROOT}build/Release/firezone_native.node`) ? undefined : 'needs the native addon (npm ci)');

const RESOURCE_NET = '10.78.0.0/24';

type Json = Record<string, unknown>;

function scenario(name: string, options: { clientNat?: NatMode; stack: StackOptions }, body: (stack: GatewayStack) => Promise<void>): void {
  describe(name, { skip }, () => {
    let lab: Lab | undefined;
    let stack: GatewayStack | undefined;
    before(async () => {
      lab = labUp({ prefix: 'fzi', clientNat: options.clientNat ?? 'none' });
      stack = await startGatewayStack(lab, options.stack);
    });
    after(async () => {
      await stack?.stop().catch(() => undefined);
      lab?.down();
    });
    test(name, async () => body(stack!));
  });
}

/** What the gateway told the portal after joining. */
async function capabilities(stack: GatewayStack): Promise<unknown[]> {
  const received = (await stack.admin('GET', '/admin/received?event=set_snownet_capabilities')) as unknown as { frame: Json }[];
  return received.map((r) => r.frame['payload']);
}

async function connectIceless(stack: GatewayStack): Promise<Json> {
  const reply = await stack.client.command({ cmd: 'connect', resource_id: stack.resourceIds['corp'], routes: [RESOURCE_NET] }, 40_000);
  assert.equal(reply['ok'], true, `connect: ${JSON.stringify(reply)}`);
  assert.equal(reply['iceless'], true, `the portal chose an ICE-less connection and the client runs the path agent: ${JSON.stringify(reply)}`);
  return reply;
}

async function clientPath(stack: GatewayStack): Promise<string | undefined> {
  const state = await stack.client.command({ cmd: 'state' });
  const connection = (state['connections'] as Json[] | undefined)?.[0];
  return connection?.['path'] as string | undefined;
}

scenario(
  'ICE-less, direct: bootstrapped over the relays, promoted to the direct path by the probes, traffic flows',
  { stack: { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }], clientArgs: ['--iceless'] } },
  async (stack) => {
    const { lab } = stack;
    assert.deepEqual(await capabilities(stack), [{ iceless: true }], 'the gateway advertised ICE-less connections once, after its join');
    await connectIceless(stack);
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'iceless').reply, 'iceless');
    assert.equal(http(lab, `http://${lab.addresses.resources[0]}/`).ok, true, 'HTTP through the ICE-less connection');
    // The probes (200, 300, 500 ms gaps) find the host pair, a better bucket than any relay pair.
    await waitFor(async () => (await clientPath(stack)) === 'direct', 15_000, 'the client to promote the direct path');
    // The gateway's first primary is the pair the client's initiation arrived on (through a relay); then the client's host.
    const directPrimary = new RegExp(`Primary path .*remote=${lab.addresses.client.replaceAll('.', '\\.')}:\\d+ relayed=false`);
    await waitFor(() => directPrimary.test(stack.gatewayLog()), 15_000, 'the gateway to promote the direct pair to primary');
    assert.doesNotMatch(stack.gatewayLog(), /Nominated path/, 'no ICE nomination on the gateway: it ran the path agent');
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'direct now').reply, 'direct now');
  },
);

scenario(
  'ICE-less, relayed: with direct UDP to the gateway blocked, the handshake and the traffic go through coturn',
  { clientNat: 'symmetric', stack: { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }], clientArgs: ['--iceless'] } },
  async (stack) => {
    const { lab } = stack;
    // Only the relay and the portal reach the gateway: the client's NATed address is dropped.
    const natPublic = lab.addresses.client.startsWith('192.168') ? '10.77.0.2' : lab.addresses.client;
    lab.exec(lab.ns.gateway, ['nft', '-f', '-'], {
      input: ['table ip fw {', '  chain input {', '    type filter hook input priority filter; policy accept;', `    ip saddr ${natPublic} counter drop`, '  }', '}'].join('\n'),
    });
    await connectIceless(stack);
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'through the relay').reply, 'through the relay');
    assert.equal(http(lab, `http://${lab.addresses.resources[0]}/`).ok, true);
    // The best pair left: the client's relay to the gateway's host (a local relay end ranks before a remote one).
    await waitFor(async () => (await clientPath(stack)) === 'relay', 15_000, 'the client to send through its relay');
    const dropped = /counter packets (\d+)/.exec(lab.exec(lab.ns.gateway, ['nft', 'list', 'table', 'ip', 'fw']));
    assert.ok(Number(dropped?.[1] ?? 0) > 0, 'the client tried the direct path (probes or handshakes), and the firewall dropped them');
    assert.equal(udpEcho(lab, lab.addresses.resources[0]!, 'still relayed').reply, 'still relayed');
    assert.doesNotMatch(stack.gatewayLog(), /Nominated path/, 'no ICE nomination on the gateway: it ran the path agent');
  },
);
