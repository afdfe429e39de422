// Test-only: our WireGuard Tunnel behind a UDP socket (node:dgram) and a TUN device, run by
// test/interop/wireguard.test.ts inside a network namespace. It is a minimal IO shell:
// TUN packets -> encapsulate -> UDP; UDP -> decapsulate -> TUN; one timer at pollTimeout.
//
// argv[2]: JSON { tun, privateKey, peerPublicKey, presharedKey (base64), listen: "ip:port",
//                 endpoint: "ip:port" }
// stdin commands (one per line): "initiate", "reset" (a fresh tunnel), "underLoad" (a fresh
// tunnel whose rate limiter demands a cookie for every handshake), "stats".
// stdout: JSON lines: {"ready":true}, {"event":...}, {"stats":...}.
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { dataPathMode, transportCipherFor } from '../../src/runtime/data-path.ts';
import { TunDevice } from '../../src/runtime/tun-device.ts';
import { systemRandom } from '../../src/util/random.ts';
import {
  RateLimiter,
  SessionIndexAllocator,
  staticIdentity,
  OpenBatch,
  SealBatch,
  Tunnel,
  messageType,
} from '../../src/wireguard/index.ts';

interface PeerConfig {
  readonly tun: string;
  readonly privateKey: string;
  readonly peerPublicKey: string;
  readonly presharedKey: string;
  readonly listen: string;
  readonly endpoint: string;
}

const config = JSON.parse(process.argv[2] ?? '{}') as PeerConfig;
const [listenIp, listenPort] = splitAddr(config.listen);
const [endpointIp, endpointPort] = splitAddr(config.endpoint);
const rng = systemRandom();
const identity = staticIdentity(Buffer.from(config.privateKey, 'base64'));
const peerPublicKey = Buffer.from(config.peerPublicKey, 'base64');
let rateLimiter = new RateLimiter(identity, rng, performance.now());
const indices = new SessionIndexAllocator(rng);
const unixOffsetMs = Date.now() - performance.now();

const stats = {
  decapsulated: {} as Record<string, number>,
  sentByType: { 1: 0, 2: 0, 3: 0, 4: 0 } as Record<number, number>,
  receivedByType: { 1: 0, 2: 0, 3: 0, 4: 0 } as Record<number, number>,
  established: 0,
  expired: 0,
  tunWrites: 0,
};

const presharedKey = Buffer.from(config.presharedKey, 'base64');
// The data path under test (FZ_DATA_PATH): its cipher, and batches as the gateway uses them.
const cipher = transportCipherFor(dataPathMode());
const sealBatch = new SealBatch(cipher, 0);
const openBatch = new OpenBatch(cipher);
let tunnel = newTunnel();
let timer: NodeJS.Timeout | undefined;

const socket = createSocket('udp4');
const tun = TunDevice.open(config.tun, {
  onPackets(batch) {
    const now = performance.now();
    for (let i = 0; i < batch.count; i++) {
      const result = tunnel.encapsulateInto(batch.packet(i), now, sealBatch);
      if (result === 'batchFull') throw new Error('a TUN batch is larger than the seal batch');
    }
    for (let slot = sealBatch.next(); slot !== -1; slot = sealBatch.next()) {
      // A copy: node:dgram may still hold the bytes when the arena is reused.
      if (sealBatch.sealed(slot)) send(sealBatch.datagram(slot).slice());
    }
    drain(now);
  },
});

socket.on('message', (datagram, from) => {
  const now = performance.now();
  const type = messageType(datagram);
  stats.receivedByType[type] = (stats.receivedByType[type] ?? 0) + 1;
  const result = tunnel.decapsulate(datagram, from.address, now, openBatch);
  if (result === 'pending') {
    for (let slot = openBatch.next(now); slot !== -1; slot = openBatch.next(now)) received(openBatch.outcome(slot), () => openBatch.packet(slot));
  } else {
    received(typeof result === 'string' ? result : result.length, () => result as Uint8Array);
  }
  drain(now);
});

socket.bind(listenPort, listenIp, () => {
  print({ ready: true, tun: tun.name });
  drain(performance.now());
});

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = line.trim();
  const now = performance.now();
  switch (command) {
    case 'initiate':
      tunnel.initiateHandshake(now);
      break;
    case 'reset':
      rateLimiter = new RateLimiter(identity, rng, now);
      tunnel.close();
      tunnel = newTunnel();
      break;
    case 'underLoad':
      rateLimiter = new RateLimiter(identity, rng, now, 0);
      tunnel.close();
      tunnel = newTunnel();
      break;
    case 'stats':
      print({ stats });
      break;
    case 'exit':
      shutdown();
      return;
  }
  drain(now);
});
process.stdin.on('end', shutdown);

function received(outcome: string | number, packet: () => Uint8Array): void {
  if (typeof outcome === 'string') {
    stats.decapsulated[outcome] = (stats.decapsulated[outcome] ?? 0) + 1;
    return;
  }
  stats.decapsulated['packet'] = (stats.decapsulated['packet'] ?? 0) + 1;
  if (tun.write(packet())) stats.tunWrites++;
}

function newTunnel(): Tunnel {
  return new Tunnel({
    local: identity,
    peer: peerPublicKey,
    presharedKey,
    index: indices.next()!,
    rng,
    rateLimiter,
    now: performance.now(),
    unixOffsetMs,
    cipher,
  });
}

function drain(now: number): void {
  for (let d = tunnel.pollTransmit(); d !== undefined; d = tunnel.pollTransmit()) send(d);
  for (let e = tunnel.pollEvent(); e !== undefined; e = tunnel.pollEvent()) {
    if (e.kind === 'sessionEstablished') stats.established++;
    else stats.expired++;
    print({ event: e.kind });
  }
  const deadline = Math.min(tunnel.pollTimeout() ?? Infinity, rateLimiter.pollTimeout());
  if (timer !== undefined) clearTimeout(timer);
  timer = setTimeout(onTimer, Math.max(0, Math.ceil(deadline - now)));
}

function onTimer(): void {
  const now = performance.now();
  rateLimiter.handleTimeout(now);
  tunnel.handleTimeout(now);
  drain(now);
}

function send(datagram: Uint8Array): void {
  const type = messageType(datagram);
  stats.sentByType[type] = (stats.sentByType[type] ?? 0) + 1;
  socket.send(datagram, endpointPort, endpointIp);
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function shutdown(): void {
  if (timer !== undefined) clearTimeout(timer);
  tun.close();
  socket.close();
}

function splitAddr(text: string): [string, number] {
  const at = text.lastIndexOf(':');
  return [text.slice(0, at), Number(text.slice(at + 1))];
}
