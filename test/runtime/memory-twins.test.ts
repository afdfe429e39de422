import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryTunDevice, type TunReadBatch } from '../../src/runtime/tun-device.ts';
import { MemoryUdpSocket, sendTransmit, type UdpDatagramBatch } from '../../src/runtime/udp-socket.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';

describe('MemoryTunDevice', () => {
  test('delivers packets as one batch with headroom in front of each', () => {
    const seen: number[][] = [];
    let headroom = -1;
    const tun = new MemoryTunDevice('tun-firezone', (batch: TunReadBatch) => {
      headroom = batch.offset(0);
      for (let i = 0; i < batch.count; i++) seen.push([...batch.packet(i)]);
    });
    tun.deliver([Uint8Array.of(0x45, 1), Uint8Array.of(0x60, 2, 3)]);
    assert.deepEqual(seen, [[0x45, 1], [0x60, 2, 3]]);
    assert.ok(headroom >= 20);
    assert.equal(tun.counters.rxBatches, 1);
  });

  test('drops packets above the MTU and records copies of writes', () => {
    let batches = 0;
    const tun = new MemoryTunDevice('tun-firezone', () => batches++);
    tun.deliver([new Uint8Array(1281)]);
    assert.equal(batches, 0);
    assert.equal(tun.counters.rxOversized, 1);
    const packet = Uint8Array.of(1, 2, 3);
    assert.equal(tun.writeBatch([packet, packet]), 2);
    packet[0] = 9;
    assert.deepEqual(tun.written.map((p) => [...p]), [[1, 2, 3], [1, 2, 3]]);
  });
});

describe('MemoryUdpSocket', () => {
  test('reports source and local destination like the native socket', () => {
    const seen: string[] = [];
    const socket = new MemoryUdpSocket({
      family: 4,
      onDatagrams(batch: UdpDatagramBatch) {
        for (let i = 0; i < batch.count; i++) {
          seen.push(`${batch.source(i).address}:${batch.source(i).port}->${batch.destination(i).address}:${batch.destination(i).port}`);
        }
      },
    });
    socket.deliver([{ payload: Uint8Array.of(1), source: socketAddr('192.0.2.1', 4000), destinationIp: '10.0.0.5' }]);
    assert.deepEqual(seen, ['192.0.2.1:4000->10.0.0.5:52625']);
  });

  test('records sends with their source and refuses the other family', () => {
    const socket = new MemoryUdpSocket({ family: 6, onDatagrams() {} });
    const source = socketAddr('2001:db8::1', 52625);
    assert.equal(socket.send(Uint8Array.of(7), socketAddr('2001:db8::2', 3478), source), true);
    assert.equal(socket.send(Uint8Array.of(7), socketAddr('192.0.2.1', 3478)), false);
    assert.equal(socket.sent.length, 1);
    assert.equal(socket.sent[0]!.source, source);
    assert.equal(socket.counters.txDropped, 1);
  });
});

describe('sendTransmit', () => {
  test('picks the socket of the destination family and reports a missing one', () => {
    const v4 = new MemoryUdpSocket({ family: 4, onDatagrams() {} });
    const payload = Uint8Array.of(1);
    assert.equal(sendTransmit({ v4, v6: undefined }, { source: undefined, destination: socketAddr('192.0.2.9', 3478), payload }), 'queued');
    assert.equal(sendTransmit({ v4, v6: undefined }, { source: undefined, destination: socketAddr('2001:db8::9', 3478), payload }), 'notConnected');
    assert.equal(v4.sent.length, 1);
  });
});
