import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkIproute2, IPROUTE2_MISSING, IPROUTE2_WITHOUT_JSON, type CommandResult } from '../../src/runtime/interface-config.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const answer = (result: CommandResult) => async () => result;

describe('checkIproute2', () => {
  test('accepts iproute2 answering -j with JSON', async () => {
    await checkIproute2(answer({ code: 0, stdout: '[{"ifindex":1,"ifname":"lo"}]\n', stderr: '' }));
  });

  test('a missing ip names the package', async () => {
    await assert.rejects(checkIproute2(answer({ code: 127, stdout: '', stderr: '' })), { message: IPROUTE2_MISSING });
  });

  test('an ip without JSON output (busybox) names the package and says what ip answered', async () => {
    await assert.rejects(
      checkIproute2(answer({ code: 1, stdout: '', stderr: 'ip: invalid option -- j\nBusyBox v1.36.1 multi-call binary.\n' })),
      (error: Error) => error.message.startsWith(IPROUTE2_WITHOUT_JSON) && error.message.includes('invalid option -- j'),
    );
    await assert.rejects(checkIproute2(answer({ code: 0, stdout: '1: lo: <LOOPBACK,UP>', stderr: '' })), { message: IPROUTE2_WITHOUT_JSON });
  });
});

describe('the gateway at start-up', () => {
  function runGateway(path: string): { code: number | null; output: string } {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/bin/firezone-gateway.ts', '--no-check', 'token'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 20_000,
      env: { PATH: path, HOME: '/tmp', FIREZONE_ID: 'iproute2-check', FIREZONE_NO_INC_BUF: 'true', FIREZONE_API_URL: 'ws://127.0.0.1:9', HEALTH_CHECK_ADDR: '127.0.0.1:0' },
    });
    return { code: result.status, output: result.stdout + result.stderr };
  }

  test('without ip, or with one lacking -j, exits 1 naming iproute2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fz-ip-'));
    try {
      const missing = runGateway(dir);
      assert.equal(missing.code, 1, missing.output);
      assert.match(missing.output, /INFO firezone_gateway: `ip` was not found: install the iproute2 package/);

      writeFileSync(join(dir, 'ip'), '#!/bin/sh\necho "ip: invalid option -- j" >&2\nexit 1\n');
      chmodSync(join(dir, 'ip'), 0o755);
      const busybox = runGateway(`${dir}:/bin`);
      assert.equal(busybox.code, 1, busybox.output);
      assert.match(busybox.output, /does not support JSON output .* install the iproute2 package .*ip said: ip: invalid option -- j/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
