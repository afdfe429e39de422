// The development portal playing today's portal (era `head`, the default) on both of its paths, checked against
// the frames of ../shared/fixtures/portal-1.6 (spec gateway-1.6 §1.2-§1.4, §2): the dialect follows the path,
// the token comes from X-Authorization or the query, the version gate follows the User-Agent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { seededRandom } from '../../src/util/random.ts';
import { startDevPortal } from '../../tools/dev-portal/server.ts';
import type { DevPortal, DevPortalOptions, DevPortalRoute } from '../../tools/dev-portal/server.ts';
import { gatewayServesClient, userAgentVersion } from '../../tools/dev-portal/versions.ts';
import { fixturePath } from '../support/env.ts';

const CLIENT_ID = '3abd725a-733b-4801-ac16-72f26cd98a24';
const CLIENT_KEY = 'fiAjSBWDgQfD1CFJkTwOf4zg+1QhH0eTT+oLaVIMpH8=';
const GATEWAY_KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const TOKEN = 'good-token';
const RELAY_ID = '0a133356-7a9e-4b9a-b413-0d95a5720fd8';
const NOW_MS = 1_760_000_000_000;
const UA_16 = 'Debian/12 gateway/1.6.0 (x86_64; 6.1.0)';
const UA_1413 = 'Ubuntu/22.04 connlib/1.4.13 (x86_64; 6.1.0)';
const RESOURCE = { id: 'c7793628-8579-465b-83e3-1a5d4af4db3b', type: 'cidr', address: '172.20.0.0/16', name: 'MyCorp Network', filters: [] };

/** Claims 1.6.0 requires in an ingest token (spec gateway-1.6 §2.2.4). */
const REQUIRED_CLAIMS = [
  'account_id', 'iat', 'exp', 'uploads_enabled', 'role', 'initiator_device_id', 'responder_device_id', 'policy_authorization_id',
  'policy_id', 'resource_id', 'resource_name', 'initiator_actor_id', 'initiator_actor_name', 'authorized_at', 'authorization_expires_at',
];

interface Frame {
  topic: string;
  event: string;
  payload: unknown;
  ref: number | string | null;
}

type Json = Record<string, unknown>;

function fixture(name: string): Json {
  return JSON.parse(readFileSync(fixturePath('portal-1.6', name), 'utf8')) as Json;
}

/** A frame the gateway sends, from a fixture, with our own ref. */
function egressFixture(name: string, ref: number): Frame {
  const file = fixture(name);
  const frame = (file['frame_on_wire_constructed'] ?? file['frame'] ?? file['frame_for_gateway']) as Frame;
  return { ...frame, ref };
}

function options(overrides: Partial<DevPortalOptions> = {}): DevPortalOptions {
  return {
    tokens: [TOKEN],
    accountSlug: 'mycorp',
    relays: [{ id: RELAY_ID, addresses: ['127.0.0.1:3478'], secret: 'relay-secret' }],
    flowTimeoutMs: 3000,
    random: seededRandom(11),
    now: () => NOW_MS,
    ...overrides,
  };
}

let externalIds = 0;

interface ConnectOptions {
  path?: 'v1' | 'v2';
  header?: string | undefined;
  query?: Record<string, string>;
  userAgent?: string;
  externalId?: string;
}

function target(portal: DevPortal, connect: ConnectOptions): { url: string; headers: Record<string, string> } {
  const externalId = connect.externalId ?? `gw-${++externalIds}`;
  const params = new URLSearchParams({ external_id: externalId, name: 'gw', public_key: GATEWAY_KEY, ...connect.query });
  const path = connect.path === 'v1' ? '/gateway/websocket' : '/gateway/v2/websocket';
  const headers: Record<string, string> = { 'User-Agent': connect.userAgent ?? UA_16 };
  const header = 'header' in connect ? connect.header : `Bearer ${TOKEN}`;
  if (header !== undefined) headers['X-Authorization'] = header;
  return { url: `${portal.apiUrl}${path}?${params.toString()}`, headers };
}

function upgradeStatus(portal: DevPortal, connect: ConnectOptions): Promise<number> {
  const { url, headers } = target(portal, connect);
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.close();
    });
    ws.on('error', () => {});
  });
}

class Gateway {
  private readonly frames: Frame[] = [];
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;
  private ref = 0;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(String(data)) as Frame);
      this.wake?.();
    });
    this.closed = new Promise((resolve) => ws.on('close', () => resolve()));
  }

  static async joined(portal: DevPortal, connect: ConnectOptions = {}): Promise<{ gateway: Gateway; init: Json }> {
    const { url, headers } = target(portal, connect);
    const ws = new WebSocket(url, { headers });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const gateway = new Gateway(ws);
    const init = await gateway.join();
    return { gateway, init };
  }

  async join(): Promise<Json> {
    this.send({ topic: 'gateway', event: 'phx_join', payload: null, ref: this.nextRef() });
    return (await this.next((f) => f.event === 'init')).payload as Json;
  }

  nextRef(): number {
    return ++this.ref;
  }

  send(frame: Frame): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends `event` on `gateway` and returns the portal's reply, or undefined when none came within 300 ms. */
  async request(event: string, payload: unknown): Promise<Frame | undefined> {
    const ref = this.nextRef();
    this.send({ topic: 'gateway', event, payload, ref });
    return this.next((f) => f.event === 'phx_reply' && f.ref === ref, 300).catch(() => undefined);
  }

  async next(predicate: (frame: Frame) => boolean, timeoutMs = 3000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
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

async function api(portal: DevPortal, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${portal.url}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

function claimsOf(token: string): Json {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Json;
}

describe('dev portal (today): connecting', () => {
  let portal: DevPortal;
  before(async () => {
    portal = await startDevPortal(options());
  });
  after(async () => {
    await portal.close();
  });

  test('v2 takes the token from X-Authorization: Bearer, with no token in the query', async () => {
    assert.equal(await upgradeStatus(portal, {}), 101);
  });

  test('the header wins over the query, and the query is the fallback', async () => {
    assert.equal(await upgradeStatus(portal, { query: { token: 'wrong' } }), 101, 'good header, bad query');
    assert.equal(await upgradeStatus(portal, { header: 'Bearer wrong', query: { token: TOKEN } }), 401, 'bad header, good query');
    assert.equal(await upgradeStatus(portal, { header: undefined, query: { token: TOKEN } }), 101, 'query only');
    assert.equal(await upgradeStatus(portal, { header: `Basic ${TOKEN}`, query: { token: TOKEN } }), 101, 'a header without Bearer is not a token');
    assert.equal(await upgradeStatus(portal, { header: undefined }), 401, 'no token at all');
  });

  test('v1 is served too, with either token location', async () => {
    assert.equal(await upgradeStatus(portal, { path: 'v1', header: undefined, query: { token: TOKEN } }), 101);
    assert.equal(await upgradeStatus(portal, { path: 'v1' }), 101);
  });

  test('bad connection parameters get 400; an unknown path 404', async () => {
    assert.equal(await upgradeStatus(portal, { query: { public_key: 'abc' } }), 400);
    assert.equal(await upgradeStatus(portal, { query: { name: '' } }), 400);
    assert.equal(await upgradeStatus(portal, { query: { external_id: '' } }), 400);
    const { url, headers } = target(portal, {});
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(url.replace('/gateway/v2/websocket', '/gateway/v3/websocket'), { headers });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => {});
    });
    assert.equal(status, 404);
  });

  test('a User-Agent without a version is let through (the portal records no version)', async () => {
    assert.equal(await upgradeStatus(portal, { userAgent: 'curl/8.0' }), 101);
  });

  test('a second socket for a gateway that is joined gets 409 until the first one is gone', async () => {
    const { gateway } = await Gateway.joined(portal, { externalId: 'twice' });
    assert.equal(await upgradeStatus(portal, { externalId: 'twice' }), 409);
    await gateway.close();
    assert.equal(await upgradeStatus(portal, { externalId: 'twice' }), 101);
  });
});

describe('dev portal (today): messages on both paths', () => {
  let portal: DevPortal;
  before(async () => {
    portal = await startDevPortal(options());
    await api(portal, 'POST', '/admin/resources', RESOURCE);
  });
  after(async () => {
    await portal.close();
  });

  test('init has the key set of the portal fixture, flow_logs pointing at this portal, and authorizations', async () => {
    const { gateway, init } = await Gateway.joined(portal);
    try {
      const expected = (fixture('init_portal_head.json')['frame'] as Frame).payload as Json;
      assert.deepEqual(Object.keys(init), Object.keys(expected), 'same keys in the same order');
      assert.deepEqual(init['flow_logs'], { api_url: portal.url, upload_interval_secs: 60, upload_batch_size: 1000 });
      assert.deepEqual(init['authorizations'], []);
      assert.equal(init['account_slug'], 'mycorp');
      assert.deepEqual(Object.keys(init['interface'] as Json), ['ipv4', 'ipv6']);
      assert.deepEqual(init['config'], { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true });
    } finally {
      await gateway.close();
    }
  });

  for (const path of ['v2', 'v1'] as const) {
    const push = path === 'v2' ? 'create_authorization' : 'authorize_flow';
    const ack = path === 'v2' ? 'authorization_created' : 'flow_authorized';
    const other = path === 'v2' ? 'flow_authorized' : 'authorization_created';

    test(`${path}: ${push} has the fixture's fields and a responder ingest token; ${ack} completes it, ${other} is unknown`, async () => {
      const { gateway } = await Gateway.joined(portal, { path });
      try {
        const pending = api(portal, 'POST', '/admin/authorizations', { client_id: CLIENT_ID, resource_id: RESOURCE.id, public_key: CLIENT_KEY, expires_at: 1_760_003_600 });
        const frame = await gateway.next((f) => f.event === push);
        const payload = frame.payload as Json;
        const expected = (fixture('create_authorization.json')['frame'] as Frame).payload as Json;

        const wrong = await gateway.request(other, { ref: payload['ref'] });
        const answer = egressFixture('authorization_created.json', 0);
        const reply = await gateway.request(ack, { ...(answer.payload as Json), ref: payload['ref'] });
        const result = await pending;

        // The fixture carries two legacy extras (actor, flow_id) today's portal no longer sends; it adds subject and use_iceless.
        const fixtureKeys = Object.keys(expected).filter((k) => k !== 'actor' && k !== 'flow_id');
        assert.deepEqual(Object.keys(payload).sort(), [...fixtureKeys, 'subject', 'use_iceless'].sort());
        for (const key of Object.keys(expected['client'] as Json)) assert.ok(key in (payload['client'] as Json), `client.${key}`);
        assert.equal(payload['expires_at'], 1_760_003_600);
        assert.equal(payload['use_iceless'], false);
        assert.deepEqual(payload['resource'], RESOURCE);
        const token = payload['flow_logs_ingest_token'] as string;
        const claims = claimsOf(token);
        for (const claim of REQUIRED_CLAIMS) assert.ok(claim in claims, `claim ${claim}`);
        assert.equal(claims['role'], 'responder');
        assert.equal(claims['uploads_enabled'], true);
        assert.equal(claims['exp'], 1_760_003_600 + 2_592_000);
        assert.equal(claims['authorization_expires_at'], '2025-10-09T09:53:20.000000Z');
        assert.equal(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8'))['alg'], 'HS256');
        assert.deepEqual(portal.verifyIngestToken(token), { ok: true, claims });
        assert.equal(portal.verifyIngestToken(`${token.slice(0, -2)}xx`).ok, false, 'a changed signature does not verify');

        assert.deepEqual(wrong?.payload, { status: 'error', response: { reason: 'unknown_message' } });
        assert.deepEqual(reply?.payload, { status: 'ok', response: {} });
        assert.equal(result.status, 200);
        assert.equal(claimsOf(result.body['flow_logs_ingest_token'] as string)['role'], 'initiator');
        assert.equal(result.body['use_iceless'], false);
      } finally {
        await gateway.close();
      }
    });

    test(`${path}: no_relays is answered by relays_presence with no disconnected relay; the admin state shows the path`, async () => {
      const externalId = `no-relays-${path}`;
      const { gateway } = await Gateway.joined(portal, { path, externalId });
      try {
        const state = await api(portal, 'GET', '/admin/state');
        const record = (state.body['gateways'] as Json[]).find((g) => g['externalId'] === externalId);
        assert.equal(record?.['dialect'], path);

        const frame = egressFixture('no_relays.json', gateway.nextRef());
        gateway.send(frame);
        const presence = await gateway.next((f) => f.event === 'relays_presence');

        const payload = presence.payload as { disconnected_ids: string[]; connected: Json[] };
        assert.deepEqual(payload.disconnected_ids, []);
        assert.deepEqual(payload.connected.map((r) => r['id']), [RELAY_ID]);
        await assert.rejects(gateway.next((f) => f.event === 'phx_reply' && f.ref === frame.ref, 200), 'no reply to no_relays');
      } finally {
        await gateway.close();
      }
    });
  }

  test('use_iceless needs the gateway capable (set_snownet_capabilities, reset by a rejoin) and the client asking', async () => {
    const { gateway } = await Gateway.joined(portal, { externalId: 'iceless-gw' });
    const clientId = '2b1524e6-239e-4570-bc73-70a188e12101';
    await api(portal, 'POST', '/admin/policies', { resource_id: RESOURCE.id, client_ids: [clientId] });
    const request = async (iceless: boolean): Promise<boolean> => {
      void api(portal, 'POST', `/clients/${clientId}/flows?wait=0`, { resource_id: RESOURCE.id, public_key: CLIENT_KEY, ...(iceless ? { iceless: true } : {}) });
      return ((await gateway.next((f) => f.event === 'create_authorization')).payload as Json)['use_iceless'] as boolean;
    };
    try {
      const before = await request(true);
      const capabilities = egressFixture('set_snownet_capabilities.json', gateway.nextRef());
      gateway.send(capabilities);
      const both = await request(true);
      const clientNot = await request(false);
      gateway.send({ ...capabilities, payload: { iceless: false }, ref: gateway.nextRef() });
      const withdrawn = await request(true);
      gateway.send({ ...capabilities, ref: gateway.nextRef() });
      await gateway.join();
      const afterRejoin = await request(true);

      assert.deepEqual([before, both, clientNot, withdrawn, afterRejoin], [false, true, false, false, false]);
      await assert.rejects(gateway.next((f) => f.event === 'phx_reply' && f.ref === capabilities.ref, 200), 'no reply to set_snownet_capabilities');
    } finally {
      await gateway.close();
    }
  });

  test('a rejoin lists the authorizations of this gateway with their expiry, one per (client, resource), expired ones left out', async () => {
    const { gateway } = await Gateway.joined(portal, { externalId: 'rejoin-gw' });
    const other = 'e0a1b2c3-d4e5-4f60-8a1b-2c3d4e5f6a7b';
    try {
      for (const [client, expiresAt] of [[CLIENT_ID, 1_760_000_500], [CLIENT_ID, 1_760_000_900], [other, 1_759_999_000]] as const) {
        void api(portal, 'POST', '/admin/authorizations?wait=0', { client_id: client, resource_id: RESOURCE.id, public_key: CLIENT_KEY, expires_at: expiresAt });
        await gateway.next((f) => f.event === 'create_authorization');
      }
      const init = await gateway.join();

      assert.deepEqual(init['authorizations'], [{ client_id: CLIENT_ID, resource_id: RESOURCE.id, expires_at: 1_760_000_900 }]);
      await api(portal, 'POST', '/admin/revoke', { client_id: CLIENT_ID, resource_id: RESOURCE.id });
      const reject = await gateway.next((f) => f.event === 'reject_access');
      assert.deepEqual(reject.payload, (fixture('reject_access.json')['frame'] as Frame).payload, 'only the pair, as the fixture');
    } finally {
      await gateway.close();
    }
  });

  test('a flow requested without expiry gets one (7 days by default)', async () => {
    const { gateway } = await Gateway.joined(portal, { externalId: 'expiry-gw' });
    try {
      void api(portal, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: RESOURCE.id, public_key: CLIENT_KEY });
      const payload = (await gateway.next((f) => f.event === 'create_authorization')).payload as Json;

      assert.equal(payload['expires_at'], NOW_MS / 1000 + 7 * 24 * 3600);
    } finally {
      await gateway.close();
    }
  });

  test('broadcast_ice_candidates from the fixture reaches the client named in it', async () => {
    const { gateway } = await Gateway.joined(portal);
    try {
      const frame = egressFixture('broadcast_ice_candidates.json', gateway.nextRef());
      gateway.send(frame);
      const clientId = ((frame.payload as Json)['client_ids'] as string[])[0]!;
      const polled = await api(portal, 'GET', `/clients/${clientId}/candidates?after=0&wait_ms=2000`);

      assert.deepEqual((polled.body['events'] as Json[]).map((e) => e['candidates']), [(frame.payload as Json)['candidates']]);
    } finally {
      await gateway.close();
    }
  });
});

describe('dev portal (today): the version gate', () => {
  test('the User-Agent names the version; the window is X.(Y-1).0 <= gateway < X.(Y+2).0', () => {
    assert.equal(userAgentVersion(UA_16), '1.6.0');
    assert.equal(userAgentVersion(UA_1413), '1.4.13');
    assert.equal(userAgentVersion('curl/8.0'), undefined);
    assert.equal(gatewayServesClient('1.6.0', '1.6.2'), true);
    assert.equal(gatewayServesClient('1.6.0', '1.5.11'), true);
    assert.equal(gatewayServesClient('1.6.0', '1.7.0'), true);
    assert.equal(gatewayServesClient('1.6.0', '1.4.9'), false);
    assert.equal(gatewayServesClient('1.6.0', '1.8.0'), false);
    assert.equal(gatewayServesClient('1.4.13', '1.5.3'), true);
    assert.equal(gatewayServesClient('1.4.13', '1.6.0'), false, 'a 1.4 gateway is too old for a 1.6 client');
    assert.equal(gatewayServesClient(undefined, '1.6.0'), false, 'a gateway without a version serves no versioned client');
    assert.equal(gatewayServesClient(undefined, undefined), true, 'a client without a version is served by all');
    assert.equal(gatewayServesClient('1.6.0', 'garbage'), false);
    assert.equal(gatewayServesClient('1.2.9', '1.3.0', 'internet'), false, 'Internet resources need 1.3.0');
  });

  test('a gateway too old for the client gets no flows; among those that fit the greatest version wins', async () => {
    const portal = await startDevPortal(options());
    const clientId = '7f3e2d1c-0b9a-4876-a543-210fedcba987';
    const old = await Gateway.joined(portal, { userAgent: UA_1413, path: 'v1' });
    try {
      await api(portal, 'POST', '/admin/resources', RESOURCE);
      await api(portal, 'POST', '/admin/policies', { resource_id: RESOURCE.id });
      const flow = (version?: string): Promise<{ status: number; body: Json }> =>
        api(portal, 'POST', `/clients/${clientId}/flows?wait=0`, { resource_id: RESOURCE.id, public_key: CLIENT_KEY, ...(version === undefined ? {} : { client_version: version }) });

      const mismatch = await flow('1.6.0');
      const served = await flow('1.5.3');
      const fresh = await Gateway.joined(portal, { userAgent: UA_16 });
      const newest = await flow('1.5.3');
      const unversioned = await flow();
      await fresh.gateway.close();

      assert.equal(mismatch.status, 422);
      assert.equal(mismatch.body['reason'], 'version_mismatch');
      assert.equal(served.status, 202);
      const oldId = served.body['gateway_id'];
      assert.notEqual(newest.body['gateway_id'], oldId, 'the 1.6.0 gateway is preferred');
      assert.equal(unversioned.status, 202);
      assert.equal((await old.gateway.next((f) => f.event === 'authorize_flow')).event, 'authorize_flow');
    } finally {
      await old.gateway.close();
      await portal.close();
    }
  });
});

describe('dev portal (legacy era): a portal from before the v2 path', () => {
  let portal: DevPortal;
  before(async () => {
    portal = await startDevPortal(options({ era: 'legacy' }));
  });
  after(async () => {
    await portal.close();
  });

  test('404 on /gateway/v2/websocket, so a gateway can fall back to v1', async () => {
    assert.equal(await upgradeStatus(portal, {}), 404);
  });

  test('the token only from the query', async () => {
    assert.equal(await upgradeStatus(portal, { path: 'v1', query: {} }), 401);
    assert.equal(await upgradeStatus(portal, { path: 'v1', header: undefined, query: { token: TOKEN } }), 101);
  });

  test('init without flow_logs; set_snownet_capabilities and no_relays are unknown messages', async () => {
    const { gateway, init } = await Gateway.joined(portal, { path: 'v1', header: undefined, query: { token: TOKEN } });
    try {
      const capabilities = await gateway.request('set_snownet_capabilities', { iceless: true });
      const noRelays = await gateway.request('no_relays', {});

      assert.deepEqual(Object.keys(init).sort(), ['account_slug', 'config', 'interface', 'relays']);
      assert.deepEqual(capabilities?.payload, { status: 'error', response: { reason: 'unknown_message' } });
      assert.deepEqual(noRelays?.payload, { status: 'error', response: { reason: 'unknown_message' } });
    } finally {
      await gateway.close();
    }
  });
});

describe('dev portal: extra HTTP routes', () => {
  test('a route sees requests before the built-in APIs and can check ingest tokens; others pass through', async () => {
    const seen: string[] = [];
    const route: DevPortalRoute = (req, res, url, context) => {
      if (url.pathname !== '/ingestion/flow_logs') return false;
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      const check = context.verifyIngestToken(token);
      seen.push(check.ok ? String(check.claims['role']) : check.error);
      res.writeHead(check.ok ? 202 : 401).end();
      return true;
    };
    const portal = await startDevPortal(options({ routes: [route] }));
    try {
      await api(portal, 'POST', '/admin/resources', RESOURCE);
      const { gateway } = await Gateway.joined(portal);
      void api(portal, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: RESOURCE.id, public_key: CLIENT_KEY });
      const token = ((await gateway.next((f) => f.event === 'create_authorization')).payload as Json)['flow_logs_ingest_token'] as string;
      await gateway.close();

      const good = await fetch(`${portal.url}/ingestion/flow_logs`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{"flow_logs":[]}' });
      const bad = await fetch(`${portal.url}/ingestion/flow_logs`, { method: 'POST', headers: { authorization: 'Bearer x.y.z' }, body: '{}' });
      const state = await api(portal, 'GET', '/admin/state');

      assert.equal(good.status, 202);
      assert.equal(bad.status, 401);
      assert.deepEqual(seen, ['responder', 'malformed']);
      assert.equal(state.status, 200);
    } finally {
      await portal.close();
    }
  });
});

describe('dev portal: restarts', () => {
  test('with a state file, a restarted portal keeps the gateway record and lists the earlier authorizations in init', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dev-portal-state-'));
    const statePath = join(dir, 'state.json');
    try {
      const first = await startDevPortal(options({ statePath }));
      await api(first, 'POST', '/admin/resources', RESOURCE);
      const { gateway, init: before } = await Gateway.joined(first, { externalId: 'kept' });
      void api(first, 'POST', '/admin/authorizations?wait=0', { client_id: CLIENT_ID, resource_id: RESOURCE.id, public_key: CLIENT_KEY, expires_at: 1_760_000_900 });
      const pushed = (await gateway.next((f) => f.event === 'create_authorization')).payload as Json;
      await first.close();
      await gateway.closed;

      const second = await startDevPortal(options({ statePath, random: seededRandom(12) }));
      try {
        const { gateway: again, init: after } = await Gateway.joined(second, { externalId: 'kept' });
        await again.close();

        assert.deepEqual(after['interface'], before['interface'], 'the same tunnel IPs');
        assert.deepEqual(after['authorizations'], [{ client_id: CLIENT_ID, resource_id: RESOURCE.id, expires_at: 1_760_000_900 }]);
        assert.equal(second.verifyIngestToken(pushed['flow_logs_ingest_token'] as string).ok, true, 'the same ingest key');
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("dev portal with the gateway's portal client (both eras)", () => {
  type Event = { kind: string; message?: { kind: string; ref?: string; ingestToken?: unknown }; error?: { code: string } };

  async function run(era: 'head' | 'legacy'): Promise<{ dialect: string; pushed: string; acked: string; granted: number; kinds: string[] }> {
    const { PhoenixChannel, PortalConnection, decodeIngress } = await import('../../src/portal/index.ts');
    const portal = await startDevPortal(options({ era }));
    const events: Event[] = [];
    // The decoder follows the path in use, as the gateway's runtime does.
    let dialect = (): 'v1' | 'v2' => 'v2';
    const channel = new PhoenixChannel({ topic: 'gateway', rng: seededRandom(1), decode: (event, payload) => decodeIngress(event, payload, dialect()) });
    const base = `${portal.apiUrl}/gateway`;
    const query = new URLSearchParams({ external_id: `client-${era}`, name: 'gw', public_key: GATEWAY_KEY });
    const connection = new PortalConnection({
      url: `${base}/v2/websocket?${query.toString()}`,
      v1Url: `${base}/websocket?token=${TOKEN}&${query.toString()}`,
      token: TOKEN,
      userAgent: UA_16,
      resolve: async () => ['127.0.0.1'],
      channel,
      onEvent: (event) => events.push(event as Event),
    });
    dialect = () => connection.dialect;
    const waitFor = async (matches: (e: Event) => boolean): Promise<Event> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const found = events.find(matches);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`no matching event; got ${events.map((e) => e.kind).join(', ')}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    try {
      await api(portal, 'POST', '/admin/resources', RESOURCE);
      connection.start();
      await waitFor((e) => e.kind === 'message' && e.message?.kind === 'init');
      const pending = api(portal, 'POST', '/admin/authorizations', { client_id: CLIENT_ID, resource_id: RESOURCE.id, public_key: CLIENT_KEY });
      const authorization = await waitFor((e) => e.kind === 'message' && e.message?.kind === 'createAuthorization');
      const acked = connection.dialect === 'v2' ? 'authorization_created' : 'flow_authorized';
      connection.send(acked, { ref: authorization.message!.ref });
      const granted = await pending;
      const pushed = portal.received(acked).length === 1 ? authorization.message!.kind : 'no acknowledgement received';
      return { dialect: connection.dialect, pushed, acked, granted: granted.status, kinds: events.filter((e) => e.kind === 'dropped').map((e) => JSON.stringify(e)) };
    } finally {
      connection.stop();
      await portal.close();
    }
  }

  test("today's portal: the client joins on v2 with the header, decodes create_authorization with its ingest token, answers authorization_created", async () => {
    const result = await run('head');

    assert.deepEqual(result, { dialect: 'v2', pushed: 'createAuthorization', acked: 'authorization_created', granted: 200, kinds: [] });
  });

  test('a 1.4.13-era portal: 404 on v2, the client falls back to v1 and answers flow_authorized', async () => {
    const result = await run('legacy');

    // The gateway decodes authorize_flow into the same message as create_authorization.
    assert.deepEqual(result, { dialect: 'v1', pushed: 'createAuthorization', acked: 'flow_authorized', granted: 200, kinds: [] });
  });
});
