import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultTunThreads, parseCommandLine, type GatewayOptions } from '../../src/cli/options.ts';

function run(argv: string[], env: Record<string, string> = {}, cpus = 2): GatewayOptions {
  const outcome = parseCommandLine(argv, { env, cpus });
  assert.equal(outcome.kind, 'run', outcome.kind === 'exit' ? outcome.output : '');
  return (outcome as { options: GatewayOptions }).options;
}

function exit(argv: string[], env: Record<string, string> = {}): { code: number; output: string } {
  const outcome = parseCommandLine(argv, { env, cpus: 2 });
  assert.equal(outcome.kind, 'exit');
  return outcome as { code: number; output: string };
}

describe('command line', () => {
  test('defaults match the reference', () => {
    const o = run(['tok']);
    assert.equal(o.token, 'tok');
    assert.equal(o.apiUrl, 'wss://api.firezone.dev');
    assert.equal(o.firezoneName, undefined);
    assert.equal(o.firezoneId, undefined);
    assert.equal(o.noTelemetry, false);
    assert.equal(o.noCheck, false);
    assert.deepEqual(o.healthCheckAddr, { address: '0.0.0.0', port: 8080, family: 4 });
    assert.equal(o.tunThreads, 1);
    assert.equal(o.metrics, undefined);
    assert.equal(o.validateChecksums, false);
    assert.equal(o.logFormat, 'text');
    assert.equal(o.iceless, true);
  });

  test('token from FIREZONE_TOKEN; the positional argument wins', () => {
    assert.equal(run([], { FIREZONE_TOKEN: 'envtok' }).token, 'envtok');
    assert.equal(run(['argtok'], { FIREZONE_TOKEN: 'envtok' }).token, 'argtok');
  });

  test('a missing token is a usage error (exit 2) naming <TOKEN>', () => {
    const { code, output } = exit([]);
    assert.equal(code, 2);
    assert.match(output, /<TOKEN>/);
    assert.equal(exit([], { FIREZONE_TOKEN: '' }).code, 2);
  });

  test('flags beat env vars, env vars beat defaults', () => {
    const env = {
      FIREZONE_API_URL: 'ws://env:8081',
      FIREZONE_NAME: 'env-name',
      FIREZONE_ID: 'env-id',
      HEALTH_CHECK_ADDR: '127.0.0.1:9000',
      FIREZONE_NUM_TUN_THREADS: '3',
      FIREZONE_METRICS: 'stdout',
    };
    const fromEnv = run(['t'], env);
    assert.equal(fromEnv.apiUrl, 'ws://env:8081');
    assert.equal(fromEnv.firezoneName, 'env-name');
    assert.equal(fromEnv.firezoneId, 'env-id');
    assert.deepEqual(fromEnv.healthCheckAddr, { address: '127.0.0.1', port: 9000, family: 4 });
    assert.equal(fromEnv.tunThreads, 3);
    assert.equal(fromEnv.metrics, 'stdout');

    const fromFlags = run(
      ['-u', 'wss://flag', '-n', 'flag-name', '-i', 'flag-id', '--health-check-addr', '[::1]:81', '--tun-threads', '4', '--metrics', 'otel-collector', 't'],
      env,
    );
    assert.equal(fromFlags.apiUrl, 'wss://flag');
    assert.equal(fromFlags.firezoneName, 'flag-name');
    assert.equal(fromFlags.firezoneId, 'flag-id');
    assert.deepEqual(fromFlags.healthCheckAddr, { address: '::1', port: 81, family: 6 });
    assert.equal(fromFlags.tunThreads, 4);
    assert.equal(fromFlags.metrics, 'otel-collector');
    assert.equal(run(['--api-url=ws://long', 't']).apiUrl, 'ws://long');
  });

  test('an empty name is kept; an empty id means unset', () => {
    assert.equal(run(['t'], { FIREZONE_NAME: '' }).firezoneName, '');
    assert.equal(run(['t'], { FIREZONE_ID: '' }).firezoneId, undefined);
  });

  test('booleans: flags, and strict true/false in the environment', () => {
    assert.equal(run(['--no-telemetry', 't']).noTelemetry, true);
    assert.equal(run(['t'], { FIREZONE_NO_TELEMETRY: 'true' }).noTelemetry, true);
    assert.equal(run(['t'], { FIREZONE_NO_TELEMETRY: 'false' }).noTelemetry, false);
    assert.equal(exit(['t'], { FIREZONE_NO_TELEMETRY: '1' }).code, 2);
    assert.equal(run(['--no-check', 't']).noCheck, true);
    assert.equal(run(['--validate-checksums', 't']).validateChecksums, true);
    assert.equal(run(['t'], { FIREZONE_VALIDATE_CHECKSUMS: 'true' }).validateChecksums, true);
    assert.equal(exit(['t'], { FIREZONE_VALIDATE_CHECKSUMS: 'yes' }).code, 2);
    assert.equal(run(['--no-iceless', 't']).iceless, false);
    assert.equal(run(['t'], { FIREZONE_NO_ICELESS: 'true' }).iceless, false);
    assert.equal(run(['t'], { FIREZONE_NO_ICELESS: 'false' }).iceless, true);
    assert.equal(exit(['t'], { FIREZONE_NO_ICELESS: 'no' }).code, 2);
  });

  test('unparsable values and unknown flags exit 2', () => {
    assert.equal(exit(['--tun-threads', 'two', 't']).code, 2);
    assert.equal(exit(['t'], { FIREZONE_NUM_TUN_THREADS: '-1' }).code, 2);
    assert.equal(exit(['--metrics', 'prometheus', 't']).code, 2);
    assert.equal(exit(['t'], { FIREZONE_METRICS: 'prometheus' }).code, 2);
    assert.equal(exit(['--health-check-addr', 'localhost:80', 't']).code, 2);
    assert.equal(exit(['--bogus', 't']).code, 2);
    assert.equal(exit(['a', 'b']).code, 2);
  });

  test('tun threads default to 1 below 4 CPUs, else 2', () => {
    assert.equal(defaultTunThreads(1), 1);
    assert.equal(defaultTunThreads(3), 1);
    assert.equal(defaultTunThreads(4), 2);
    assert.equal(run(['t'], {}, 8).tunThreads, 2);
  });

  test('--version prints the reference version; --help lists visible options with env vars', () => {
    const version = exit(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.output, /^firezone-gateway 1\.6\.0\nTypeScript implementation, commit \w+, Node\.js v\d+\.\d+\.\d+\n$/);
    assert.equal(exit(['-V']).output, version.output);
    const help = exit(['--help']);
    assert.equal(help.code, 0);
    for (const visible of ['--firezone-name', 'FIREZONE_NAME', '--firezone-id', 'FIREZONE_ID', '--no-telemetry', 'FIREZONE_NO_TELEMETRY', '--no-check', '--tun-threads', 'FIREZONE_NUM_TUN_THREADS', 'FIREZONE_TOKEN']) {
      assert.ok(help.output.includes(visible), `help mentions ${visible}`);
    }
    for (const hidden of ['--api-url', '--health-check-addr', '--metrics', '--validate-checksums', '--no-iceless']) {
      assert.ok(!help.output.includes(hidden), `help hides ${hidden}`);
    }
  });
});
