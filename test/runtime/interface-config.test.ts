import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { privilegedSkipReason } from '../support/env.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import { applyInterfaceConfig, type CommandResult } from '../../src/runtime/interface-config.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { createNamespace, deleteNamespace, describeRun, reportOf, runInNamespace } from './netns/harness.ts';

configureLogging({ filter: LogFilter.parse('off') });

const skip = privilegedSkipReason('ip') ?? (isNativeAddonBuilt() ? undefined : 'native addon not built (npm run build:native)');

type Json = Record<string, unknown> & { addr_info?: { local: string; prefixlen: number; family: string; scope: string }[] };
interface Snapshot {
  link: Json[];
  addresses: Json[];
  rules4: Json[];
  rules6: Json[];
  routes4: Json[];
  routes6: Json[];
  routeGet: string;
}

describe('applyInterfaceConfig in a network namespace', { skip }, () => {
  let namespace = '';
  let first: Snapshot;
  let second: Snapshot;

  before(() => {
    namespace = createNamespace('ifc');
    const run = runInNamespace(namespace, './interface-config.ts');
    assert.equal(run.status, 0, describeRun(run));
    ({ first, second } = reportOf<{ first: Snapshot; second: Snapshot }>(run));
  });
  after(() => deleteNamespace(namespace));

  test('sets MTU 1280 and brings the link up', () => {
    assert.equal(first.link[0]?.['mtu'], 1280);
    assert.ok((first.link[0]?.['flags'] as string[]).includes('UP'));
  });

  test('assigns the /32 and /128 addresses (besides the kernel link-local)', () => {
    assert.deepEqual(addressesOf(first), ['100.64.0.1/32', 'fd00:2021:1111::1/128']);
  });

  test('adds the policy rule and the client routes in table 539098368', () => {
    assert.equal(firezoneRules(first.rules4), 1);
    assert.equal(firezoneRules(first.rules6), 1);
    assert.deepEqual(first.routes4.map((r) => [r['dst'], r['dev']]), [['100.64.0.0/11', 'tun-firezone']]);
    assert.deepEqual(first.routes6.map((r) => [r['dst'], r['dev']]), [['fd00:2021:1111::/107', 'tun-firezone']]);
    assert.match(first.routeGet, /dev tun-firezone table 539098368/);
  });

  test('a second apply replaces the addresses and duplicates nothing', () => {
    assert.deepEqual(addressesOf(second), ['100.64.0.7/32', 'fd00:2021:1111::7/128']);
    assert.equal(firezoneRules(second.rules4), 1);
    assert.equal(firezoneRules(second.rules6), 1);
    assert.equal(second.routes4.length, 1);
    assert.equal(second.routes6.length, 1);
  });
});

describe('applyInterfaceConfig command sequence', () => {
  test('fails with a stable code when no address can be set', async () => {
    const run = async (args: readonly string[]): Promise<CommandResult> =>
      args.includes('add') && args.includes('address')
        ? { code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted' }
        : { code: 0, stdout: '[]', stderr: '' };
    await assert.rejects(applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, { run }), {
      code: 'TUN_CONFIG_FAILED',
      message: /Failed to set TUN interface IPs/,
    });
  });

  test('does not add the rule when it already exists', async () => {
    const calls: string[] = [];
    const existing = JSON.stringify([{ priority: 32765, not: null, fwmark: '0xfd002021', table: '539098368' }]);
    const run = async (args: readonly string[]): Promise<CommandResult> => {
      calls.push(args.join(' '));
      return { code: 0, stdout: args.includes('rule') ? existing : '[]', stderr: '' };
    };
    await applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, { run });
    assert.equal(calls.filter((c) => c.includes('rule add')).length, 0);
    assert.ok(calls.includes('-4 route replace 100.64.0.0/11 dev tun-firezone table 539098368 proto static'));
  });

  test('a command that misses its deadline is killed and the sequence retried until it completes', async () => {
    const calls: string[] = [];
    const aborted: string[] = [];
    let flushes = 0;
    const run = (args: readonly string[], signal: AbortSignal): Promise<CommandResult> => {
      calls.push(args.join(' '));
      if (args.includes('flush') && ++flushes === 1) {
        return new Promise((resolve) => signal.addEventListener('abort', () => (aborted.push(args.join(' ')), resolve(failed))));
      }
      return Promise.resolve({ code: 0, stdout: '[]', stderr: '' });
    };
    await applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, { run, timeoutMs: 20, retryDelayMs: 5 });
    assert.deepEqual(aborted, ['address flush dev tun-firezone'], 'the hung command was killed');
    assert.equal(calls.filter((c) => c === 'address flush dev tun-firezone').length, 2, 'then the sequence ran again');
    assert.ok(calls.includes('-6 route replace fd00:2021:1111::/107 dev tun-firezone table 539098368 proto static'));
  });

  test('a deadline timer that fires late on a busy loop does not fail a command that finished meanwhile', async () => {
    const calls: string[] = [];
    const run = (args: readonly string[]): Promise<CommandResult> =>
      new Promise((resolve) => {
        calls.push(args.join(' '));
        // A real child process: its exit is I/O the loop only sees after its timers.
        execFile('true', () => resolve({ code: 0, stdout: '[]', stderr: '' }));
      });
    const applied = applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, { run, timeoutMs: 20, retryDelayMs: 1 });
    // The loop is blocked well past the deadline while the first command exits.
    const until = performance.now() + 200;
    while (performance.now() < until);
    await applied;
    assert.equal(calls.filter((c) => c === 'address flush dev tun-firezone').length, 1, 'the first command counted as finished: no retry');
  });

  test('a newer update supersedes one that keeps timing out: it stops retrying without an error', async () => {
    let calls = 0;
    const run = (_args: readonly string[], signal: AbortSignal): Promise<CommandResult> => {
      calls++;
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve(failed)));
    };
    const superseded = new AbortController();
    const applied = applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, { run, timeoutMs: 10, retryDelayMs: 60_000, signal: superseded.signal });
    while (calls < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 200));
    superseded.abort();
    await applied;
    assert.equal(calls, 1, 'no attempt after the abort');
  });
});

const failed: CommandResult = { code: 1, stdout: '', stderr: 'killed' };

function addressesOf(snapshot: Snapshot): string[] {
  return (snapshot.addresses[0]?.addr_info ?? [])
    .filter((a) => a.scope === 'global')
    .map((a) => `${a.local}/${a.prefixlen}`).sort();
}

function firezoneRules(rules: Json[]): number {
  return rules.filter((r) => 'not' in r && r['fwmark'] === '0xfd002021' && String(r['table']) === '539098368').length;
}
