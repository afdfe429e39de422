import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ExpiryIgnored, GoodbyeIgnored, InternetReachesPrivateRanges, NatPortOffByOne, Port443AlwaysOpen, RejectIgnored, UnfilteredReplies } from './broken.ts';
import { historyArb, runHistory } from './commands.ts';
import type { WorldHooks } from './world.ts';
import { simSettings } from './settings.ts';

const settings = simSettings(process.env);

describe('gateway simulation', () => {
  // The properties are async so that each history's leftover microtasks (the gateway's interface update) run
  // before the next: run synchronously, every finished world stays reachable from the microtask queue.
  test(`${settings.runs} histories of ${settings.minCommands}+ commands without loss: exactly the authorized packets get through`, async () => {
    const totals = new Map<string, number>();
    const property = fc.asyncProperty(historyArb({ ...settings, loss: false }), async ({ config, commands }) => {
      const world = runHistory(config, commands);
      for (const [key, value] of Object.entries(world.stats)) totals.set(key, (totals.get(key) ?? 0) + value);
    });
    await fc.assert(property, settings.assertParameters(settings.runs, 'without loss'));
    if (settings.runs < 20 || process.env['SIM_PATH'] !== undefined) return;
    // The histories must exercise the gateway, not just pass.
    const rare = settings.runs >= 100 ? ['dnsActive', 'translated', 'renumbered', 'goodbyesSent', 'goodbyesReceived', 'reconnectedAfterFailure'] : [];
    if (process.env['SIM_STATS']) console.log(JSON.stringify(Object.fromEntries(totals)));
    for (const key of ['flowsAuthorized', 'allowed', 'denied', 'delivered', 'prohibited', 'unreachable', 'repliesToClients', 'roams', ...rare]) {
      assert.ok((totals.get(key) ?? 0) > 0, `no history had any ${key}: ${JSON.stringify(Object.fromEntries(totals))}`);
    }
  });

  test(`${settings.lossRuns} histories with datagram loss: nothing unauthorized gets through`, async () => {
    const property = fc.asyncProperty(historyArb({ ...settings, loss: true }), async ({ config, commands }) => {
      runHistory(config, commands);
    });
    await fc.assert(property, settings.assertParameters(settings.lossRuns, 'with datagram loss'));
  });

  test('histories are deterministic: the same seed gives the same traffic', () => {
    const [history] = fc.sample(historyArb({ minCommands: 20, maxCommands: 20, loss: false }), { numRuns: 1, seed: 42 });
    const [again] = fc.sample(historyArb({ minCommands: 20, maxCommands: 20, loss: false }), { numRuns: 1, seed: 42 });
    assert.ok(history !== undefined && again !== undefined);
    assert.equal(JSON.stringify(history.config), JSON.stringify(again.config));
    assert.deepEqual(history.commands.map(String), again.commands.map(String));
    const first = runHistory(history.config, history.commands);
    const second = runHistory(again.config, again.commands);
    assert.equal(first.net.now, second.net.now);
    assert.deepEqual(trafficOf(first), trafficOf(second));
  });

  describe('a deliberately broken gateway is caught', () => {
    test('TCP to port 443 let through regardless of filters', () => {
      assertCaught({ makeState: () => new Port443AlwaysOpen() }, /denied by the model, reached the resource/);
    });

    test('filters skipped on the resource-to-client path', () => {
      assertCaught({ makeState: () => new UnfilteredReplies() }, /denied, reached a client/);
    });

    test('DNS-resource NAT restoring the wrong port', () => {
      assertCaught({ makeState: () => new NatPortOffByOne() }, /wrong addresses or ports \(NAT\)/, 200);
    });

    test('expires_at ignored', () => {
      assertCaught({ makeState: () => new ExpiryIgnored() }, /the gateway holds \[.+\], the model|denied by the model, reached the resource|still holds a client with no authorizations/);
    });

    test('the Internet resource reaching private and special ranges (the 1.4.13 rule)', () => {
      assertCaught({ makeState: () => new InternetReachesPrivateRanges() }, /denied by the model, reached the resource/);
    });

    test('GOODBYE ignored', () => {
      assertCaught({ makeState: () => new GoodbyeIgnored() }, /said GOODBYE, the gateway kept its state/);
    });

    test('reject_access ignored', () => {
      assertCaught({ makeState: () => new RejectIgnored() }, /the gateway holds \[.+\], the model|denied by the model, reached the resource/);
    });
  });
});

function assertCaught(hooks: WorldHooks, expected: RegExp, runs = 50): void {
  const property = fc.property(historyArb({ minCommands: settings.minCommands, maxCommands: settings.maxCommands, loss: false }), ({ config, commands }) => {
    runHistory(config, commands, hooks);
  });
  const result = fc.check(property, { seed: 1, numRuns: runs, endOnFailure: true });
  assert.ok(result.failed, 'the simulation did not notice the broken rule');
  assert.match(String(result.errorInstance), expected);
}

function trafficOf(world: ReturnType<typeof runHistory>): string[] {
  return world.net.log.map((entry) => `${entry.from.address}:${entry.from.port}>${entry.to.address}:${entry.to.port}/${entry.size}${entry.dropped ? 'x' : ''}`);
}
