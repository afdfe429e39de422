import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { main, logFilterSpec, type MainContext, type StartedGateway } from '../../src/cli/main.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import type { IdStore } from '../../src/cli/identity.ts';

const TOKEN = 'secret-token-value-1234';

interface Harness {
  context: MainContext;
  out: string[];
  err: string[];
  logs: string[];
  signal: (name: 'SIGINT' | 'SIGTERM') => void;
  started: { options: unknown; id: string }[];
  stopped: () => number;
}

function harness(argv: string[], overrides: Partial<MainContext> = {}, gateway?: Partial<StartedGateway>): Harness {
  const out: string[] = [];
  const err: string[] = [];
  const logs: string[] = [];
  const started: { options: unknown; id: string }[] = [];
  let stops = 0;
  let fire: (name: 'SIGINT' | 'SIGTERM') => void = () => undefined;
  const signalPromise = new Promise<'SIGINT' | 'SIGTERM'>((resolve) => (fire = resolve));
  const idStore: IdStore = { path: 'mem', read: () => '{"id":"persisted"}', write: () => undefined };
  const context: MainContext = {
    argv,
    env: {},
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    hasPermissions: () => true,
    idStore,
    waitForSignal: () => signalPromise,
    startGateway: async (options, id) => {
      started.push({ options, id });
      // Route logs into the harness after main configured them.
      configureLogging({ sink: { write: (l) => logs.push(l) } });
      return { done: new Promise<void>(() => undefined), stop: async () => void stops++, ...gateway };
    },
    ...overrides,
  };
  return { context, out, err, logs, signal: (n) => fire(n), started, stopped: () => stops };
}

describe('main', () => {
  test('usage errors exit 2 on stderr; help exits 0 on stdout', async () => {
    const missing = harness([]);
    assert.equal(await main(missing.context), 2);
    assert.match(missing.err.join(''), /<TOKEN>/);
    const help = harness(['--help']);
    assert.equal(await main(help.context), 0);
    assert.match(help.out.join(''), /Usage: firezone-gateway/);
  });

  test('without root or CAP_NET_ADMIN: the two-line message and exit 1; --no-check skips it', async () => {
    const denied = harness([TOKEN], { hasPermissions: () => false });
    assert.equal(await main(denied.context), 1);
    assert.equal(
      denied.err.join(''),
      'firezone-gateway needs to be executed as `root` or with the `CAP_NET_ADMIN` capability.\n' +
        'See https://www.firezone.dev/kb/deploy/gateways#permissions for details.\n',
    );
    assert.equal(denied.started.length, 0);

    const skipped = harness(['--no-check', TOKEN], { hasPermissions: () => false });
    const running = main(skipped.context);
    await new Promise((r) => setImmediate(r));
    assert.equal(skipped.started.length, 1);
    skipped.signal('SIGTERM');
    assert.equal(await running, 0);
  });

  test('SIGINT and SIGTERM stop the gateway gracefully and exit 0', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const h = harness([TOKEN]);
      const running = main(h.context);
      await new Promise((r) => setImmediate(r));
      assert.equal(h.started[0]?.id, 'persisted');
      h.signal(signal);
      assert.equal(await running, 0);
      assert.equal(h.stopped(), 1);
      assert.match(h.logs.join(''), signal === 'SIGINT' ? /Received CTRL\+C, goodbye!/ : /Received SIGTERM, goodbye!/);
    }
  });

  test('a fatal runtime error: "Failed to start Gateway: <chain>" and exit 1', async () => {
    const h = harness([TOKEN], {}, {
      done: Promise.reject(new Error('Failed to login to portal', { cause: new Error('Failed to establish WebSocket connection: 401 Unauthorized') })),
    });
    assert.equal(await main(h.context), 1);
    assert.match(h.logs.join(''), /ERROR firezone_gateway: Failed to start Gateway: Failed to login to portal: Failed to establish WebSocket connection: 401 Unauthorized/);
  });

  test('a failing start is fatal with exit 1', async () => {
    const h = harness([TOKEN], {
      startGateway: async () => {
        throw new Error('Failed to create TUN device', { cause: new Error("Failed to open '/dev/net/tun'") });
      },
    });
    const lines: string[] = [];
    const running = main(h.context);
    configureLogging({ sink: { write: (l) => lines.push(l) } });
    assert.equal(await running, 1);
    assert.match(lines.join('') + h.err.join(''), /Failed to start Gateway: Failed to create TUN device: Failed to open '\/dev\/net\/tun'/);
  });

  test('an invalid RUST_LOG is a visible fatal error', async () => {
    const h = harness([TOKEN], { env: { RUST_LOG: 'gateway=loud' } });
    assert.equal(await main(h.context), 1);
    assert.match(h.err.join(''), /Failed to start Gateway: Failed to set up logging: Failed to parse directives: invalid log level `loud`/);
  });

  test('the token never reaches the log, even at trace level', async () => {
    const lines: string[] = [];
    const h = harness([TOKEN], { env: { RUST_LOG: 'trace' } });
    configureLogging({ sink: { write: (l) => lines.push(l) } });
    const running = main(h.context);
    await new Promise((r) => setImmediate(r));
    h.signal('SIGINT');
    await running;
    const all = lines.join('') + h.logs.join('');
    assert.match(all, /started logging/);
    assert.match(all, /Command line/);
    assert.ok(!all.includes(TOKEN));
  });

  test('an unset or empty RUST_LOG means info', () => {
    assert.equal(logFilterSpec({}), 'info');
    assert.equal(logFilterSpec({ RUST_LOG: ' ' }), 'info');
    assert.equal(logFilterSpec({ RUST_LOG: 'debug' }), 'debug');
    assert.ok(LogFilter.parse(logFilterSpec({})));
  });
});
