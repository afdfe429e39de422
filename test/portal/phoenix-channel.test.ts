import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seededRandom, type RandomSource } from '../../src/util/random.ts';
import { decodeIngress, type IngressMessage } from '../../src/portal/messages.ts';
import { PhoenixChannel, type ChannelEvent, type ChannelState } from '../../src/portal/phoenix-channel.ts';

const JOIN_ACK_0 = '{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":0}';
const INIT = '{"event":"init","ref":null,"topic":"gateway","payload":{"interface":{"ipv6":"fd00:2021:1111::2c:f6ab","ipv4":"100.115.164.78"},"config":{"ipv4_masquerade_enabled":true,"ipv6_masquerade_enabled":true}}}';

describe('joining', () => {
  test('connect asks the shell to open a socket', () => {
    const channel = newChannel();

    channel.connect(0);

    assert.deepEqual(drain(channel).events, [
      { kind: 'stateChanged', state: 'connecting', previous: 'disconnected' },
      { kind: 'connect' },
    ]);
  });

  test('the first frame after the upgrade is the join with a null payload and ref 0', () => {
    const channel = newChannel();
    channel.connect(0);
    drain(channel);

    channel.handleConnected(10);

    assert.deepEqual(drain(channel).frames, ['{"topic":"gateway","event":"phx_join","payload":null,"ref":0}']);
    assert.equal(channel.connectionState, 'joining');
  });

  test('nothing else is written before the join is acknowledged', () => {
    const channel = connected();

    channel.send('flow_authorized', { ref: 'a' }, 20);
    channel.handleTimeout(40_000);

    assert.deepEqual(drain(channel).frames, []);
    assert.equal(channel.pendingCount, 2);
  });

  test('the join ack releases queued frames in order', () => {
    const channel = newChannel();
    const early = channel.send('flow_authorized', { ref: 'queued before connecting' }, 0);
    channel.connect(0);
    channel.handleConnected(0);
    drain(channel);

    channel.handleFrame('{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":1}', 5);

    const { frames, events } = drain(channel);
    assert.equal(early, 0);
    assert.deepEqual(frames, ['{"topic":"gateway","event":"flow_authorized","payload":{"ref":"queued before connecting"},"ref":0}']);
    assert.deepEqual(events, [
      { kind: 'stateChanged', state: 'joined', previous: 'joining' },
      { kind: 'joined', topic: 'gateway' },
    ]);
  });

  test('messages after the join go out immediately with increasing refs', () => {
    const channel = joined();

    const first = channel.send('broadcast_ice_candidates', { client_ids: [], candidates: [] }, 1);
    const second = channel.send('flow_authorized', { ref: 'x' }, 1);

    assert.deepEqual([first, second], [1, 2]);
    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).ref), [1, 2]);
  });

  test('an ok reply to another ref does not count as the join ack', () => {
    const channel = connected();

    channel.handleFrame(JOIN_ACK_0.replace('"ref":0', '"ref":7'), 1);

    assert.equal(channel.connectionState, 'joining');
  });

  test('ingress pushes are decoded and delivered', () => {
    const channel = joined();

    channel.handleFrame(INIT, 2);

    const events = drain(channel).events;
    assert.equal(events.length, 1);
    assert.equal(events[0]?.kind === 'message' && events[0].message.kind, 'init');
  });

  test('unknown events and invalid payloads are dropped without disconnecting', () => {
    const channel = joined();

    channel.handleFrame('{"topic":"gateway","event":"foo","payload":{},"ref":null}', 2);
    channel.handleFrame('{"topic":"gateway","event":"reject_access","payload":{"client_id":"x"},"ref":null}', 2);
    channel.handleFrame('{x}', 2);

    const events = drain(channel).events;
    assert.deepEqual(events.map((e) => e.kind), ['dropped', 'dropped', 'dropped']);
    assert.equal(channel.connectionState, 'joined');
  });

  test('a reply without ref is dropped', () => {
    const channel = connected();

    channel.handleFrame('{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}}}', 1);

    assert.deepEqual(drain(channel).events.map((e) => e.kind), ['dropped']);
    assert.equal(channel.connectionState, 'joining');
  });

  test('an error reply to a message is reported, not fatal', () => {
    const channel = joined();
    const ref = channel.send('flow_authorized', { ref: 'bad' }, 1);
    drain(channel);

    channel.handleFrame(`{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"invalid_ref"}},"ref":${ref}}`, 2);

    assert.deepEqual(drain(channel).events, [{ kind: 'requestFailed', topic: 'gateway', ref, reason: 'other' }]);
    assert.equal(channel.connectionState, 'joined');
  });
});

describe('heartbeat', () => {
  test('is sent on topic phoenix after 30 s of outbound silence', () => {
    const channel = joined(0);

    assert.equal(channel.pollTimeout(), 30_000);
    channel.handleTimeout(29_999);
    assert.deepEqual(drain(channel).frames, []);
    channel.handleTimeout(30_000);

    assert.deepEqual(drain(channel).frames, ['{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}']);
    assert.equal(channel.pollTimeout(), 60_000);
  });

  test('any outbound frame postpones it', () => {
    const channel = joined(0);

    channel.send('flow_authorized', { ref: 'x' }, 20_000);
    drain(channel);

    assert.equal(channel.pollTimeout(), 50_000);
    channel.handleTimeout(30_000);
    assert.deepEqual(drain(channel).frames, []);
    channel.handleTimeout(50_000);
    assert.equal(drain(channel).frames.length, 1);
  });

  test('the join resets the interval', () => {
    const channel = newChannel();
    channel.connect(0);
    channel.handleConnected(1_000);

    assert.equal(channel.pollTimeout(), 31_000);
  });

  test('waits behind an unacknowledged join, one per tick', () => {
    const channel = connected(0);

    channel.handleTimeout(30_000);
    channel.handleTimeout(60_000);
    assert.deepEqual(drain(channel).frames, []);
    assert.equal(channel.pendingCount, 2);
    channel.handleFrame(JOIN_ACK_0, 60_001);

    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).event), ['heartbeat', 'heartbeat']);
  });

  test('heartbeat replies are ignored', () => {
    const channel = joined(0);
    channel.handleTimeout(30_000);
    drain(channel);

    channel.handleFrame('{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":1}', 30_010);

    assert.deepEqual(drain(channel).events, []);
  });

  test('pollTimeout always moves past now after handleTimeout', () => {
    const channel = joined(0);
    for (let now = 0; now < 200_000; now += 7_001) {
      channel.handleTimeout(now);
      drain(channel);
      assert.ok(channel.pollTimeout()! > now);
    }
  });
});

describe('outbound queue', () => {
  test('33 queued frames are kept, the 34th discards them first', () => {
    const channel = connected();
    for (let i = 0; i < 33; i++) channel.send('m', { i }, 1);
    assert.equal(channel.pendingCount, 33);

    channel.send('m', { i: 33 }, 1);
    assert.equal(channel.pendingCount, 1);
    channel.handleFrame(JOIN_ACK_0, 2);

    assert.deepEqual(drain(channel).frames, ['{"topic":"gateway","event":"m","payload":{"i":33},"ref":34}']);
  });

  test('survives a reconnect and is sent after the next join ack', () => {
    const channel = joined();
    channel.handleDisconnected('websocket stream was closed', 10);
    for (let i = 0; i < 5; i++) channel.send('m', { i }, 11);
    drain(channel);

    channel.handleConnected(12);
    const join = drain(channel).frames;
    channel.handleFrame(ackFor(join[0]!), 13);

    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).payload.i), [0, 1, 2, 3, 4]);
  });

  test('refs keep counting across reconnects', () => {
    const channel = joined();
    channel.handleDisconnected('boom', 10);
    channel.handleConnected(11);

    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).ref), [1]);
  });

  test('a socket lost before the join ack does not block the next connection', () => {
    const channel = connected(0);
    channel.handleDisconnected('websocket stream was closed', 1);
    channel.handleConnected(2);
    const join = drain(channel).frames;

    channel.handleFrame(ackFor(join[0]!), 3);
    channel.handleTimeout(30_002);

    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).event), ['heartbeat']);
  });
});

describe('reconnecting', () => {
  test('the first failure is retried immediately', () => {
    const channel = joined();

    channel.handleDisconnected('websocket stream was closed', 100);

    assert.deepEqual(drain(channel).events, [
      { kind: 'hiccup', delayMs: 0, error: 'websocket stream was closed' },
      { kind: 'stateChanged', state: 'connecting', previous: 'joined' },
      { kind: 'connect' },
    ]);
  });

  test('later failures back off 0.5 s x1.5 with ±50 % jitter, capped at 60 s, forever', () => {
    const delays = failRepeatedly(newChannel(seededRandom(7)), 40);

    assert.equal(delays[0], 0);
    let interval = 500;
    for (const delay of delays.slice(1)) {
      assert.ok(delay >= interval * 0.5 && delay <= interval * 1.5, `${delay} outside [${interval * 0.5}, ${interval * 1.5}]`);
      interval = Math.min(interval * 1.5, 60_000);
    }
    assert.equal(interval, 60_000);
    assert.ok(Math.max(...delays) <= 90_000);
  });

  test('jitter spans the whole range', () => {
    const low = failRepeatedly(newChannel(constantRandom(0)), 4);
    const high = failRepeatedly(newChannel(constantRandom(0.999999)), 4);

    assert.deepEqual(low, [0, 250, 375, 562.5]);
    assert.deepEqual(high.map(Math.round), [0, 750, 1125, 1687]);
  });

  test('the schedule is deterministic for a seed', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        assert.deepEqual(failRepeatedly(newChannel(seededRandom(seed)), 10), failRepeatedly(newChannel(seededRandom(seed)), 10));
      }),
      { numRuns: 20 },
    );
  });

  test('waits for the delay before asking for a new socket', () => {
    const channel = newChannel(constantRandom(0));
    channel.connect(0);
    channel.handleDisconnected('refused', 0);
    channel.handleDisconnected('refused', 0);
    drain(channel);

    assert.equal(channel.connectionState, 'reconnecting');
    assert.equal(channel.pollTimeout(), 250);
    channel.handleTimeout(249);
    assert.deepEqual(drain(channel).events, []);
    channel.handleTimeout(250);
    assert.deepEqual(drain(channel).events, [{ kind: 'stateChanged', state: 'connecting', previous: 'reconnecting' }, { kind: 'connect' }]);
  });

  test('a successful connection resets the backoff', () => {
    const channel = newChannel(constantRandom(0));
    channel.connect(0);
    channel.handleDisconnected('refused', 0);
    channel.handleDisconnected('refused', 0);
    channel.handleTimeout(250);
    channel.handleConnected(300);
    drain(channel);

    channel.handleDisconnected('websocket stream was closed', 400);

    assert.equal(firstHiccup(drain(channel).events)?.delayMs, 0);
  });

  test('5xx on the upgrade is transient and keeps the body in the error', () => {
    const channel = newChannel();
    channel.connect(0);
    drain(channel);

    channel.handleUpgradeFailure(503, 'maintenance', 1);

    const events = drain(channel).events;
    assert.deepEqual(firstHiccup(events), { kind: 'hiccup', delayMs: 0, error: 'http error: 503 Service Unavailable - maintenance' });
    assert.equal(channel.connectionState, 'connecting');
  });

  test('phx_close drops the socket and reconnects', () => {
    const channel = joined();

    channel.handleFrame('{"event":"phx_close","ref":null,"topic":"gateway","payload":{}}', 5);

    assert.deepEqual(drain(channel).events.slice(0, 2), [
      { kind: 'closeSocket' },
      { kind: 'hiccup', delayMs: 0, error: 'portal closed the websocket connection' },
    ]);
  });

  test('an empty text frame is EOF class and reconnects', () => {
    const channel = joined();

    channel.handleFrame('', 5);

    assert.deepEqual(drain(channel).events.slice(0, 2), [
      { kind: 'closeSocket' },
      { kind: 'hiccup', delayMs: 0, error: 'failed to deserialize message' },
    ]);
  });

  test('connect while connecting is a no-op, while connected it forces a fresh socket', () => {
    const channel = newChannel(constantRandom(0));
    channel.connect(0);
    drain(channel);
    channel.connect(1);
    assert.deepEqual(drain(channel).events, []);

    channel.handleConnected(2);
    drain(channel);
    channel.connect(3);
    assert.deepEqual(drain(channel).events, [
      { kind: 'closeSocket' },
      { kind: 'stateChanged', state: 'connecting', previous: 'joining' },
      { kind: 'connect' },
    ]);
  });

  test('stale disconnect reports while waiting are ignored', () => {
    const channel = newChannel(constantRandom(0));
    channel.connect(0);
    channel.handleDisconnected('a', 0);
    channel.handleDisconnected('b', 0);
    drain(channel);

    channel.handleDisconnected('late error from the old socket', 1);

    assert.deepEqual(drain(channel).events, []);
    assert.equal(channel.pollTimeout(), 250);
  });
});

describe('phx_error', () => {
  test('rejoins the topic and holds messages until the new ack', () => {
    const channel = joined();

    channel.handleFrame('{"topic":"gateway","event":"phx_error","payload":{},"ref":null}', 5);
    channel.send('flow_authorized', { ref: 'x' }, 6);

    const { frames, events } = drain(channel);
    assert.deepEqual(frames, ['{"topic":"gateway","event":"phx_join","payload":null,"ref":1}']);
    assert.deepEqual(events, [{ kind: 'stateChanged', state: 'joining', previous: 'joined' }]);

    channel.handleFrame(ackFor(frames[0]!), 7);
    assert.deepEqual(drain(channel).frames.map((f) => JSON.parse(f).event), ['flow_authorized']);
  });

  test('with a non-empty payload is dropped', () => {
    const channel = joined();

    channel.handleFrame('{"topic":"gateway","event":"phx_error","payload":{"x":1},"ref":null}', 5);

    assert.deepEqual(drain(channel).events.map((e) => e.kind), ['dropped']);
    assert.equal(channel.connectionState, 'joined');
  });
});

describe('fatal errors', () => {
  for (const [status, text] of [
    [401, '401 Unauthorized'],
    [403, '403 Forbidden'],
    [404, '404 Not Found'],
    [422, '422 Unprocessable Entity'],
    [429, '429 Too Many Requests'],
  ] as const) {
    test(`${status} on the upgrade is fatal`, () => {
      const channel = newChannel();
      channel.connect(0);
      drain(channel);

      channel.handleUpgradeFailure(status, 'Invalid token', 1);

      assert.deepEqual(fatalOf(channel), {
        kind: 'fatal',
        error: { code: 'upgradeRejected', status, message: `Failed to establish WebSocket connection: ${text}` },
        exitCode: 1,
      });
    });
  }

  test('disconnect token_expired is fatal', () => {
    const channel = joined();

    channel.handleFrame('{"event":"disconnect","ref":null,"topic":"gateway","payload":{"reason":"token_expired"}}', 5);

    assert.deepEqual(fatalOf(channel)?.error, { code: 'tokenExpired', message: 'Authentication token expired' });
  });

  test('disconnect with another reason is dropped', () => {
    const channel = joined();

    channel.handleFrame('{"event":"disconnect","ref":null,"topic":"gateway","payload":{"reason":"bye"}}', 5);

    assert.deepEqual(drain(channel).events.map((e) => e.kind), ['dropped']);
  });

  for (const [reason, shown] of [
    ['unmatched topic', 'unmatched topic'],
    ['invalid_version', 'invalid version'],
    ['disabled', 'disabled'],
    ['something else', 'other'],
  ] as const) {
    test(`an error reply to the join (${reason}) is fatal`, () => {
      const channel = connected();

      channel.handleFrame(`{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"${reason}"}},"ref":0}`, 5);

      assert.equal(fatalOf(channel)?.error.message, `Failed to login with portal: ${shown}`);
    });
  }

  test('after a fatal error the channel stays failed and asks for nothing', () => {
    const channel = newChannel();
    channel.connect(0);
    channel.handleUpgradeFailure(401, '', 1);
    drain(channel);

    channel.connect(2);
    channel.handleConnected(3);
    channel.handleTimeout(100_000);

    assert.equal(channel.connectionState, 'failed');
    assert.deepEqual(drain(channel), { frames: [], events: [] });
    assert.equal(channel.pollTimeout(), undefined);
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
    channel.handleTimeout(1_000);
    record();
    channel.handleConnected(1_001);
    record();
    channel.handleFrame(ackFor('{"ref":0}'), 1_002);
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
      '{"topic":"gateway","event":"phx_reply","payload":{"status":"error","response":{"reason":"x"}},"ref":3}',
      '{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":1}',
    ),
    fc.record({ topic: fc.string(), event: fc.constantFrom('phx_reply', 'init', 'disconnect', 'x'), payload: fc.jsonValue(), ref: fc.oneof(fc.nat(5), fc.constant(null)) }).map((f) => JSON.stringify(f)),
  );
  const input = fc.oneof(
    fc.record({ kind: fc.constant('frame' as const), text: inbound }),
    fc.record({ kind: fc.constantFrom('connected' as const, 'disconnected' as const, 'connect' as const, 'send' as const, 'timeout' as const) }),
    fc.record({ kind: fc.constant('upgrade' as const), status: fc.integer({ min: 300, max: 599 }) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.nat(100_000) }),
  );

  test('no input sequence throws, pollTimeout never lies in the past, refs only grow', () => {
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
              channel.handleConnected(now);
              break;
            case 'disconnected':
              channel.handleDisconnected('x', now);
              break;
            case 'connect':
              channel.connect(now);
              break;
            case 'send':
              channel.send('m', {}, now);
              break;
            case 'timeout':
              channel.handleTimeout(now);
              break;
            case 'upgrade':
              channel.handleUpgradeFailure(step.status, '', now);
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
            drain(channel);
            const next = channel.pollTimeout();
            assert.ok(next === undefined || next > now, `deadline ${next} not after ${now}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

function newChannel(rng: RandomSource = seededRandom(1)): PhoenixChannel<IngressMessage> {
  return new PhoenixChannel({ topic: 'gateway', rng, decode: decodeIngress });
}

function connected(now = 0): PhoenixChannel<IngressMessage> {
  const channel = newChannel();
  channel.connect(now);
  channel.handleConnected(now);
  drain(channel);
  return channel;
}

function joined(now = 0): PhoenixChannel<IngressMessage> {
  const channel = connected(now);
  channel.handleFrame(JOIN_ACK_0, now);
  drain(channel);
  return channel;
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

function ackFor(frame: string): string {
  const ref = (JSON.parse(frame) as { ref: number }).ref;
  return `{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":${ref}}`;
}

/** Every connection attempt fails; returns the delay of each hiccup. */
function failRepeatedly(channel: PhoenixChannel<IngressMessage>, attempts: number): number[] {
  const delays: number[] = [];
  let now = 0;
  channel.connect(now);
  drain(channel);
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
