// Interop driver (not a test file): our ICE agent against werift-ice on 127.0.0.1, both roles at once.
// Meant to run inside a network namespace that has only `lo` (see test/interop/ice.test.ts). Prints one
// JSON line with the results per role and exits. werift's STUN server is a tiny responder on 127.0.0.1.
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { Candidate as WeriftCandidate, Connection } from 'werift-ice';
import { IceAgent, formatCandidate, parseCandidate } from '../../src/ice/index.ts';
import type { IceEvent, IceRole } from '../../src/ice/index.ts';
import { StunMethod, decodeStunMessage, encodeStunMessage } from '../../src/stun/index.ts';
import { systemRandom } from '../../src/util/random.ts';
import { socketAddr, socketAddrKey } from '../../src/util/socket-addr.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';

export interface RoleResult {
  readonly role: IceRole;
  readonly connectedMs: number | undefined;
  readonly ourPair: string | undefined;
  readonly weriftPair: string | undefined;
  readonly weriftState: string;
  readonly receivedByUs: string[];
  readonly receivedByWerift: string[];
  readonly disconnectedAfterMs: number | undefined;
  readonly ourChecksCarriedUseCandidate: boolean;
  readonly error?: string;
}

const PEER_GONE_LIMIT_MS = 20_000;

async function main(): Promise<void> {
  const stun = await startStunResponder();
  const results = await Promise.all(
    (['controlled', 'controlling'] as const).map((role) =>
      runRole(role, stun.port).catch((error: unknown) => failed(role, error)),
    ),
  );
  stun.socket.close();
  process.stdout.write(`${JSON.stringify(results)}\n`);
  process.exit(0);
}

async function runRole(role: IceRole, stunPort: number): Promise<RoleResult> {
  const socket = await bindUdp();
  const local = socketAddr('127.0.0.1', socket.address().port);
  const agent = new IceAgent({
    role,
    local: { ufrag: `fz${role.slice(0, 2)}`, password: `password-for-${role}-0123` },
    rng: systemRandom(),
  });
  const werift = new Connection(role === 'controlled', {
    stunServer: ['127.0.0.1', stunPort],
    additionalHostAddresses: ['127.0.0.1'],
    useIpv6: false,
  });
  const start = performance.now();
  const events: { at: number; event: IceEvent }[] = [];
  const receivedByUs: string[] = [];
  const receivedByWerift: string[] = [];
  let useCandidateSeen = false;
  let timer: NodeJS.Timeout | undefined;

  const drive = (): void => {
    const now = performance.now();
    for (let t = agent.pollTransmit(); t !== undefined; t = agent.pollTransmit()) {
      if (t.kind !== 'direct') throw new Error('unexpected relayed transmit');
      if (hasUseCandidate(t.payload)) useCandidateSeen = true;
      socket.send(t.payload, t.destination.port, t.destination.address);
    }
    for (let e = agent.pollEvent(); e !== undefined; e = agent.pollEvent()) events.push({ at: now, event: e });
    if (timer !== undefined) clearTimeout(timer);
    const next = agent.pollTimeout();
    if (next === undefined) return;
    timer = setTimeout(() => {
      agent.handleTimeout(performance.now());
      drive();
    }, Math.max(0, next - now));
  };
  socket.on('message', (payload, rinfo) => {
    const from = socketAddr(rinfo.address, rinfo.port);
    if (!agent.handleInput(payload, from, local, performance.now())) receivedByUs.push(payload.toString('utf8'));
    drive();
  });

  werift.onData.subscribe((data) => receivedByWerift.push(data.toString('utf8')));
  await werift.gatherCandidates();
  werift.setRemoteParams({ iceLite: false, usernameFragment: 'fz' + role.slice(0, 2), password: `password-for-${role}-0123` });
  agent.setRemoteCredentials({ ufrag: werift.localUsername, password: werift.localPassword });
  for (const candidate of werift.localCandidates) {
    const parsed = parseCandidate(`candidate:${candidate.toSdp()}`);
    if (typeof parsed !== 'string') agent.addRemoteCandidate(parsed);
  }
  const ours = agent.addLocalHostCandidate(local);
  if (ours === undefined) throw new Error('host candidate refused');
  await werift.addRemoteCandidate(WeriftCandidate.fromSdp(formatCandidate(ours).slice('candidate:'.length)));
  await werift.addRemoteCandidate(undefined);
  agent.handleTimeout(performance.now());
  drive();

  const weriftConnected = werift.connect();
  const connectedMs = await waitFor(() => nominated(events) !== undefined && werift.nominated !== undefined, 10_000);
  await weriftConnected;
  const ourNomination = nominated(events);
  const ourPair =
    ourNomination === undefined
      ? undefined
      : `${socketAddrKey(ourNomination.local.address)} -> ${socketAddrKey(ourNomination.remote.address)}`;
  const pair = werift.nominated;
  const weriftPair =
    pair === undefined
      ? undefined
      : `${pair.remoteCandidate.host}:${pair.remoteCandidate.port} -> ${pair.localCandidate.host}:${pair.localCandidate.port}`;

  for (let i = 0; i < 3; i++) {
    await werift.send(Buffer.from(`werift->ts ${i}`));
    const path = agent.nominatedPath;
    if (path?.kind === 'direct') socket.send(Buffer.from(`ts->werift ${i}`), path.destination.port, path.destination.address);
  }
  await waitFor(() => receivedByUs.length >= 3 && receivedByWerift.length >= 3, 2_000);
  const weriftState = werift.state;

  const goneAt = performance.now();
  await werift.close();
  const disconnected = await waitFor(() => agent.connectionState === 'disconnected', PEER_GONE_LIMIT_MS);
  clearTimeout(timer);
  socket.close();
  return {
    role,
    connectedMs: connectedMs === undefined ? undefined : Math.round(connectedMs - start),
    ourPair,
    weriftPair,
    weriftState,
    receivedByUs,
    receivedByWerift,
    disconnectedAfterMs: disconnected === undefined ? undefined : Math.round(disconnected - goneAt),
    ourChecksCarriedUseCandidate: useCandidateSeen,
  };
}

function nominated(events: { event: IceEvent }[]): Extract<IceEvent, { kind: 'nominated' }> | undefined {
  let last: Extract<IceEvent, { kind: 'nominated' }> | undefined;
  for (const { event } of events) if (event.kind === 'nominated') last = event;
  return last;
}

async function waitFor(predicate: () => boolean, limitMs: number): Promise<number | undefined> {
  const deadline = performance.now() + limitMs;
  while (performance.now() < deadline) {
    if (predicate()) return performance.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return predicate() ? performance.now() : undefined;
}

function bindUdp(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve(socket));
  });
}

/** Answers every STUN Binding request with its source in XOR-MAPPED-ADDRESS. */
async function startStunResponder(): Promise<{ socket: Socket; port: number }> {
  const socket = await bindUdp();
  socket.on('message', (payload, rinfo) => {
    const message = decodeStunMessage(payload);
    if (typeof message === 'string' || message.method !== StunMethod.Binding || message.class !== 'request') return;
    const response = encodeStunMessage(
      {
        method: StunMethod.Binding,
        class: 'success',
        transactionId: message.transactionId,
        attributes: [{ kind: 'xorMappedAddress', address: socketAddr(rinfo.address, rinfo.port) as SocketAddr }],
      },
      { fingerprint: true },
    );
    socket.send(response, rinfo.port, rinfo.address);
  });
  return { socket, port: socket.address().port };
}

function hasUseCandidate(payload: Uint8Array): boolean {
  if (payload[0] !== 0x00 || payload[1] !== 0x01) return false;
  for (let offset = 20; offset + 4 <= payload.length; ) {
    const type = (payload[offset]! << 8) | payload[offset + 1]!;
    const length = (payload[offset + 2]! << 8) | payload[offset + 3]!;
    if (type === 0x0025) return true;
    offset += 4 + ((length + 3) & ~3);
  }
  return false;
}

function failed(role: IceRole, error: unknown): RoleResult {
  return {
    role,
    connectedMs: undefined,
    ourPair: undefined,
    weriftPair: undefined,
    weriftState: 'unknown',
    receivedByUs: [],
    receivedByWerift: [],
    disconnectedAfterMs: undefined,
    ourChecksCarriedUseCandidate: false,
    error: error instanceof Error ? `${error.message}\n${error.stack ?? ''}` : String(error),
  };
}

await main();
