// The event loop's side of the 1.6.0 portal messages: create_authorization answered with
// authorization_created (or no_relays), use_iceless and the ingest token handed on, init's flow_logs
// and expires_at applied, set_snownet_capabilities after a join, candidates held while the portal is down.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { GatewayState } from '../../src/gateway/index.ts';
import { decodeIngress, type FlowLogsConfig, type IngestToken, type IngressMessage } from '../../src/portal/index.ts';
import type { FlowLogs } from '../../src/runtime/flow-logs.ts';
import type { ConnectionParams } from '../../src/snownet/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import { SimNetwork } from '../support/sim-network.ts';
import { fixturePath } from '../support/env.ts';
import { TestTurnServer } from '../support/turn-server.ts';
import { RELAY_ADDR, RELAY_PASSWORD, keyPair } from '../snownet/harness.ts';
import { CLIENT_ID, CLIENT_TUN, GATEWAY_TUN, GatewayHost, RESOURCE_ID } from './loop-harness.ts';

const FIXTURE = JSON.parse(readFileSync(fixturePath('portal-1.6', 'create_authorization.json'), 'utf8')) as { frame: { payload: Record<string, unknown> } };
const TOKEN = FIXTURE.frame.payload['flow_logs_ingest_token'] as string;
const RELAYS = [{ type: 'turn', id: '0a133356-7a9e-4b9a-b413-0d95a5720fd8', addr: '192.0.2.100:3478', username: '1999999999:salt', password: RELAY_PASSWORD, expires_at: 1999999999 }];
const FLOW_LOGS = { api_url: 'https://flow-api.firezone.dev/', upload_interval_secs: 60, upload_batch_size: 1000 };
const WALL_BASE_S = 1_700_000_000;

function v2(event: string, payload: unknown): IngressMessage {
  const decoded = decodeIngress(event, payload, 'v2');
  if (!decoded.ok) throw new Error(JSON.stringify(decoded.error));
  return decoded.message;
}

function init(relays: unknown[], extra: Record<string, unknown> = {}): IngressMessage {
  return v2('init', { interface: GATEWAY_TUN, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true }, relays, flow_logs: FLOW_LOGS, ...extra });
}

function createAuthorization(extra: Record<string, unknown> = {}): IngressMessage {
  return v2('create_authorization', {
    ref: 'signed-reference',
    resource: { id: RESOURCE_ID, name: 'corp', type: 'cidr', address: '10.0.0.0/24', filters: [] },
    client: { id: CLIENT_ID, public_key: Buffer.from(keyPair(seededRandom(9))).toString('base64'), preshared_key: Buffer.alloc(32, 2).toString('base64'), ...CLIENT_TUN },
    client_ice_credentials: { username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' },
    gateway_ice_credentials: { username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' },
    expires_at: WALL_BASE_S + 3600,
    flow_logs_ingest_token: TOKEN,
    ...extra,
  });
}

function setUp(options: { iceless?: boolean; state?: GatewayState } = {}) {
  const net = new SimNetwork(seededRandom(3), { wakeAllOnRun: true });
  net.addHost('relay', ['192.0.2.100'], new TestTurnServer({ listen: [RELAY_ADDR], relayIpv4: '192.0.2.100', password: () => RELAY_PASSWORD }), { port: 3478 });
  const configs: (FlowLogsConfig | undefined)[] = [];
  const tokens: { clientId: string; resourceId: string; token: IngestToken | undefined }[] = [];
  // Records what the loop hands the flow-log module (its `init` and `authorize`); every other call is a no-op.
  const flowLogs = new Proxy({}, {
    get: (_target, name) => {
      if (name === 'init') return (config: FlowLogsConfig | undefined) => configs.push(config);
      if (name === 'authorize') return (clientId: string, resourceId: string, token: IngestToken | undefined) => tokens.push({ clientId, resourceId, token });
      return () => undefined;
    },
  }) as FlowLogs;
  const gateway = new GatewayHost(net, {
    ...(options.state ? { state: options.state } : {}),
    flowLogs,
    loop: options.iceless !== undefined ? { iceless: options.iceless } : {},
  });
  net.addHost('gateway', ['203.0.113.2'], gateway);
  const upserts: ConnectionParams[] = [];
  const upsert = gateway.node.upsertConnection.bind(gateway.node);
  gateway.node.upsertConnection = (id, params, now) => {
    upserts.push(params);
    return upsert(id, params, now);
  };
  return { net, gateway, configs, tokens, upserts };
}

function events(gateway: GatewayHost): string[] {
  return gateway.portalSent.map((m) => m.event);
}

describe('event loop: 1.6.0 portal messages', () => {
  test('create_authorization is answered with authorization_created; use_iceless and the ingest token are handed on (token to the flow-log module)', () => {
    const env = setUp();
    env.gateway.loop.handlePortalMessage(init(RELAYS));
    env.net.runUntil(500);
    env.gateway.loop.handlePortalMessage(createAuthorization({ use_iceless: true }));

    assert.deepEqual(env.gateway.portalSent.find((m) => m.event === 'authorization_created'), { event: 'authorization_created', payload: { ref: 'signed-reference' } });
    assert.equal(events(env.gateway).includes('flow_authorized'), false);
    assert.equal(env.upserts.at(-1)?.useIceless, true);
    assert.equal(env.tokens.length, 1);
    assert.equal(env.tokens[0]!.token?.raw, TOKEN);
    assert.equal(env.tokens[0]!.clientId, CLIENT_ID);
    assert.equal(env.tokens[0]!.resourceId, RESOURCE_ID);
    assert.equal(env.tokens[0]!.token?.claims.uploads_enabled, true);
  });

  test('use_iceless absent: the connection is upserted with ICE', () => {
    const env = setUp();
    env.gateway.loop.handlePortalMessage(init(RELAYS));
    env.gateway.loop.handlePortalMessage(createAuthorization());
    assert.equal(env.upserts.at(-1)?.useIceless, false);
  });

  test('without relays, create_authorization gets no_relays and no answer, and the portal connection is kept', () => {
    const env = setUp();
    env.gateway.loop.handlePortalMessage(init([]));
    env.gateway.loop.handlePortalMessage(createAuthorization());

    assert.deepEqual(env.gateway.portalSent, [{ event: 'no_relays', payload: {} }]);
    assert.equal(env.gateway.reconnects, 0);
  });

  test('the last relay failing sends no_relays on the v2 path only (1.6.0 asks for a new set; 1.4.13 portals know no such message)', () => {
    const refused = [{ ...RELAYS[0], password: 'not-the-password' }];
    for (const dialect of ['v2', 'v1'] as const) {
      const env = setUp();
      env.gateway.loop.portalJoined(dialect);
      env.gateway.loop.handlePortalMessage(init(refused));
      env.net.runUntil(env.net.now + 10_000);
      assert.equal(events(env.gateway).filter((e) => e === 'no_relays').length, dialect === 'v2' ? 1 : 0, dialect);
      assert.equal(env.gateway.reconnects, 0);
    }
  });

  test('init hands flow_logs to the flow-log module', () => {
    const env = setUp();
    env.gateway.loop.handlePortalMessage(init([]));
    assert.deepEqual(env.configs, [{ apiUrl: 'https://flow-api.firezone.dev/', uploadIntervalSecs: 60, uploadBatchSize: 1000 }]);
  });

  test("init's authorizations[].expires_at replaces the expiry of a held authorization; unknown ones are ignored", () => {
    const state = new GatewayState();
    const env = setUp({ state });
    env.gateway.loop.handlePortalMessage(init(RELAYS));
    env.gateway.loop.handlePortalMessage(createAuthorization());
    const before = state.resourceExpiry(CLIENT_ID, RESOURCE_ID);
    assert.equal(before, 3_600_000);

    env.gateway.loop.handlePortalMessage(init(RELAYS, {
      authorizations: [
        { client_id: CLIENT_ID, resource_id: RESOURCE_ID, expires_at: WALL_BASE_S + 60 },
        { client_id: CLIENT_ID, resource_id: '00000000-0000-4000-8000-000000000009', expires_at: WALL_BASE_S + 60 },
      ],
    }));
    assert.equal(state.resourceExpiry(CLIENT_ID, RESOURCE_ID), 60_000);

    env.gateway.loop.handlePortalMessage(init(RELAYS, { authorizations: [{ client_id: CLIENT_ID, resource_id: RESOURCE_ID, expires_at: WALL_BASE_S - 10 }] }));
    env.net.runUntil(2_000);
    assert.equal(state.resourceExpiry(CLIENT_ID, RESOURCE_ID), undefined, 'an expiry in the past removes the resource');
  });

  test('access_authorization_expiry_updated is accepted and changes nothing', () => {
    const state = new GatewayState();
    const env = setUp({ state });
    env.gateway.loop.handlePortalMessage(init(RELAYS));
    env.gateway.loop.handlePortalMessage(createAuthorization());
    const sent = env.gateway.portalSent.length;
    env.gateway.loop.handlePortalMessage(v2('access_authorization_expiry_updated', { client_id: CLIENT_ID, resource_id: RESOURCE_ID, expires_at: WALL_BASE_S + 1 }));
    assert.equal(state.resourceExpiry(CLIENT_ID, RESOURCE_ID), 3_600_000);
    assert.equal(env.gateway.portalSent.length, sent);
  });

  test('every join advertises the capabilities (iceless from the config, false by default); the v1 dialect does not', () => {
    const env = setUp();
    env.gateway.loop.portalJoined('v2');
    env.gateway.loop.portalJoined('v2');
    env.gateway.loop.portalJoined('v1');
    assert.deepEqual(env.gateway.portalSent, [
      { event: 'set_snownet_capabilities', payload: { iceless: false } },
      { event: 'set_snownet_capabilities', payload: { iceless: false } },
    ]);
    const iceless = setUp({ iceless: true });
    iceless.gateway.loop.portalJoined('v2');
    assert.deepEqual(iceless.gateway.portalSent, [{ event: 'set_snownet_capabilities', payload: { iceless: true } }]);
  });

  test('candidates produced while the portal is down are held per client and flushed after the next join', () => {
    const env = setUp();
    env.gateway.loop.handlePortalMessage(init(RELAYS));
    env.net.runUntil(500);
    env.gateway.loop.portalDisconnected();
    env.gateway.loop.handlePortalMessage(createAuthorization());
    env.net.runUntil(env.net.now + 2_000);

    assert.equal(events(env.gateway).filter((e) => e.startsWith('broadcast_')).length, 0, 'nothing reaches the portal while it is down');
    const held = env.gateway.loop.heldCandidateCount;
    assert.ok(held >= 2, `host and relay candidates held (${held})`);

    env.gateway.portalSent.length = 0;
    env.gateway.loop.portalJoined('v2');
    const sent = env.gateway.portalSent;
    assert.equal(sent[0]?.event, 'set_snownet_capabilities');
    const broadcasts = sent.filter((m) => m.event === 'broadcast_ice_candidates');
    assert.equal(broadcasts.length, 1, 'one message for the client');
    assert.deepEqual(broadcasts[0]!.payload['client_ids'], [CLIENT_ID]);
    assert.equal((broadcasts[0]!.payload['candidates'] as string[]).length, held);
    assert.equal(env.gateway.loop.heldCandidateCount, 0);

    env.gateway.portalSent.length = 0;
    env.gateway.loop.portalJoined('v2');
    assert.deepEqual(events(env.gateway), ['set_snownet_capabilities'], 'a second join flushes nothing');
  });

  test('a candidate added and invalidated while the portal is down is never announced; an earlier one is invalidated after the join', () => {
    const env = setUp();
    env.gateway.loop.handlePortalMessage(init(RELAYS));
    env.net.runUntil(500);
    env.gateway.loop.handlePortalMessage(createAuthorization());
    env.net.runUntil(env.net.now + 2_000);
    const announced = env.gateway.portalSent.filter((m) => m.event === 'broadcast_ice_candidates').flatMap((m) => m.payload['candidates'] as string[]);
    assert.ok(announced.length > 0);

    env.gateway.loop.portalDisconnected();
    // Losing the relay invalidates its candidates, which the client already learned.
    env.gateway.loop.handlePortalMessage(v2('relays_presence', { disconnected_ids: [RELAYS[0]!.id], connected: [] }));
    env.net.runUntil(env.net.now + 1_000);
    env.gateway.portalSent.length = 0;
    env.gateway.loop.portalJoined('v2');
    const invalidated = env.gateway.portalSent.filter((m) => m.event === 'broadcast_invalidated_ice_candidates');
    assert.equal(invalidated.length, 1);
    for (const candidate of invalidated[0]!.payload['candidates'] as string[]) assert.ok(announced.includes(candidate), candidate);
  });
});
