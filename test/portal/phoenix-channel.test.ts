// The sans-IO Phoenix channel as 1.6.0 drives it, in virtual time: join, heartbeat (10 s, more than
// 3 unanswered reconnects), join timeout (5 s), the fatal/retry table, Retry-After, the initial 1 s x 15 s
// schedule and the partition budget after a join, graceful close.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { decodeIngress, type IngressMessage } from '../../src/portal/messages.ts';
import { RetryBackoff, initialBackoff, reconnectBackoff } from '../../src/portal/backoff.ts';
import { PhoenixChannel, type ChannelEvent, type ChannelState } from '../../src/portal/phoenix-channel.ts';

const JOIN_ACK_0 = '{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}';
const INIT = '{"event":"init","ref":null,"topic":"gateway","payload":{"interface":{"ipv6":"fd00:2021:1111::2c:f6ab","ipv4":"100.115.164.78"},"config":{"ipv4_masquerade_enabled":true,"ipv6_masquerade_enabled":true},"flow_logs":{"api_url":"https://x/","upload_interval_secs":0,"upload_batch_size":0}}}';
const HOUR = 3_600_000;

describe('joining', () => {
  test('connect asks the shell to open a socket', () => {
    const channel = newChannel();
    channel.connect(0);
    assert.deepEqual(drain(channel).events, [
      { kind: 'stateChanged', state: 'connecting', previous: 'disconnected' },
      { kind: 'connect' },
    ]);
  });

  test('the first frame after the upgrade is the join with a null payload and ref 0, on every socket', () => {
    const channel = joined();
    channel.send('no_relays', {}, 1);
    channel.handleDisconnected('reset', 2);
    channel.handleTimeout(10_000);
    channel.handleConnected(10_000);
    const frames = drain(channel).frames;
    assert.deepEqual(frames.at(-1), '{"topic":"gateway","event":"phx_join","payload":null,"ref":0}');
  });

  test('messages wait for the join ack and then go out in order; equal ones are queued once', () => {
    const channel = connected();
    const first = channel.send('authorization_created', { ref: 'a' }, 1);
    const again = channel.send('authorization_created', { ref: 'a' }, 1);
    const second = channel.send('no_relays', {}, 1);
    assert.deepEqual(drain(channel).frames, []);
    assert.equal(channel.pendingCount, 2);
    assert.equal(again, first);

    channel.handleFrame(JOIN_ACK_0, 2);
    const { frames, events } = drain(channel);
    assert.deepEqual(frames, [
      `{"topic":"gateway","event":"authorization_created","payload":{"ref":"a"},"ref":${first}}`,
      `{"topic":"gateway","event":"no_relays","payload":{},"ref":${second}}`,
    ]);
    assert.deepEqual(events, [
      { kind: 'stateChanged', state: 'joined', previous: 'joining' },
      { kind: 'joined', topic: 'gateway' },
    ]);
  });

  test('a message sent while not connected is dropped, not queued for later', () => {
    const channel = newChannel();
    assert.equal(channel.send('no_relays', {}, 0), undefined);
    channel.connect(0);
    assert.equal(channel.send('no_relays', {}, 0), undefined);
    channel.handleConnected(0);
    channel.handleFrame(JOIN_ACK_0, 1);
    assert.deepEqual(drain(channel).frames, ['{"topic":"gateway","event":"phx_join","payload":null,"ref":0}']);
  });

  test('after the join, messages go out at once with increasing refs', () => {
    const channel = joined();
    const refs = [channel.send('a', {}, 1), channel.send('b', {}, 1)];
    assert.deepEqual(refs, [1, 2]);
    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).ref), [1, 2]);
  });

  test('ingress pushes are decoded and delivered; unknown or invalid ones dropped without disconnecting', () => {
    const channel = joined();
    channel.handleFrame(INIT, 2);
    channel.handleFrame('{"topic":"gateway","event":"foo","payload":{},"ref":null}', 2);
    channel.handleFrame('{"topic":"gateway","event":"reject_access","payload":{"client_id":"x"},"ref":null}', 2);
    channel.handleFrame('{x}', 2);
    const kinds = drain(channel).events.map((e) => (e.kind === 'message' ? e.message.kind : e.kind));
    assert.deepEqual(kinds, ['init', 'dropped', 'dropped', 'dropped']);
    assert.equal(channel.connectionState, 'joined');
  });

  test('an error reply to a message is reported, not fatal', () => {
    const channel = joined();
    const ref = channel.send('authorization_created', { ref: 'bad' }, 1)!;
    drain(channel);
    channel.handleFrame(`{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"invalid_ref"}},"ref":${ref}}`, 2);
    assert.deepEqual(drain(channel).events, [{ kind: 'requestFailed', topic: 'gateway', ref, reason: 'other' }]);
    assert.equal(channel.connectionState, 'joined');
  });

  test('"unmatched topic" for our topic rejoins', () => {
    const channel = joined();
    channel.send('x', {}, 1);
    drain(channel);
    channel.handleFrame('{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"unmatched topic"}},"ref":1}', 2);
    assert.deepEqual(drain(channel).frames, ['{"topic":"gateway","event":"phx_join","payload":null,"ref":2}']);
    assert.equal(channel.connectionState, 'joining');
  });
});

describe('join timeout (5 s)', () => {
  test('a join unanswered for more than 5 s reconnects', () => {
    const channel = connected(0);
    assert.equal(channel.pollTimeout(), 5_001);
    channel.handleTimeout(5_000);
    assert.equal(channel.connectionState, 'joining');
    channel.handleTimeout(5_001);
    const hiccup = firstHiccup(drain(channel).events);
    assert.equal(hiccup?.error, 'room join timed out');
    assert.equal(channel.connectionState, 'reconnecting');
  });

  test('an answered join never times out', () => {
    const channel = joined(0);
    channel.handleTimeout(9_999);
    assert.equal(channel.connectionState, 'joined');
  });
});

describe('heartbeat (10 s; more than 3 unanswered reconnects)', () => {
  test('first one 10 s after the socket opened, then every 10 s, on topic phoenix, even before the join ack', () => {
    const channel = connected(0);
    channel.handleTimeout(5_000.5); // within the join timeout: just under "more than 5 s"? no: join timed out
    const fresh = connected(0);
    fresh.handleFrame(JOIN_ACK_0, 1);
    drain(fresh);
    assert.equal(fresh.pollTimeout(), 10_000);
    fresh.handleTimeout(9_999);
    assert.deepEqual(drain(fresh).frames, []);
    fresh.handleTimeout(10_000);
    assert.deepEqual(drain(fresh).frames, ['{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}']);
    assert.equal(fresh.pollTimeout(), 20_000);
    void channel;
  });

  test('answered heartbeats keep the connection', () => {
    const channel = joined(0);
    for (let t = 10_000; t <= 100_000; t += 10_000) {
      channel.handleTimeout(t);
      for (const frame of drain(channel).frames) channel.handleFrame(ackFor(frame, 'phoenix'), t + 50);
    }
    assert.equal(channel.connectionState, 'joined');
    assert.equal(channel.unansweredHeartbeats, 0);
  });

  test('the fourth unanswered heartbeat drops the connection (heartbeat loss)', () => {
    const channel = joined(0);
    for (const t of [10_000, 20_000, 30_000]) {
      channel.handleTimeout(t);
      assert.equal(channel.connectionState, 'joined', `at ${t}`);
    }
    assert.equal(channel.unansweredHeartbeats, 3);
    channel.handleTimeout(40_000);
    const { events } = drain(channel);
    assert.equal(firstHiccup(events)?.error, 'too many heartbeats were unanswered');
    assert.ok(events.some((e) => e.kind === 'closeSocket'));
    assert.equal(channel.connectionState, 'reconnecting');
  });

  test('a reply with the wrong ref does not count', () => {
    const channel = joined(0);
    for (const t of [10_000, 20_000, 30_000, 40_000]) {
      channel.handleTimeout(t);
      channel.handleFrame('{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":9999}', t + 1);
    }
    assert.equal(channel.connectionState, 'reconnecting');
  });
});

describe('the 1.6.0 fatal/retry table', () => {
  test('HTTP 401 on the upgrade is fatal', () => {
    const channel = newChannel();
    channel.connect(0);
    channel.handleUpgradeFailure(401, 'invalid_token', undefined, 1);
    const fatal = fatalOf(channel);
    assert.deepEqual(fatal?.error, { code: 'invalidToken', status: 401, message: 'Authentication token invalid' });
    assert.equal(channel.connectionState, 'failed');
  });

  for (const status of [400, 402, 403, 404, 408, 409, 429, 500, 502, 503]) {
    test(`HTTP ${status} on the upgrade is retried`, () => {
      const channel = newChannel();
      channel.connect(0);
      channel.handleUpgradeFailure(status, 'body text', undefined, 1);
      const hiccup = firstHiccup(drain(channel).events);
      assert.equal(hiccup?.delayMs, 1_000);
      assert.match(hiccup!.error, new RegExp(`HTTP error: ${status} .* - body text$`));
      assert.equal(channel.connectionState, 'reconnecting');
    });
  }

  test('TCP, DNS and TLS failures are retried', () => {
    for (const error of ['failed to connect socket: [1.2.3.4:443: ECONNREFUSED]', 'no IP addresses available', 'websocket connection failed: unable to verify the first certificate']) {
      const channel = newChannel();
      channel.connect(0);
      channel.handleDisconnected(error, 1);
      assert.equal(firstHiccup(drain(channel).events)?.error, error);
      assert.equal(channel.connectionState, 'reconnecting');
    }
  });

  test('Retry-After replaces the backoff step and does not advance it', () => {
    const channel = joinedOnce();
    channel.handleDisconnected('reset', 0);
    const first = firstHiccup(drain(channel).events)!.delayMs;
    channel.handleTimeout(first);
    channel.handleUpgradeFailure(503, '', 7_000, first);
    const retryAfter = firstHiccup(drain(channel).events)!;
    assert.equal(retryAfter.delayMs, 7_000);
    channel.handleTimeout(first + 7_000);
    channel.handleUpgradeFailure(503, '', undefined, first + 7_000);
    const next = firstHiccup(drain(channel).events)!.delayMs;
    // The second step of the schedule: 750 ms plus jitter below 500 ms.
    assert.ok(next >= 750 && next < 1_250, String(next));
  });

  test('disconnect token_expired is fatal', () => {
    const channel = joined();
    channel.handleFrame('{"event":"disconnect","ref":null,"topic":"gateway","payload":{"reason":"token_expired"}}', 1);
    assert.equal(fatalOf(channel)?.error.code, 'tokenExpired');
  });

  test('disconnect with another reason is dropped', () => {
    const channel = joined();
    channel.handleFrame('{"event":"disconnect","ref":null,"topic":"gateway","payload":{"reason":"other"}}', 1);
    assert.deepEqual(drain(channel).events.map((e) => e.kind), ['dropped']);
  });

  for (const [reason, shown] of [['invalid_version', 'invalid version'], ['disabled', 'disabled'], ['something else', 'other']] as const) {
    test(`a join error reply (${reason}) is fatal`, () => {
      const channel = connected();
      channel.handleFrame(`{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"${reason}"}},"ref":0}`, 5);
      assert.equal(fatalOf(channel)?.error.message, `Failed to login with portal: ${shown}`);
    });
  }

  test('phx_close and a closed stream reconnect', () => {
    for (const close of [(c: PhoenixChannel<IngressMessage>) => c.handleFrame('{"event":"phx_close","ref":null,"topic":"gateway","payload":{}}', 1), (c: PhoenixChannel<IngressMessage>) => c.handleDisconnected('websocket stream was closed', 1)]) {
      const channel = joined();
      close(channel);
      const { events } = drain(channel);
      assert.ok(events.some((e) => e.kind === 'closeSocket'));
      assert.ok(firstHiccup(events));
      assert.equal(channel.connectionState, 'reconnecting');
    }
  });

  test('before the first join: 1 s apart, 15 s in all, then fatal (exhausted budget)', () => {
    const channel = newChannel();
    let now = 0;
    channel.connect(now);
    const delays: number[] = [];
    for (;;) {
      channel.handleUpgradeFailure(503, '', undefined, now);
      const events = drain(channel).events;
      const fatal = events.find((e) => e.kind === 'fatal');
      if (fatal !== undefined) {
        assert.equal(fatal.kind === 'fatal' && fatal.error.code, 'maxRetriesReached');
        assert.match(fatal.kind === 'fatal' ? fatal.error.message : '', /^Got disconnected from portal and hit the max-retry limit\. Last connection error: /);
        break;
      }
      const hiccup = firstHiccup(events)!;
      assert.equal(hiccup.maxElapsedMs, 15_000);
      delays.push(hiccup.delayMs);
      now += hiccup.delayMs;
      channel.handleTimeout(now);
      drain(channel);
    }
    assert.deepEqual(delays, Array(15).fill(1_000));
    assert.equal(now, 15_000);
  });

  test('after a join: exponential from 500 ms x1.5 with jitter, each at most 60 s plus jitter', () => {
    const channel = joinedOnce(seededRandom(5));
    const delays = failRepeatedly(channel, 40);
    let interval = 500;
    for (const delay of delays) {
      assert.ok(delay >= interval && delay < interval + 500, `${delay} around ${interval}`);
      interval = Math.min(interval * 1.5, 60_000);
    }
    assert.ok(delays.at(-1)! >= 60_000);
  });

  test('a join resets the backoff', () => {
    const channel = joinedOnce(constantRandom(0));
    failRepeatedly(channel, 5);
    channel.handleConnected(1);
    channel.handleFrame(JOIN_ACK_0, 2);
    channel.handleDisconnected('reset', 3);
    assert.equal(firstHiccup(drain(channel).events)?.delayMs, 500);
  });
});

describe('the partition budget (virtual time)', () => {
  test('default 24 h: a portal down for 23 h is reconnected to, the join resets the budget', () => {
    const channel = joinedOnce(seededRandom(11));
    const { now, fatal } = partition(channel, 0, 23 * HOUR);
    assert.equal(fatal, false);
    channel.handleConnected(now);
    channel.handleFrame(JOIN_ACK_0, now);
    assert.equal(channel.connectionState, 'joined');
    const again = partition(channel, now, 23 * HOUR);
    assert.equal(again.fatal, false, 'a fresh 24 h after the join');
  });

  test('default 24 h: a portal down for longer is fatal once the cumulative delay would pass 24 h', () => {
    const channel = joinedOnce(seededRandom(12));
    const { now, fatal, elapsed } = partition(channel, 0, 48 * HOUR);
    assert.equal(fatal, true);
    assert.ok(elapsed <= 24 * HOUR && elapsed > 24 * HOUR - 61_000, String(elapsed));
    assert.ok(now <= 24 * HOUR);
  });

  test('a configured budget (10 min) is honoured', () => {
    const channel = joinedOnce(seededRandom(13), 10 * 60_000);
    const result = partition(channel, 0, HOUR);
    assert.equal(result.fatal, true);
    assert.ok(result.elapsed <= 10 * 60_000 && result.elapsed > 10 * 60_000 - 61_000);
    const shorter = joinedOnce(seededRandom(13), 10 * 60_000);
    assert.equal(partition(shorter, 0, 5 * 60_000).fatal, false);
  });

  test('the budget counts delays, not wall time: slow failing attempts do not use it up', () => {
    const budget = 60_000;
    const channel = joinedOnce(constantRandom(0), budget);
    let now = 0;
    let delays = 0;
    channel.handleDisconnected('reset', now);
    for (let i = 0; i < 200; i++) {
      const events = drain(channel).events;
      if (events.some((e) => e.kind === 'fatal')) break;
      const hiccup = firstHiccup(events)!;
      delays += hiccup.delayMs;
      now += hiccup.delayMs;
      channel.handleTimeout(now);
      drain(channel);
      now += 14_000; // every attempt hangs for 14 s before failing
      channel.handleDisconnected('connection to portal timed out', now);
    }
    assert.ok(delays <= budget);
    assert.ok(now > budget * 2, 'wall time passed the budget long before the delays did');
  });
});

describe('backoff schedules', () => {
  test('initial: constant 1 s, 15 in all', () => {
    const backoff = initialBackoff();
    const delays: number[] = [];
    for (let d = backoff.nextDelayMs(); d !== undefined; d = backoff.nextDelayMs()) delays.push(d);
    assert.deepEqual(delays, Array(15).fill(1_000));
  });

  test('reconnect: deterministic for a seed, capped', () => {
    const a = reconnectBackoff(seededRandom(3), undefined);
    const b = reconnectBackoff(seededRandom(3), undefined);
    for (let i = 0; i < 30; i++) assert.equal(a.nextDelayMs(), b.nextDelayMs());
    const none = new RetryBackoff({ initialIntervalMs: 500, maxIntervalMs: 60_000, multiplier: 1.5, jitter: undefined, maxElapsedMs: undefined });
    const seen: number[] = [];
    for (let i = 0; i < 14; i++) seen.push(none.nextDelayMs()!);
    assert.deepEqual(seen.slice(0, 4), [500, 750, 1125, 1687.5]);
    assert.equal(seen.at(-1), 60_000);
  });
});

describe('graceful close', () => {
  test('connected: the shell is asked for a Close handshake, then the channel is disconnected and stays so', () => {
    const channel = joined();
    channel.close(1);
    const { events } = drain(channel);
    assert.ok(events.some((e) => e.kind === 'closeGracefully'));
    assert.equal(channel.connectionState, 'closing');
    assert.equal(channel.send('x', {}, 2), undefined);
    channel.handleDisconnected('closed', 2);
    channel.handleClosed(3);
    assert.equal(channel.connectionState, 'disconnected');
    assert.equal(channel.pollTimeout(), undefined);
    assert.ok(!drain(channel).events.some((e) => e.kind === 'connect' || e.kind === 'hiccup'));
  });

  test('waiting to reconnect: nothing to close, no further attempt', () => {
    const channel = joined();
    channel.handleDisconnected('reset', 1);
    drain(channel);
    channel.close(2);
    channel.handleTimeout(100_000);
    assert.equal(channel.connectionState, 'disconnected');
    assert.ok(!drain(channel).events.some((e) => e.kind === 'connect'));
  });
});

describe('state reports', () => {
  test('each change is reported exactly once', () => {
    const channel = newChannel(constantRandom(0));
    const states: ChannelState[] = [];
    const record = (): void => {
      for (const event of drain(channel).events) if (event.kind === 'stateChanged') states.push(event.state);
    };
    channel.connect(0);
    record();
    channel.handleDisconnected('refused', 1);
    record();
    channel.handleDisconnected('refused', 2);
    record();
    channel.handleTimeout(1_001);
    record();
    channel.handleConnected(1_001);
    record();
    channel.handleFrame(JOIN_ACK_0, 1_002);
    record();
    assert.deepEqual(states, ['connecting', 'reconnecting', 'connecting', 'joining', 'joined']);
  });
});

describe('robustness', () => {
  const inbound = fc.oneof(
    fc.string(),
    fc.json(),
    fc.constantFrom(
      JOIN_ACK_0,
      INIT,
      '{"topic":"gateway","event":"phx_error","payload":{},"ref":null}',
      '{"topic":"gateway","event":"phx_close","payload":{},"ref":null}',
      '{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"unmatched topic"}},"ref":3}',
      '{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":1}',
    ),
    fc.record({ topic: fc.string(), event: fc.constantFrom('phx_reply', 'init', 'disconnect', 'x'), payload: fc.jsonValue(), ref: fc.oneof(fc.nat(5), fc.constant(null)) }).map((f) => JSON.stringify(f)),
  );
  const input = fc.oneof(
    fc.record({ kind: fc.constant('frame' as const), text: inbound }),
    fc.record({ kind: fc.constantFrom('connected' as const, 'disconnected' as const, 'connect' as const, 'send' as const, 'timeout' as const, 'close' as const, 'closed' as const) }),
    fc.record({ kind: fc.constant('upgrade' as const), status: fc.integer({ min: 300, max: 599 }), retryAfter: fc.option(fc.nat(100_000), { nil: undefined }) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.nat(100_000) }),
  );

  test('no input sequence throws, pollTimeout never lies in the past, refs grow within a socket', () => {
    fc.assert(
      fc.property(fc.integer(), fc.array(input, { maxLength: 60 }), (seed, inputs) => {
        const channel = newChannel(seededRandom(seed));
        let now = 0;
        let lastRef = -1;
        channel.connect(now);
        for (const step of inputs) {
          switch (step.kind) {
            case 'frame':
              channel.handleFrame(step.text, now);
              break;
            case 'connected':
              if (channel.connectionState === 'connecting') lastRef = -1;
              channel.handleConnected(now);
              break;
            case 'disconnected':
              channel.handleDisconnected('x', now);
              break;
            case 'connect':
              channel.connect(now);
              break;
            case 'send':
              channel.send('m', { now }, now);
              break;
            case 'timeout':
              channel.handleTimeout(now);
              break;
            case 'close':
              channel.close(now);
              break;
            case 'closed':
              channel.handleClosed(now);
              break;
            case 'upgrade':
              channel.handleUpgradeFailure(step.status, '', step.retryAfter, now);
              break;
            case 'advance':
              now += step.ms;
              break;
          }
          for (const frame of drain(channel).frames) {
            const ref = (JSON.parse(frame) as { ref: number }).ref;
            assert.ok(ref > lastRef);
            lastRef = ref;
          }
          const deadline = channel.pollTimeout();
          if (deadline !== undefined && deadline <= now) {
            channel.handleTimeout(now);
            for (const frame of drain(channel).frames) lastRef = Math.max(lastRef, (JSON.parse(frame) as { ref: number }).ref);
            const next = channel.pollTimeout();
            assert.ok(next === undefined || next > now, `deadline ${next} not after ${now}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

function newChannel(rng: RandomSource = seededRandom(1), maxPartitionMs?: number): PhoenixChannel<IngressMessage> {
  return new PhoenixChannel({ topic: 'gateway', rng, decode: (event, payload) => decodeIngress(event, payload, 'v2'), ...(maxPartitionMs !== undefined ? { maxPartitionMs } : {}) });
}

function connected(now = 0, channel = newChannel()): PhoenixChannel<IngressMessage> {
  channel.connect(now);
  channel.handleConnected(now);
  drain(channel);
  return channel;
}

function joined(now = 0, channel = newChannel()): PhoenixChannel<IngressMessage> {
  connected(now, channel);
  channel.handleFrame(JOIN_ACK_0, now);
  drain(channel);
  return channel;
}

/** A channel that joined once (so the reconnect schedule applies). */
function joinedOnce(rng: RandomSource = seededRandom(1), maxPartitionMs?: number): PhoenixChannel<IngressMessage> {
  return joined(0, newChannel(rng, maxPartitionMs));
}

/**
 * The portal unreachable from `start` for `downMs` (every attempt fails at once); returns when an
 * attempt is due after the outage (now), or when the channel gave up.
 */
function partition(channel: PhoenixChannel<IngressMessage>, start: number, downMs: number): { now: number; fatal: boolean; elapsed: number } {
  let now = start;
  let elapsed = 0;
  channel.handleDisconnected('reset', now);
  for (;;) {
    const events = drain(channel).events;
    if (events.some((e) => e.kind === 'fatal')) return { now, fatal: true, elapsed };
    const hiccup = firstHiccup(events);
    assert.ok(hiccup, 'a hiccup after every failure');
    elapsed += hiccup.delayMs;
    now += hiccup.delayMs;
    channel.handleTimeout(now);
    drain(channel);
    assert.equal(channel.connectionState, 'connecting');
    if (now >= start + downMs) return { now, fatal: false, elapsed };
    channel.handleDisconnected('failed to connect socket', now);
  }
}

function drain(channel: PhoenixChannel<IngressMessage>): { frames: string[]; events: ChannelEvent<IngressMessage>[] } {
  const frames: string[] = [];
  const events: ChannelEvent<IngressMessage>[] = [];
  for (let i = 0; i < 1000; i++) {
    const frame = channel.pollFrame();
    const event = channel.pollEvent();
    if (frame === undefined && event === undefined) return { frames, events };
    if (frame !== undefined) frames.push(frame);
    if (event !== undefined) events.push(event);
  }
  throw new Error('channel keeps producing output');
}

function ackFor(frame: string, topic = 'gateway'): string {
  const ref = (JSON.parse(frame) as { ref: number }).ref;
  return `{"topic":"${topic}","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":${ref}}`;
}

/** Every connection attempt fails at once; returns the delay of each hiccup. */
function failRepeatedly(channel: PhoenixChannel<IngressMessage>, attempts: number): number[] {
  const delays: number[] = [];
  let now = 0;
  for (let i = 0; i < attempts; i++) {
    channel.handleDisconnected('connection refused', now);
    const hiccup = firstHiccup(drain(channel).events);
    assert.ok(hiccup !== undefined);
    delays.push(hiccup.delayMs);
    now += hiccup.delayMs;
    channel.handleTimeout(now);
    drain(channel);
    assert.equal(channel.connectionState, 'connecting');
  }
  return delays;
}

function firstHiccup(events: ChannelEvent<IngressMessage>[]): Extract<ChannelEvent<IngressMessage>, { kind: 'hiccup' }> | undefined {
  for (const event of events) if (event.kind === 'hiccup') return event;
  return undefined;
}

function fatalOf(channel: PhoenixChannel<IngressMessage>): Extract<ChannelEvent<IngressMessage>, { kind: 'fatal' }> | undefined {
  for (const event of drain(channel).events) if (event.kind === 'fatal') return event;
  return undefined;
}

function constantRandom(value: number): RandomSource {
  return { fill: (target) => target.fill(0), u32: () => Math.floor(value * 0x1_0000_0000), float: () => value };
}
