import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { EndpointMap } from '../../src/util/endpoint-map.ts';
import { socketAddr, socketAddrKey } from '../../src/util/socket-addr.ts';

describe('EndpointMap', () => {
  test('finds an entry by value, whichever SocketAddr object names the endpoint', () => {
    const map = new EndpointMap<string>();
    map.set(socketAddr('198.51.100.1', 52625), 'a');
    map.set(socketAddr('198.51.100.1', 52626), 'b');
    assert.equal(map.get(socketAddr('198.51.100.1', 52625)), 'a');
    assert.equal(map.get(socketAddr('198.51.100.1', 52626)), 'b');
    assert.equal(map.get(socketAddr('198.51.100.2', 52625)), undefined);
    assert.equal(map.deleteIf(socketAddr('198.51.100.1', 52625), 'b'), false);
    assert.equal(map.deleteIf(socketAddr('198.51.100.1', 52625), 'a'), true);
    assert.equal(map.size, 1);
  });

  test('behaves like a map keyed by the endpoint text', () => {
    const endpoint = fc.record({ ip: fc.constantFrom('10.0.0.1', '10.0.0.2', 'fd00::1'), port: fc.integer({ min: 1, max: 4 }) });
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), endpoint, value: fc.integer() }),
      fc.record({ kind: fc.constant('delete' as const), endpoint }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 100 }), (ops) => {
        const map = new EndpointMap<number>();
        const model = new Map<string, number>();
        for (const o of ops) {
          const addr = socketAddr(o.endpoint.ip, o.endpoint.port);
          if (o.kind === 'set') {
            map.set(addr, o.value);
            model.set(socketAddrKey(addr), o.value);
          } else {
            assert.equal(map.delete(addr), model.delete(socketAddrKey(addr)));
          }
          assert.equal(map.size, model.size);
          assert.equal(map.get(addr), model.get(socketAddrKey(addr)));
          for (const ip of ['10.0.0.1', '10.0.0.2', 'fd00::1']) {
            for (let port = 1; port <= 4; port++) {
              const other = socketAddr(ip, port);
              assert.equal(map.get(other), model.get(socketAddrKey(other)));
              assert.equal(map.has(other), model.has(socketAddrKey(other)));
            }
          }
        }
      }),
    );
  });
});
