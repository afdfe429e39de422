// The 1.6.0 channel messages against ../shared/fixtures/portal-1.6: every ingress fixture decodes on
// the v2 path to what the gateway acts on, every egress fixture is produced byte for byte, and the
// ingest token is parsed and rejected as 1.6.0 does.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fixturePath } from '../support/env.ts';
import { decodeEgress, decodeIngress, encodeEgress, type IngressMessage } from '../../src/portal/messages.ts';
import { decodeBase64UrlNoPad, parseIngestToken } from '../../src/portal/ingest-token.ts';
import { decodeFrame, decodeReply, encodeFrame } from '../../src/portal/phoenix-frame.ts';
import type { ClientId } from '../../src/portal/message-types.ts';

const DIR = 'portal-1.6';

interface Fixture {
  readonly frame?: { topic: string; event: string; payload: unknown; ref: number | null };
  readonly frame_on_wire_constructed?: { topic: string; event: string; payload: unknown; ref: number };
  readonly frame_for_gateway?: { topic: string; event: string; payload: unknown; ref: number };
  readonly decoded_flow_logs_ingest_token_claims?: Record<string, unknown>;
  readonly examples?: Record<string, { topic: string; event: string; payload: unknown; ref: unknown }>;
  readonly reply_frame_constructed?: { topic: string; event: string; payload: unknown; ref: number };
}

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(fixturePath(DIR, name), 'utf8')) as Fixture;
}

function v2(name: string): IngressMessage {
  const frame = fixture(name).frame!;
  const result = decodeIngress(frame.event, frame.payload, 'v2');
  assert.ok(result.ok, `${name}: ${JSON.stringify(!result.ok && result.error)}`);
  return result.message;
}

function payloadOf(name: string): Record<string, unknown> {
  return fixture(name).frame!.payload as Record<string, unknown>;
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

const CLAIMS = fixture('create_authorization.json').decoded_flow_logs_ingest_token_claims!;
const HEADER = { alg: 'HS256', typ: 'JWT' };

function token(claims: Record<string, unknown> = CLAIMS, header: Record<string, unknown> = HEADER, signature = 'c2ln'): string {
  return `${b64url(header)}.${b64url(claims)}.${signature}`;
}

describe('1.6.0 ingress fixtures on the v2 path', () => {
  test('create_authorization: every field, the ingest token parsed into the claims the fixture lists', () => {
    const message = v2('create_authorization.json');
    assert.equal(message.kind, 'createAuthorization');
    if (message.kind !== 'createAuthorization') return;
    assert.equal(message.ackEvent, 'authorization_created');
    assert.equal(message.ref, payloadOf('create_authorization.json').ref);
    assert.deepEqual(message.resource, { kind: 'cidr', id: 'c7793628-8579-465b-83e3-1a5d4af4db3b', address: '172.20.0.0/16', name: 'MyCorp Network', filters: [] });
    assert.equal(message.client.id, '3abd725a-733b-4801-ac16-72f26cd98a24');
    assert.equal(message.client.publicKey.base64, 'fiAjSBWDgQfD1CFJkTwOf4zg+1QhH0eTT+oLaVIMpH8=');
    assert.equal(message.client.presharedKey.base64, 'BzPiNE9qszKczZcZzGsyieLYeJ2EQfkfdibls/l3beM=');
    assert.equal(message.client.ipv4, '100.93.74.51');
    assert.equal(message.client.ipv6, 'fd00:2021:1111::f:853b');
    assert.deepEqual(message.clientIceCredentials, { username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' });
    assert.deepEqual(message.gatewayIceCredentials, { username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' });
    assert.equal(message.expiresAt, 1729813989);
    assert.equal(message.useIceless, false);
    assert.ok(message.ingestToken);
    assert.equal(message.ingestToken.raw, payloadOf('create_authorization.json').flow_logs_ingest_token);
    for (const [claim, value] of Object.entries(CLAIMS)) assert.deepEqual((message.ingestToken.claims as unknown as Record<string, unknown>)[claim], value, claim);
  });

  test('create_authorization: use_iceless is read; absent means false', () => {
    const payload = payloadOf('create_authorization.json');
    const iceless = decodeIngress('create_authorization', { ...payload, use_iceless: true }, 'v2');
    assert.ok(iceless.ok && iceless.message.kind === 'createAuthorization');
    assert.equal(iceless.message.useIceless, true);
    assert.equal(decodeIngress('create_authorization', { ...payload, use_iceless: 'yes' }, 'v2').ok, false);
  });

  test('create_authorization without flow_logs_ingest_token is rejected whole (no answer follows)', () => {
    const { flow_logs_ingest_token: _token, ...without } = payloadOf('create_authorization.json');
    const result = decodeIngress('create_authorization', without, 'v2');
    assert.equal(result.ok ? 'ok' : result.error.code, 'invalidPayload');
  });

  test('create_authorization with a malformed ingest token is rejected whole', () => {
    const payload = payloadOf('create_authorization.json');
    const { policy_id: _policyId, ...missingClaim } = CLAIMS;
    const bad = [
      'not-a-jwt',
      'header.payload.signature',
      token(missingClaim),
      token({ ...CLAIMS, role: 'observer' }),
      token({ ...CLAIMS, iat: -1 }),
      token({ ...CLAIMS, uploads_enabled: 'true' }),
      token(CLAIMS, { alg: 'none' }),
      token(CLAIMS, HEADER, ''),
      `${token()}=`,
      token().replace('.', '..'),
    ];
    for (const raw of bad) {
      const result = decodeIngress('create_authorization', { ...payload, flow_logs_ingest_token: raw }, 'v2');
      assert.equal(result.ok, false, raw.slice(0, 60));
    }
  });

  test('the ingest token: nullable claims may be absent or null, unknown claims are tolerated, the signature is not verified', () => {
    const { resource_address: _a, initiator_actor_email: _b, initiator_client_version: _c, ...minimal } = CLAIMS;
    for (const claims of [minimal, { ...CLAIMS, resource_address: null }, { ...CLAIMS, brand_new_claim: 'tolerated' }]) {
      const parsed = parseIngestToken(token(claims, HEADER, 'AAAA'));
      assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.error));
      assert.equal(parsed.token.claims.policy_authorization_id, CLAIMS.policy_authorization_id);
    }
    assert.equal(parseIngestToken(token(CLAIMS, HEADER, 'AAAA')).ok, true);
  });

  test('base64url without padding is decoded strictly', () => {
    assert.deepEqual(decodeBase64UrlNoPad('AQID'), new Uint8Array([1, 2, 3]));
    assert.deepEqual(decodeBase64UrlNoPad('_-8'), new Uint8Array([0xff, 0xef]));
    assert.equal(decodeBase64UrlNoPad('AQ=='), undefined, 'padding');
    assert.equal(decodeBase64UrlNoPad('+/8'), undefined, 'standard alphabet');
    assert.equal(decodeBase64UrlNoPad('A'), undefined, 'length 1 mod 4');
    assert.equal(decodeBase64UrlNoPad('AR'), undefined, 'non-zero trailing bits');
  });

  test('create_authorization is not part of the v1 dialect, authorize_flow is not part of v2', () => {
    const payload = payloadOf('create_authorization.json');
    const v1 = decodeIngress('create_authorization', payload, 'v1');
    assert.equal(v1.ok ? 'ok' : v1.error.code, 'unknownEvent');
    const old = decodeIngress('authorize_flow', payload, 'v2');
    assert.equal(old.ok ? 'ok' : old.error.code, 'unknownEvent');
    for (const legacy of ['request_connection', 'allow_access']) {
      const result = decodeIngress(legacy, {}, 'v2');
      assert.equal(result.ok ? 'ok' : result.error.code, 'unknownEvent', legacy);
    }
  });

  test('authorize_flow on v1 carries the same payload and is answered with flow_authorized; the token is optional there but validated when present', () => {
    const payload = payloadOf('create_authorization.json');
    const result = decodeIngress('authorize_flow', payload, 'v1');
    assert.ok(result.ok && result.message.kind === 'createAuthorization');
    assert.equal(result.message.ackEvent, 'flow_authorized');
    assert.ok(result.message.ingestToken);
    const { flow_logs_ingest_token: _token, ...without } = payload;
    const old = decodeIngress('authorize_flow', without, 'v1');
    assert.ok(old.ok && old.message.kind === 'createAuthorization');
    assert.equal(old.message.ingestToken, undefined);
    assert.equal(decodeIngress('authorize_flow', { ...payload, flow_logs_ingest_token: 'garbage' }, 'v1').ok, false);
  });

  test('init (1.6.0 unit-test shape): flow_logs required and kept, the rest defaulted', () => {
    assert.deepEqual(v2('init.json'), {
      kind: 'init',
      interface: { ipv4: '100.115.164.78', ipv6: 'fd00:2021:1111::2c:f6ab', upstreamDns: [], searchDomain: undefined },
      config: { ipv4MasqueradeEnabled: true, ipv6MasqueradeEnabled: true },
      relays: [],
      accountSlug: undefined,
      authorizations: undefined,
      flowLogs: { apiUrl: 'https://flow-api.firezone.dev', uploadIntervalSecs: 60, uploadBatchSize: 1000 },
    });
  });

  test('init (portal HEAD shape): slug, authorizations with expires_at, flow_logs', () => {
    const message = v2('init_portal_head.json');
    assert.ok(message.kind === 'init');
    assert.equal(message.accountSlug, 'mycorp');
    assert.deepEqual(message.authorizations, [
      { clientId: '3abd725a-733b-4801-ac16-72f26cd98a24', resourceId: 'c7793628-8579-465b-83e3-1a5d4af4db3b', expiresAt: 1729813989 },
    ]);
    assert.deepEqual(message.flowLogs, { apiUrl: 'https://flow-api.firezone.dev/', uploadIntervalSecs: 60, uploadBatchSize: 1000 });
  });

  test('init on v2 without flow_logs, or with an authorization without expires_at, is rejected; v1 accepts both', () => {
    const { flow_logs: _flowLogs, ...withoutFlowLogs } = payloadOf('init_portal_head.json');
    const withoutExpiry = { ...payloadOf('init_portal_head.json'), authorizations: [{ client_id: '3abd725a-733b-4801-ac16-72f26cd98a24', resource_id: 'c7793628-8579-465b-83e3-1a5d4af4db3b' }] };
    for (const payload of [withoutFlowLogs, withoutExpiry]) {
      assert.equal(decodeIngress('init', payload, 'v2').ok, false);
      assert.equal(decodeIngress('init', payload, 'v1').ok, true);
    }
    assert.equal(decodeIngress('init', { ...payloadOf('init.json'), flow_logs: { api_url: 'x', upload_interval_secs: -1, upload_batch_size: 0 } }, 'v2').ok, false);
  });

  test('relays_presence', () => {
    const message = v2('relays_presence.json');
    assert.ok(message.kind === 'relaysPresence');
    assert.deepEqual(message.disconnectedIds, ['e95f9517-2152-4677-a16a-fbb2687050a3', 'b0724bd1-a8cc-4faf-88cd-f21159cfec47']);
    assert.equal(message.connected.length, 1);
    assert.equal(message.connected[0]?.kind, 'turn');
  });

  test('ice_candidates: entries that are not SDP candidate lines are skipped one by one', () => {
    assert.deepEqual(v2('ice_candidates.json'), {
      kind: 'iceCandidates',
      clientId: 'f16ecfa0-a94f-4bfd-a2ef-1cc1f2ef3da3',
      candidates: ['candidate:fffeff6435be70ddbf995982 1 udp 1694498559 87.121.72.60 57114 typ srflx raddr 0.0.0.0 rport 0'],
    });
    const result = decodeIngress('ice_candidates', { client_id: 'f16ecfa0-a94f-4bfd-a2ef-1cc1f2ef3da3', candidates: [1, null, 'candidate:1 1 udp 4294967296 1.1.1.1 1 typ host', 'candidate:1 1 udp 4294967295 1.1.1.1 1 typ host'] }, 'v2');
    assert.ok(result.ok && result.message.kind === 'iceCandidates');
    assert.deepEqual(result.message.candidates, ['candidate:1 1 udp 4294967295 1.1.1.1 1 typ host']);
  });

  test('invalidate_ice_candidates', () => {
    assert.deepEqual(v2('invalidate_ice_candidates.json'), {
      kind: 'invalidateIceCandidates',
      clientId: '2b1524e6-239e-4570-bc73-70a188e12101',
      candidates: ['candidate:7854631899965427361 1 udp 1694498559 172.28.0.100 47717 typ srflx'],
    });
  });

  test('reject_access', () => {
    assert.deepEqual(v2('reject_access.json'), { kind: 'rejectAccess', clientId: '3abd725a-733b-4801-ac16-72f26cd98a24', resourceId: 'c7793628-8579-465b-83e3-1a5d4af4db3b' });
  });

  test('resource_updated', () => {
    assert.deepEqual(v2('resource_updated.json'), {
      kind: 'resourceUpdated',
      resource: { kind: 'dns', id: '57f9ebbb-21d5-4f9f-bf86-b25122fc7a43', address: '?.httpbin', name: '?.httpbin', filters: [{ kind: 'icmp' }, { kind: 'tcp', portRangeStart: 0, portRangeEnd: 65535 }] },
    });
  });

  test('access_authorization_expiry_updated (obsolete) is tolerated', () => {
    assert.deepEqual(v2('access_authorization_expiry_updated.json'), {
      kind: 'accessAuthorizationExpiryUpdated',
      clientId: '3abd725a-733b-4801-ac16-72f26cd98a24',
      resourceId: 'c7793628-8579-465b-83e3-1a5d4af4db3b',
      expiresAt: 1729813989,
    });
  });
});

describe('1.6.0 egress fixtures, exact shape', () => {
  function wire(name: string, message: Parameters<typeof encodeEgress>[0]): void {
    const expected = fixture(name).frame_on_wire_constructed ?? fixture(name).frame!;
    const encoded = encodeEgress(message);
    const frame = encodeFrame(expected.topic, encoded.event, encoded.payload, expected.ref as number);
    assert.equal(frame, JSON.stringify(expected), name);
    const back = decodeEgress(encoded.event, encoded.payload);
    assert.ok(back.ok, name);
  }

  test('authorization_created echoes the ref', () => {
    wire('authorization_created.json', { kind: 'authorizationCreated', ref: 'signed-reference' });
  });

  test('no_relays has an empty payload', () => {
    wire('no_relays.json', { kind: 'noRelays' });
  });

  test('set_snownet_capabilities carries iceless (true in the fixture; false is what this gateway sends until ICE-less is complete)', () => {
    wire('set_snownet_capabilities.json', { kind: 'setSnownetCapabilities', iceless: true });
    assert.deepEqual(encodeEgress({ kind: 'setSnownetCapabilities', iceless: false }), { event: 'set_snownet_capabilities', payload: { iceless: false } });
  });

  test('broadcast_ice_candidates: one client, candidates by priority descending then text', () => {
    wire('broadcast_ice_candidates.json', {
      kind: 'broadcastIceCandidates',
      clientIds: ['3abd725a-733b-4801-ac16-72f26cd98a24' as ClientId],
      candidates: ['candidate:7854631899965427361 1 udp 1694498559 172.28.0.100 47717 typ srflx'],
    });
    const relay = 'candidate:3 1 udp 16777215 1.1.1.1 80 typ relay raddr 2.2.2.2 rport 80';
    const host = 'candidate:1 1 udp 2130706431 1.1.1.1 80 typ host';
    const srflxB = 'candidate:2b 1 udp 1694498815 1.1.1.1 81 typ srflx raddr 3.3.3.3 rport 80';
    const srflxA = 'candidate:2a 1 udp 1694498815 1.1.1.1 80 typ srflx raddr 3.3.3.3 rport 80';
    const encoded = encodeEgress({ kind: 'broadcastInvalidatedIceCandidates', clientIds: ['3abd725a-733b-4801-ac16-72f26cd98a24' as ClientId], candidates: [relay, srflxB, host, srflxA, host] });
    assert.equal(encoded.event, 'broadcast_invalidated_ice_candidates');
    assert.deepEqual(encoded.payload.candidates, [host, srflxA, srflxB, relay]);
  });

  test('phx_join and heartbeat frames', () => {
    const join = fixture('phx_join.json').frame_for_gateway!;
    assert.equal(encodeFrame('gateway', 'phx_join', null, 0), JSON.stringify(join));
    const heartbeat = fixture('heartbeat.json').frame!;
    assert.equal(encodeFrame('phoenix', 'heartbeat', {}, 1), JSON.stringify(heartbeat));
  });
});

describe('1.6.0 control fixtures decode', () => {
  test('phx_reply examples, the heartbeat reply, phx_close and disconnect', () => {
    const replies = fixture('phx_reply.json').examples!;
    assert.deepEqual(decodeReply(replies.join_ok!.payload), { status: 'ok' });
    assert.deepEqual(decodeReply(replies.error_unmatched_topic!.payload), { status: 'error', reason: 'unmatched topic' });
    assert.deepEqual(decodeReply(replies.error_disabled!.payload), { status: 'error', reason: 'disabled' });
    assert.deepEqual(decodeReply(fixture('heartbeat.json').reply_frame_constructed!.payload), { status: 'ok' });
    for (const name of ['phx_close.json', 'disconnect.json']) {
      const frame = decodeFrame(JSON.stringify(fixture(name).frame));
      assert.ok(frame.ok, name);
    }
  });

  test('every fixture of the directory is covered here (flow_logs_ingest_request is the upload body, tested with the flow-log uploader)', () => {
    const covered = [
      'access_authorization_expiry_updated.json', 'authorization_created.json', 'broadcast_ice_candidates.json', 'create_authorization.json',
      'disconnect.json', 'flow_logs_ingest_request.json', 'heartbeat.json', 'ice_candidates.json', 'init.json', 'init_portal_head.json',
      'invalidate_ice_candidates.json', 'no_relays.json', 'phx_close.json', 'phx_join.json', 'phx_reply.json', 'reject_access.json',
      'relays_presence.json', 'resource_updated.json', 'set_snownet_capabilities.json',
    ];
    assert.deepEqual(readdirSync(fixturePath(DIR)).sort(), covered.sort());
  });
});
