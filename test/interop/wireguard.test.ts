// Our WireGuard Tunnel against wireguard-go (Debian), in two network namespaces joined by a veth:
//   fzwg-go-<pid>: wireguard-go on interface fzwg<tag>g, overlay 10.232.0.1, UDP 10.231.0.1:51820
//   fzwg-ts-<pid>: test/interop/wireguard-peer.ts (Tunnel + TUN fzwg<tag>t + node:dgram),
//                  overlay 10.232.0.2, UDP 10.231.0.2:51821
// Interface names carry the pid because wireguard-go's UAPI sockets are not per namespace.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { privilegedSkipReason } from '../support/env.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';

const skip =
  privilegedSkipReason('wireguard-go', 'wg', 'ip', 'ping') ??
  (isNativeAddonBuilt() ? undefined : 'native TUN addon not built (npm run build:native)');

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PEER_SCRIPT = fileURLToPath(new URL('./wireguard-peer.ts', import.meta.url));
const TCP_SCRIPT = fileURLToPath(new URL('./wireguard-tcp.ts', import.meta.url));
const TAG = process.pid % 100_000;
const NS_GO = `fzwg-go-${process.pid}`;
const NS_TS = `fzwg-ts-${process.pid}`;
const GO_IF = `fzwg${TAG}g`;
const TS_IF = `fzwg${TAG}t`;
const VETH_GO = `fzwg${TAG}a`;
const VETH_TS = `fzwg${TAG}b`;
const UNDERLAY_GO = '10.231.0.1';
const UNDERLAY_TS = '10.231.0.2';
const OVERLAY_GO = '10.232.0.1';
const OVERLAY_TS = '10.232.0.2';
const PORT_GO = 51820;
const PORT_TS = 51821;
const TRANSFER_BYTES = 50 * 1024 * 1024;

interface PeerStats {
  decapsulated: Record<string, number>;
  sentByType: Record<string, number>;
  receivedByType: Record<string, number>;
  established: number;
  expired: number;
  tunWrites: number;
}

describe('WireGuard interop with wireguard-go', { skip, timeout: 180_000 }, () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'fzwg-'));
  const goKeys = keypair();
  const tsKeys = keypair();
  const psk = randomBytes(32).toString('base64');
  let peer: Peer;

  before(async () => {
    setUpNamespaces();
    writeFileSync(join(keyDir, 'go.key'), goKeys.privateKey, { mode: 0o600 });
    run('ip', 'netns', 'exec', NS_GO, 'wireguard-go', GO_IF);
    run('ip', 'netns', 'exec', NS_GO, 'wg', 'set', GO_IF, 'listen-port', String(PORT_GO), 'private-key', join(keyDir, 'go.key'));
    configureGoPeer(psk);
    run('ip', '-n', NS_GO, 'addr', 'add', `${OVERLAY_GO}/24`, 'dev', GO_IF);
    run('ip', '-n', NS_GO, 'link', 'set', GO_IF, 'mtu', '1280', 'up');

    peer = new Peer({
      tun: TS_IF,
      privateKey: tsKeys.privateKey,
      peerPublicKey: goKeys.publicKey,
      presharedKey: psk,
      listen: `${UNDERLAY_TS}:${PORT_TS}`,
      endpoint: `${UNDERLAY_GO}:${PORT_GO}`,
    });
    await peer.waitFor((m) => m['ready'] === true, 20_000);
    run('ip', '-n', NS_TS, 'addr', 'add', `${OVERLAY_TS}/24`, 'dev', TS_IF);
    run('ip', '-n', NS_TS, 'link', 'set', TS_IF, 'mtu', '1280', 'up');
  });

  after(() => {
    peer?.close();
    for (const ns of [NS_GO, NS_TS]) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid));
        } catch {
          // already gone
        }
      }
    }
    spawnSync('sleep', ['0.3']);
    for (const ns of [NS_GO, NS_TS]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(`/var/run/wireguard/${GO_IF}.sock`, { force: true });
    rmSync(keyDir, { recursive: true, force: true });
  });

  test('wireguard-go initiates, our tunnel answers, and pings go both ways', async () => {
    const before = await peer.stats();
    assert.equal(ping(NS_GO, OVERLAY_TS), true, 'ping from the wireguard-go side');
    assert.equal(ping(NS_TS, OVERLAY_GO), true, 'ping from our side');
    const after = await peer.stats();
    assert.ok(after.receivedByType['1']! > before.receivedByType['1']!, 'an initiation arrived');
    assert.equal(after.sentByType['1'], before.sentByType['1'], 'we sent no initiation');
    assert.ok(after.sentByType['2']! >= 1, 'we answered');
    assert.ok(after.tunWrites > before.tunWrites);
  });

  test('our tunnel initiates, wireguard-go answers, and pings go both ways', async () => {
    configureGoPeer(psk); // a fresh peer: no sessions on the wireguard-go side
    peer.command('reset');
    const before = await peer.stats();
    peer.clear();
    peer.command('initiate');
    await peer.waitFor((m) => m['event'] === 'sessionEstablished', 10_000);
    const after = await peer.stats();
    assert.ok(after.sentByType['1']! > before.sentByType['1']!);
    assert.ok(after.receivedByType['2']! > before.receivedByType['2']!, 'a response arrived');
    assert.equal(ping(NS_TS, OVERLAY_GO), true, 'ping from our side');
    assert.equal(ping(NS_GO, OVERLAY_TS), true, 'ping from the wireguard-go side');
  });

  test('50 MB of TCP each way arrive intact across a forced re-handshake mid-transfer', async (t) => {
    for (const [direction, from, to, address, port] of [
      ['ours to wireguard-go', NS_TS, NS_GO, OVERLAY_GO, 5201],
      ['wireguard-go to ours', NS_GO, NS_TS, OVERLAY_TS, 5202],
    ] as const) {
      const established = (await peer.stats()).established;
      const receiver = startInNamespace(to, TCP_SCRIPT, ['recv', address, String(port)]);
      await receiver.waitFor((m) => m['listening'] === true, 20_000);
      const sender = startInNamespace(from, TCP_SCRIPT, ['send', address, String(port), String(TRANSFER_BYTES), String(port)]);
      const done = Promise.all([
        sender.waitFor((m) => typeof m['sha256'] === 'string', 90_000),
        receiver.waitFor((m) => typeof m['sha256'] === 'string', 90_000),
      ]);
      // Re-handshake once traffic flows, not on a fixed timer: process start-up time varies.
      const flowing = (await peer.stats()).decapsulated['packet'] ?? 0;
      for (let i = 0; i < 400; i++) {
        if (((await peer.stats()).decapsulated['packet'] ?? 0) >= flowing + 1000) break;
        await sleep(25);
      }
      let finished = false;
      void done.then(() => (finished = true));
      await sleep(0);
      assert.equal(finished, false, `${direction}: the re-handshake starts before the transfer ends`);
      peer.command('initiate');
      const [sent, received] = await done;
      // Let both ends close the connection themselves: a killed socket sends a late RST that
      // would start an unexpected handshake in the next test.
      await Promise.all([sender.exited(5_000), receiver.exited(5_000)]);
      sender.close();
      receiver.close();
      const ms = Number(received['ms']);
      t.diagnostic(`${direction}: ${TRANSFER_BYTES} bytes in ${ms} ms = ${((TRANSFER_BYTES * 8) / ms / 1000).toFixed(0)} Mbit/s`);
      assert.equal(received['bytes'], TRANSFER_BYTES, direction);
      assert.equal(received['sha256'], sent['sha256'], `${direction}: content`);
      // The transfer can finish before the handshake does (a loaded wireguard-go may first answer
      // with a cookie, and the retry waits REKEY_TIMEOUT): the new session must still come.
      let rekeyed = false;
      for (let i = 0; i < 70 && !rekeyed; i++) {
        rekeyed = (await peer.stats()).established > established;
        if (!rekeyed) await sleep(100);
      }
      assert.ok(rekeyed, `${direction}: a new session during the transfer`);
    }
  });

  test('under load we answer with a cookie, and wireguard-go retries with a valid MAC2', async () => {
    configureGoPeer(psk);
    peer.command('underLoad');
    const before = await peer.stats();
    assert.equal(ping(NS_GO, OVERLAY_TS, 1, 9), true, 'the ping waits out one retransmission');
    const after = await peer.stats();
    assert.ok(after.sentByType['3']! > before.sentByType['3']!, 'a cookie reply went out');
    assert.ok((after.decapsulated['underLoad'] ?? 0) > (before.decapsulated['underLoad'] ?? 0));
    // With a limit of 0 every handshake message needs a valid MAC2, so a new session proves
    // that wireguard-go used our cookie.
    assert.ok(after.established > before.established, 'a handshake with a valid MAC2 completed');
    peer.command('reset');
  });

  test('a wrong preshared key fails the handshake in both directions', async () => {
    configureGoPeer(randomBytes(32).toString('base64'));
    peer.command('reset');
    const before = await peer.stats();

    assert.equal(ping(NS_GO, OVERLAY_TS, 2), false, 'no ping from the wireguard-go side');
    const afterTheirs = await peer.stats();
    assert.ok(afterTheirs.receivedByType['1']! > before.receivedByType['1']!, 'wireguard-go initiated');
    assert.ok(afterTheirs.sentByType['2']! > before.sentByType['2']!, 'we answered');

    peer.command('initiate');
    assert.equal(ping(NS_TS, OVERLAY_GO, 2), false, 'no ping from our side');
    const afterOurs = await peer.stats();
    assert.ok(afterOurs.receivedByType['2']! > before.receivedByType['2']!, 'wireguard-go answered');
    assert.ok((afterOurs.decapsulated['handshakeFailed'] ?? 0) > (before.decapsulated['handshakeFailed'] ?? 0));
    assert.equal(afterOurs.established, before.established, 'no session on our side');
    assert.equal(afterOurs.tunWrites, before.tunWrites, 'nothing reached our TUN');
  });

  function configureGoPeer(presharedKey: string): void {
    writeFileSync(join(keyDir, 'psk'), presharedKey, { mode: 0o600 });
    spawnSync('ip', ['netns', 'exec', NS_GO, 'wg', 'set', GO_IF, 'peer', tsKeys.publicKey, 'remove']);
    run(
      'ip', 'netns', 'exec', NS_GO, 'wg', 'set', GO_IF,
      'peer', tsKeys.publicKey,
      'preshared-key', join(keyDir, 'psk'),
      'endpoint', `${UNDERLAY_TS}:${PORT_TS}`,
      'allowed-ips', `${OVERLAY_TS}/32`,
    );
  }
});

function setUpNamespaces(): void {
  run('ip', 'netns', 'add', NS_GO);
  run('ip', 'netns', 'add', NS_TS);
  run('ip', 'link', 'add', VETH_GO, 'type', 'veth', 'peer', 'name', VETH_TS);
  run('ip', 'link', 'set', VETH_GO, 'netns', NS_GO);
  run('ip', 'link', 'set', VETH_TS, 'netns', NS_TS);
  run('ip', '-n', NS_GO, 'addr', 'add', `${UNDERLAY_GO}/24`, 'dev', VETH_GO);
  run('ip', '-n', NS_TS, 'addr', 'add', `${UNDERLAY_TS}/24`, 'dev', VETH_TS);
  for (const [ns, veth] of [
    [NS_GO, VETH_GO],
    [NS_TS, VETH_TS],
  ] as const) {
    // IPv6 link-local chatter on a new interface would start handshakes the tests do not expect.
    run('ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    run('ip', '-n', ns, 'link', 'set', veth, 'up');
  }
}

function keypair(): { privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    privateKey: Buffer.from(jwk.d!, 'base64url').toString('base64'),
    publicKey: Buffer.from(jwk.x!, 'base64url').toString('base64'),
  };
}

function run(...command: string[]): void {
  const result = spawnSync(command[0]!, command.slice(1), { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command.join(' ')} failed: ${result.stderr}`);
}

function ping(namespace: string, address: string, count = 3, waitSeconds = 2): boolean {
  const args = ['netns', 'exec', namespace, 'ping', '-c', String(count), '-i', '0.2', '-W', String(waitSeconds), address];
  const result = spawnSync('ip', args, {
    encoding: 'utf8',
  });
  return result.status === 0 && / 0% packet loss/.test(result.stdout);
}

type Message = Record<string, unknown>;

/** A child process in a namespace that speaks JSON lines on stdout. */
class JsonLinesChild {
  readonly #child: ChildProcess;
  readonly #messages: Message[] = [];
  readonly #waiters = new Set<() => void>();
  #stderr = '';

  constructor(namespace: string, script: string, args: readonly string[]) {
    this.#child = spawn('ip', ['netns', 'exec', namespace, process.execPath, '--import', 'tsx', script, ...args], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      try {
        this.#messages.push(JSON.parse(line) as Message);
      } catch {
        return;
      }
      for (const wake of this.#waiters) wake();
    });
    this.#child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
    });
  }

  /** Forgets messages received so far, so a later waitFor sees only new ones. */
  clear(): void {
    this.#messages.length = 0;
  }

  command(line: string): void {
    this.#child.stdin!.write(`${line}\n`);
  }

  /** Resolves with (and consumes) the first message matching `predicate`. */
  waitFor(predicate: (m: Message) => boolean, timeoutMs: number): Promise<Message> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const index = this.#messages.findIndex(predicate);
        if (index < 0) return false;
        const [message] = this.#messages.splice(index, 1);
        this.#waiters.delete(wake);
        clearTimeout(timer);
        resolve(message!);
        return true;
      };
      const wake = (): void => void check();
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms; stderr: ${this.#stderr.slice(-2000)}`));
      }, timeoutMs);
      if (check()) return;
      this.#waiters.add(wake);
    });
  }

  /** Resolves when the process has exited, or after `timeoutMs`. */
  exited(timeoutMs: number): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close(): void {
    this.#child.stdin!.end();
    if (this.#child.exitCode === null && this.#child.pid !== undefined) this.#child.kill();
  }
}

class Peer extends JsonLinesChild {
  constructor(config: Record<string, string>) {
    super(NS_TS, PEER_SCRIPT, [JSON.stringify(config)]);
  }

  async stats(): Promise<PeerStats> {
    this.command('stats');
    const message = await this.waitFor((m) => m['stats'] !== undefined, 5_000);
    return message['stats'] as PeerStats;
  }
}

function startInNamespace(namespace: string, script: string, args: readonly string[]): JsonLinesChild {
  return new JsonLinesChild(namespace, script, args);
}
