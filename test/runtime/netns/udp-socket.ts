// Runs inside a scratch namespace (see udp-socket.test.ts); prints a JSON report as its last line.
import { spawnSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { UdpSocket } from '../../../src/runtime/udp-socket.ts';
import { connectMarkedTcp } from '../../../src/runtime/native.ts';
import { socketAddr, type SocketAddr } from '../../../src/util/socket-addr.ts';

ip('addr', 'add', '10.9.0.1/32', 'dev', 'lo');
ip('addr', 'add', '10.9.0.2/32', 'dev', 'lo');
ip('-6', 'addr', 'add', 'fd00:99::1/128', 'dev', 'lo', 'nodad');
ip('-6', 'addr', 'add', 'fd00:99::2/128', 'dev', 'lo', 'nodad');

interface Seen {
  payload: string;
  source: SocketAddr;
  destination: SocketAddr;
}
const seen: Seen[] = [];
const onDatagrams = (batch: import('../../../src/runtime/udp-socket.ts').UdpDatagramBatch): void => {
  for (let i = 0; i < batch.count; i++) {
    seen.push({ payload: Buffer.from(batch.payload(i)).toString(), source: batch.source(i), destination: batch.destination(i) });
  }
};
const v4 = UdpSocket.bind({ family: 4, onDatagrams });
const v6 = UdpSocket.bind({ family: 6, onDatagrams });
const fallback = UdpSocket.bind({ family: 4, onDatagrams });

const tcpServer = createServer();
tcpServer.listen(4321, '10.9.0.1');
await once(tcpServer, 'listening');
const markedTcp = connectMarkedTcp({ host: '10.9.0.1', port: 4321, mark: 0xfd002021 });
await once(markedTcp, 'connect');
const sockets = spawnSync('ss', ['-tuneapH'], { encoding: 'utf8' }).stdout.split('\n');
const markedLines = {
  udp4: sockets.some((l) => l.startsWith('udp') && l.includes('0.0.0.0:52625') && l.includes('fwmark:0xfd002021')),
  udp6: sockets.some((l) => l.startsWith('udp') && l.includes('[::]:52625') && l.includes('fwmark:0xfd002021')),
  tcp: sockets.some((l) => l.startsWith('tcp') && l.includes(`:${markedTcp.localPort} `) && l.includes('fwmark:0xfd002021')),
};
markedTcp.destroy();
tcpServer.close();

const peer4 = await peer('udp4', '10.9.0.1');
const peer6 = await peer('udp6', 'fd00:99::1');

peer4.socket.send('to-v4-2', v4.port, '10.9.0.2');
peer4.socket.send('to-v4-1', v4.port, '10.9.0.1');
peer6.socket.send('to-v6-2', v6.port, 'fd00:99::2');
peer4.socket.send(Buffer.alloc(1317), v4.port, '10.9.0.2');
peer4.socket.send('after-big', v4.port, '10.9.0.2');
await waitFor(() => seen.length >= 4);

const peer4Address = socketAddr('10.9.0.1', peer4.port);
const peer6Address = socketAddr('fd00:99::1', peer6.port);
v4.send(Buffer.from('from-2'), peer4Address, socketAddr('10.9.0.2', v4.port));
v4.send(Buffer.from('from-1'), peer4Address, socketAddr('10.9.0.1', v4.port));
v4.send(Buffer.from('from-any'), peer4Address);
v6.send(Buffer.from('from-6-2'), peer6Address, socketAddr('fd00:99::2', v6.port));
const wrongFamily = v4.send(Buffer.from('x'), peer6Address);
await waitFor(() => peer4.received.length >= 3 && peer6.received.length >= 1);

// No route to 192.0.2.0/24 in this namespace: the kernel refuses, the socket counts the drop.
const sendErrors: number[] = [];
v4.onSendError = (errno) => sendErrors.push(errno);
v4.send(Buffer.from('nowhere'), socketAddr('192.0.2.1', 9));
v4.send(Buffer.from('after'), peer4Address);
const flushed = v4.flush();
await waitFor(() => peer4.received.length >= 4);

// Offloads: bursts from one offloading socket to another on loopback leave as GSO sends and
// arrive coalesced (GRO); every datagram keeps its bytes, its order and its ECN bits.
const gro: { payload: string; ecn: number; length: number }[] = [];
const offloadReceiver = UdpSocket.bind({
  family: 4,
  address: '10.9.0.2',
  port: 0,
  offloads: true,
  onDatagrams: (batch) => {
    for (let i = 0; i < batch.count; i++) gro.push({ payload: Buffer.from(batch.payload(i)).subarray(0, 12).toString(), ecn: batch.ecn(i), length: batch.length(i) });
  },
});
const offloadSender = UdpSocket.bind({ family: 4, address: '10.9.0.1', port: 0, offloads: true, onDatagrams: () => undefined });
const offloadTarget = socketAddr('10.9.0.2', offloadReceiver.port);
const burst = (label: string, count: number, size: number, ecn: number): void => {
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(i === count - 1 ? size - 100 : size, i & 0xff);
    payload.write(`${label}${String(i).padStart(4, '0')}`);
    offloadSender.send(payload, offloadTarget, undefined, ecn);
  }
  offloadSender.flush();
};
burst('ect0-', 60, 1300, 0b10);
burst('ect1-', 30, 1300, 0b01);
burst('none-', 5, 200, 0);
await waitFor(() => gro.length >= 95);
const offloads = {
  gro: offloadReceiver.gro,
  gso: offloadSender.gso,
  txGsoSends: offloadSender.counters.txGsoSends,
  txDatagrams: offloadSender.counters.txDatagrams,
  rxCoalesced: offloadReceiver.counters.rxCoalesced,
  received: gro,
};
offloadReceiver.close();
offloadSender.close();

console.log(
  JSON.stringify({
    offloads,
    ports: { v4: v4.port, v6: v6.port, fallback: fallback.port },
    buffers: { receive: v4.receiveBufferSize, send: v4.sendBufferSize, errno: v4.bufferErrno },
    marked: v4.marked && v6.marked,
    markedLines,
    seen,
    peer4: peer4.received,
    peer6: peer6.received,
    wrongFamily,
    unreachable: { flushed, sendErrors, lastSendErrno: v4.lastSendErrno },
    counters: v4.counters,
    v4Received: { oversized: v4.counters.rxOversized, datagrams: v4.counters.rxDatagrams },
  }),
);
for (const s of [v4, v6, fallback]) s.close();
peer4.socket.close();
peer6.socket.close();

async function peer(type: 'udp4' | 'udp6', address: string) {
  const socket: Socket = createSocket(type);
  const received: { payload: string; from: string }[] = [];
  socket.on('message', (message, rinfo) => received.push({ payload: message.toString(), from: rinfo.address }));
  socket.bind(0, address);
  await once(socket, 'listening');
  return { socket, received, port: socket.address().port };
}

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
