import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocation } from '../../src/turn/index.ts';
import type { AllocationConfig, AllocationEvent, PeerDatagram, RelayInput } from '../../src/turn/index.ts';
import {
  channelDataChannel,
  decodeStunMessage,
  encodeChannelData,
  encodeStunMessage,
  getAttribute,
  longTermKey,
  StunMethod,
  verifyIntegrity,
} from '../../src/stun/index.ts';
import type { StunAttribute, StunMessage } from '../../src/stun/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import type { Transmit } from '../../src/util/transmit.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';

configureLogging({ filter: LogFilter.parse('off') });

const RELAY_V4 = socketAddr('203.0.113.1', 3478);
const RELAY_V6 = socketAddr('2001:db8::1', 3478);
const LOCAL_V4 = socketAddr('10.0.0.2', 52625);
const LOCAL_V6 = socketAddr('2001:db8::2', 52625);
const SRFLX_V4 = socketAddr('198.51.100.2', 40000);
const SRFLX_V6 = socketAddr('2001:db8::2', 52625);
const RELAYED_V4 = socketAddr('203.0.113.1', 50000);
const RELAYED_V6 = socketAddr('2001:db8::1', 50000);
const PEER = socketAddr('192.0.2.9', 1234);
const USERNAME = '1700000000:salt';
const PASSWORD = 'secret';
const FIREZONE_KEY = longTermKey(USERNAME, 'firezone', PASSWORD);
const NONCE = '2b6a2b37-9d1e-4a83-9b1f-3d0a7a5e2f10';

test('on creation a BINDING carrying only SOFTWARE goes to every relay address', () => {
  const allocation = newAllocation({ server: { v4: RELAY_V4, v6: RELAY_V6 } });
  const sent = drainTransmits(allocation);
  assert.deepEqual(
    sent.map((t) => t.destination),
    [RELAY_V4, RELAY_V6],
  );
  for (const transmit of sent) {
    const message = decode(transmit.payload);
    assert.equal(message.method, StunMethod.Binding);
    assert.deepEqual(message.attributes, [{ kind: 'software', value: 'test-software' }]);
    assert.equal(message.integrityOffset, undefined);
    assert.equal(message.fingerprintOffset, undefined);
  }
});

test('the first BINDING answer picks the socket, yields a srflx candidate and starts an unsigned-nonce ALLOCATE', () => {
  const allocation = newAllocation({ server: { v4: RELAY_V4, v6: RELAY_V6 } });
  const [bindingV4, bindingV6] = drainTransmits(allocation).map((t) => decode(t.payload));
  answer(allocation, RELAY_V6, LOCAL_V6, success(bindingV6!, [{ kind: 'xorMappedAddress', address: SRFLX_V6 }]), 0);
  assert.deepEqual(drainEvents(allocation), [added('srflx', SRFLX_V6, LOCAL_V6)]);
  const [allocate] = drainTransmits(allocation);
  assert.deepEqual(allocate!.destination, RELAY_V6);
  const message = decode(allocate!.payload);
  assert.equal(message.method, StunMethod.Allocate);
  assert.deepEqual(
    message.attributes.map((a) => a.kind),
    ['requestedTransport', 'additionalAddressFamily', 'software', 'username', 'realm'],
  );
  assert.equal(getAttribute(message, 'realm')?.value, 'firezone');
  check(verifyIntegrity(message, FIREZONE_KEY));

  answer(allocation, RELAY_V4, LOCAL_V4, success(bindingV4!, [{ kind: 'xorMappedAddress', address: SRFLX_V4 }]), 10);
  assert.deepEqual(drainEvents(allocation), [added('srflx', SRFLX_V4, LOCAL_V4)]);
  assert.deepEqual(drainTransmits(allocation), [], 'the later answer does not change the socket');
});

test('an unsigned 401 from a standard server supplies realm and nonce, and ALLOCATE is re-signed with a new transaction id', () => {
  const allocation = withSocket();
  const first = decode(drainTransmits(allocation)[0]!.payload);
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 401, [{ kind: 'realm', value: 'lab.test' }, { kind: 'nonce', value: 'n1' }]), 5);
  const [retry] = drainTransmits(allocation);
  const message = decode(retry!.payload);
  assert.equal(message.method, StunMethod.Allocate);
  assert.notDeepEqual(message.transactionId, first.transactionId);
  assert.equal(getAttribute(message, 'nonce')?.value, 'n1');
  assert.equal(getAttribute(message, 'realm')?.value, 'lab.test');
  check(verifyIntegrity(message, longTermKey(USERNAME, 'lab.test', PASSWORD)));
});

test('a 400 to the signed first request (coturn) falls back to an unsigned request, then signs under the learnt realm', () => {
  const allocation = withSocket();
  const first = decode(drainTransmits(allocation)[0]!.payload);
  check(first.integrityOffset !== undefined, 'the first ALLOCATE is signed, as the reference sends it');
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 400, []), 1);
  const unsigned = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(unsigned.method, StunMethod.Allocate);
  assert.equal(unsigned.integrityOffset, undefined, 'the retry carries no MESSAGE-INTEGRITY');
  assert.equal(getAttribute(unsigned, 'username'), undefined);
  answer(allocation, RELAY_V4, LOCAL_V4, error(unsigned, 401, [{ kind: 'realm', value: 'lab.test' }, { kind: 'nonce', value: 'n1' }]), 2);
  const signed = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(getAttribute(signed, 'nonce')?.value, 'n1');
  check(verifyIntegrity(signed, longTermKey(USERNAME, 'lab.test', PASSWORD)), 'signed under the learnt realm');
});

test('a signed 401 from the Firezone relay is accepted, and one with a bad signature is ignored', () => {
  const allocation = withSocket();
  const first = decode(drainTransmits(allocation)[0]!.payload);
  const challenge = [{ kind: 'realm', value: 'firezone' }, { kind: 'nonce', value: NONCE }] as const;
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 401, [...challenge], longTermKey(USERNAME, 'firezone', 'wrong')), 1);
  assert.deepEqual(drainTransmits(allocation), []);
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 401, [...challenge], FIREZONE_KEY), 2);
  const [retry] = drainTransmits(allocation);
  assert.equal(getAttribute(decode(retry!.payload), 'nonce')?.value, NONCE);
});

test('an error response from a different address than the request went to is ignored', () => {
  const allocation = newAllocation({ server: { v4: RELAY_V4, v6: RELAY_V6 } });
  const [bindingV4] = drainTransmits(allocation).map((t) => decode(t.payload));
  answer(allocation, RELAY_V4, LOCAL_V4, success(bindingV4!, [{ kind: 'xorMappedAddress', address: SRFLX_V4 }]), 0);
  const allocate = decode(drainTransmits(allocation)[0]!.payload);
  const challenge = error(allocate, 401, [{ kind: 'nonce', value: 'n' }]);
  assert.equal(allocation.handleInput(challenge, socketAddr('203.0.113.1', 3479), LOCAL_V4, 1), 'notForUs');
  assert.equal(allocation.handleInput(challenge, RELAY_V6, LOCAL_V6, 1), 'consumed');
  assert.deepEqual(drainTransmits(allocation), []);
});

test('a successful allocation yields IPv4 and IPv6 relay candidates', () => {
  const allocation = withSocket();
  const allocate = authenticatedAllocate(allocation, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, allocateSuccess(allocate), 1);
  assert.deepEqual(drainEvents(allocation), [added('relay', RELAYED_V4, LOCAL_V4), added('relay', RELAYED_V6, LOCAL_V4)]);
});

test('an unsigned success response to ALLOCATE is ignored', () => {
  const allocation = withSocket();
  const allocate = authenticatedAllocate(allocation, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, allocateSuccess(allocate, false), 1);
  assert.deepEqual(drainEvents(allocation), []);
});

test('a 438 stale nonce is answered with the request re-signed under the new nonce', () => {
  const allocation = withSocket();
  const allocate = authenticatedAllocate(allocation, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, error(allocate, 438, [{ kind: 'nonce', value: 'fresh' }], FIREZONE_KEY), 1);
  const [retry] = drainTransmits(allocation);
  const message = decode(retry!.payload);
  assert.equal(message.method, StunMethod.Allocate);
  assert.equal(getAttribute(message, 'nonce')?.value, 'fresh');
  check(verifyIntegrity(message, FIREZONE_KEY));
});

test('a 401 to a request that carried a nonce means bad credentials: candidates withdrawn, allocation freed', () => {
  const { allocation, now } = allocated();
  const [refresh] = runUntil(allocation, now + 300_000).filter((m) => m.message.method === StunMethod.Refresh);
  answer(allocation, RELAY_V4, LOCAL_V4, error(refresh!.message, 401, [{ kind: 'nonce', value: 'x' }], FIREZONE_KEY), now + 300_001);
  assert.deepEqual(drainEvents(allocation), [invalidated('relay', RELAYED_V4, LOCAL_V4), invalidated('relay', RELAYED_V6, LOCAL_V4)]);
  assert.deepEqual(drainTransmits(allocation), []);
  assert.equal(allocation.canBeFreed(), 'authenticationError');
});

test('allocation is refreshed after half its lifetime, once', () => {
  const { allocation, now } = allocated();
  const refreshes = runUntil(allocation, now + 310_000).filter((m) => m.message.method === StunMethod.Refresh);
  assert.deepEqual(
    refreshes.map((r) => r.at),
    [now + 300_000, now + 301_000, now + 302_500, now + 304_750],
    'one refresh, retransmitted while unanswered',
  );
  const refresh = refreshes[0]!.message;
  assert.equal(getAttribute(refresh, 'lifetime'), undefined);
  assert.equal(getAttribute(refresh, 'nonce')?.value, NONCE);

  const { allocation: fresh } = allocated();
  const [first] = runUntil(fresh, now + 300_000).filter((m) => m.message.method === StunMethod.Refresh);
  answer(fresh, RELAY_V4, LOCAL_V4, success(first!.message, [{ kind: 'lifetime', seconds: 600 }], FIREZONE_KEY), now + 300_050);
  check(fresh.pollTimeout()! > now + 300_050);
  const next = runUntil(fresh, now + 700_000).filter((m) => m.message.method === StunMethod.Refresh);
  assert.equal(next[0]?.at, now + 600_050);
});

test('a BINDING keepalive goes to the chosen socket every 25 s while allocated', () => {
  const { allocation, now } = allocated();
  const sends: number[] = [];
  let t = now;
  while (t < now + 80_000) {
    t = allocation.pollTimeout()!;
    allocation.handleTimeout(t);
    for (const transmit of drainTransmits(allocation)) {
      const message = decode(transmit.payload);
      if (message.method !== StunMethod.Binding) continue;
      if (message.class === 'request' && transmit.payload.length > 0) {
        sends.push(t - now);
        answer(allocation, RELAY_V4, LOCAL_V4, success(message, [{ kind: 'xorMappedAddress', address: SRFLX_V4 }]), t);
      }
    }
  }
  assert.deepEqual(sends.slice(0, 3), [25_000, 50_000, 75_000]);
  assert.deepEqual(drainEvents(allocation), [], 'an unchanged mapping emits nothing');
});

test('a changed mapping on keepalive replaces the srflx candidate', () => {
  const { allocation, now } = allocated();
  allocation.handleTimeout(now + 25_000);
  const binding = decode(drainTransmits(allocation)[0]!.payload);
  const moved = socketAddr('198.51.100.2', 40001);
  answer(allocation, RELAY_V4, LOCAL_V4, success(binding, [{ kind: 'xorMappedAddress', address: moved }]), now + 25_010);
  assert.deepEqual(drainEvents(allocation), [added('srflx', moved, LOCAL_V4), invalidated('srflx', SRFLX_V4, LOCAL_V4)]);
});

test('requests are retransmitted at 1, 2.5 and 4.75 s and given up at 8.125 s', () => {
  const allocation = newAllocation({ server: { v4: RELAY_V4 } });
  const sent: number[] = [];
  let now = 0;
  const first = drainTransmits(allocation);
  sent.push(...first.map(() => 0));
  while (allocation.pollTimeout() !== undefined) {
    now = allocation.pollTimeout()!;
    allocation.handleTimeout(now);
    for (const transmit of drainTransmits(allocation)) {
      sent.push(now);
      assert.deepEqual(decode(transmit.payload).transactionId, decode(first[0]!.payload).transactionId, 'BINDING retransmits keep the id');
    }
  }
  assert.deepEqual(sent, [0, 1_000, 2_500, 4_750]);
  assert.equal(now, 8_125);
  assert.equal(allocation.canBeFreed(), 'noResponseReceived');
});

test('authenticated retransmissions are re-signed with a fresh transaction id', () => {
  const allocation = withSocket();
  const first = decode(drainTransmits(allocation)[0]!.payload);
  allocation.handleTimeout(1_000);
  const second = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(second.method, StunMethod.Allocate);
  assert.notDeepEqual(second.transactionId, first.transactionId);
  check(verifyIntegrity(second, FIREZONE_KEY));
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 401, [{ kind: 'nonce', value: 'late' }]), 1_001);
  assert.deepEqual(drainTransmits(allocation), [], 'an answer to the superseded id is ignored');
});

test('when the relay stops answering, its candidates are invalidated after the keepalive times out', () => {
  const { allocation, now } = allocated();
  const invalidatedAt: number[] = [];
  let t = now;
  while (t < now + 60_000 && allocation.pollTimeout() !== undefined) {
    t = allocation.pollTimeout()!;
    allocation.handleTimeout(t);
    drainTransmits(allocation);
    for (const event of drainEvents(allocation)) if (event.kind === 'candidateInvalidated') invalidatedAt.push(t - now);
  }
  assert.deepEqual(invalidatedAt, [33_125, 33_125, 33_125]);
  assert.equal(allocation.canBeFreed(), 'noResponseReceived');
});

test('sending to a peer without a channel drops the packet and binds one; afterwards data flows as ChannelData', () => {
  const { allocation, now } = allocated();
  assert.equal(allocation.encodeToPeer(PEER, new Uint8Array([1, 2, 3]), now), undefined);
  const bind = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(bind.method, StunMethod.ChannelBind);
  assert.deepEqual(getAttribute(bind, 'xorPeerAddress')?.address, PEER);
  assert.equal(getAttribute(bind, 'channelNumber')?.channel, 0x4000);
  assert.equal(allocation.encodeToPeer(PEER, new Uint8Array([1]), now + 1), undefined);
  assert.deepEqual(drainTransmits(allocation), [], 'no duplicate bind in flight');

  answer(allocation, RELAY_V4, LOCAL_V4, success(bind, [], FIREZONE_KEY), now + 10);
  const transmit = allocation.encodeToPeer(PEER, new Uint8Array([1, 2, 3]), now + 20);
  assert.deepEqual(transmit?.destination, RELAY_V4);
  assert.deepEqual([...transmit!.payload], [0x40, 0x00, 0x00, 0x03, 1, 2, 3]);

  const frame = encodeChannelData(0x4000, new Uint8Array([9, 8]));
  const input = allocation.handleInput(frame, RELAY_V4, LOCAL_V4, now + 30);
  check(isDatagram(input));
  assert.deepEqual(input.peer, PEER);
  assert.deepEqual(input.relayed, RELAYED_V4);
  assert.equal(input.payload.buffer, frame.buffer, 'payload is a view, not a copy');
  assert.deepEqual([...input.payload], [9, 8]);
});

test('frameForPeer writes the ChannelData header into the headroom without copying the payload', () => {
  const { allocation, now } = allocated();
  const channel = bindChannel(allocation, PEER, now);
  const frame = new Uint8Array([0, 0, 0, 0, 0xaa, 0xbb]);
  const transmit = allocation.frameForPeer(PEER, frame, now + 1);
  assert.equal(transmit?.payload, frame);
  assert.deepEqual([...frame], [channel >> 8, channel & 0xff, 0, 2, 0xaa, 0xbb]);
  assert.equal(allocation.frameForPeer(PEER, frame, now + 600_000), undefined, 'expired channel');
});

test('a channel expires for sending after its 600 s lifetime', () => {
  const { allocation, now } = allocated();
  bindChannel(allocation, PEER, now);
  check(allocation.channelTo(PEER, now + 599_999) !== undefined);
  assert.equal(allocation.channelTo(PEER, now + 600_000), undefined);
});

test('ChannelData on an unknown channel is consumed and dropped; malformed frames are not ours', () => {
  const { allocation, now } = allocated();
  assert.equal(allocation.handleInput(encodeChannelData(0x4001, new Uint8Array([1])), RELAY_V4, LOCAL_V4, now), 'consumed');
  assert.equal(allocation.handleInput(new Uint8Array([0x40, 0x01, 0x00, 0x09, 1]), RELAY_V4, LOCAL_V4, now), 'notForUs');
  assert.equal(allocation.handleInput(encodeChannelData(0x4001, new Uint8Array([1])), PEER, LOCAL_V4, now), 'notForUs');
});

test('a channel with traffic is re-bound at half its lifetime; one without traffic is not', () => {
  const { allocation, now } = allocated();
  const busy = bindChannel(allocation, PEER, now);
  const quiet = bindChannel(allocation, socketAddr('192.0.2.10', 1), now);
  allocation.handleInput(encodeChannelData(busy, new Uint8Array([1])), RELAY_V4, LOCAL_V4, now + 1_000);
  allocation.handleTimeout(now + 299_000);
  check(!drainTransmits(allocation).some((t) => decode(t.payload).method === StunMethod.ChannelBind));
  allocation.handleTimeout(now + 300_020);
  const binds = drainTransmits(allocation)
    .map((t) => decode(t.payload))
    .filter((m) => m.method === StunMethod.ChannelBind);
  assert.deepEqual(
    binds.map((m) => getAttribute(m, 'channelNumber')?.channel),
    [busy],
  );
  assert.notEqual(busy, quiet);
});

test('a failed channel bind forgets the channel so a later send retries', () => {
  const { allocation, now } = allocated();
  allocation.bindChannel(PEER, now);
  const bind = decode(drainTransmits(allocation)[0]!.payload);
  answer(allocation, RELAY_V4, LOCAL_V4, error(bind, 403, [], FIREZONE_KEY), now + 1);
  allocation.encodeToPeer(PEER, new Uint8Array([1]), now + 2);
  const retry = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(retry.method, StunMethod.ChannelBind);
});

test('channel binds requested before the allocation exists are sent once it does', () => {
  const allocation = withSocket();
  allocation.bindChannel(PEER, 0);
  const allocate = authenticatedAllocate(allocation, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, allocateSuccess(allocate), 1);
  const [bind] = drainTransmits(allocation).map((t) => decode(t.payload));
  assert.equal(bind?.method, StunMethod.ChannelBind);
});

test('437 on ALLOCATE deletes the stale allocation and then allocates afresh', () => {
  const allocation = withSocket();
  const allocate = authenticatedAllocate(allocation, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, error(allocate, 437, [], FIREZONE_KEY), 1);
  const del = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(del.method, StunMethod.Refresh);
  assert.equal(getAttribute(del, 'lifetime')?.seconds, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, success(del, [{ kind: 'lifetime', seconds: 0 }], FIREZONE_KEY), 2);
  assert.equal(decode(drainTransmits(allocation)[0]!.payload).method, StunMethod.Allocate);
});

test('refresh() after a relay update sends a single REFRESH that is given up after 1 s', () => {
  const { allocation, now } = allocated();
  allocation.refresh(now);
  const [refresh] = drainTransmits(allocation).map((t) => decode(t.payload));
  assert.equal(refresh?.method, StunMethod.Refresh);
  allocation.handleTimeout(now + 1_000);
  assert.deepEqual(drainTransmits(allocation), [], 'not retransmitted');
  assert.deepEqual(
    drainEvents(allocation).map((e) => `${e.kind}:${e.candidate.kind}`),
    ['candidateInvalidated:relay', 'candidateInvalidated:relay', 'candidateInvalidated:srflx'],
  );
  assert.equal(allocation.canBeFreed(), 'noResponseReceived');
});

test('437 on CHANNEL-BIND re-allocates and binds the channel again afterwards', () => {
  const { allocation, now } = allocated();
  allocation.bindChannel(PEER, now);
  const bind = decode(drainTransmits(allocation)[0]!.payload);
  answer(allocation, RELAY_V4, LOCAL_V4, error(bind, 437, [], FIREZONE_KEY), now + 1);
  const allocate = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(allocate.method, StunMethod.Allocate);
  answer(allocation, RELAY_V4, LOCAL_V4, allocateSuccess(allocate), now + 2);
  const rebind = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(rebind.method, StunMethod.ChannelBind);
  assert.deepEqual(getAttribute(rebind, 'xorPeerAddress')?.address, PEER);
});

test('a 420 naming REQUESTED-TRANSPORT on REFRESH (coturn) is answered by a REFRESH without it', () => {
  const { allocation, now } = allocated();
  allocation.refresh(now);
  const refresh = decode(drainTransmits(allocation)[0]!.payload);
  answer(
    allocation,
    RELAY_V4,
    LOCAL_V4,
    error(refresh, 420, [{ kind: 'unknownAttributes', types: [0x0019] }], FIREZONE_KEY),
    now + 1,
  );
  const retry = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(retry.method, StunMethod.Refresh);
  assert.deepEqual(
    retry.attributes.map((a) => a.kind),
    ['software', 'username', 'realm', 'nonce'],
  );
  assert.equal(allocation.canBeFreed(), undefined);
});

test('a 420 naming anything else is a protocol failure', () => {
  const { allocation, now } = allocated();
  allocation.bindChannel(PEER, now);
  const bind = decode(drainTransmits(allocation)[0]!.payload);
  answer(allocation, RELAY_V4, LOCAL_V4, error(bind, 420, [{ kind: 'unknownAttributes', types: [0x000c] }], FIREZONE_KEY), now + 1);
  drainEvents(allocation);
  assert.equal(allocation.canBeFreed(), 'protocolFailure');
});

test('with learnRealm the first ALLOCATE is unsigned and the realm comes from the 401', () => {
  const allocation = withSocket({ learnRealm: true });
  const first = decode(drainTransmits(allocation)[0]!.payload);
  assert.deepEqual(
    first.attributes.map((a) => a.kind),
    ['requestedTransport', 'additionalAddressFamily', 'software'],
  );
  assert.equal(first.integrityOffset, undefined);
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 401, [{ kind: 'realm', value: 'other' }, { kind: 'nonce', value: 'n' }]), 1);
  const second = decode(drainTransmits(allocation)[0]!.payload);
  check(verifyIntegrity(second, longTermKey(USERNAME, 'other', PASSWORD)));
});

test('delete sends REFRESH with LIFETIME 0 and withdraws every candidate', () => {
  const { allocation, now } = allocated();
  allocation.delete(now);
  const del = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(del.method, StunMethod.Refresh);
  assert.equal(getAttribute(del, 'lifetime')?.seconds, 0);
  assert.deepEqual(
    drainEvents(allocation).map((e) => `${e.kind}:${e.candidate.kind}`),
    ['candidateInvalidated:relay', 'candidateInvalidated:relay', 'candidateInvalidated:srflx'],
  );
  assert.equal(allocation.canBeFreed(), undefined, 'waits for the answer');
  answer(allocation, RELAY_V4, LOCAL_V4, success(del, [{ kind: 'lifetime', seconds: 0 }], FIREZONE_KEY), now + 1);
  assert.deepEqual(drainTransmits(allocation), [], 'no re-allocation after an explicit delete');
  assert.equal(allocation.canBeFreed(), 'deleted');
});

test('with Send indications enabled, a permission is created and data goes out and comes in as indications', () => {
  const { allocation, now } = allocated({ sendIndications: true });
  assert.equal(allocation.encodeToPeer(PEER, new Uint8Array([7]), now), undefined);
  const permission = decode(drainTransmits(allocation)[0]!.payload);
  assert.equal(permission.method, StunMethod.CreatePermission);
  answer(allocation, RELAY_V4, LOCAL_V4, success(permission, [], FIREZONE_KEY), now + 1);
  const send = allocation.encodeToPeer(PEER, new Uint8Array([7, 7]), now + 2);
  const indication = decode(send!.payload);
  assert.equal(indication.method, StunMethod.Send);
  assert.equal(indication.class, 'indication');
  assert.deepEqual(getAttribute(indication, 'xorPeerAddress')?.address, PEER);
  assert.deepEqual([...getAttribute(indication, 'data')!.data], [7, 7]);

  const data = encodeStunMessage({
    method: StunMethod.Data,
    class: 'indication',
    transactionId: new Uint8Array(12),
    attributes: [
      { kind: 'xorPeerAddress', address: PEER },
      { kind: 'data', data: new Uint8Array([5, 6]) },
    ],
  });
  const input = allocation.handleInput(data, RELAY_V4, LOCAL_V4, now + 3);
  check(isDatagram(input));
  assert.deepEqual(input.peer, PEER);
  assert.deepEqual([...input.payload], [5, 6]);
});

test('a Data indication from a peer without permission or channel is dropped', () => {
  const { allocation, now } = allocated();
  const data = encodeStunMessage({
    method: StunMethod.Data,
    class: 'indication',
    transactionId: new Uint8Array(12),
    attributes: [
      { kind: 'xorPeerAddress', address: PEER },
      { kind: 'data', data: new Uint8Array([5]) },
    ],
  });
  assert.equal(allocation.handleInput(data, RELAY_V4, LOCAL_V4, now), 'consumed');
});

test('garbage from the relay address is consumed without effect, and never throws', () => {
  const { allocation, now } = allocated();
  for (const bytes of [new Uint8Array([0, 1, 0, 0]), new Uint8Array(0), new Uint8Array([0x01, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42])]) {
    allocation.handleInput(bytes, RELAY_V4, LOCAL_V4, now);
  }
  assert.deepEqual(drainEvents(allocation), []);
  assert.deepEqual(drainTransmits(allocation), []);
});

// --- helpers: a scripted relay ---

function newAllocation(overrides: Partial<AllocationConfig> = {}): Allocation {
  return new Allocation(
    {
      server: { v4: RELAY_V4 },
      username: USERNAME,
      password: PASSWORD,
      software: 'test-software',
      rng: seededRandom(1),
      ...overrides,
    },
    0,
  );
}

/** An allocation whose BINDING was answered, with its first (nonce-less) ALLOCATE queued. */
function withSocket(overrides: Partial<AllocationConfig> = {}): Allocation {
  const allocation = newAllocation(overrides);
  const binding = decode(drainTransmits(allocation)[0]!.payload);
  answer(allocation, RELAY_V4, LOCAL_V4, success(binding, [{ kind: 'xorMappedAddress', address: SRFLX_V4 }]), 0);
  drainEvents(allocation);
  return allocation;
}

/** Answers the queued nonce-less ALLOCATE with the Firezone relay's signed 401; returns the re-sent request. */
function authenticatedAllocate(allocation: Allocation, now: number): StunMessage {
  const first = decode(drainTransmits(allocation)[0]!.payload);
  const challenge = [{ kind: 'realm', value: 'firezone' }, { kind: 'nonce', value: NONCE }] as const;
  answer(allocation, RELAY_V4, LOCAL_V4, error(first, 401, [...challenge], FIREZONE_KEY), now);
  return decode(drainTransmits(allocation)[0]!.payload);
}

function allocated(overrides: Partial<AllocationConfig> = {}): { allocation: Allocation; now: number } {
  const allocation = withSocket(overrides);
  const allocate = authenticatedAllocate(allocation, 0);
  answer(allocation, RELAY_V4, LOCAL_V4, allocateSuccess(allocate), 0);
  drainEvents(allocation);
  return { allocation, now: 0 };
}

function bindChannel(allocation: Allocation, peer: SocketAddr, now: number): number {
  allocation.bindChannel(peer, now);
  const bind = decode(drainTransmits(allocation)[0]!.payload);
  answer(allocation, RELAY_V4, LOCAL_V4, success(bind, [], FIREZONE_KEY), now);
  return getAttribute(bind, 'channelNumber')!.channel;
}

function allocateSuccess(request: StunMessage, signed = true): Uint8Array {
  return success(
    request,
    [
      { kind: 'xorRelayedAddress', address: RELAYED_V4 },
      { kind: 'xorRelayedAddress', address: RELAYED_V6 },
      { kind: 'xorMappedAddress', address: SRFLX_V4 },
      { kind: 'lifetime', seconds: 600 },
    ],
    signed ? FIREZONE_KEY : undefined,
  );
}

/**
 * Drives the allocation through its timeouts up to `until`, answering every BINDING as the
 * relay would; returns the other requests it sent, with their send times.
 */
function runUntil(allocation: Allocation, until: number): { at: number; message: StunMessage }[] {
  const sent: { at: number; message: StunMessage }[] = [];
  for (let steps = 0; steps < 1_000; steps++) {
    const at = allocation.pollTimeout();
    if (at === undefined || at > until) return sent;
    allocation.handleTimeout(at);
    for (const transmit of drainTransmits(allocation)) {
      const message = decode(transmit.payload);
      if (message.method !== StunMethod.Binding) sent.push({ at, message });
      else answer(allocation, RELAY_V4, LOCAL_V4, success(message, [{ kind: 'xorMappedAddress', address: SRFLX_V4 }]), at);
    }
  }
  throw new Error('runUntil did not converge');
}

function success(request: StunMessage, attributes: StunAttribute[], key?: Uint8Array): Uint8Array {
  return encodeStunMessage(
    { method: request.method, class: 'success', transactionId: request.transactionId, attributes },
    { integrityKey: key },
  );
}

function error(request: StunMessage, code: number, attributes: StunAttribute[], key?: Uint8Array): Uint8Array {
  return encodeStunMessage(
    {
      method: request.method,
      class: 'error',
      transactionId: request.transactionId,
      attributes: [{ kind: 'errorCode', code, reason: 'x' }, ...attributes],
    },
    { integrityKey: key },
  );
}

function answer(allocation: Allocation, from: SocketAddr, to: SocketAddr, bytes: Uint8Array, now: number): void {
  assert.equal(allocation.handleInput(bytes, from, to, now), 'consumed');
}

function decode(bytes: Uint8Array): StunMessage {
  check(channelDataChannel(bytes) < 0);
  const message = decodeStunMessage(bytes);
  check(typeof message !== 'string', String(message));
  return message;
}

function drainTransmits(allocation: Allocation): Transmit[] {
  const out: Transmit[] = [];
  for (let t = allocation.pollTransmit(); t !== undefined; t = allocation.pollTransmit()) out.push(t);
  return out;
}

function drainEvents(allocation: Allocation): AllocationEvent[] {
  const out: AllocationEvent[] = [];
  for (let e = allocation.pollEvent(); e !== undefined; e = allocation.pollEvent()) out.push(e);
  return out;
}

function added(kind: 'srflx' | 'relay', address: SocketAddr, base: SocketAddr): AllocationEvent {
  return { kind: 'candidateAdded', candidate: { kind, address, base } };
}

function invalidated(kind: 'srflx' | 'relay', address: SocketAddr, base: SocketAddr): AllocationEvent {
  return { kind: 'candidateInvalidated', candidate: { kind, address, base } };
}

function isDatagram(input: RelayInput): input is PeerDatagram {
  return typeof input === 'object';
}

/** assert.ok with a fixed message: without one, node re-parses the source to build it, which is very slow under tsx. */
function check(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}
