/**
 * The Debian package on a Debian 12 host that boots systemd: a rootfs from mmdebstrap booted in
 * systemd-nspawn inside the lab's gateway namespace. The package is installed with dpkg, the
 * token written with `firezone gateway authenticate` (the service loads it as a credential),
 * the service enabled with `firezone gateway enable-service`; a client then reaches a resource
 * through it, and `systemctl stop` ends it cleanly.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { labUp, type Lab } from '../../tools/lab/lab.ts';
import { hasCommand } from '../support/env.ts';
import { http } from '../e2e/probes.ts';
import { PORTAL_TOKEN, startGatewayStack, type GatewayStack } from '../e2e/stack.ts';
import { ensureDeb, exited, extractRootfs, labPackagingSkipReason, paths, ROOT, run, sha256, spawn, waitUntil, WORK } from './support.ts';

const RESOURCE_NET = '10.78.0.0/24';
const skip = labPackagingSkipReason('systemd-nspawn', 'nsenter', 'dpkg-deb');

/** A booted container: commands run in all of its namespaces, as root. */
class Container {
  private constructor(
    readonly process: ChildProcess,
    readonly init: number,
    readonly root: string,
  ) {}

  static async boot(root: string, netns: string, log: string): Promise<Container> {
    const child = spawn(
      'systemd-nspawn',
      ['--quiet', '--register=no', '--keep-unit', '--boot', '-D', root, `--network-namespace-path=/run/netns/${netns}`, '--capability=CAP_NET_ADMIN', `--machine=${netns}`],
      // The container's network namespace is the lab's own: its net sysctls may be written, as
      // firezone-gateway-init does on a real host.
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: 'network' } },
    );
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', () => writeFileSync(log, output));
    let init = 0;
    await waitUntil(() => {
      if (child.exitCode !== null) throw new Error(`systemd-nspawn exited: ${output}`);
      const inner = run('pgrep', ['-P', String(child.pid)], { allowFailure: true }).stdout.trim().split('\n')[0];
      const pid = inner === undefined || inner === '' ? '' : run('pgrep', ['-P', inner], { allowFailure: true }).stdout.trim().split('\n')[0];
      if (pid === undefined || pid === '') return false;
      init = Number(pid);
      const state = run('nsenter', ['-t', pid, '-a', 'systemctl', 'is-system-running'], { allowFailure: true }).stdout.trim();
      return state === 'running' || state === 'degraded';
    }, 60_000, 'systemd in the container');
    return new Container(child, init, root);
  }

  exec(command: readonly string[], options: { input?: string; allowFailure?: boolean; timeoutMs?: number } = {}) {
    return run('nsenter', ['-t', String(this.init), '-a', ...command], options);
  }

  /** Clean power-off: nspawn turns SIGTERM into a shutdown request to the container's systemd. */
  async powerOff(): Promise<void> {
    if (this.process.exitCode !== null) return;
    this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 30_000);
    await exited(this.process);
    clearTimeout(timer);
  }
}

describe('Debian package on systemd (nspawn in the lab)', { skip, timeout: 300_000 }, () => {
  let lab: Lab | undefined;
  let stack: GatewayStack | undefined;
  let container: Container | undefined;
  let lintian: Promise<{ stdout: string; stderr: string }> | undefined;

  before(async () => {
    const deb = await ensureDeb();
    // lintian takes about a minute on the 100 MB executable: it runs while the container boots.
    lintian = hasCommand('lintian') ? promisify(execFile)('lintian', ['--fail-on', 'none', deb], { maxBuffer: 16 << 20 }) : undefined;
    lintian?.catch(() => undefined);
    const root = await extractRootfs('nspawn', `deb-${process.env['FZ_LAB_TAG'] ?? ''}`);
    copyFileSync(deb, join(root, 'root', 'firezone-gateway.deb'));
    copyFileSync(paths.executable(), join(root, 'root', 'firezone-gateway-x86_64'));
    copyFileSync(join(ROOT, 'packaging', 'install', 'gateway-systemd-install.sh'), join(root, 'root', 'gateway-systemd-install.sh'));
    lab = labUp({ prefix: 'fzp' });
    stack = await startGatewayStack(lab, { resources: [{ name: 'corp', type: 'cidr', address: RESOURCE_NET }], externalGateway: true });
    mkdirSync(join(WORK, 'logs'), { recursive: true });
    container = await Container.boot(root, lab.ns.gateway, join(WORK, 'logs', 'nspawn-console.log'));
  });

  after(async () => {
    await container?.powerOff().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    lab?.down();
    if (container !== undefined) rmSync(container.root, { recursive: true, force: true });
  });

  test('installs, authenticates, serves a client through the service, and stops cleanly', async (t) => {
    const c = container!;
    const l = lab!;
    // A Debian host's udev makes /dev/net/tun 0666; this machine has no udev and nspawn copies its 0600 node.
    c.exec(['chmod', '0666', '/dev/net/tun']);
    c.exec(['dpkg', '-i', '/root/firezone-gateway.deb'], { timeoutMs: 120_000 });

    // What the package set up: the user, the files, an identity from machine-id; the unit is installed, not enabled.
    c.exec(['id', 'firezone']);
    assert.match(c.exec(['cat', '/etc/firezone/gateway-preset-env']).stdout, /^FIREZONE_ID=[0-9a-f]{32}$/m);
    assert.equal(c.exec(['systemctl', 'is-enabled', 'firezone-gateway.service'], { allowFailure: true }).stdout.trim(), 'disabled');
    assert.equal(c.exec(['stat', '-c', '%a %U', '/etc/firezone/gateway-token']).stdout.trim(), '400 root');

    // The unit as systemd reads it: no unknown keys (verify exits 0 on those, so stderr is checked).
    const verify = c.exec(['systemd-analyze', 'verify', 'firezone-gateway.service'], { allowFailure: true });
    assert.equal(verify.code, 0, verify.stderr);
    assert.doesNotMatch(verify.stderr, /Unknown|unknown|ignoring|Ignoring/, verify.stderr);
    const security = c.exec(['systemd-analyze', 'security', '--offline=true', '/lib/systemd/system/firezone-gateway.service'], { allowFailure: true }).stdout;
    const exposure = /Overall exposure level for firezone-gateway\.service: (\d+\.\d+)/.exec(security)?.[1];
    assert.ok(exposure !== undefined && Number(exposure) <= 4.0, security.slice(-400));
    t.diagnostic(`systemd-analyze security --offline=true: exposure ${exposure}`);

    const authenticate = c.exec(['firezone', 'gateway', 'authenticate'], { input: `${PORTAL_TOKEN}\n` });
    assert.match(authenticate.stdout, /Successfully installed token/);
    assert.equal(c.exec(['cat', '/etc/firezone/gateway-token']).stdout, PORTAL_TOKEN);
    assert.notEqual(c.exec(['firezone', 'gateway', 'authenticate'], { input: 'other\n', allowFailure: true }).code, 0, 'an existing token is kept without --replace');

    writeFileSync(
      join(c.root, 'etc', 'firezone', 'gateway-env'),
      [`FIREZONE_API_URL=ws://${l.addresses.portal}:8081`, 'FIREZONE_NAME=nspawn-gateway', `HEALTH_CHECK_ADDR=${l.addresses.gatewayLan}:8080`, 'RUST_LOG=info', ''].join('\n'),
    );
    const enabling = performance.now();
    const enabled = c.exec(['firezone', 'gateway', 'enable-service'], { allowFailure: true });
    assert.match(enabled.stdout, /Successfully enabled/, `${enabled.stderr}\n${journal(c)}`);

    const ready = (): boolean =>
      run('ip', ['netns', 'exec', l.ns.gateway, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://${l.addresses.gatewayLan}:8080/readyz`], { allowFailure: true }).stdout === '200';
    await waitUntil(ready, 30_000, '/readyz of the packaged gateway').catch((error: unknown) => {
      throw new Error(`${String(error)}\n${journal(c)}`);
    });

    const readyMs = performance.now() - enabling;
    // The service runs as the unprivileged user with only CAP_NET_ADMIN.
    const pid = c.exec(['systemctl', 'show', '-p', 'MainPID', '--value', 'firezone-gateway.service']).stdout.trim();
    const rss = /VmRSS:\s+(\d+) kB/.exec(c.exec(['cat', `/proc/${pid}/status`]).stdout)?.[1];
    t.diagnostic(`enable-service to /readyz 200: ${readyMs.toFixed(0)} ms; RSS joined and idle: ${rss} kB`);
    assert.equal(c.exec(['ps', '-o', 'user=', '-p', pid], { allowFailure: true }).stdout.trim() || c.exec(['stat', '-c', '%U', `/proc/${pid}`]).stdout.trim(), 'firezone');
    assert.match(c.exec(['grep', 'CapEff', `/proc/${pid}/status`]).stdout, /CapEff:\s+0000000000001000/);
    assert.match(c.exec(['iptables', '-t', 'nat', '-S', 'POSTROUTING']).stdout, /-s 100\.64\.0\.0\/11 -o e\+ -j MASQUERADE/);

    await stack!.connectClient('corp', { routes: [RESOURCE_NET] });
    const page = http(l, `http://${l.addresses.resources[0]}/`);
    assert.equal(page.ok, true, `HTTP through the packaged gateway: ${JSON.stringify(page)}\n${journal(c)}`);

    c.exec(['systemctl', 'stop', 'firezone-gateway.service'], { timeoutMs: 30_000 });
    const show = c.exec(['systemctl', 'show', '-p', 'Result', '-p', 'ExecMainStatus', '-p', 'ActiveState', 'firezone-gateway.service']).stdout;
    assert.match(show, /^Result=success$/m, show);
    assert.match(show, /^ExecMainStatus=0$/m, show);
    assert.match(show, /^ActiveState=inactive$/m, show);
    const log = journal(c);
    assert.match(log, /Received SIGINT\/SIGTERM signal=SIGTERM[\s\S]*Goodbye!/);
    assert.doesNotMatch(log, / WARN | ERROR /, 'no warnings in a normal life');
    assert.notEqual(run('ip', ['-n', l.ns.gateway, 'link', 'show', 'tun-firezone'], { allowFailure: true }).code, 0, 'the TUN device is gone');
  });

  test('MemoryDenyWriteExecute, the one official hardening option left out, is what Node.js cannot run under', (t) => {
    const c = container!;
    const mdwe = c.exec(['systemd-run', '--wait', '--collect', '-p', 'MemoryDenyWriteExecute=yes', '/usr/bin/firezone-gateway', '--version'], { allowFailure: true });
    assert.notEqual(mdwe.code, 0, 'V8 aborts under MemoryDenyWriteExecute');
    t.diagnostic(`under MemoryDenyWriteExecute=yes: ${mdwe.stderr.trim().replace(/\s+/g, ' ')}`);
    const plain = c.exec(['systemd-run', '--wait', '--quiet', '--collect', '-p', 'SystemCallFilter=@system-service pkey_alloc pkey_free pkey_mprotect', '-p', 'User=firezone', '/usr/bin/firezone-gateway', '--version'], { allowFailure: true });
    assert.equal(plain.code, 0, plain.stderr);
  });

  test('the install script (executable without the package): purge the .deb, install, serve, stop', async () => {
    const c = container!;
    const l = lab!;
    c.exec(['dpkg', '--purge', 'firezone-gateway'], { timeoutMs: 60_000 });
    assert.notEqual(c.exec(['test', '-e', '/usr/bin/firezone-gateway'], { allowFailure: true }).code, 0);
    const install = c.exec(
      ['env', `FIREZONE_TOKEN=${PORTAL_TOKEN}`, 'FIREZONE_ID=installer-gateway', `FIREZONE_API_URL=ws://${l.addresses.portal}:8081`,
        'FIREZONE_EXECUTABLE=/root/firezone-gateway-x86_64', `FIREZONE_SHA256=${await sha256(paths.executable())}`, 'bash', '/root/gateway-systemd-install.sh'],
      { allowFailure: true, timeoutMs: 60_000 },
    );
    assert.equal(install.code, 0, install.stderr + install.stdout);
    assert.match(install.stdout, /installed successfully/);
    const ready = (): boolean =>
      run('ip', ['netns', 'exec', l.ns.gateway, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://${l.addresses.gatewayLan}:8080/readyz`], { allowFailure: true }).stdout === '200';
    await waitUntil(ready, 30_000, '/readyz of the installed gateway').catch((error: unknown) => {
      throw new Error(`${String(error)}\n${journal(c)}`);
    });
    c.exec(['systemctl', 'stop', 'firezone-gateway.service'], { timeoutMs: 30_000 });
    assert.match(c.exec(['systemctl', 'show', '-p', 'Result', 'firezone-gateway.service']).stdout, /^Result=success$/m);
  });

  test('lintian: no errors or warnings', { skip: hasCommand('lintian') ? undefined : 'needs lintian (installed by .ci/run)' }, async () => {
    const { stdout } = await lintian!;
    assert.deepEqual(stdout.split('\n').filter((line) => /^[EW]: /.test(line)), [], stdout);
  });
});

function journal(c: Container): string {
  return c.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', 'firezone-gateway.service'], { allowFailure: true }).stdout.slice(-6000);
}
