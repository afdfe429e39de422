import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { main, logFilterSpec, type MainContext, type StartedGateway } from '../../src/cli/main.ts';
import { configureLogging, createLogger, Level, LogFilter } from '../../src/log/index.ts';
import type { IdHost } from '../../src/cli/identity.ts';
import type { GatewayOptions } from '../../src/cli/options.ts';

const TOKEN = 'secret-token-value-1234';

interface Harness {
  context: MainContext;
  out: string[];
  err: string[];
  logs: string[];
  sysctls: string[];
  signal: (name: 'SIGINT' | 'SIGTERM') => void;
  started: { options: GatewayOptions; id: string }[];
  stopped: () => number;
}

function harness(argv: string[], overrides: Partial<MainContext> = {}, gateway?: Partial<StartedGateway>): Harness {
  const out: string[] = [];
  const err: string[] = [];
  const logs: string[] = [];
  const sysctls: string[] = [];
  const started: { options: GatewayOptions; id: string }[] = [];
  let stops = 0;
  let fire: (name: 'SIGINT' | 'SIGTERM') => void = () => undefined;
  const signalPromise = new Promise<'SIGINT' | 'SIGTERM'>((resolve) => (fire = resolve));
  configureLogging({ sink: { write: (l) => logs.push(l) } });
  const context: MainContext = {
    argv,
    env: {},
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    hasPermissions: () => true,
    idHost: memoryIdHost('{"id":"persisted"}'),
    writeSysctl: (path, value) => void sysctls.push(`${path}=${value}`),
    readCredential: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
    waitForSignal: () => signalPromise,
    startGateway: async (options, id) => {
      started.push({ options, id });
      return { done: new Promise<void>(() => undefined), stop: async () => void stops++, ...gateway };
    },
    ...overrides,
  };
  return { context, out, err, logs, sysctls, signal: (n) => fire(n), started, stopped: () => stops };
}

async function runUntilStarted(h: Harness): Promise<number> {
  const running = main(h.context);
  await new Promise((r) => setImmediate(r));
  assert.equal(h.started.length, 1, h.logs.join('') + h.err.join(''));
  h.signal('SIGTERM');
  return running;
}

describe('main', () => {
  test('usage errors exit 2 on stderr; help and version exit 0 on stdout', async () => {
    const bad = harness(['--tun-threads', '2', TOKEN]);
    assert.equal(await main(bad.context), 2);
    assert.match(bad.err.join(''), /^error: unexpected argument '--tun-threads' found/);
    const help = harness(['--help']);
    assert.equal(await main(help.context), 0);
    assert.match(help.out.join(''), /Usage: firezone-gateway \[OPTIONS\] \[TOKEN\]/);
    const version = harness(['-V']);
    assert.equal(await main(version.context), 0);
    assert.match(version.out.join(''), /^firezone-gateway 1\.6\.0\n/);
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
    assert.equal(await runUntilStarted(harness(['--no-check', TOKEN], { hasPermissions: () => false })), 0);
  });

  test('SIGINT and SIGTERM stop the gateway gracefully and exit 0, as 1.6.0 logs it', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const h = harness([TOKEN]);
      const running = main(h.context);
      await new Promise((r) => setImmediate(r));
      assert.equal(h.started[0]?.id, 'persisted');
      h.signal(signal);
      assert.equal(await running, 0);
      assert.equal(h.stopped(), 1);
      assert.match(h.logs.join(''), /INFO firezone_gateway: Received SIGINT\/SIGTERM signal=SIG(INT|TERM)\n.*INFO firezone_gateway: Goodbye!\n$/);
    }
  });

  test('a fatal runtime error: ERROR "Eventloop failed: <chain>" and exit 1', async () => {
    const h = harness([TOKEN], {}, {
      done: Promise.reject(new Error('Failed to login to portal', { cause: new Error('Invalid token') })),
    });
    assert.equal(await main(h.context), 1);
    assert.match(h.logs.join(''), /ERROR firezone_gateway: Eventloop failed: Failed to login to portal: Invalid token\n/);
  });

  test('a failing start: its error chain at INFO, exit 1', async () => {
    const h = harness([TOKEN], {
      startGateway: async () => {
        throw new Error('Failed to create TUN device', { cause: new Error("Failed to open '/dev/net/tun'") });
      },
    });
    assert.equal(await main(h.context), 1);
    assert.match(h.logs.join(''), /INFO firezone_gateway: Failed to create TUN device: Failed to open '\/dev\/net\/tun'\n$/);
  });

  test('an invalid RUST_LOG is a visible fatal error', async () => {
    const h = harness([TOKEN], { env: { RUST_LOG: 'gateway=loud' } });
    assert.equal(await main(h.context), 1);
    assert.match(h.err.join(''), /^Failed to set up logging: Failed to parse directives: invalid log level `loud`/);
  });

  test('the token never reaches the log, even at trace level', async () => {
    const h = harness([TOKEN], { env: { RUST_LOG: 'trace' } });
    assert.equal(await runUntilStarted(h), 0);
    const all = h.logs.join('');
    assert.match(all, /started logging/);
    assert.match(all, /Command line/);
    assert.ok(!all.includes(TOKEN));
  });

  test('RUST_LOG as 1.6.0 builds the filter: unset means info, --flow-logs appends flow_logs=trace', () => {
    assert.equal(logFilterSpec({}), 'info');
    assert.equal(logFilterSpec({ RUST_LOG: 'debug' }), 'debug');
    assert.equal(logFilterSpec({ RUST_LOG: '' }), '');
    assert.equal(logFilterSpec({}, true), 'info,flow_logs=trace');
    assert.equal(logFilterSpec({ RUST_LOG: 'info,tunnel=trace' }, true), 'info,tunnel=trace,flow_logs=trace');
    assert.ok(LogFilter.parse(logFilterSpec({}, true)));
  });

  describe('the token', () => {
    test('from the argument or FIREZONE_TOKEN, else the systemd credential, trimmed', async () => {
      const fromCredential = harness([], {
        env: { CREDENTIALS_DIRECTORY: '/run/credentials/firezone-gateway.service' },
        readCredential: (path) => {
          assert.equal(path, '/run/credentials/firezone-gateway.service/FIREZONE_TOKEN');
          return Buffer.from(' systemd-token\n');
        },
      });
      assert.equal(await runUntilStarted(fromCredential), 0);
      assert.equal(fromCredential.started[0]!.options.token, 'systemd-token');

      const fromEnv = harness([], { env: { FIREZONE_TOKEN: 'env-token', CREDENTIALS_DIRECTORY: '/x' }, readCredential: () => assert.fail('not read') });
      assert.equal(await runUntilStarted(fromEnv), 0);
      assert.equal(fromEnv.started[0]!.options.token, 'env-token');
    });

    for (const [name, env, message] of [
      ['without CREDENTIALS_DIRECTORY', {}, 'Failed to read `FIREZONE_TOKEN` systemd credential: `CREDENTIALS_DIRECTORY` not provided'],
      ['with the credential file missing', { CREDENTIALS_DIRECTORY: '/nowhere' }, 'Failed to read `FIREZONE_TOKEN` systemd credential: No such file or directory (os error 2)'],
    ] as const) {
      test(`none given, ${name}: 1.6.0's message at INFO and exit 1`, async () => {
        const h = harness([], { env });
        assert.equal(await main(h.context), 1);
        assert.equal(h.started.length, 0);
        assert.ok(h.logs.join('').endsWith(` INFO firezone_gateway: ${message}\n`), h.logs.join(''));
      });
    }
  });

  test('the socket buffer limits are raised before the id is read, unless --no-inc-buf', async () => {
    const h = harness([TOKEN]);
    assert.equal(await runUntilStarted(h), 0);
    assert.deepEqual(h.sysctls, ['/proc/sys/net/core/rmem_max=16777216', '/proc/sys/net/core/wmem_max=2097152']);
    assert.match(h.logs.join(''), /Set `core.rmem_max` to 16777216\n.*Set `core.wmem_max` to 2097152\n(.*\n)*.*Using Firezone ID/);

    const denied = harness([TOKEN], {
      writeSysctl: () => {
        throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
      },
    });
    assert.equal(await runUntilStarted(denied), 0);
    assert.match(denied.logs.join(''), /INFO firezone_gateway: Failed to increase `core.rmem_max`: Permission denied \(os error 13\)\n/);

    for (const off of [harness(['--no-inc-buf', TOKEN]), harness([TOKEN], { env: { FIREZONE_NO_INC_BUF: 'true' } })]) {
      assert.equal(await runUntilStarted(off), 0);
      assert.deepEqual(off.sysctls, []);
    }
  });

  test('--flow-logs turns on the flow_logs target at trace, on top of RUST_LOG', async () => {
    const flowLogs = createLogger('flow_logs');
    const on = harness(['--flow-logs', TOKEN], { env: { RUST_LOG: 'warn' } });
    assert.equal(await runUntilStarted(on), 0);
    assert.equal(flowLogs.enabled(Level.Trace), true);
    assert.equal(createLogger('firezone_gateway').enabled(Level.Info), false);
    const off = harness([TOKEN]);
    assert.equal(await runUntilStarted(off), 0);
    assert.equal(flowLogs.enabled(Level.Trace), false);
  });

  test('the options reach the runtime: flow logs, partition budget, metrics', async () => {
    const h = harness(['--flow-logs', '-m', '90m', '--metrics', 'stdout', TOKEN]);
    assert.equal(await runUntilStarted(h), 0);
    const { options } = h.started[0]!;
    assert.equal(options.flowLogs, true);
    assert.equal(options.maxPartitionTimeMs, 90 * 60 * 1000);
    assert.equal(options.metrics, 'stdout');
    assert.equal(options.tunThreads, 1);
  });

  test('said once at INFO: the sentry exporter sends nothing; FIREZONE_NUM_TUN_THREADS is ignored', async () => {
    const h = harness([TOKEN], { env: { FIREZONE_NUM_TUN_THREADS: '4' } });
    assert.equal(await runUntilStarted(h), 0);
    const logs = h.logs.join('');
    assert.equal(logs.match(/INFO firezone_gateway: Metrics exporter `sentry` \(the default\) sends nothing/g)?.length, 1);
    assert.match(logs, /INFO firezone_gateway: FIREZONE_NUM_TUN_THREADS is ignored, as by the official gateway since 1\.4\.16: the TUN device has one queue value=4\n/);
    assert.equal(h.started[0]!.options.tunThreads, 1);

    const quiet = harness([TOKEN], { env: { FIREZONE_METRICS: 'otel-collector' } });
    assert.equal(await runUntilStarted(quiet), 0);
    assert.doesNotMatch(quiet.logs.join(''), /sentry|NUM_TUN_THREADS/);
  });

  test('a legacy id file: its text kept as the id, with a WARN', async () => {
    const h = harness([TOKEN], { idHost: memoryIdHost('my-old-id\n') });
    assert.equal(await runUntilStarted(h), 0);
    assert.equal(h.started[0]!.id, 'my-old-id\n');
    assert.match(h.logs.join(''), /WARN firezone_gateway: mem is not the JSON id file 1\.6\.0 reads/);
  });
});

function memoryIdHost(content: string | undefined, machineId?: string): IdHost {
  return {
    path: 'mem',
    prepareDirectory: () => undefined,
    readIdFile: () => {
      if (content === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return Buffer.from(content);
    },
    restrictIdFile: () => undefined,
    readMachineId: () => {
      if (machineId === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return Buffer.from(machineId);
    },
    writeIdFile: (text) => void (content = text),
  };
}
