import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import fc from 'fast-check';
import { FIN_LINGER_MS, FLOW_IDLE_TIMEOUT_MS, FlowTracker, MAX_OUTERS_PER_FLOW, formatUtcMicros, recordPayload } from '../../src/flow-logs/index.ts';
import type { FlowRecord } from '../../src/flow-logs/index.ts';
import { IpPacket } from '../../src/ip/index.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import {
  CLIENT,
  CLIENT_IP,
  CLIENT_OUTER,
  GATEWAY_OUTER,
  OTHER_CLIENT,
  RESOURCE,
  RESOURCE_IP,
  TCP,
  drainRecords,
  responderToken,
  silentLogger,
  sendRx,
  sendTx,
  tcp,
  udp,
} from './support.ts';

const UNIX_AT_ZERO = Date.UTC(2026, 6, 6, 12, 0, 0);
const SECOND = 1000;

function tracker(options: { maxFlowsPerClient?: number; maxFlows?: number } = {}): FlowTracker {
  const t = new FlowTracker({ now: 0, unixMs: UNIX_AT_ZERO, logger: silentLogger(), ...options });
  t.setEnabled(true);
  t.authorize(CLIENT, RESOURCE, responderToken());
  return t;
}

function at(ms: number): string {
  return formatUtcMicros((UNIX_AT_ZERO + ms) * 1000);
}

function only(records: FlowRecord[]): FlowRecord {
  assert.equal(records.length, 1, `expected one record, got ${records.length}`);
  return records[0]!;
}

describe('UDP flows', () => {
  test('the first packet opens a flow and reports it started', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53, 30), 1500);

    const record = only(drainRecords(t));
    assert.deepEqual(recordPayload(record), {
      protocol: 'udp',
      inner_src_ip: CLIENT_IP,
      inner_src_port: 5000,
      inner_dst_ip: RESOURCE_IP,
      inner_dst_port: 53,
      outers: [{ src_ip: '192.0.2.10', src_port: 40000, dst_ip: '198.51.100.1', dst_port: 52625, path_activated_at: at(1500) }],
      flow_start: at(1500),
    });
    assert.equal(record.token.claims.role, 'responder');
    assert.equal(t.flowCount, 1);
  });

  test('counts packets and payload bytes both ways and closes after two idle minutes', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53, 30), 0);
    sendRx(t, udp(RESOURCE_IP, 53, CLIENT_IP, 5000, 100), 10);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53, 20), 20);
    sendRx(t, udp(RESOURCE_IP, 53, CLIENT_IP, 5000, 200), 30);
    drainRecords(t);

    t.handleTimeout(30 + FLOW_IDLE_TIMEOUT_MS - 1);
    assert.equal(drainRecords(t).length, 0, 'still open just before the timeout');
    assert.equal(t.pollTimeout(), 30 + FLOW_IDLE_TIMEOUT_MS);

    t.handleTimeout(30 + FLOW_IDLE_TIMEOUT_MS);
    const payload = recordPayload(only(drainRecords(t)));
    assert.equal(payload['tx_packets'], 2);
    assert.equal(payload['tx_bytes'], 50);
    assert.equal(payload['rx_packets'], 2);
    assert.equal(payload['rx_bytes'], 300);
    assert.equal(payload['flow_start'], at(0));
    assert.equal(payload['last_packet'], at(30));
    assert.equal(payload['flow_end'], at(30 + FLOW_IDLE_TIMEOUT_MS));
    assert.equal(t.flowCount, 0);
    assert.equal(t.pollTimeout(), undefined);
  });

  test('a reply without a flow is not recorded', () => {
    const t = tracker();
    sendRx(t, udp(RESOURCE_IP, 53, CLIENT_IP, 5000, 100), 0);
    assert.equal(drainRecords(t).length, 0);
    assert.equal(t.flowCount, 0);
  });

  test('a different port, address or client is a different flow', () => {
    const t = tracker();
    t.authorize(OTHER_CLIENT, RESOURCE, responderToken());
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    sendTx(t, udp(CLIENT_IP, 5001, RESOURCE_IP, 53), 0);
    sendTx(t, udp(CLIENT_IP, 5000, '10.1.0.6', 53), 0);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0, { client: OTHER_CLIENT });
    sendTx(t, udp('fd00:2021:1111::10', 5000, 'fd00::5', 53), 0);
    sendTx(t, udp('fd00:2021:1111::10', 5000, 'fd00::5', 53), 1);
    assert.equal(t.flowCount, 5);
    assert.equal(t.flowCountOf(CLIENT), 4);
    const v6 = drainRecords(t).at(-1)!;
    assert.equal(v6.innerSrcIp, 'fd00:2021:1111::10');
    assert.equal(v6.innerDstIp, 'fd00::5');
  });

  test('the DNS resource domain is reported', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 443), 0, { domain: 'app.corp.example' });
    assert.equal(recordPayload(only(drainRecords(t)))['domain'], 'app.corp.example');
  });
});

describe('TCP flows', () => {
  test('a SYN opens a flow; FIN both ways closes it a moment after the last packet, ending at that packet', () => {
    const t = tracker();
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.SYN), 0);
    sendRx(t, tcp(RESOURCE_IP, 80, CLIENT_IP, 40000, TCP.SYN | TCP.ACK), 1);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.ACK), 2);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.ACK | TCP.PSH, 100), 3);
    sendRx(t, tcp(RESOURCE_IP, 80, CLIENT_IP, 40000, TCP.ACK | TCP.PSH, 1000), 4);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.FIN | TCP.ACK), 5);
    sendRx(t, tcp(RESOURCE_IP, 80, CLIENT_IP, 40000, TCP.FIN | TCP.ACK), 6);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.ACK), 7);
    assert.equal(drainRecords(t).length, 1, 'only the start so far');
    assert.equal(t.pollTimeout(), 6 + FIN_LINGER_MS);

    t.handleTimeout(6 + FIN_LINGER_MS);
    assert.equal(drainRecords(t).length, 0, 'the closing ACK moved the last packet');
    t.handleTimeout(7 + FIN_LINGER_MS);
    const payload = recordPayload(only(drainRecords(t)));
    assert.equal(payload['tx_packets'], 5);
    assert.equal(payload['tx_bytes'], 100);
    assert.equal(payload['rx_packets'], 3);
    assert.equal(payload['rx_bytes'], 1000);
    assert.equal(payload['flow_end'], at(7));
    assert.equal(payload['last_packet'], at(7));
  });

  test('FIN, RST or a bare ACK never open a flow; an ACK with data does', () => {
    const t = tracker();
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.FIN | TCP.ACK), 0);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.RST), 0);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.ACK), 0);
    assert.equal(t.flowCount, 0);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.ACK | TCP.PSH, 10), 0);
    assert.equal(t.flowCount, 1);
  });

  test('RST from either side closes the flow at once', () => {
    const t = tracker();
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.SYN), 0);
    sendRx(t, tcp(RESOURCE_IP, 80, CLIENT_IP, 40000, TCP.RST | TCP.ACK), 5);
    sendTx(t, tcp(CLIENT_IP, 40001, RESOURCE_IP, 80, TCP.SYN), 10);
    sendTx(t, tcp(CLIENT_IP, 40001, RESOURCE_IP, 80, TCP.RST), 15);
    const closes = drainRecords(t).filter((r) => r.close !== undefined);
    assert.deepEqual(
      closes.map((r) => [r.innerSrcPort, r.close!.flowEnd, r.close!.rxPackets, r.close!.txPackets]),
      [
        [40000, (UNIX_AT_ZERO + 5) * 1000, 1, 1],
        [40001, (UNIX_AT_ZERO + 15) * 1000, 0, 2],
      ],
    );
    assert.equal(t.flowCount, 0);
  });

  test('a retransmitted SYN is the same flow; a SYN after data starts a new one', () => {
    const t = tracker();
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.SYN), 0);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.SYN), 1000);
    assert.equal(drainRecords(t).length, 1);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.ACK | TCP.PSH, 5), 2000);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.SYN), 3000);
    const records = drainRecords(t);
    assert.deepEqual(
      records.map((r) => [r.close === undefined ? 'start' : 'end', r.flowStart]),
      [
        ['end', (UNIX_AT_ZERO + 0) * 1000],
        ['start', (UNIX_AT_ZERO + 3000) * 1000],
      ],
    );
    assert.equal(records[0]!.close!.txPackets, 3);
    assert.equal(t.flowCount, 1);
  });
});

describe('authorization and enablement', () => {
  test('nothing is tracked while disabled', () => {
    const t = tracker();
    t.setEnabled(false);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    assert.equal(t.flowCount, 0);
  });

  test('an authorization without an ingest token gets no flows', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0, { resource: '22222222-0000-4000-8000-000000000002' });
    assert.equal(t.flowCount, 0);
  });

  test('after a revocation no flow starts, while an open flow runs to its end', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    t.revoke(CLIENT, RESOURCE);
    sendTx(t, udp(CLIENT_IP, 5001, RESOURCE_IP, 53), 1);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 2);
    assert.equal(t.flowCount, 1);
    t.handleTimeout(2 + FLOW_IDLE_TIMEOUT_MS);
    const end = drainRecords(t).at(-1)!;
    assert.equal(end.close?.txPackets, 1, 'a packet without a token is not counted (the policy drops it anyway)');
    assert.equal(end.token.claims.role, 'responder');
  });

  test('flows carry the token they started with; a new token applies to new flows', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    t.authorize(CLIENT, RESOURCE, responderToken({ policy_authorization_id: '99999999-0000-4000-8000-000000000009' }));
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 1);
    sendTx(t, udp(CLIENT_IP, 5001, RESOURCE_IP, 53), 2);
    const starts = drainRecords(t);
    assert.deepEqual(
      starts.map((r) => r.token.claims.policy_authorization_id),
      [responderToken().claims.policy_authorization_id, '99999999-0000-4000-8000-000000000009'],
    );
  });

  test('closeAll reports every open flow as completed at shutdown', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    sendTx(t, tcp(CLIENT_IP, 40000, RESOURCE_IP, 80, TCP.SYN), 0);
    drainRecords(t);
    t.closeAll(50);
    const records = drainRecords(t);
    assert.equal(records.length, 2);
    assert.ok(records.every((r) => r.close?.flowEnd === (UNIX_AT_ZERO + 50) * 1000));
    assert.equal(t.pollTimeout(), undefined);
  });
});

describe('outer paths', () => {
  test('a changed outer path is appended with the time it was first used; the same path is not repeated', () => {
    const t = tracker();
    const roamed = socketAddr('203.0.113.7', 41000);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 100);
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 200, { from: roamed });
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 300, { from: roamed });
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 400, { from: socketAddr('192.0.2.10', 40000) });
    t.closeAll(500);
    const end = drainRecords(t).at(-1)!;
    assert.deepEqual(
      end.outers.map((o) => [o.from?.address, o.from?.port, o.activatedAt]),
      [
        ['192.0.2.10', 40000, (UNIX_AT_ZERO + 0) * 1000],
        ['203.0.113.7', 41000, (UNIX_AT_ZERO + 200) * 1000],
        ['192.0.2.10', 40000, (UNIX_AT_ZERO + 400) * 1000],
      ],
    );
  });

  test('one path change beyond the cap splits the flow, so no path goes unreported', () => {
    const t = tracker();
    for (let i = 0; i <= MAX_OUTERS_PER_FLOW; i++) {
      sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), i, { from: socketAddr('192.0.2.10', 30000 + i) });
    }
    const records = drainRecords(t);
    assert.deepEqual(
      records.map((r) => [r.close === undefined ? 'start' : 'end', r.outers.length]),
      [
        ['start', 1],
        ['end', MAX_OUTERS_PER_FLOW],
        ['start', 1],
      ],
    );
    assert.equal(records[2]!.outers[0]!.from?.port, 30000 + MAX_OUTERS_PER_FLOW);
    assert.equal(t.stats.splitOnPaths, 1);
  });

  test('replies do not add paths (the gateway records the path its client sends on)', () => {
    const t = tracker();
    sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), 0);
    sendRx(t, udp(RESOURCE_IP, 53, CLIENT_IP, 5000), 1);
    t.closeAll(2);
    assert.equal(drainRecords(t).at(-1)!.outers.length, 1);
  });
});

describe('bounds', () => {
  test('a client at its bound gets its oldest flow closed and counted; other clients are untouched', () => {
    const t = tracker({ maxFlowsPerClient: 3 });
    t.authorize(OTHER_CLIENT, RESOURCE, responderToken());
    sendTx(t, udp(CLIENT_IP, 9999, RESOURCE_IP, 53), 0, { client: OTHER_CLIENT });
    for (let port = 1; port <= 5; port++) sendTx(t, udp(CLIENT_IP, port, RESOURCE_IP, 53), port);
    const closed = drainRecords(t).filter((r) => r.close !== undefined);
    assert.deepEqual(
      closed.map((r) => r.innerSrcPort),
      [1, 2],
    );
    assert.equal(t.flowCountOf(CLIENT), 3);
    assert.equal(t.flowCountOf(OTHER_CLIENT), 1);
    assert.equal(t.stats.evictedForClient, 2);
  });

  test('at the total bound the oldest flow of any client is closed and counted', () => {
    const t = tracker({ maxFlows: 2 });
    t.authorize(OTHER_CLIENT, RESOURCE, responderToken());
    sendTx(t, udp(CLIENT_IP, 1, RESOURCE_IP, 53), 0, { client: OTHER_CLIENT });
    sendTx(t, udp(CLIENT_IP, 2, RESOURCE_IP, 53), 1);
    sendTx(t, udp(CLIENT_IP, 3, RESOURCE_IP, 53), 2);
    const closed = drainRecords(t).filter((r) => r.close !== undefined);
    assert.deepEqual(
      closed.map((r) => r.innerSrcPort),
      [1],
    );
    assert.equal(t.flowCount, 2);
    assert.equal(t.flowCountOf(OTHER_CLIENT), 0);
    assert.equal(t.stats.evictedForTotal, 1);
  });
});

describe('work per packet and per timer', () => {
  test('a timer fire visits only the flows that are due, not every flow', () => {
    const t = tracker();
    for (let port = 1; port <= 1000; port++) sendTx(t, udp(CLIENT_IP, port, RESOURCE_IP, 53), port * SECOND);
    drainRecords(t);
    t.handleTimeout(10 * SECOND + FLOW_IDLE_TIMEOUT_MS);
    assert.equal(t.stats.deadlineVisits, 10);
    assert.equal(drainRecords(t).length, 10);
    assert.equal(t.flowCount, 990);
  });

  test('an active flow costs one deadline re-arm per idle timeout, not one per packet', () => {
    const t = tracker();
    for (let i = 0; i < 10_000; i++) sendTx(t, udp(CLIENT_IP, 5000, RESOURCE_IP, 53), i * 10);
    t.handleTimeout(FLOW_IDLE_TIMEOUT_MS);
    assert.equal(t.stats.deadlineVisits, 1);
    assert.equal(t.flowCount, 1);
    assert.equal(t.pollTimeout(), 99_990 + FLOW_IDLE_TIMEOUT_MS);
  });

  test('packets of an existing flow allocate nothing (heap bytes allocated, against a control that allocates one object per packet)', () => {
    const t = tracker();
    const view = new IpPacket();
    const txBytes = udp(CLIENT_IP, 5000, RESOURCE_IP, 53, 1200);
    const rxBytes = udp(RESOURCE_IP, 53, CLIENT_IP, 5000, 1200);
    let sink: unknown;
    const run = (rounds: number, control: boolean): void => {
      for (let i = 0; i < rounds; i++) {
        view.parse(txBytes);
        t.packet.load(view);
        t.clientToResource(CLIENT, RESOURCE, undefined, CLIENT_OUTER, GATEWAY_OUTER, i);
        view.parse(rxBytes);
        t.packet.load(view);
        t.resourceToClient(CLIENT, RESOURCE, i);
        if (control) sink = { i };
      }
    };
    sendTx(t, txBytes, 0);
    drainRecords(t);
    // Warm both loops up so that compilation is not measured.
    run(50_000, false);
    run(50_000, true);
    const rounds = 500_000;
    const packets = 2 * rounds;
    const tracked = allocatedBytesDuring(() => run(rounds, false));
    const control = allocatedBytesDuring(() => run(rounds, true));
    assert.ok(sink !== undefined);
    // The control proves the measurement sees a small object per round (V8's smallest is 16 bytes); the
    // tracker's loop may show the harness's and the runtime's own background allocations, far below that.
    assert.ok(control >= 16 * rounds, `control allocated ${control} bytes for ${rounds} objects`);
    assert.ok(tracked < control / 8, `tracker allocated ${tracked} bytes for ${packets} packets (control ${control})`);
    t.closeAll(1_000_000);
    assert.equal(drainRecords(t)[0]!.close!.txPackets, 1 + 100_000 + 2 * rounds);
  });
});

/**
 * Heap bytes allocated while `fn` runs: the growth of the used heap plus what each collection meanwhile freed
 * (V8's GC profiler reports the used size before and after every collection).
 */
function allocatedBytesDuring(fn: () => void): number {
  const profiler = new v8.GCProfiler();
  const before = v8.getHeapStatistics().used_heap_size;
  profiler.start();
  fn();
  const data = profiler.stop();
  const after = v8.getHeapStatistics().used_heap_size;
  let freed = 0;
  for (const gc of data?.statistics ?? []) freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
  return after - before + freed;
}

describe('properties', () => {
  test('UDP counters match a model: every packet lands in exactly one report of its flow', () => {
    const tuple = fc.record({ port: fc.integer({ min: 1, max: 3 }), dst: fc.constantFrom(RESOURCE_IP, '10.1.0.6') });
    const step = fc.record({
      dir: fc.constantFrom('tx' as const, 'rx' as const),
      tuple,
      length: fc.integer({ min: 0, max: 1200 }),
      gap: fc.integer({ min: 0, max: FLOW_IDLE_TIMEOUT_MS + 5000 }),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const t = tracker();
        const sent = new Map<string, { tx: number; txBytes: number; rx: number; rxBytes: number }>();
        const expectedRx = (key: string, length: number): void => {
          const m = sent.get(key);
          if (m === undefined) return;
          m.rx++;
          m.rxBytes += length;
        };
        const live = new Map<string, number>();
        let now = 0;
        const records: FlowRecord[] = [];
        for (const s of steps) {
          now += s.gap;
          t.handleTimeout(now);
          records.push(...drainRecords(t));
          for (const [key, last] of live) if (last + FLOW_IDLE_TIMEOUT_MS <= now) live.delete(key);
          const key = `${s.tuple.port}>${s.tuple.dst}`;
          if (s.dir === 'tx') {
            sendTx(t, udp(CLIENT_IP, s.tuple.port, s.tuple.dst, 53, s.length), now);
            const m = sent.get(key) ?? { tx: 0, txBytes: 0, rx: 0, rxBytes: 0 };
            m.tx++;
            m.txBytes += s.length;
            sent.set(key, m);
            live.set(key, now);
          } else {
            sendRx(t, udp(s.tuple.dst, 53, CLIENT_IP, s.tuple.port, s.length), now);
            if (live.has(key)) {
              expectedRx(key, s.length);
              live.set(key, now);
            }
          }
        }
        t.closeAll(now);
        records.push(...drainRecords(t));
        const totals = new Map<string, { tx: number; txBytes: number; rx: number; rxBytes: number }>();
        let starts = 0;
        for (const r of records) {
          if (r.close === undefined) {
            starts++;
            continue;
          }
          const key = `${r.innerSrcPort}>${r.innerDstIp}`;
          const m = totals.get(key) ?? { tx: 0, txBytes: 0, rx: 0, rxBytes: 0 };
          m.tx += r.close.txPackets;
          m.txBytes += r.close.txBytes;
          m.rx += r.close.rxPackets;
          m.rxBytes += r.close.rxBytes;
          totals.set(key, m);
        }
        assert.deepEqual(totals, sent);
        assert.equal(starts, records.length - starts, 'every start has its end');
        assert.equal(t.flowCount, 0);
      }),
      { numRuns: 200 },
    );
  });
});
