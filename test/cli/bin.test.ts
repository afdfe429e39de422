import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hasCommand, isRoot } from '../support/env.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = 'src/bin/firezone-gateway.ts';

function runBinary(args: string[], prefix: string[] = [], env: Record<string, string> = {}) {
  const command = [...prefix, process.execPath, '--import', 'tsx', entry, ...args];
  const result = spawnSync(command[0]!, command.slice(1), {
    cwd: root,
    encoding: 'utf8',
    timeout: 90_000,
    env: { PATH: process.env.PATH ?? '', HOME: '/tmp', ...env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('the firezone-gateway binary', () => {
  test('--help lists the visible options with their env vars', () => {
    const { code, stdout } = runBinary(['--help']);
    assert.equal(code, 0);
    for (const text of ['--firezone-name', 'FIREZONE_NAME', '--firezone-id', 'FIREZONE_ID', '--no-telemetry', '--no-check', '--flow-logs', '--no-inc-buf', '--max-partition-time', 'FIREZONE_TOKEN']) {
      assert.ok(stdout.includes(text), `help mentions ${text}`);
    }
  });

  test('--version', () => {
    const { code, stdout, stderr } = runBinary(['--version']);
    assert.deepEqual({ code, stderr }, { code: 0, stderr: '' });
    const [first, second, ...rest] = stdout.split('\n');
    assert.match(first!, /^firezone-gateway \d+\.\d+\.\d+$/);
    assert.match(second!, /^TypeScript implementation, commit [0-9a-f]{7,40}, Node\.js v\d+\.\d+\.\d+$/);
    assert.deepEqual(rest, ['']);
  });

  test('--version prints 1.6.0 exactly as the reference on its first line', () => {
    assert.equal(runBinary(['-V']).stdout.split('\n')[0], 'firezone-gateway 1.6.0');
  });

  test('without a token or systemd credential: exit 1 with 1.6.0\'s message', () => {
    // --no-inc-buf: a root test must not raise the host's net.core limits.
    const { code, stdout } = runBinary(['--no-check', '--no-inc-buf'], [], { FIREZONE_ID: 'bin-test' });
    assert.equal(code, 1);
    assert.match(stdout, /INFO firezone_gateway: Failed to read `FIREZONE_TOKEN` systemd credential: `CREDENTIALS_DIRECTORY` not provided\n$/);
  });

  test('a usage error: exit 2 with clap\'s text', () => {
    const { code, stderr } = runBinary(['--tun-threads', '2']);
    assert.equal(code, 2);
    assert.match(stderr, /^error: unexpected argument '--tun-threads' found\n/);
  });

  const unprivileged = !isRoot ? 'needs root to drop to an unprivileged user' : !hasCommand('setpriv') ? 'needs setpriv (util-linux)' : undefined;
  test('as an unprivileged user: the permission message and exit 1', { skip: unprivileged }, () => {
    const { code, stderr, stdout } = runBinary(['tok'], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all']);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.equal(
      stderr,
      'firezone-gateway needs to be executed as `root` or with the `CAP_NET_ADMIN` capability.\n' +
        'See https://www.firezone.dev/kb/deploy/gateways#permissions for details.\n',
    );
  });
});
