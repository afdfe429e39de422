import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, type CommandLine } from '../../src/cli/options.ts';

function run(argv: string[], env: Record<string, string> = {}): CommandLine {
  const outcome = parseCommandLine(argv, { env });
  assert.equal(outcome.kind, 'run', outcome.kind === 'exit' ? outcome.output : '');
  return (outcome as { options: CommandLine }).options;
}

function exit(argv: string[], env: Record<string, string> = {}): { code: number; output: string } {
  const outcome = parseCommandLine(argv, { env });
  assert.equal(outcome.kind, 'exit');
  const { code, output } = outcome as { code: number; output: string };
  return { code, output };
}

const TRY_HELP = "\n\nFor more information, try '--help'.\n";
const USAGE = 'Usage: firezone-gateway [OPTIONS] [TOKEN]';

describe('command line (1.6.0)', () => {
  test('defaults match the reference', () => {
    const o = run([]);
    assert.equal(o.token, undefined);
    assert.equal(o.apiUrl, 'wss://api.firezone.dev');
    assert.equal(o.firezoneName, undefined);
    assert.equal(o.firezoneId, undefined);
    assert.equal(o.noTelemetry, false);
    assert.equal(o.noCheck, false);
    assert.deepEqual(o.healthCheckAddr, { address: '0.0.0.0', port: 8080, family: 4 });
    assert.equal(o.tunThreads, 1);
    assert.equal(o.metrics, 'sentry');
    assert.equal(o.validateChecksums, false);
    assert.equal(o.logFormat, 'human');
    assert.equal(o.flowLogs, false);
    assert.equal(o.noIncBuf, false);
    assert.equal(o.maxPartitionTimeMs, 24 * 60 * 60 * 1000);
    assert.equal(o.iceless, true);
    assert.equal(o.ignoredTunThreads, undefined);
  });

  test('the token is optional: the argument, else FIREZONE_TOKEN (an empty one is a token)', () => {
    assert.equal(run([], { FIREZONE_TOKEN: 'envtok' }).token, 'envtok');
    assert.equal(run(['argtok'], { FIREZONE_TOKEN: 'envtok' }).token, 'argtok');
    assert.equal(run([], { FIREZONE_TOKEN: '' }).token, '');
    assert.equal(run(['--', '-dash-token']).token, '-dash-token');
  });

  test('flags beat env vars, env vars beat defaults', () => {
    const env = {
      FIREZONE_API_URL: 'ws://env:8081',
      FIREZONE_NAME: 'env-name',
      FIREZONE_ID: 'env-id',
      HEALTH_CHECK_ADDR: '127.0.0.1:9000',
      FIREZONE_METRICS: 'stdout',
      FIREZONE_LOG_FORMAT: 'json',
      FIREZONE_MAX_PARTITION_TIME: '5m',
      OTLP_GRPC_ENDPOINT: 'collector:4317',
    };
    const fromEnv = run(['t'], env);
    assert.equal(fromEnv.apiUrl, 'ws://env:8081');
    assert.equal(fromEnv.firezoneName, 'env-name');
    assert.equal(fromEnv.firezoneId, 'env-id');
    assert.deepEqual(fromEnv.healthCheckAddr, { address: '127.0.0.1', port: 9000, family: 4 });
    assert.equal(fromEnv.metrics, 'stdout');
    assert.equal(fromEnv.logFormat, 'json');
    assert.equal(fromEnv.maxPartitionTimeMs, 300_000);
    assert.equal(fromEnv.otlpGrpcEndpoint, 'collector:4317');

    const fromFlags = run(
      ['-u', 'wss://flag', '-n', 'flag-name', '-i', 'flag-id', '--health-check-addr', '[::1]:81', '--metrics', 'otel-collector', '--log-format=human', '-m', '1h', 't'],
      env,
    );
    assert.equal(fromFlags.apiUrl, 'wss://flag');
    assert.equal(fromFlags.firezoneName, 'flag-name');
    assert.equal(fromFlags.firezoneId, 'flag-id');
    assert.deepEqual(fromFlags.healthCheckAddr, { address: '::1', port: 81, family: 6 });
    assert.equal(fromFlags.metrics, 'otel-collector');
    assert.equal(fromFlags.logFormat, 'human');
    assert.equal(fromFlags.maxPartitionTimeMs, 3_600_000);
    assert.equal(run(['--api-url=ws://long', 't']).apiUrl, 'ws://long');
    assert.equal(run(['-uws://short', 't']).apiUrl, 'ws://short');
    assert.equal(run(['-n=eq', 't']).firezoneName, 'eq');
  });

  test('an empty name is kept; an empty id means unset', () => {
    assert.equal(run(['t'], { FIREZONE_NAME: '' }).firezoneName, '');
    assert.equal(run(['t'], { FIREZONE_ID: '' }).firezoneId, undefined);
  });

  const booleans = [
    ['--no-telemetry', 'FIREZONE_NO_TELEMETRY', 'noTelemetry'],
    ['--validate-checksums', 'FIREZONE_VALIDATE_CHECKSUMS', 'validateChecksums'],
    ['--flow-logs', 'FIREZONE_FLOW_LOGS', 'flowLogs'],
    ['--no-inc-buf', 'FIREZONE_NO_INC_BUF', 'noIncBuf'],
  ] as const;
  for (const [flag, envName, key] of booleans) {
    test(`${flag} / ${envName}: a flag, or strictly true/false in the environment`, () => {
      assert.equal(run([flag, 't'])[key], true);
      assert.equal(run(['t'], { [envName]: 'true' })[key], true);
      assert.equal(run(['t'], { [envName]: 'false' })[key], false);
      assert.equal(run([flag, 't'], { [envName]: 'false' })[key], true);
      assert.deepEqual(exit(['t'], { [envName]: '1' }), { code: 2, output: `error: invalid value '1' for '${flag}'\n  [possible values: true, false]${TRY_HELP}` });
      assert.deepEqual(exit(['t'], { [envName]: 'True' }), {
        code: 2,
        output: `error: invalid value 'True' for '${flag}'\n  [possible values: true, false]\n\n  tip: a similar value exists: 'true'${TRY_HELP}`,
      });
      assert.deepEqual(exit(['t'], { [envName]: '' }), { code: 2, output: `error: a value is required for '${flag}' but none was supplied\n  [possible values: true, false]${TRY_HELP}` });
      assert.deepEqual(exit([`${flag}=true`, 't']), {
        code: 2,
        output: `error: unexpected value 'true' for '${flag}' found; no more were expected\n\nUsage: firezone-gateway ${flag} [TOKEN]${TRY_HELP}`,
      });
    });
  }
  test('--no-check has no environment variable', () => {
    assert.equal(run(['--no-check', 't']).noCheck, true);
    assert.equal(run(['t'], { FIREZONE_NO_CHECK: 'true' } as Record<string, string>).noCheck, false);
  });
  test('the hidden comparison switch --no-iceless / FIREZONE_NO_ICELESS', () => {
    assert.equal(run(['--no-iceless', 't']).iceless, false);
    assert.equal(run(['t'], { FIREZONE_NO_ICELESS: 'true' }).iceless, false);
    assert.equal(exit(['t'], { FIREZONE_NO_ICELESS: 'no' }).code, 2);
  });

  test('log format: human (default) or json; text stays an alias of human', () => {
    assert.equal(run(['--log-format', 'json', 't']).logFormat, 'json');
    assert.equal(run(['t'], { FIREZONE_LOG_FORMAT: 'text' }).logFormat, 'human');
    assert.deepEqual(exit(['t'], { FIREZONE_LOG_FORMAT: 'xml' }), {
      code: 2,
      output: `error: invalid value 'xml' for '--log-format <LOG_FORMAT>'\n  [possible values: json, human]${TRY_HELP}`,
    });
    assert.deepEqual(exit(['--log-format', 'jsn', 't']), {
      code: 2,
      output: `error: invalid value 'jsn' for '--log-format <LOG_FORMAT>'\n  [possible values: json, human]\n\n  tip: a similar value exists: 'json'${TRY_HELP}`,
    });
  });

  test('metrics: every 1.6.0 exporter, sentry by default', () => {
    for (const value of ['stdout', 'otel-collector', 'sentry'] as const) {
      assert.equal(run(['--metrics', value, 't']).metrics, value);
      assert.equal(run(['t'], { FIREZONE_METRICS: value }).metrics, value);
    }
    assert.deepEqual(exit(['t'], { FIREZONE_METRICS: 'prometheus' }), {
      code: 2,
      output: `error: invalid value 'prometheus' for '--metrics <METRICS>'\n  [possible values: stdout, otel-collector, sentry]${TRY_HELP}`,
    });
  });

  test('max partition time: human durations, in milliseconds', () => {
    const cases: Array<[string, number]> = [
      ['24h', 86_400_000],
      ['5m', 300_000],
      ['1h 30m', 5_400_000],
      ['30d', 2_592_000_000],
      ['2.5d', 216_000_000],
      ['90s', 90_000],
      ['1w', 604_800_000],
      ['1M', 2_630_016_000],
      ['1y', 31_557_600_000],
      ['500ms', 500],
      ['0', 0],
    ];
    for (const [text, ms] of cases) {
      assert.equal(run(['-m', text, 't']).maxPartitionTimeMs, ms, text);
      assert.equal(run(['t'], { FIREZONE_MAX_PARTITION_TIME: text }).maxPartitionTimeMs, ms, text);
    }
    const invalid: Array<[string, string]> = [
      ['24', 'time unit needed, for example 24sec or 24ms'],
      ['1x', 'unknown time unit "x", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)'],
      ['-1h', 'expected number at 0'],
      ['1h,', 'invalid character at 2'],
      ['forever', 'expected number at 0'],
      ['10000000000000y', 'number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)'],
    ];
    for (const [text, reason] of invalid) {
      assert.deepEqual(exit(['t'], { FIREZONE_MAX_PARTITION_TIME: text }), {
        code: 2,
        output: `error: invalid value '${text}' for '--max-partition-time <MAX_PARTITION_TIME>': ${reason}${TRY_HELP}`,
      });
    }
    assert.deepEqual(exit(['t'], { FIREZONE_MAX_PARTITION_TIME: '' }), {
      code: 2,
      output: `error: invalid value '' for '--max-partition-time <MAX_PARTITION_TIME>': value was empty${TRY_HELP}`,
    });
  });

  test('the API URL is parsed with the command line; the reason is the url crate\'s', () => {
    const invalid: Array<[string, string]> = [
      ['api.firezone.dev', 'relative URL without a base'],
      ['', 'relative URL without a base'],
      ['wss://', 'empty host'],
      ['wss://api.firezone.dev:99999', 'invalid port number'],
      ['wss://api.firezone.dev:x', 'invalid port number'],
      ['ws://[::1', 'invalid IPv6 address'],
      ['ws://256.1.1.1', 'invalid IPv4 address'],
      ['ws://a b', 'invalid domain character'],
    ];
    for (const [url, reason] of invalid) {
      assert.deepEqual(exit(['t'], { FIREZONE_API_URL: url }), { code: 2, output: `error: invalid value '${url}' for '--api-url <API_URL>': ${reason}${TRY_HELP}` }, url);
    }
    // The scheme is checked later, when the login URL is built (exit 1), as in the reference.
    assert.equal(run(['-u', 'ftp://portal', 't']).apiUrl, 'ftp://portal');
    assert.equal(run(['-u', 'http://127.0.0.1:8080', 't']).apiUrl, 'http://127.0.0.1:8080');
  });

  test('--tun-threads is gone as in 1.6.0; FIREZONE_NUM_TUN_THREADS is ignored', () => {
    assert.deepEqual(exit(['--tun-threads', '2', 't']), {
      code: 2,
      output: `error: unexpected argument '--tun-threads' found\n\n  tip: to pass '--tun-threads' as a value, use '-- --tun-threads'\n\n${USAGE}${TRY_HELP}`,
    });
    const o = run(['t'], { FIREZONE_NUM_TUN_THREADS: 'two' });
    assert.equal(o.tunThreads, 1);
    assert.equal(o.ignoredTunThreads, 'two');
  });

  test('other usage errors in clap\'s words', () => {
    assert.deepEqual(exit(['--no-telemetri', 't']), {
      code: 2,
      output: `error: unexpected argument '--no-telemetri' found\n\n  tip: a similar argument exists: '--no-telemetry'\n\n${USAGE}${TRY_HELP}`,
    });
    assert.deepEqual(exit(['a', 'b']), { code: 2, output: `error: unexpected argument 'b' found\n\n${USAGE}${TRY_HELP}` });
    assert.deepEqual(exit(['-n', 'x', 't', '--no-telemetri']), {
      code: 2,
      output: `error: unexpected argument '--no-telemetri' found\n\n  tip: a similar argument exists: '--no-telemetry'\n\nUsage: firezone-gateway --firezone-name <FIREZONE_NAME> <TOKEN>${TRY_HELP}`,
    });
    assert.deepEqual(exit(['--no-check', '--flow-logs=yes']), {
      code: 2,
      output: `error: unexpected value 'yes' for '--flow-logs' found; no more were expected\n\nUsage: firezone-gateway --no-check --flow-logs [TOKEN]${TRY_HELP}`,
    });
    assert.deepEqual(exit(['-x']), { code: 2, output: `error: unexpected argument '-x' found\n\n  tip: to pass '-x' as a value, use '-- -x'\n\n${USAGE}${TRY_HELP}` });
    assert.deepEqual(exit(['--no-check', '--no-check']), {
      code: 2,
      output: `error: the argument '--no-check' cannot be used multiple times\n\n${USAGE}${TRY_HELP}`,
    });
    assert.deepEqual(exit(['-n', 'a', '--firezone-name', 'b']), {
      code: 2,
      output: `error: the argument '--firezone-name <FIREZONE_NAME>' cannot be used multiple times\n\n${USAGE}${TRY_HELP}`,
    });
    assert.deepEqual(exit(['t', '--firezone-name']), { code: 2, output: `error: a value is required for '--firezone-name <FIREZONE_NAME>' but none was supplied${TRY_HELP}` });
    assert.deepEqual(exit(['--health-check-addr', 'localhost:80', 't']), {
      code: 2,
      output: `error: invalid value 'localhost:80' for '--health-check-addr <HEALTH_CHECK_ADDR>': invalid socket address syntax${TRY_HELP}`,
    });
  });

  test('--version prints 1.6.0 (then the implementation line); --help lists visible options with env vars', () => {
    const version = exit(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.output, /^firezone-gateway 1\.6\.0\nTypeScript implementation, commit \w+, Node\.js v\d+\.\d+\.\d+\n$/);
    assert.equal(exit(['-V']).output, version.output);
    const help = exit(['--help']);
    assert.equal(help.code, 0);
    assert.equal(exit(['-h']).output, help.output);
    for (const visible of ['--firezone-name', 'FIREZONE_NAME', '--firezone-id', 'FIREZONE_ID', '--no-telemetry', 'FIREZONE_NO_TELEMETRY', '--no-check', 'FIREZONE_TOKEN', '--log-format', '--flow-logs', 'FIREZONE_FLOW_LOGS', '--no-inc-buf', 'FIREZONE_NO_INC_BUF', '--max-partition-time', 'FIREZONE_MAX_PARTITION_TIME']) {
      assert.ok(help.output.includes(visible), `help mentions ${visible}`);
    }
    for (const hidden of ['--api-url', '--health-check-addr', '--metrics', '--validate-checksums', '--no-iceless', '--tun-threads']) {
      assert.ok(!help.output.includes(hidden), `help hides ${hidden}`);
    }
  });
});
