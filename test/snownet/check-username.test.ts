// Connectivity checks reach their connection by USERNAME; when several connections share one (equal
// ufrags, different passwords), the one whose password verifies the check takes it.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { Fleet } from '../support/fleet.ts';

describe('connections whose checks carry the same USERNAME', () => {
  test('all connect, and the others keep their checks answered once one of them is removed', () => {
    configureLogging({ filter: LogFilter.parse('error') });
    const fleet = new Fleet({ clients: 3, gateway: 'node', sharedUfrags: true, record: false });
    assert.ok(fleet.connectAll(), `only ${fleet.connectedCount()} of 3 connected`);
    const [first, second, third] = fleet.clients;
    fleet.gateway.removeConnection(second!.id);
    // Longer than an ICE timeout of the clients' active timing: unanswered checks would have failed them.
    fleet.net.runUntil(fleet.net.now + 30_000);
    for (const client of [first!, third!]) {
      assert.notEqual(fleet.gateway.connectionState(client.id), undefined, `${client.id} is gone on the gateway`);
      assert.ok(['connected', 'idle'].includes(client.node.connectionState('gateway') ?? 'none'), `${client.name}: ${client.node.connectionState('gateway')}`);
    }
  });
});
