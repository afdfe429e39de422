// Our ICE agent against werift-ice 0.2.3, in both roles, with host candidates on 127.0.0.1 inside a
// fresh network namespace that has only `lo` (no route out; werift's STUN server is a local responder).
// The body runs as a child process in the namespace: test/ice/werift-peer.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ACTIVE_TIMING, iceTimeout } from '../../src/ice/index.ts';
import type { RoleResult } from '../ice/werift-peer.ts';
import { privilegedSkipReason } from '../support/env.ts';

const skip = privilegedSkipReason('ip');
const namespace = `fzice${process.pid}`;
const peerScript = fileURLToPath(new URL('../ice/werift-peer.ts', import.meta.url));
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

/** The peer stops answering up to one consent interval (plus the loss-retry delay) before our first unanswered check. */
const DISCONNECT_LIMIT_MS = iceTimeout(ACTIVE_TIMING) + ACTIVE_TIMING.maxRto + ACTIVE_TIMING.maxRto / 2 + 500;

describe('ICE interop with werift-ice on loopback in a namespace without a route out', { skip }, () => {
  let results: RoleResult[] = [];

  before(() => {
    run('ip', ['netns', 'add', namespace]);
    run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    const links = run('ip', ['-n', namespace, '-o', 'link', 'show']).trim().split('\n');
    assert.deepEqual(links.map((l) => l.split(':')[1]?.trim()), ['lo'], 'the namespace must have only lo');
    assert.ok(!run('ip', ['-n', namespace, 'route', 'show']).includes('default'), 'the namespace must have no route out');
    const child = spawnSync('ip', ['netns', 'exec', namespace, process.execPath, '--import', 'tsx', peerScript], {
      cwd: projectRoot,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const line = child.stdout.trim().split('\n').at(-1) ?? '';
    assert.ok(line.startsWith('['), `peer script failed (status ${child.status}): ${child.stderr.slice(-2000)}`);
    results = JSON.parse(line) as RoleResult[];
  });

  after(() => {
    spawnSync('ip', ['netns', 'del', namespace], { stdio: 'ignore' });
  });

  for (const role of ['controlled', 'controlling'] as const) {
    test(`as ${role}: both sides select the same pair and exchange datagrams on it`, () => {
      const result = resultFor(results, role);
      assert.equal(result.error, undefined, result.error);
      assert.ok(result.connectedMs !== undefined && result.connectedMs < 5_000, `connected after ${result.connectedMs} ms`);
      assert.ok(result.ourPair !== undefined);
      assert.equal(result.ourPair, result.weriftPair);
      assert.equal(result.weriftState, 'connected');
      assert.deepEqual(result.receivedByUs, ['werift->ts 0', 'werift->ts 1', 'werift->ts 2']);
      assert.deepEqual(result.receivedByWerift, ['ts->werift 0', 'ts->werift 1', 'ts->werift 2']);
      assert.equal(result.ourChecksCarriedUseCandidate, role === 'controlling');
    });

    test(`as ${role}: a vanished peer is reported disconnected within the ICE timeout`, () => {
      const result = resultFor(results, role);
      assert.ok(result.disconnectedAfterMs !== undefined, 'never reported disconnected');
      assert.ok(result.disconnectedAfterMs >= iceTimeout(ACTIVE_TIMING) - 1_000, `too early: ${result.disconnectedAfterMs} ms`);
      assert.ok(result.disconnectedAfterMs <= DISCONNECT_LIMIT_MS, `too late: ${result.disconnectedAfterMs} ms`);
    });
  }
});

function resultFor(results: RoleResult[], role: string): RoleResult {
  const result = results.find((r) => r.role === role);
  assert.ok(result !== undefined, `no result for ${role}`);
  return result;
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  assert.equal(result.status, 0, `${command} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}
