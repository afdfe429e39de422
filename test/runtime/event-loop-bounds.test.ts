/**
 * The event loop's own work bounds (issue 17): finished resolutions handled a bounded number per
 * turn, slow inputs counted, interface updates superseded by a newer `init`. Work is counted
 * through the state machine and injected clock, defer and resolver, never timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayState, type GatewayEvent } from '../../src/gateway/index.ts';
import type { IpAddr } from '../../src/ip/index.ts';
import { GatewayEventLoop, RESOLUTIONS_PER_TURN, SLOW_INPUT_MS, type TunnelAddresses } from '../../src/runtime/event-loop.ts';
import { Node } from '../../src/snownet/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { keyPair } from '../snownet/harness.ts';
import { GATEWAY_TUN, message } from './loop-harness.ts';

/** A policy state that asks for resolutions on demand and counts the answers it gets. */
class CountingState extends GatewayState {
  readonly requested: GatewayEvent[] = [];
  answered = 0;
  timeoutCost = 0;
  constructor(private readonly advance: (ms: number) => void) {
    super();
  }
  override pollEvent(): GatewayEvent | undefined {
    return this.requested.shift() ?? super.pollEvent();
  }
  override handleDnsResolution(domain: string, ips: readonly IpAddr[] | undefined, now: number): void {
    this.answered++;
    super.handleDnsResolution(domain, ips, now);
  }
  override handleTimeout(now: number): void {
    this.advance(this.timeoutCost);
    super.handleTimeout(now);
  }
}

function setUp() {
  let now = 0;
  const rng = seededRandom(11);
  const state = new CountingState((ms) => (now += ms));
  const deferred: (() => void)[] = [];
  const configured: { addresses: TunnelAddresses; superseded: AbortSignal }[] = [];
  const loop = new GatewayEventLoop({
    node: new Node({ role: 'server', privateKey: keyPair(rng), rng, now: 0 }),
    state,
    sockets: { v4: undefined, v6: undefined },
    tun: { write: () => true },
    portal: { send: () => undefined, reconnect: () => undefined },
    resolver: { resolve: () => Promise.resolve(['10.0.0.9']) },
    configureInterface: (addresses, superseded) => {
      configured.push({ addresses, superseded });
      return new Promise(() => undefined);
    },
    clock: () => now,
    wallClock: () => 1_700_000_000_000 + now,
    rng,
    onFatal: (error) => {
      throw error;
    },
    setTimer: () => undefined,
    clearTimer: () => undefined,
    defer: (callback) => void deferred.push(callback),
  });
  return { loop, state, deferred, configured };
}

async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe('event loop work bounds', () => {
  test(`resolutions that finish together are handled ${RESOLUTIONS_PER_TURN} per turn, the rest after a yield`, async () => {
    const { loop, state, deferred } = setUp();
    const burst = RESOLUTIONS_PER_TURN * 3 + 5;
    for (let i = 0; i < burst; i++) state.requested.push({ type: 'resolve', domain: `d${i}.example` });
    loop.handleTimeout();
    await settleMicrotasks();
    assert.equal(state.answered, RESOLUTIONS_PER_TURN, 'one turn handles its budget');
    assert.equal(deferred.length, 1, 'and yields once for the rest');
    const turns: number[] = [];
    while (deferred.length > 0) {
      const before = state.answered;
      deferred.shift()!();
      turns.push(state.answered - before);
    }
    assert.deepEqual(turns, [RESOLUTIONS_PER_TURN, RESOLUTIONS_PER_TURN, 5]);
  });

  test('a resolution that finishes alone is handled at once', async () => {
    const { loop, state, deferred } = setUp();
    state.requested.push({ type: 'resolve', domain: 'alone.example' });
    loop.handleTimeout();
    await settleMicrotasks();
    assert.equal(state.answered, 1);
    assert.equal(deferred.length, 0);
  });

  test('an input that keeps the loop busy longer than the bound is counted', () => {
    const { loop, state } = setUp();
    loop.handleTimeout();
    assert.equal(loop.work.slowInputs, 0);
    state.timeoutCost = SLOW_INPUT_MS + 30;
    loop.handleTimeout();
    assert.equal(loop.work.slowInputs, 1);
    assert.equal(loop.work.maxInputMs, SLOW_INPUT_MS + 30);
  });

  test('a newer init supersedes the interface update still in progress', async () => {
    const { loop, configured } = setUp();
    const init = (ipv4: string): void =>
      loop.handlePortalMessage(message('init', { interface: { ...GATEWAY_TUN, ipv4 }, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true }, relays: [] }));
    init('100.64.0.10');
    await settleMicrotasks();
    assert.equal(configured.length, 1);
    init('100.64.0.11');
    assert.equal(configured[0]!.superseded.aborted, true, 'the first update is told to stop');
    loop.stop();
  });
});
