import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { seededRandom } from '../../src/util/random.ts';
import { startDevPortal } from '../../tools/dev-portal/server.ts';
import type { DevPortal, DevPortalOptions } from '../../tools/dev-portal/server.ts';
import { base32LowerNoPad, deriveIceCredentials, relayCredentials } from '../../tools/dev-portal/credentials.ts';
import { fixturePath, hasCommand } from '../support/env.ts';

// Spec portal-protocol §2.2 worked example.
const CLIENT_ID = '3abd725a-733b-4801-ac16-72f26cd98a24';
const CLIENT_KEY = 'fiAjSBWDgQfD1CFJkTwOf4zg+1QhH0eTT+oLaVIMpH8=';
const GATEWAY_ID = '8f1c2a3e-5b7d-4c1e-9a0b-1d2e3f4a5b6c';
const GATEWAY_KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const EXTERNAL_ID = 'c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca';
const TOKEN = 'good-token';
const RELAY_SECRET = 'relay-secret';
const RELAY_ID = '0a133356-7a9e-4b9a-b413-0d95a5720fd8';
const NOW_MS = 1_760_000_000_000;
const USER_AGENT = 'Ubuntu/22.04 connlib/1.4.13 (x86_64; 6.1.0)';
const CIDR_RESOURCE = { id: 'c7793628-8579-465b-83e3-1a5d4af4db3b', type: 'cidr', address: '172.20.0.0/16', name: 'MyCorp Network', filters: [] };

describe('credentials', () => {
  test('ICE credentials match the portal worked example', () => {
    const ice = deriveIceCredentials(CLIENT_ID, CLIENT_KEY, GATEWAY_ID, GATEWAY_KEY);

    assert.deepEqual(ice.client, { username: 'sfal', password: '5sz3tqgzftjnr4ok3rpvqi' });
    assert.deepEqual(ice.gateway, { username: 'kwx7', password: '2qs7tzzlb5in4knytmfmia' });
  });

  test('firezone relay credentials match the portal init example', () => {
    const credentials = relayCredentials('firezone', 'example-stamp-secret', GATEWAY_KEY, 1_760_000_000);

    assert.equal(credentials.username, '1760000000:kF8o3vGOqsBa5vErLDRSdEr69ibaE0PVezlbVE4FGbY');
    assert.equal(credentials.password, 'sAIo2fGRotZSX3dwEvP/eyg2k4OG4SvcJTTbyxcONis');
  });

  test('coturn relay password is the REST API HMAC-SHA1 of the username', () => {
    const credentials = relayCredentials('coturn', RELAY_SECRET, GATEWAY_KEY, 1_760_000_000);

    assert.equal(credentials.password, createHmac('sha1', RELAY_SECRET).update(credentials.username).digest('base64'));
  });

  test('base32 is lowercase RFC 4648 without padding', () => {
    assert.equal(base32LowerNoPad(new TextEncoder().encode('foobar')), 'mzxw6ytboi');
  });
});

describe('dev portal (legacy era)', () => {
  let portal: DevPortal;

  before(async () => {
    portal = await startDevPortal(portalOptions());
  });
  after(async () => {
    await portal.close();
  });

  test('a bad token is refused with 401 on the upgrade', async () => {
    const status = await upgradeStatus(gatewayUrl(portal, { token: 'wrong' }), USER_AGENT);

    assert.equal(status, 401);
  });

  test('a missing token is refused with 401', async () => {
    const status = await upgradeStatus(gatewayUrl(portal, { token: '' }), USER_AGENT);

    assert.equal(status, 401);
  });

  test('a malformed public key is refused with 422', async () => {
    const status = await upgradeStatus(gatewayUrl(portal, { public_key: 'abc' }), USER_AGENT);

    assert.equal(status, 422);
  });

  test('join is acknowledged, then init carries interface, config and relay credentials', async () => {
    const gateway = await TestGateway.connect(portal);
    try {
      gateway.send('gateway', 'phx_join', null, 0);

      const reply = await gateway.next((f) => f.event === 'phx_reply');
      const init = await gateway.next((f) => f.event === 'init');

      assert.deepEqual(reply, { topic: 'gateway', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: 0 });
      assert.equal(init.topic, 'gateway');
      assert.equal(init.ref, null);
      const payload = init.payload as InitPayload;
      assert.deepEqual(payload.config, { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true });
      assert.equal(payload.account_slug, 'acme');
      assert.match(payload.interface.ipv4, /^100\.(6[4-9]|[78]\d|9[0-5])\.\d+\.\d+$/);
      assert.match(payload.interface.ipv6, /^fd00:2021:1111::/);
      assert.deepEqual(payload.relays.map((r) => r.addr), ['127.0.0.1:3478', '[::1]:3478']);
      for (const relay of payload.relays) {
        assert.equal(relay.id, RELAY_ID);
        assert.equal(relay.type, 'turn');
        assert.equal(relay.expires_at, NOW_MS / 1000 + 90 * 24 * 3600);
        assert.match(relay.username, new RegExp(`^${relay.expires_at}:`));
        assert.equal(relay.password, createHmac('sha1', RELAY_SECRET).update(relay.username).digest('base64'));
      }
    } finally {
      await gateway.close();
    }
  });

  test('heartbeats on topic phoenix get an ok reply with the same ref', async () => {
    const gateway = await TestGateway.connect(portal);
    try {
      gateway.send('phoenix', 'heartbeat', {}, 12);

      const reply = await gateway.next((f) => f.event === 'phx_reply');

      assert.deepEqual(reply, { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: 12 });
    } finally {
      await gateway.close();
    }
  });

  test('messages before the join get an unmatched topic error', async () => {
    const gateway = await TestGateway.connect(portal);
    try {
      gateway.send('gateway', 'flow_authorized', { ref: 'x' }, 3);

      const reply = await gateway.next((f) => f.event === 'phx_reply');

      assert.deepEqual(reply.payload, { status: 'error', response: { reason: 'unmatched topic' } });
    } finally {
      await gateway.close();
    }
  });

  test('an authorization pushes authorize_flow with derived ICE credentials and waits for flow_authorized', async () => {
    const gateway = await TestGateway.joined(portal);
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);

      const pending = admin(portal, 'POST', '/admin/authorizations', { client_id: CLIENT_ID, resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY, expires_at: 1_760_003_600 });
      const push = await gateway.next((f) => f.event === 'authorize_flow');
      const flow = push.payload as AuthorizeFlowPayload;
      gateway.send('gateway', 'flow_authorized', { ref: flow.ref }, 7);
      const ack = await gateway.next((f) => f.event === 'phx_reply' && f.ref === 7);
      const result = await pending;

      assert.deepEqual(flow.client_ice_credentials, { username: 'sfal', password: '5sz3tqgzftjnr4ok3rpvqi' });
      assert.deepEqual(flow.gateway_ice_credentials, { username: 'kwx7', password: '2qs7tzzlb5in4knytmfmia' });
      assert.equal(flow.client.id, CLIENT_ID);
      assert.equal(flow.client.public_key, CLIENT_KEY);
      assert.equal(Buffer.from(flow.client.preshared_key, 'base64').length, 32);
      assert.equal(flow.expires_at, 1_760_003_600);
      assert.deepEqual(flow.resource, CIDR_RESOURCE);
      assert.deepEqual(Object.keys(flow).sort(), Object.keys(fixturePayload('authorize_flow.json')).sort());
      assert.deepEqual(Object.keys(flow.client).sort(), Object.keys(fixturePayload('authorize_flow.json')['client'] as object).sort());
      assert.deepEqual(ack.payload, { status: 'ok', response: {} });
      assert.equal(result.status, 200);
      assert.equal((result.body as { authorized: boolean }).authorized, true);
      assert.equal((result.body as { preshared_key: string }).preshared_key, flow.client.preshared_key);
      assert.equal((result.body as { gateway_public_key: string }).gateway_public_key, GATEWAY_KEY);
      assert.ok(portal.received('flow_authorized').some((r) => (r.frame.payload as { ref: string }).ref === flow.ref));
    } finally {
      await gateway.close();
    }
  });

  test('the preshared key is derived per (client, gateway) pair: the same keys get the same one, a new client key another', async () => {
    const gateway = await TestGateway.joined(portal);
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);

      void admin(portal, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      const first = (await gateway.next((f) => f.event === 'authorize_flow')).payload as AuthorizeFlowPayload;
      void admin(portal, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: CIDR_RESOURCE.id });
      const second = (await gateway.next((f) => f.event === 'authorize_flow')).payload as AuthorizeFlowPayload;
      const newKey = Buffer.alloc(32, 7).toString('base64');
      void admin(portal, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: CIDR_RESOURCE.id, public_key: newKey });
      const third = (await gateway.next((f) => f.event === 'authorize_flow')).payload as AuthorizeFlowPayload;

      assert.equal(Buffer.from(first.client.preshared_key, 'base64').length, 32);
      assert.equal(first.client.preshared_key, second.client.preshared_key, 'the gateway reuses the connection');
      assert.notEqual(first.ref, second.ref);
      assert.deepEqual(first.gateway_ice_credentials, second.gateway_ice_credentials);
      assert.notEqual(third.client.preshared_key, first.client.preshared_key);
    } finally {
      await gateway.close();
    }
  });

  test('a flow_authorized with an unknown ref gets an invalid_ref error', async () => {
    const gateway = await TestGateway.joined(portal);
    try {
      gateway.send('gateway', 'flow_authorized', { ref: 'SFMyNTY.forged' }, 9);

      const reply = await gateway.next((f) => f.event === 'phx_reply' && f.ref === 9);

      assert.deepEqual(reply.payload, { status: 'error', response: { reason: 'invalid_ref' } });
    } finally {
      await gateway.close();
    }
  });

  test('revoking an authorization pushes reject_access for that flow', async () => {
    const gateway = await TestGateway.joined(portal);
    try {
      const clientId = 'e0a1b2c3-d4e5-4f60-8a1b-2c3d4e5f6a7b';
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);
      void admin(portal, 'POST', '/admin/authorizations?wait=0', { client_id: clientId, resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      const flow = (await gateway.next((f) => f.event === 'authorize_flow')).payload as AuthorizeFlowPayload;

      const result = await admin(portal, 'POST', '/admin/revoke', { client_id: clientId, resource_id: CIDR_RESOURCE.id });
      const reject = await gateway.next((f) => f.event === 'reject_access');

      assert.equal((result.body as { revoked: number }).revoked, 1);
      assert.deepEqual(reject.payload, { flow_id: flow.flow_id, client_id: clientId, resource_id: CIDR_RESOURCE.id });
    } finally {
      await gateway.close();
    }
  });

  test('updating an authorized resource pushes resource_updated with the new filters', async () => {
    const gateway = await TestGateway.joined(portal);
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);
      void admin(portal, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      await gateway.next((f) => f.event === 'authorize_flow');

      await admin(portal, 'PUT', `/admin/resources/${CIDR_RESOURCE.id}`, { ...CIDR_RESOURCE, filters: [{ protocol: 'tcp', port_range_start: 443, port_range_end: 443 }, { protocol: 'icmp' }] });
      const update = await gateway.next((f) => f.event === 'resource_updated');

      assert.deepEqual(update.payload, { ...CIDR_RESOURCE, filters: [{ protocol: 'tcp', port_range_start: 443, port_range_end: 443 }, { protocol: 'icmp' }] });
    } finally {
      await gateway.close();
    }
  });

  test('a client flow needs a policy, then candidates flow both ways', async () => {
    const gateway = await TestGateway.joined(portal);
    const clientId = '2b1524e6-239e-4570-bc73-70a188e12101';
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);
      const refused = await admin(portal, 'POST', `/clients/${clientId}/flows`, { resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      await admin(portal, 'POST', '/admin/policies', { resource_id: CIDR_RESOURCE.id, client_ids: [clientId] });
      const pending = admin(portal, 'POST', `/clients/${clientId}/flows`, { resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      const flow = (await gateway.next((f) => f.event === 'authorize_flow')).payload as AuthorizeFlowPayload;
      gateway.send('gateway', 'flow_authorized', { ref: flow.ref }, 20);
      const granted = await pending;

      const candidate = 'candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host';
      gateway.send('gateway', 'broadcast_ice_candidates', { client_ids: [clientId], candidates: [candidate] }, 21);
      const polled = await admin(portal, 'GET', `/clients/${clientId}/candidates?after=0&wait_ms=2000`);
      await admin(portal, 'POST', `/clients/${clientId}/candidates`, { candidates: ['candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host'] });
      const forwarded = await gateway.next((f) => f.event === 'ice_candidates');

      assert.equal(refused.status, 403);
      assert.equal(granted.status, 200);
      assert.deepEqual((polled.body as { events: { candidates: string[] }[] }).events.map((e) => e.candidates), [[candidate]]);
      assert.deepEqual(forwarded.payload, { client_id: clientId, candidates: ['candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host'] });
    } finally {
      await gateway.close();
    }
  });

  test('disconnect pushes token_expired and closes the socket', async () => {
    const gateway = await TestGateway.joined(portal);

    await admin(portal, 'POST', '/admin/gateways/disconnect', { reason: 'token_expired' });
    const push = await gateway.next((f) => f.event === 'disconnect');
    await gateway.closed;

    assert.deepEqual(push, { topic: 'gateway', event: 'disconnect', payload: { reason: 'token_expired' }, ref: null });
  });

  test('revoking the token closes the socket and the next upgrade gets 401', async () => {
    await admin(portal, 'POST', '/admin/tokens', { token: 'short-lived' });
    const ws = new WebSocket(gatewayUrl(portal, { token: 'short-lived' }), { headers: { 'User-Agent': USER_AGENT } });
    await new Promise((resolve) => ws.once('open', resolve));
    const closed = new Promise((resolve) => ws.once('close', resolve));

    await admin(portal, 'POST', '/admin/tokens/revoke', { token: 'short-lived' });
    await closed;
    const status = await upgradeStatus(gatewayUrl(portal, { token: 'short-lived' }), USER_AGENT);

    assert.equal(status, 401);
  });

  test('deleting the policy behind a client flow pushes reject_access', async () => {
    const gateway = await TestGateway.joined(portal);
    const clientId = '5c0e4a1b-7d2f-4e3a-9b8c-1d2e3f4a5b6c';
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);
      const policy = (await admin(portal, 'POST', '/admin/policies', { resource_id: CIDR_RESOURCE.id, client_ids: [clientId] })).body as { id: string };
      void admin(portal, 'POST', `/clients/${clientId}/flows?wait=0`, { resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      const flow = (await gateway.next((f) => f.event === 'authorize_flow')).payload as AuthorizeFlowPayload;

      await admin(portal, 'DELETE', `/admin/policies/${policy.id}`);
      const reject = await gateway.next((f) => f.event === 'reject_access');

      assert.deepEqual(reject.payload, { flow_id: flow.flow_id, client_id: clientId, resource_id: CIDR_RESOURCE.id });
    } finally {
      await gateway.close();
    }
  });

  test("every push decodes with the gateway's own portal message decoder", async () => {
    const { decodeIngress } = await import('../../src/portal/messages.ts');
    const gateway = await TestGateway.joined(portal);
    const clientId = '7f3e2d1c-0b9a-4876-a543-210fedcba987';
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);
      await admin(portal, 'POST', '/admin/resources', { id: '57f9ebbb-21d5-4f9f-bf86-b25122fc7a43', type: 'dns', address: '?.httpbin', filters: [{ protocol: 'icmp' }, { protocol: 'tcp' }] });
      await admin(portal, 'POST', '/admin/resources', { id: '1106047c-cd5d-4151-b679-96b93da7383b', type: 'internet' });
      for (const resourceId of [CIDR_RESOURCE.id, '57f9ebbb-21d5-4f9f-bf86-b25122fc7a43', '1106047c-cd5d-4151-b679-96b93da7383b']) {
        void admin(portal, 'POST', '/admin/authorizations?wait=0', { client_id: clientId, resource_id: resourceId, public_key: CLIENT_KEY, expires_at: null });
        await gateway.next((f) => f.event === 'authorize_flow');
      }
      await admin(portal, 'PUT', `/admin/resources/${CIDR_RESOURCE.id}`, { ...CIDR_RESOURCE, filters: [{ protocol: 'udp', port_range_start: 53 }] });
      await gateway.next((f) => f.event === 'resource_updated');
      await admin(portal, 'POST', '/admin/relays_presence', { disconnected_ids: ['e95f9517-2152-4677-a16a-fbb2687050a3'] });
      await gateway.next((f) => f.event === 'relays_presence');
      await admin(portal, 'POST', `/clients/${clientId}/candidates`, { candidates: ['candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host'] });
      await gateway.next((f) => f.event === 'ice_candidates');
      await admin(portal, 'POST', `/clients/${clientId}/invalidate_candidates`, { candidates: ['candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host'] });
      await gateway.next((f) => f.event === 'invalidate_ice_candidates');
      await admin(portal, 'POST', '/admin/revoke', { client_id: clientId });
      await gateway.next((f) => f.event === 'reject_access');

      const pushes = gateway.seen.filter((f) => f.event !== 'phx_reply');
      const results = pushes.map((f) => ({ event: f.event, result: decodeIngress(f.event, f.payload) }));

      assert.deepEqual(
        [...new Set(pushes.map((f) => f.event))].sort(),
        ['authorize_flow', 'ice_candidates', 'init', 'invalidate_ice_candidates', 'reject_access', 'relays_presence', 'resource_updated'],
      );
      for (const { event, result } of results) assert.ok(result.ok, `${event}: ${JSON.stringify(result)}`);
    } finally {
      await gateway.close();
    }
  });

  test('legacy request_connection is answered by connection_ready, and both legacy pushes decode', async () => {
    const { decodeIngress } = await import('../../src/portal/messages.ts');
    const gateway = await TestGateway.joined(portal);
    const clientId = '2e5c0210-3ac0-49cd-bfc9-8005046291de';
    const domain = { name: 'download.httpbin', proxy_ips: ['100.96.0.1', 'fd00:2021:1111:8000::'] };
    try {
      await admin(portal, 'POST', '/admin/resources', { id: '619fbe83-bc95-4635-9a08-68da9a944c88', type: 'dns', address: '?.httpbin', filters: [] });
      await admin(portal, 'POST', '/admin/clients', { id: clientId, public_key: CLIENT_KEY });

      const pending = admin(portal, 'POST', '/admin/legacy/request_connection', { client_id: clientId, resource_id: '619fbe83-bc95-4635-9a08-68da9a944c88', domain });
      const request = await gateway.next((f) => f.event === 'request_connection');
      const answer = { ConnectionAccepted: { ice_parameters: { username: 'aBcD', password: 'MMceouYA5jGIPkxbvIiLvD' } } };
      gateway.send('gateway', 'connection_ready', { ref: (request.payload as { ref: string }).ref, gateway_payload: answer }, 30);
      const result = await pending;
      await admin(portal, 'POST', '/admin/legacy/allow_access', { client_id: clientId, resource_id: '619fbe83-bc95-4635-9a08-68da9a944c88', domain });
      const allow = await gateway.next((f) => f.event === 'allow_access');

      const decodedRequest = decodeIngress('request_connection', request.payload);
      const decodedAllow = decodeIngress('allow_access', allow.payload);
      assert.ok(decodedRequest.ok, JSON.stringify(decodedRequest));
      assert.ok(decodedAllow.ok, JSON.stringify(decodedAllow));
      assert.deepEqual((request.payload as { client: { payload: { domain: unknown } } }).client.payload.domain, domain);
      assert.equal(result.status, 200);
      assert.deepEqual((result.body as { gateway_payload: unknown }).gateway_payload, answer);
    } finally {
      await gateway.close();
    }
  });

  test('adding a relay pushes relays_presence with fresh credentials', async () => {
    const gateway = await TestGateway.joined(portal);
    try {
      const relay = { id: 'e95f9517-2152-4677-a16a-fbb2687050a3', addresses: ['127.0.0.2:3478'], secret: 'other-secret' };

      await admin(portal, 'POST', '/admin/relays', relay);
      const presence = await gateway.next((f) => f.event === 'relays_presence');
      await admin(portal, 'DELETE', `/admin/relays/${relay.id}`);
      const removal = await gateway.next((f) => f.event === 'relays_presence');

      const added = presence.payload as { disconnected_ids: string[]; connected: RelayEntry[] };
      assert.deepEqual(added.disconnected_ids, []);
      const entry = added.connected.find((r) => r.id === relay.id)!;
      assert.equal(entry.password, createHmac('sha1', 'other-secret').update(entry.username).digest('base64'));
      assert.deepEqual((removal.payload as { disconnected_ids: string[] }).disconnected_ids, [relay.id]);
    } finally {
      await gateway.close();
    }
  });
});

describe("dev portal with the gateway's portal client", () => {
  test('the gateway client joins, gets init, answers authorize_flow and exits on token_expired', async () => {
    const { PhoenixChannel, PortalConnection, decodeIngress } = await import('../../src/portal/index.ts');
    type Event = { kind: string; message?: { kind: string; ref?: string; relays?: unknown[] }; error?: { code: string } };
    const portal = await startDevPortal(portalOptions());
    const events: Event[] = [];
    let wake: () => void = () => {};
    const channel = new PhoenixChannel({ topic: 'gateway', rng: seededRandom(1), decode: decodeIngress });
    const connection = new PortalConnection({
      url: gatewayUrl(portal, {}),
      userAgent: USER_AGENT,
      token: TOKEN,
      resolve: async () => ['127.0.0.1'],
      channel,
      onEvent: (event) => {
        events.push(event as Event);
        wake();
      },
    });
    const waitFor = async (matches: (e: Event) => boolean): Promise<Event> => {
      const deadline = Date.now() + 3000;
      for (;;) {
        const found = events.find(matches);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`no matching event; got ${events.map((e) => e.kind).join(', ')}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 50);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    };
    try {
      await admin(portal, 'POST', '/admin/resources', CIDR_RESOURCE);
      connection.start();

      const init = await waitFor((e) => e.kind === 'message' && e.message?.kind === 'init');
      const pending = admin(portal, 'POST', '/admin/authorizations', { client_id: CLIENT_ID, resource_id: CIDR_RESOURCE.id, public_key: CLIENT_KEY });
      const authorize = await waitFor((e) => e.kind === 'message' && e.message?.kind === 'createAuthorization');
      connection.send('flow_authorized', { ref: authorize.message!.ref });
      const granted = await pending;
      await admin(portal, 'POST', '/admin/gateways/disconnect', { reason: 'token_expired' });
      const fatal = await waitFor((e) => e.kind === 'fatal');

      assert.equal(init.message!.relays!.length, 2, 'one turn entry per relay address');
      assert.equal(granted.status, 200);
      assert.equal(fatal.error!.code, 'tokenExpired');
    } finally {
      connection.stop();
      await portal.close();
    }
  });
});

describe('dev portal socket limits', () => {
  test('a socket without inbound data is closed after the idle timeout', async () => {
    const portal = await startDevPortal({ ...portalOptions(), idleTimeoutMs: 150 });
    try {
      const gateway = await TestGateway.connect(portal);
      const started = Date.now();

      await gateway.closed;

      assert.ok(Date.now() - started >= 100);
    } finally {
      await portal.close();
    }
  });

  test('an upgrade with a foreign Origin is refused with 403', async () => {
    const portal = await startDevPortal(portalOptions());
    try {
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(gatewayUrl(portal, {}), { headers: { 'User-Agent': USER_AGENT }, origin: 'https://evil.example' });
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('error', () => {});
      });

      assert.equal(status, 403);
    } finally {
      await portal.close();
    }
  });
});

describe('dev portal relay credentials against coturn', () => {
  const skip = hasCommand('turnserver') ? undefined : 'needs coturn (turnserver)';

  test('coturn in use-auth-secret mode accepts a TURN allocation with the init credentials', { skip }, async () => {
    const port = await freeUdpPort();
    const pidFile = `/tmp/dev-portal-test-turnserver-${port}.pid`;
    const turnserver = spawn('turnserver', [
      '-n', '--no-cli', '--no-tls', '--no-dtls', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1',
      `--listening-port=${port}`, '--min-port=49152', '--max-port=65535', '--use-auth-secret',
      `--static-auth-secret=${RELAY_SECRET}`, '--realm=firezone', '--log-file=stdout', '--no-stdout-log',
      `--pidfile=${pidFile}`,
    ], { stdio: 'ignore' });
    const portal = await startDevPortal({ ...portalOptions(), now: Date.now, relays: [{ id: RELAY_ID, addresses: [`127.0.0.1:${port}`], secret: RELAY_SECRET }] });
    const socket = createSocket('udp4');
    try {
      const gateway = await TestGateway.connect(portal);
      gateway.send('gateway', 'phx_join', null, 0);
      const relay = ((await gateway.next((f) => f.event === 'init')).payload as InitPayload).relays[0]!;
      await gateway.close();
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));

      const challenge = await stunExchange(socket, port, allocateRequest([]));
      const realm = stunAttribute(challenge, 0x0014)!;
      const nonce = stunAttribute(challenge, 0x0015)!;
      const key = createHash('md5').update(`${relay.username}:firezone:${relay.password}`).digest();
      const response = await stunExchange(socket, port, allocateRequest([[0x0006, Buffer.from(relay.username)], [0x0014, realm], [0x0015, nonce]], key));

      assert.equal(challenge.readUInt16BE(0), 0x0113, 'the first allocate is challenged');
      assert.equal(response.readUInt16BE(0), 0x0103, `allocate success, got error ${stunAttribute(response, 0x0009)?.subarray(4).toString()}`);
    } finally {
      socket.close();
      await portal.close();
      turnserver.kill('SIGKILL');
      rmSync(pidFile, { force: true });
    }
  });
});

describe('dev portal command line', () => {
  test('prints its URLs, serves the admin API and stops on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'tools/dev-portal/main.ts', '--listen', '127.0.0.1:0', '--token', TOKEN, '--relay', '127.0.0.1:3478,[::1]:3478', '--relay-secret', RELAY_SECRET], {
      cwd: new URL('../../', import.meta.url),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const [line] = (await once(child.stdout, 'data')) as [Buffer];
      const started = JSON.parse(line.toString('utf8')) as { listening: string; api_url: string };

      const state = (await (await fetch(`${started.listening}/admin/state`)).json()) as { relays: { addresses: string[] }[] };
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];

      assert.match(started.api_url, /^ws:\/\/127\.0\.0\.1:\d+$/);
      assert.deepEqual(state.relays.map((r) => r.addresses), [['127.0.0.1:3478', '[::1]:3478']]);
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

interface RelayEntry {
  id: string;
  type: string;
  addr: string;
  username: string;
  password: string;
  expires_at: number;
}

interface InitPayload {
  account_slug: string;
  interface: { ipv4: string; ipv6: string };
  relays: RelayEntry[];
  config: unknown;
}

interface AuthorizeFlowPayload {
  ref: string;
  flow_id: string;
  resource: unknown;
  client: { id: string; public_key: string; preshared_key: string; ipv4: string; ipv6: string };
  client_ice_credentials: unknown;
  gateway_ice_credentials: unknown;
  expires_at: number | null;
}

interface Frame {
  topic: string;
  event: string;
  payload: unknown;
  ref: number | null;
}

/** This file plays the legacy (1.4.13-era) portal; dev-portal-v2.test.ts covers today's on both paths. */
function portalOptions(): DevPortalOptions {
  return {
    era: 'legacy',
    tokens: [TOKEN],
    accountSlug: 'acme',
    relays: [{ id: RELAY_ID, addresses: ['[::1]:3478', '127.0.0.1:3478'], secret: RELAY_SECRET }],
    gatewayIds: { [EXTERNAL_ID]: GATEWAY_ID },
    flowTimeoutMs: 3000,
    random: seededRandom(7),
    now: () => NOW_MS,
  };
}

function gatewayUrl(portal: DevPortal, overrides: Record<string, string>): string {
  const params = new URLSearchParams({ token: TOKEN, external_id: EXTERNAL_ID, name: 'gw 1', public_key: GATEWAY_KEY, ...overrides });
  return `${portal.apiUrl}/gateway/websocket?${params.toString()}`;
}

function upgradeStatus(url: string, userAgent: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { 'User-Agent': userAgent } });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      ws.close();
      reject(new Error('upgrade unexpectedly succeeded'));
    });
    ws.on('error', () => {});
  });
}

async function admin(portal: DevPortal, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${portal.url}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

async function freeUdpPort(): Promise<number> {
  const probe = createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  probe.close();
  return port;
}

/** A STUN Allocate (RFC 5766) asking for UDP; with `key`, MESSAGE-INTEGRITY is appended. */
function allocateRequest(attributes: [number, Buffer][], key?: Buffer): Buffer {
  const parts = [[0x0019, Buffer.from([17, 0, 0, 0])] as [number, Buffer], ...attributes].map(([type, value]) => {
    const header = Buffer.alloc(4);
    header.writeUInt16BE(type, 0);
    header.writeUInt16BE(value.length, 2);
    return Buffer.concat([header, value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
  });
  const header = Buffer.alloc(20);
  header.writeUInt16BE(0x0003, 0);
  header.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(header, 8);
  let message = Buffer.concat([header, ...parts]);
  if (key === undefined) {
    message.writeUInt16BE(message.length - 20, 2);
    return message;
  }
  message.writeUInt16BE(message.length - 20 + 24, 2);
  const integrity = Buffer.alloc(4);
  integrity.writeUInt16BE(0x0008, 0);
  integrity.writeUInt16BE(20, 2);
  message = Buffer.concat([message, integrity, createHmac('sha1', key).update(message).digest()]);
  return message;
}

function stunAttribute(message: Buffer, type: number): Buffer | undefined {
  for (let offset = 20; offset + 4 <= message.length; ) {
    const attrType = message.readUInt16BE(offset);
    const length = message.readUInt16BE(offset + 2);
    if (attrType === type) return message.subarray(offset + 4, offset + 4 + length);
    offset += 4 + length + ((4 - (length % 4)) % 4);
  }
  return undefined;
}

/** Sends `request` to 127.0.0.1:`port` until a response with its transaction id arrives (coturn may still be starting). */
async function stunExchange(socket: Socket, port: number, request: Buffer): Promise<Buffer> {
  const transactionId = request.subarray(8, 20);
  for (let attempt = 0; attempt < 50; attempt++) {
    socket.send(request, port, '127.0.0.1');
    const response = await new Promise<Buffer | undefined>((resolve) => {
      const timer = setTimeout(() => {
        socket.off('message', onMessage);
        resolve(undefined);
      }, 100);
      function onMessage(message: Buffer): void {
        if (!message.subarray(8, 20).equals(transactionId)) return;
        clearTimeout(timer);
        socket.off('message', onMessage);
        resolve(message);
      }
      socket.on('message', onMessage);
    });
    if (response !== undefined) return response;
  }
  throw new Error('no STUN response from coturn');
}

function fixturePayload(name: string): Record<string, unknown> {
  return (JSON.parse(readFileSync(fixturePath('portal', name), 'utf8')) as { payload: Record<string, unknown> }).payload;
}

/** A raw gateway-side WebSocket that queues every frame it receives. */
class TestGateway {
  private readonly frames: Frame[] = [];
  /** Every frame received, in order (not consumed by `next`). */
  readonly seen: Frame[] = [];
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      this.frames.push(frame);
      this.seen.push(frame);
      this.wake?.();
    });
    this.closed = new Promise((resolve) => ws.on('close', () => resolve()));
  }

  static async connect(portal: DevPortal): Promise<TestGateway> {
    const ws = new WebSocket(gatewayUrl(portal, {}), { headers: { 'User-Agent': USER_AGENT } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new TestGateway(ws);
  }

  static async joined(portal: DevPortal): Promise<TestGateway> {
    const gateway = await TestGateway.connect(portal);
    gateway.send('gateway', 'phx_join', null, 0);
    await gateway.next((f) => f.event === 'init');
    return gateway;
  }

  send(topic: string, event: string, payload: unknown, ref: number): void {
    this.ws.send(JSON.stringify({ topic, event, payload, ref }));
  }

  /** Removes and returns the first queued frame matching `predicate`, waiting up to 3 s for it. */
  async next(predicate: (frame: Frame) => boolean): Promise<Frame> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const index = this.frames.findIndex(predicate);
      if (index >= 0) return this.frames.splice(index, 1)[0]!;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no matching frame; received: ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async close(): Promise<void> {
    this.ws.close();
    await this.closed;
  }
}
