// Runs inside a scratch namespace (see tun-device.test.ts); prints a JSON report as its last line.
// argv[2]: 'thread' (native writer threads, the default) or 'sync' (writes on the JS thread).
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { TunDevice } from '../../../src/runtime/tun-device.ts';
import { ipv4Udp } from './packets.ts';

const QUEUES = 2;
const writerThread = process.argv[2] !== 'sync';
const received: { queue: number; packet: number[] }[] = [];
const tun = TunDevice.open('tun-firezone', {
  queues: QUEUES,
  writerThread,
  onPackets(batch) {
    for (let i = 0; i < batch.count; i++) received.push({ queue: batch.queue, packet: [...batch.packet(i)] });
  },
});
const probe = ipv4Udp('10.77.0.2', '10.77.0.1', 7777, 5555, Buffer.from('down'));
const queuedWhileDown = { single: tun.write(probe), batch: tun.writeBatch([probe, probe]) };
await waitFor(() => tun.pendingWrites() === 0);
const whileDown = { ...queuedWhileDown, errno: tun.lastWriteErrno, dropped: tun.counters.txDropped };
ip('addr', 'add', '10.77.0.1/24', 'dev', 'tun-firezone');
ip('link', 'set', 'tun-firezone', 'up');
const details = ip('-d', 'link', 'show', 'tun-firezone');

// Kernel -> TUN: a datagram to an address routed into the device.
const sender = createSocket('udp4');
sender.bind(0, '10.77.0.1');
await once(sender, 'listening');
sender.send(Buffer.from('to-the-tun'), 9999, '10.77.0.2');
await waitFor(() => received.some((r) => r.packet.length === 28 + 10));
const inbound = received.find((r) => r.packet.length === 28 + 10)!;

// TUN -> kernel: packets written to the device arrive at a local socket.
const listener = createSocket('udp4');
const delivered: string[] = [];
listener.on('message', (message) => delivered.push(message.toString()));
listener.bind(5555, '10.77.0.1');
await once(listener, 'listening');
const single = tun.write(ipv4Udp('10.77.0.2', '10.77.0.1', 7777, 5555, Buffer.from('single')));
const batch = Array.from({ length: 10 }, (_, i) => ipv4Udp('10.77.0.2', '10.77.0.1', 7777, 5555, Buffer.from(`batch-${i}`)));
const batchWritten = tun.writeBatch(batch);
await waitFor(() => delivered.length >= 11);
const countersAfterDelivery = { ...tun.counters };

// A one-slot writer ring takes the first packet of a batch and refuses the rest: the batch is
// published to the thread only after the whole call.
let ringFull: { queued: number; errno: number; dropped: number; threaded: boolean } | undefined;
if (writerThread) {
  const small = TunDevice.open('tun-small', { writerSlots: 1, onPackets() {} });
  ip('link', 'set', 'tun-small', 'up');
  const unheard = ipv4Udp('10.77.0.2', '10.77.0.1', 7777, 5556, Buffer.from('full'));
  const queued = small.writeBatch(Array.from({ length: 10 }, () => unheard));
  await waitFor(() => small.pendingWrites() === 0);
  ringFull = { queued, errno: small.lastWriteErrno, dropped: small.counters.txDropped, threaded: small.threadedWrites };
  small.close();
}

const report = {
  name: tun.name,
  queueCount: tun.queueCount,
  details,
  inbound,
  whileDown,
  single,
  batchWritten,
  delivered: delivered.sort(),
  threaded: tun.threadedWrites,
  counters: countersAfterDelivery,
  ringFull,
};
sender.close();
listener.close();
tun.close();
console.log(JSON.stringify(report));

function ip(...args: string[]): string {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
