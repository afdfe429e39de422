// Runs inside a scratch namespace (see tun-offload.test.ts); prints a JSON report as its last line.
// A TUN device with offloads (IFF_VNET_HDR, checksum, TSO, USO) and, behind it, a minimal TCP peer
// played by this script at 10.77.0.2 talking to a kernel TCP socket at 10.77.0.1:
// - writes: the peer sends a run of data segments in one batch; the writer thread merges them into
//   GSO writes and the kernel's socket must read the exact bytes;
// - reads: the kernel's socket sends data back; the kernel hands the TUN large TSO packets and the
//   reader must split them into segments of at most the MTU with valid checksums and no gap;
// - UDP: a GSO send from a socket into the TUN arrives as separate datagrams (USO, kernels 6.2+).
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { internetChecksum, makeTcpPacket, makeUdpPacket, parseIp, pseudoHeaderSumV4 } from '../../../src/ip/index.ts';
import { TunDevice } from '../../../src/runtime/tun-device.ts';
import { UdpSocket } from '../../../src/runtime/udp-socket.ts';
import { socketAddr } from '../../../src/util/socket-addr.ts';

const KERNEL = parseIp('10.77.0.1')!;
const PEER = parseIp('10.77.0.2')!;
const SERVER_PORT = 5555;
const PEER_PORT = 40000;
const SEGMENT = 1000;
const SEGMENTS = 40;
const SEND_BACK = 300_000;

const packets: Uint8Array[] = [];
const tun = TunDevice.open('tun-firezone', {
  offloads: true,
  onPackets(batch) {
    for (let i = 0; i < batch.count; i++) packets.push(batch.packet(i).slice());
  },
});
ip('addr', 'add', '10.77.0.1/24', 'dev', 'tun-firezone');
ip('link', 'set', 'tun-firezone', 'mtu', '1280', 'up');
const features = ip('-d', 'link', 'show', 'tun-firezone');

let accepted: Socket | undefined;
let serverReceived = Buffer.alloc(0);
const server = createServer((socket) => {
  accepted = socket;
  socket.on('data', (data) => (serverReceived = Buffer.concat([serverReceived, data])));
});
server.listen(SERVER_PORT, '10.77.0.1');
await once(server, 'listening');

// Handshake from the peer's side.
const peerIsn = 1_000_000;
tun.write(makeTcpPacket(PEER, KERNEL, PEER_PORT, SERVER_PORT, { flags: 0x02, sequence: peerIsn, window: 65535 }, new Uint8Array(0)));
const synAck = await nextTcp((p) => (flags(p) & 0x12) === 0x12);
const kernelIsn = u32(synAck, 24);
let peerSeq = peerIsn + 1;
tun.write(makeTcpPacket(PEER, KERNEL, PEER_PORT, SERVER_PORT, { flags: 0x10, sequence: peerSeq, acknowledgement: kernelIsn + 1, window: 65535 }, new Uint8Array(0)));
await waitFor(() => accepted !== undefined);

// Peer -> kernel: one batch of consecutive full segments, merged by the writer thread.
const sent = Buffer.alloc(SEGMENT * SEGMENTS);
for (let i = 0; i < sent.length; i++) sent[i] = (i * 31 + 7) & 0xff;
const run: Uint8Array[] = [];
for (let i = 0; i < SEGMENTS; i++) {
  run.push(makeTcpPacket(PEER, KERNEL, PEER_PORT, SERVER_PORT, { flags: i === SEGMENTS - 1 ? 0x18 : 0x10, sequence: peerSeq, acknowledgement: kernelIsn + 1, window: 65535 }, sent.subarray(i * SEGMENT, (i + 1) * SEGMENT)));
  peerSeq += SEGMENT;
}
tun.writeBatch(run);
await waitFor(() => serverReceived.length >= sent.length);
const writes = { received: serverReceived.length, equal: serverReceived.equals(sent), coalescedWrites: tun.counters.txCoalescedWrites, txPackets: tun.counters.txPackets };

// Kernel -> peer: the kernel sends in TSO packets; the reader hands over MTU-sized segments.
const back = Buffer.alloc(SEND_BACK);
for (let i = 0; i < back.length; i++) back[i] = (i * 13 + 1) & 0xff;
packets.length = 0;
accepted!.write(back);
const chunks = new Map<number, Buffer>();
let nextExpected = kernelIsn + 1;
let largest = 0;
let badChecksums = 0;
let seen = 0;
const deadline = Date.now() + 15_000;
while (nextExpected - (kernelIsn + 1) < SEND_BACK && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 5));
  const batch = packets.splice(0);
  for (const p of batch) {
    if (p[9] !== 6) continue;
    seen++;
    largest = Math.max(largest, p.length);
    if (!checksumsValid(p)) badChecksums++;
    const headerLength = 20 + (p[32]! >> 4) * 4;
    const payload = Buffer.from(p.subarray(headerLength));
    if (payload.length > 0) chunks.set(u32(p, 24), payload);
  }
  while (chunks.has(nextExpected)) {
    const chunk = chunks.get(nextExpected)!;
    chunks.delete(nextExpected);
    nextExpected += chunk.length;
  }
  tun.write(makeTcpPacket(PEER, KERNEL, PEER_PORT, SERVER_PORT, { flags: 0x10, sequence: peerSeq, acknowledgement: nextExpected >>> 0, window: 65535 }, new Uint8Array(0)));
}
const reads = { bytes: nextExpected - (kernelIsn + 1), segments: seen, largest, badChecksums };

// UDP writes: a flow's datagrams written in one batch are merged when the device took USO.
const udpListener = await import('node:dgram').then((dgram) => dgram.createSocket('udp4'));
const udpDelivered: Buffer[] = [];
udpListener.on('message', (message) => udpDelivered.push(message));
udpListener.bind(5556, '10.77.0.1');
await once(udpListener, 'listening');
const coalescedBefore = tun.counters.txCoalescedWrites;
tun.writeBatch(Array.from({ length: 20 }, (_, i) => makeUdpPacketWithId(i)));
await waitFor(() => udpDelivered.length >= 20);
const udpWrites = {
  delivered: udpDelivered.map((m) => m.readUInt16BE(0)),
  lengths: [...new Set(udpDelivered.map((m) => m.length))],
  coalescedWrites: tun.counters.txCoalescedWrites - coalescedBefore,
};
udpListener.close();

// UDP: a GSO send into the TUN.
packets.length = 0;
const udp = UdpSocket.bind({ family: 4, address: '10.77.0.1', port: 0, mark: 0, offloads: true, onDatagrams: () => undefined });
for (let i = 0; i < 20; i++) udp.send(Buffer.alloc(900, i), socketAddr('10.77.0.2', 9999));
udp.flush();
await waitFor(() => packets.filter((p) => p[9] === 17).length >= 20);
const datagrams = packets.filter((p) => p[9] === 17);
const uso = { gsoSends: udp.counters.txGsoSends, datagrams: datagrams.length, lengths: [...new Set(datagrams.map((p) => p.length))], valid: datagrams.every(checksumsValid), payloads: datagrams.map((p) => p[28]) };
udp.close();

console.log(JSON.stringify({ vnet: tun.vnet, offloads: tun.offloads, features, writes, reads, udpWrites, uso }));
accepted?.destroy();
server.close();
tun.close();

/** A datagram 10.77.0.2:7777 -> 10.77.0.1:5556 whose payload starts with its index, IPv4 id in sequence. */
function makeUdpPacketWithId(index: number): Uint8Array {
  const payload = Buffer.alloc(800, index);
  payload.writeUInt16BE(index, 0);
  const packet = makeUdpPacket(PEER, KERNEL, 7777, 5556, payload);
  packet[4] = 0x12;
  packet[5] = index;
  packet[10] = packet[11] = 0;
  const checksum = internetChecksum(packet, 0, 20);
  packet[10] = checksum >> 8;
  packet[11] = checksum & 0xff;
  return packet;
}

function flags(p: Uint8Array): number {
  return p[33]!;
}

function u32(p: Uint8Array, at: number): number {
  return ((p[at]! << 24) | (p[at + 1]! << 16) | (p[at + 2]! << 8) | p[at + 3]!) >>> 0;
}

function checksumsValid(p: Uint8Array): boolean {
  const ipLength = (p[0]! & 0x0f) * 4;
  return internetChecksum(p, 0, ipLength) === 0 && internetChecksum(p, ipLength, p.length, pseudoHeaderSumV4(p, p[9]!, p.length - ipLength)) === 0;
}

async function nextTcp(match: (p: Uint8Array) => boolean): Promise<Uint8Array> {
  let found: Uint8Array | undefined;
  await waitFor(() => (found = packets.find((p) => p[9] === 6 && match(p))) !== undefined);
  return found!;
}

function ip(...args: string[]): string {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
