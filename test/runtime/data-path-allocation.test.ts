// The data path allocates nothing per packet: datagrams -> decrypt -> TUN, and TUN -> encrypt ->
// socket, through the real event loop, node, tunnel, batches and native cipher. Counted with
// V8's heap, not timed: the heap growth of R input batches of 256 packets minus that of R batches
// of 16 (so per-batch work such as arming the timer cancels out) must stay under a few bytes per
// packet (a single view or record per packet is 16-100 bytes), and no collection may run.
//
// The policy core is a pass-through here: its own per-packet cost has its own figures
// (npm run bench:gateway); this test is about what carries the packets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { GatewayState, TunAction, TunnelAction, type TunnelVerdict, type TunVerdict } from '../../src/gateway/index.ts';
import { makeTcpPacket } from '../../src/ip/index.ts';
import type { PacketSink } from '../../src/runtime/event-loop.ts';
import { NativeTransportCipher } from '../../src/runtime/native-cipher.ts';
import { isNativeAddonBuilt } from '../../src/runtime/native.ts';
import type { TunReadBatch } from '../../src/runtime/tun-device.ts';
import { emptyUdpCounters, type DatagramSocket, type MemoryUdpSocket, type UdpDatagramBatch } from '../../src/runtime/udp-socket.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import { CLIENT_ID, resource, runUntil, setUp, src } from './loop-harness.ts';

v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

const BATCH = 256;
const SMALL_BATCH = 16;
const ROUNDS = 50;
const WARM_UP_ROUNDS = 3;
const ATTEMPTS = 3;
const MAX_BYTES_PER_PACKET = 4;
const SLOT = 2048;

const skip = isNativeAddonBuilt() ? undefined : 'the native addon is not built (npm ci builds it)';

/** The real policy until `measuring`; then every packet passes unchanged. */
class PassThroughState extends GatewayState {
  measuring = false;
  readonly #tunnelVerdict: TunnelVerdict = { action: TunnelAction.ToTun, packet: new Uint8Array(0), resourceId: '', domain: undefined, client: undefined };
  readonly #tunVerdict: TunVerdict = { action: TunAction.ToClient, clientId: CLIENT_ID, packet: new Uint8Array(0), resourceId: '' };

  override handleTunnelPacket(clientId: string, bytes: Uint8Array, now: number, outerCe = false): TunnelVerdict {
    if (!this.measuring) return super.handleTunnelPacket(clientId, bytes, now, outerCe);
    this.#tunnelVerdict.packet = bytes;
    return this.#tunnelVerdict;
  }

  override handleTunPacket(bytes: Uint8Array, now: number): TunVerdict {
    if (!this.measuring) return super.handleTunPacket(bytes, now);
    this.#tunVerdict.packet = bytes;
    return this.#tunVerdict;
  }
}

/** Sends go to the in-memory socket until `measuring`; then they are only counted. */
class SwitchableSocket implements DatagramSocket {
  readonly family = 4;
  readonly port: number;
  readonly counters = emptyUdpCounters();
  measuring = false;
  sent = 0;
  constructor(private readonly memory: MemoryUdpSocket) {
    this.port = memory.port;
  }
  send(payload: Uint8Array, destination: SocketAddr, source?: SocketAddr): boolean {
    if (!this.measuring) return this.memory.send(payload, destination, source);
    this.sent++;
    return true;
  }
  flush(): number {
    return 0;
  }
  close(): void {}
}

class SwitchableTun implements PacketSink {
  measuring = false;
  written = 0;
  constructor(private readonly recording: PacketSink) {}
  write(packet: Uint8Array): boolean {
    if (!this.measuring) return this.recording.write(packet);
    this.written++;
    return true;
  }
  writeBatch(packets: readonly Uint8Array[], count: number): number {
    for (let i = 0; i < count; i++) this.write(packets[i]!);
    return count;
  }
}

/** A receive ring like the UDP socket's: fixed slots, one address object per endpoint. */
class RingBatch implements UdpDatagramBatch {
  readonly buffer = new Uint8Array(BATCH * SLOT);
  count = 0;
  readonly #views: Uint8Array[] = [];
  readonly #lengths = new Uint16Array(BATCH);
  constructor(private readonly from: SocketAddr, private readonly to: SocketAddr) {}
  fill(datagrams: readonly Uint8Array[], first: number, size: number): void {
    for (let i = 0; i < size; i++) {
      const datagram = datagrams[first + i]!;
      this.buffer.set(datagram, i * SLOT);
      if (this.#views[i]?.length !== datagram.length) this.#views[i] = this.buffer.subarray(i * SLOT, i * SLOT + datagram.length);
      this.#lengths[i] = datagram.length;
    }
    this.count = size;
  }
  offset(index: number): number {
    return index * SLOT;
  }
  length(index: number): number {
    return this.#lengths[index]!;
  }
  payload(index: number): Uint8Array {
    return this.#views[index]!;
  }
  source(): SocketAddr {
    return this.from;
  }
  destination(): SocketAddr {
    return this.to;
  }
  ecn(): number {
    return 0;
  }
}

interface Growth {
  readonly bytes: number;
  readonly collections: number;
}

function heapGrowth(run: () => void): Growth {
  collectGarbage();
  const profiler = new v8.GCProfiler();
  const before = process.memoryUsage().heapUsed;
  profiler.start();
  run();
  const collections = profiler.stop().statistics.length;
  return { bytes: process.memoryUsage().heapUsed - before, collections };
}

/**
 * Heap bytes per packet beyond the per-batch cost: large batches against small ones, the same
 * number of batches. The least of a few attempts, as code the optimising compiler finishes in
 * the background (late on a loaded machine) also lands on the heap; a per-packet allocation shows
 * in every attempt.
 */
function perPacket(run: (size: number) => void): { bytes: number; collections: number } {
  for (let i = 0; i < WARM_UP_ROUNDS; i++) {
    run(BATCH);
    run(SMALL_BATCH);
  }
  let best = { bytes: Infinity, collections: 0 };
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const large = heapGrowth(() => run(BATCH));
    const small = heapGrowth(() => run(SMALL_BATCH));
    const bytes = (large.bytes - small.bytes) / (ROUNDS * (BATCH - SMALL_BATCH));
    const collections = large.collections + small.collections;
    if (bytes < best.bytes) best = { bytes, collections };
  }
  return best;
}

function connected() {
  let socket: SwitchableSocket | undefined;
  let tun: SwitchableTun | undefined;
  const state = new PassThroughState();
  const env = setUp(undefined, {
    state,
    transportCipher: () => new NativeTransportCipher(),
    socket: (memory) => (socket = new SwitchableSocket(memory)),
    tun: (recording) => (tun = new SwitchableTun(recording)),
  });
  assert.ok(runUntil(env, () => env.clientNode.connectionState('gateway') === 'connected'));
  // Let the handshake finish both ways before measuring.
  const warm = makeTcpPacket(src, resource, 40000, 80, { flags: 0x10 }, new Uint8Array(100));
  assert.ok(runUntil(env, () => {
    env.client.send(warm, env.net.now);
    return env.gateway.tunWrites.length > 0;
  }));
  const path = env.gateway.node.connectionPath(CLIENT_ID);
  assert.equal(path?.kind, 'direct');
  return { env, state, socket: socket!, tun: tun!, path: path! };
}

describe('data path allocation', { skip }, () => {
  test('client -> resource: opening datagrams in batches and writing their packets allocates nothing per packet', () => {
    const { env, state, tun, path } = connected();
    const packet = makeTcpPacket(src, resource, 40000, 80, { flags: 0x10 }, new Uint8Array(1000));
    const datagrams: Uint8Array[] = [];
    for (let i = 0; i < (WARM_UP_ROUNDS + ATTEMPTS) * ROUNDS * (BATCH + SMALL_BATCH); i++) {
      const transmit = env.clientNode.encapsulate('gateway', packet, env.net.now);
      assert.ok(transmit !== undefined && transmit.destination.address === path.source.address);
      datagrams.push(transmit.payload.slice());
    }
    const batch = new RingBatch(path.destination, path.source);
    let next = 0;
    const run = (size: number): void => {
      for (let round = 0; round < ROUNDS; round++) {
        batch.fill(datagrams, next, size);
        next += size;
        env.gateway.loop.handleDatagrams(batch);
      }
    };
    state.measuring = tun.measuring = true;
    const growth = perPacket(run);
    assert.equal(tun.written, next, 'every packet reached the TUN device');
    assert.equal(growth.collections, 0, 'a collection ran: the packets allocated enough to fill the young generation');
    assert.ok(growth.bytes < MAX_BYTES_PER_PACKET, `${growth.bytes.toFixed(1)} heap bytes per packet`);
  });

  test('resource -> client: sealing packets in batches and sending them allocates nothing per packet', () => {
    const { env, state, socket } = connected();
    const packet = makeTcpPacket(resource, src, 80, 40000, { flags: 0x10 }, new Uint8Array(1000));
    const ring = new Uint8Array(BATCH * SLOT);
    const views: Uint8Array[] = [];
    for (let i = 0; i < BATCH; i++) {
      ring.set(packet, i * SLOT + 32);
      views.push(ring.subarray(i * SLOT + 32, i * SLOT + 32 + packet.length));
    }
    const batch: { -readonly [K in keyof TunReadBatch]: TunReadBatch[K] } = {
      queue: 0,
      count: BATCH,
      buffer: ring,
      offset: (i) => i * SLOT + 32,
      length: () => packet.length,
      packet: (i) => views[i]!,
    };
    let offered = 0;
    const run = (size: number): void => {
      batch.count = size;
      for (let round = 0; round < ROUNDS; round++) env.gateway.loop.handleTunPackets(batch);
      offered += ROUNDS * size;
    };
    state.measuring = socket.measuring = true;
    const growth = perPacket(run);
    assert.equal(socket.sent, offered, 'every packet was sealed and sent');
    assert.equal(growth.collections, 0, 'a collection ran: the packets allocated enough to fill the young generation');
    assert.ok(growth.bytes < MAX_BYTES_PER_PACKET, `${growth.bytes.toFixed(1)} heap bytes per packet`);
  });
});
