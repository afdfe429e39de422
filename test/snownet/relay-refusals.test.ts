import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import { Scenario } from './harness.ts';

configureLogging({ filter: LogFilter.parse('off') });

// The lab's coturn refuses peers it cannot route to (`denied-peer-ip`), because a failed relayed
// send makes coturn drop everything on that allocation afterwards.
const privatePeer = (peer: SocketAddr): boolean => peer.address.startsWith('192.168.');

describe('relay refusing some peers (coturn denied-peer-ip)', () => {
  test('symmetric NATs: refused channel binds to private host candidates do not stop the relayed path', () => {
    const s = new Scenario({ clientNat: 'symmetric', gatewayNat: 'symmetric', relay: { deniedPeer: privatePeer, signErrors: false } });
    s.connect();
    assert.ok(s.deliver(s.client, 'relayed', 10_000));
    assert.ok(s.deliver(s.gateway, 'relayed back', 10_000));
    assert.ok(s.relay.stats.deniedPeers > 0, 'both sides tried the private host candidates through the relay');
    const clientPath = s.client.node.connectionPath('gateway');
    const gatewayPath = s.gateway.node.connectionPath('client');
    assert.ok(clientPath?.kind === 'relay' && gatewayPath?.kind === 'relay', 'both sides send through the relay');
    assert.deepEqual(clientPath.destination, gatewayPath.relayed, 'relay to relay: the client sends to the gateway relayed address');
    assert.deepEqual(gatewayPath.destination, clientPath.relayed, 'and the gateway to the client relayed address');
    s.net.runUntil(s.net.now + 30_000);
    assert.ok(s.deliver(s.client, 'still relayed', 5_000), 'the allocation keeps working after the refusals');
  });
});
