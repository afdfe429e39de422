/**
 * The container image: the OCI layout tarball built without any registry, loaded by podman
 * (runc; crun does not work on this host's hybrid cgroups) and run in the lab's gateway
 * namespace as the official image is run (NET_ADMIN, /dev/net/tun, the token as a file path).
 * A client reaches a resource through it; its HEALTHCHECK passes; `podman stop` ends it cleanly.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labUp, type Lab } from '../../tools/lab/lab.ts';
import { http } from '../e2e/probes.ts';
import { PORTAL_TOKEN, startGatewayStack, type GatewayStack } from '../e2e/stack.ts';
import { ensureImage, labPackagingSkipReason, run, waitUntil, WORK } from './support.ts';

const RESOURCE_NET = '10.78.0.0/24';
const skip = labPackagingSkipReason('podman', 'runc', 'skopeo');
const tag = process.env['FZ_LAB_TAG'] ?? '';
const NAME = `fz-gateway${tag}`;
const IMAGE = 'localhost/firezone-gateway:latest';

/** podman with its own storage under the build directory, runc and cgroupfs (no systemd here). */
function podman(args: readonly string[], options: { allowFailure?: boolean; timeoutMs?: number } = {}) {
  const storage = join(WORK, 'podman');
  return run(
    'podman',
    [
      '--root', join(storage, 'storage'), '--runroot', `/run/fz-podman${tag}`, '--runtime', 'runc', '--cgroup-manager', 'cgroupfs',
      '--events-backend', 'file', '--storage-driver', 'overlay', ...args,
    ],
    { timeoutMs: options.timeoutMs ?? 120_000, ...(options.allowFailure === undefined ? {} : { allowFailure: options.allowFailure }) },
  );
}

/** nofile/nproc at or below the host's hard limits. */
function ulimits(): string[] {
  const nofile = Math.min(4096, Number(run('bash', ['-c', 'ulimit -Hn']).stdout.trim()) || 1024);
  const hardProcs = run('bash', ['-c', 'ulimit -Hu']).stdout.trim();
  const nproc = Math.min(4096, hardProcs === 'unlimited' ? 4096 : Number(hardProcs) || 1024);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

describe('container image (podman in the lab)', { skip, timeout: 300_000 }, () => {
  let lab: Lab | undefined;
  let stack: GatewayStack | undefined;
  let image = '';

  before(async () => {
    image = await ensureImage();
    podman(['rm', '-f', NAME], { allowFailure: true });
    lab = labUp({ prefix: 'fzo' });
    stack = await startGatewayStack(lab, { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }], externalGateway: true });
  });

  after(async () => {
    podman(['rm', '-f', '-t', '0', NAME], { allowFailure: true });
    await stack?.stop().catch(() => undefined);
    lab?.down();
  });

  test('the tarball is a valid OCI layout with the entrypoint, the command and a HEALTHCHECK on /healthz', () => {
    const config = JSON.parse(run('skopeo', ['inspect', '--config', '--raw', `oci-archive:${image}`]).stdout) as {
      config: { Entrypoint: string[]; Cmd: string[]; Healthcheck?: { Test: string[] } };
    };
    assert.deepEqual(config.config.Entrypoint, ['docker-init.sh']);
    assert.deepEqual(config.config.Cmd, ['firezone-gateway']);
    assert.deepEqual(config.config.Healthcheck?.Test, ['CMD', 'firezone-gateway-health']);
  });

  test('loads into podman, runs the gateway with real traffic, passes its health check and stops cleanly', async () => {
    const l = lab!;
    podman(['load', '-i', image], { timeoutMs: 240_000 });
    const secrets = join(WORK, 'container-secrets');
    mkdirSync(secrets, { recursive: true });
    writeFileSync(join(secrets, 'token'), `${PORTAL_TOKEN}\n`, { mode: 0o600 });

    podman([
      'run', '-d', '--name', NAME, '--network', `ns:/run/netns/${l.ns.gateway}`, '--cap-add', 'NET_ADMIN', '--device', '/dev/net/tun',
      ...ulimits(), '-v', `${secrets}:/run/secrets:ro`,
      '-e', 'FIREZONE_TOKEN=/run/secrets/token', '-e', `FIREZONE_API_URL=ws://${l.addresses.portal}:8081`, '-e', 'FIREZONE_ID=container-gateway',
      '-e', 'FIREZONE_NAME=container', '-e', `HEALTH_CHECK_ADDR=${l.addresses.gatewayLan}:8080`, IMAGE,
    ]);
    const logs = (): string => podman(['logs', NAME], { allowFailure: true }).stdout + podman(['logs', NAME], { allowFailure: true }).stderr;
    const readyz = (): string =>
      run('ip', ['netns', 'exec', l.ns.gateway, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://${l.addresses.gatewayLan}:8080/readyz`], { allowFailure: true }).stdout;
    await waitUntil(() => readyz() === '200', 30_000, '/readyz of the gateway in the container').catch((error: unknown) => {
      throw new Error(`${String(error)}\n${logs()}`);
    });

    // The entrypoint read the token from the file and set MASQUERADE inside the container (the lab namespace).
    assert.match(run('ip', ['netns', 'exec', l.ns.gateway, 'iptables', '-t', 'nat', '-S', 'POSTROUTING']).stdout, /-s 100\.64\.0\.0\/11 -o e\+ -j MASQUERADE/);
    assert.equal(podman(['healthcheck', 'run', NAME], { allowFailure: true }).code, 0, 'the image HEALTHCHECK (GET /healthz) passes');

    await stack!.connectClient('corp', { routes: [RESOURCE_NET] });
    const page = http(l, `http://${l.addresses.resources[0]}/`);
    assert.equal(page.ok, true, `HTTP through the gateway in the container: ${JSON.stringify(page)}\n${logs()}`);

    podman(['stop', '-t', '15', NAME], { timeoutMs: 30_000 });
    const state = podman(['inspect', '--format', '{{.State.ExitCode}}', NAME]).stdout.trim();
    assert.equal(state, '0', logs());
    const output = logs();
    assert.match(output, /Received SIGINT\/SIGTERM signal=SIGTERM[\s\S]*Goodbye!/);
    assert.doesNotMatch(output, / WARN | ERROR /, output);
  });
});
