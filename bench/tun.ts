/**
 * TUN packet rates through the native addon (one queue) beside a plain synchronous
 * `fs.writeSync` loop on the same fd, in a scratch network namespace.
 *
 *   npm run bench:tun -- [seconds per run = 2] [runs = 3]
 *
 * Write: 1280-byte (MTU-sized) IPv4/UDP packets to a non-local address (the kernel takes and drops them).
 * The synchronous lines write on the JS thread (`writerThread: false`). The writer-thread lines
 * push as fast as the JS thread can and count what the native thread wrote (packets the full
 * ring refused are dropped and reported as a share of the offered packets).
 * Read: a separate sender process floods UDP (addon sendmmsg) to an address routed into the TUN; we count what
 * the poller hands to JavaScript (the rest is dropped at the TUN queue).
 * UDP: the addon's batched sockets against node:dgram on loopback (1316-byte payloads), for scale.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { nativeAddonPath, SEND_META_STRIDE } from '../src/runtime/native.ts';
import { TunDevice } from '../src/runtime/tun-device.ts';
import { UdpSocket } from '../src/runtime/udp-socket.ts';
import { socketAddr } from '../src/util/socket-addr.ts';

const seconds = Number(process.argv[2] ?? 2);
const runs = Number(process.argv[3] ?? 3);
const CHILD_FLAG = 'FZRT_BENCH_TUN_CHILD';
const PACKET_SIZE = 1280;
const UDP_PAYLOAD = 1316;

if (process.env[CHILD_FLAG] === undefined) {
  const namespace = `fzrt-bench-${process.pid}`;
  spawnSync('ip', ['netns', 'add', namespace], { stdio: 'inherit' });
  try {
    spawnSync('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    const result = spawnSync(
      'ip',
      ['netns', 'exec', namespace, process.execPath, ...(import.meta.url.endsWith('.ts') ? ['--import', 'tsx'] : []), fileURLToPath(import.meta.url), String(seconds), String(runs)],
      { stdio: 'inherit', env: { ...process.env, [CHILD_FLAG]: '1', RUST_LOG: 'off' } },
    );
    process.exitCode = result.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', namespace]);
  }
} else {
  await runBench();
}

async function runBench(): Promise<void> {
  let received = 0;
  const tun = TunDevice.open('tun-bench', {
    writerThread: false,
    onPackets(batch) {
      received += batch.count;
    },
  });
  ip('addr', 'add', '10.88.0.1/24', 'dev', tun.name);
  ip('link', 'set', tun.name, 'mtu', '1280', 'up');
  const packet = ipv4Udp([10, 88, 0, 1], [10, 88, 0, 9], PACKET_SIZE);
  const batch = Array.from({ length: 64 }, () => packet);
  const fd = tun.fd(0);

  const results: Record<string, number[]> = {
    'write: addon writeBatch (64 per call)': [],
    'write: writer thread, writeBatch (64/call)': [],
    'write: writer thread, write (one per call)': [],
    'write: writer thread, JS-thread time only': [],
    'write: addon write (one per call)': [],
    'write: fs.writeSync loop': [],
    'read: addon poller (batches to JS)': [],
    'read: offered by the kernel (sender rate)': [],
  };
  const batchSizes: number[] = [];
  const threadDrops: string[] = [];
  for (let run = 0; run < runs; run++) {
    results['write: addon writeBatch (64 per call)']!.push(timed(() => tun.writeBatch(batch)));
    for (const [name, single] of [['write: writer thread, writeBatch (64/call)', false], ['write: writer thread, write (one per call)', true]] as const) {
      // A second queue of the same device, so the kernel sees the same packets.
      const threaded = TunDevice.open(tun.name, { writerThread: true, onPackets() {} });
      const offered = { count: 0 };
      const step = single
        ? () => {
            offered.count++;
            threaded.write(packet);
            return 1;
          }
        : () => {
            offered.count += 64;
            threaded.writeBatch(batch);
            return 64;
          };
      const start = performance.now();
      timed(step);
      while (threaded.pendingWrites() > 0) await sleep(1);
      const elapsed = (performance.now() - start) / 1000;
      const written = threaded.counters.txPackets;
      results[name]!.push(written / elapsed);
      threadDrops.push(`${((1 - written / offered.count) * 100).toFixed(0)}%`);
      threaded.close();
    }
    results['write: writer thread, JS-thread time only']!.push(await pushCost(tun.name, packet));
    results['write: addon write (one per call)']!.push(timed(() => (tun.write(packet) ? 1 : 0)));
    results['write: fs.writeSync loop']!.push(timed(() => (writeSync(fd, packet) > 0 ? 1 : 0)));

    const batchesBefore = tun.counters.rxBatches;
    received = 0;
    const offeredBefore = kernelStat(tun.name, 'tx_packets') + kernelStat(tun.name, 'tx_dropped');
    const started = performance.now();
    const rate = await readRate(() => received);
    const offered = kernelStat(tun.name, 'tx_packets') + kernelStat(tun.name, 'tx_dropped') - offeredBefore;
    results['read: addon poller (batches to JS)']!.push(rate);
    results['read: offered by the kernel (sender rate)']!.push(offered / ((performance.now() - started) / 1000));
    batchSizes.push(received / Math.max(1, tun.counters.rxBatches - batchesBefore));
  }
  tun.close();

  const udpResults: Record<string, number[]> = {
    'udp: addon sendmmsg -> addon recvmmsg': [],
    'udp: node:dgram send -> node:dgram message': [],
  };
  for (let run = 0; run < runs; run++) {
    udpResults['udp: addon sendmmsg -> addon recvmmsg']!.push(await udpAddonRate());
    udpResults['udp: node:dgram send -> node:dgram message']!.push(await udpDgramRate());
  }

  console.log(`TUN ${PACKET_SIZE}-byte packets, ${runs} runs x ${seconds} s, min / median / max pkt/s`);
  for (const [name, values] of Object.entries(results)) {
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const gbit = (median * PACKET_SIZE * 8) / 1e9;
    console.log(
      `${name.padEnd(40)} ${fmt(sorted[0]!)} / ${fmt(median)} / ${fmt(sorted[sorted.length - 1]!)}  (${gbit.toFixed(2)} Gbit/s)`,
    );
  }
  console.log(`UDP loopback, ${UDP_PAYLOAD}-byte payloads, sender and receiver in this one process, received pkt/s`);
  for (const [name, values] of Object.entries(udpResults)) {
    const sorted = [...values].sort((a, b) => a - b);
    console.log(`${name.padEnd(44)} ${fmt(sorted[0]!)} / ${fmt(sorted[Math.floor(sorted.length / 2)]!)} / ${fmt(sorted[sorted.length - 1]!)}`);
  }
  console.log(`writer thread: share of offered packets refused by the full ring ${threadDrops.join(', ')}`);
  console.log(`read: mean packets per JS callback ${batchSizes.map((b) => b.toFixed(1)).join(', ')}`);
  console.log(`tun counters ${JSON.stringify(tun.counters)}`);
}

/**
 * Packets per second of JS-thread time spent in `write()` with a writer thread: 64 pushes, then
 * (untimed) wait for the thread to drain, so no packet is refused by a full ring.
 */
async function pushCost(name: string, packet: Uint8Array): Promise<number> {
  const threaded = TunDevice.open(name, { writerThread: true, writerSlots: 64, onPackets() {} });
  const end = performance.now() + seconds * 1000;
  let busy = 0;
  let pushed = 0;
  while (performance.now() < end) {
    const start = performance.now();
    for (let i = 0; i < 64; i++) if (threaded.write(packet)) pushed++;
    busy += performance.now() - start;
    while (threaded.pendingWrites() > 0) await sleep(0);
  }
  threaded.close();
  return pushed / (busy / 1000);
}

async function udpAddonRate(): Promise<number> {
  let received = 0;
  const receiver = UdpSocket.bind({ family: 4, address: '127.0.0.1', port: 0, onDatagrams: (b) => (received += b.count) });
  const sender = UdpSocket.bind({ family: 4, address: '127.0.0.1', port: 0, onDatagrams() {} });
  const destination = socketAddr('127.0.0.1', receiver.port);
  const payload = new Uint8Array(UDP_PAYLOAD);
  const rate = await pumped(() => received, () => {
    for (let i = 0; i < 64; i++) sender.send(payload, destination);
    sender.flush();
  });
  receiver.close();
  sender.close();
  return rate;
}

async function udpDgramRate(): Promise<number> {
  let received = 0;
  const receiver = createSocket('udp4');
  receiver.on('message', () => received++);
  receiver.bind(0, '127.0.0.1');
  await once(receiver, 'listening');
  const port = receiver.address().port;
  const sender = createSocket('udp4');
  const payload = Buffer.alloc(UDP_PAYLOAD);
  const rate = await pumped(() => received, () => {
    for (let i = 0; i < 64; i++) sender.send(payload, port, '127.0.0.1');
  });
  receiver.close();
  sender.close();
  return rate;
}

/** Runs `burst` once per event-loop turn for `seconds` and returns the receive rate. */
async function pumped(count: () => number, burst: () => void): Promise<number> {
  const end = performance.now() + seconds * 1000;
  const before = count();
  const start = performance.now();
  while (performance.now() < end) {
    burst();
    await new Promise((resolve) => setImmediate(resolve));
  }
  await sleep(50);
  return (count() - before) / ((performance.now() - start) / 1000);
}

function timed(step: () => number): number {
  const end = performance.now() + seconds * 1000;
  let packets = 0;
  let now = performance.now();
  const start = now;
  while (now < end) {
    for (let i = 0; i < 64; i++) packets += step();
    now = performance.now();
  }
  return packets / ((now - start) / 1000);
}

async function readRate(count: () => number): Promise<number> {
  const sender = spawn(process.execPath, ['-e', senderScript(), String(seconds + 0.5)], { stdio: 'ignore' });
  await sleep(250);
  const before = count();
  const start = performance.now();
  await sleep(seconds * 1000);
  const rate = (count() - before) / ((performance.now() - start) / 1000);
  await new Promise((resolve) => sender.once('exit', resolve));
  return rate;
}

/** A flood sender using the addon's sendmmsg (node:dgram tops out near 100 k pkt/s here). */
function senderScript(): string {
  return `
const addon = require(${JSON.stringify(nativeAddonPath())});
const socket = addon.udpOpen(4, '10.88.0.1', 0, 0, 4 << 20, 0);
const count = 64;
const slot = 2048;
const buffer = new Uint8Array(count * slot);
const stride = ${SEND_META_STRIDE};
const meta = new Uint8Array(count * stride);
const view = new DataView(meta.buffer);
for (let i = 0; i < count; i++) {
  view.setUint32(i * stride, i * slot, true);
  view.setUint32(i * stride + 4, ${PACKET_SIZE - 28}, true);
  view.setUint16(i * stride + 8, 9999, true);
  meta[i * stride + 10] = 4;
  meta.set([10, 88, 0, 2], i * stride + 12);
}
const end = Date.now() + Number(process.argv[1]) * 1000;
while (Date.now() < end) addon.udpSendBatch(socket.fd, buffer, meta, count);
`;
}

function ipv4Udp(source: number[], destination: number[], size: number): Uint8Array {
  const packet = new Uint8Array(size);
  const view = new DataView(packet.buffer);
  packet[0] = 0x45;
  view.setUint16(2, size);
  packet[8] = 64;
  packet[9] = 17;
  packet.set(source, 12);
  packet.set(destination, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += view.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  view.setUint16(10, ~sum & 0xffff);
  view.setUint16(20, 40000);
  view.setUint16(22, 9);
  view.setUint16(24, size - 20);
  return packet;
}

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

function kernelStat(name: string, stat: string): number {
  return Number(readFileSync(`/sys/class/net/${name}/statistics/${stat}`, 'utf8'));
}

function fmt(value: number): string {
  return `${(value / 1000).toFixed(0)} k`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
