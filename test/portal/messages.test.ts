import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { fixturePath } from '../support/env.ts';
import { decodeEgress, decodeIngress, encodeEgress, type EgressMessage, type IngressMessage } from '../../src/portal/messages.ts';
import { decodeKey, filterSchema, keySchema, resourceDescriptionSchema, type ClientId } from '../../src/portal/message-types.ts';
import { decodeFrame, decodeReply, encodeFrame } from '../../src/portal/phoenix-frame.ts';

describe('ingress fixtures', () => {
  test('init parses with defaults for the optional fields', () => {
    const message = ingress('portal/init.json');

    assert.deepEqual(message, {
      kind: 'init',
      interface: { ipv4: '100.115.164.78', ipv6: 'fd00:2021:1111::2c:f6ab', upstreamDns: [], searchDomain: undefined },
      config: { ipv4MasqueradeEnabled: true, ipv6MasqueradeEnabled: true },
      relays: [],
      accountSlug: undefined,
      authorizations: undefined,
      flowLogs: undefined,
    });
  });

  test('init without authorizations is told apart from an empty list (revoke nothing vs revoke all)', () => {
    const absent = decodeIngress('init', { interface: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true } });
    const empty = decodeIngress('init', { interface: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' }, config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true }, authorizations: [] });
    assert.ok(absent.ok && absent.message.kind === 'init');
    assert.ok(empty.ok && empty.message.kind === 'init');
    assert.equal(absent.message.authorizations, undefined);
    assert.deepEqual(empty.message.authorizations, []);
  });

  test('connectivity init fixture parses the same way', () => {
    assert.deepEqual(ingress('connectivity/portal_init_minimal.json'), ingress('portal/init.json'));
  });

  test('authorize_flow parses every field', () => {
    const message = ingress('portal/authorize_flow.json');

    assert.equal(message.kind, 'createAuthorization');
    if (message.kind !== 'createAuthorization') return;
    assert.match(message.ref, /^SFMyNTY\.g2gDbQAAAkxn.*\.5-aLUjF4RiPoYASwWYfSmWuTEc4cT0u8J9cyBUiP9BY$/);
    assert.deepEqual(message.resource, {
      kind: 'cidr',
      id: 'c7793628-8579-465b-83e3-1a5d4af4db3b',
      address: '172.20.0.0/16',
      name: 'MyCorp Network',
      filters: [],
    });
    assert.equal(message.client.id, '3abd725a-733b-4801-ac16-72f26cd98a24');
    assert.equal(message.client.publicKey.base64, 'fiAjSBWDgQfD1CFJkTwOf4zg+1QhH0eTT+oLaVIMpH8=');
    assert.equal(message.client.publicKey.bytes.length, 32);
    assert.deepEqual(message.client.publicKey.bytes, new Uint8Array(Buffer.from('fiAjSBWDgQfD1CFJkTwOf4zg+1QhH0eTT+oLaVIMpH8=', 'base64')));
    assert.equal(message.client.presharedKey.base64, 'BzPiNE9qszKczZcZzGsyieLYeJ2EQfkfdibls/l3beM=');
    assert.equal(message.client.ipv4, '100.93.74.51');
    assert.equal(message.client.ipv6, 'fd00:2021:1111::f:853b');
    assert.deepEqual(message.clientIceCredentials, { username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' });
    assert.deepEqual(message.gatewayIceCredentials, { username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' });
    assert.equal(message.expiresAt, 1729813989);
  });

  test('connectivity authorize_flow fixture parses the same way', () => {
    assert.deepEqual(ingress('connectivity/portal_authorize_flow.json'), ingress('portal/authorize_flow.json'));
  });

  test('relays_presence parses ids and relays', () => {
    const message = ingress('portal/relays_presence.json');

    assert.deepEqual(message, {
      kind: 'relaysPresence',
      disconnectedIds: ['e95f9517-2152-4677-a16a-fbb2687050a3', 'b0724bd1-a8cc-4faf-88cd-f21159cfec47'],
      connected: [
        {
          kind: 'turn',
          id: '0a133356-7a9e-4b9a-b413-0d95a5720fd8',
          addr: { address: '172.28.0.101', port: 3478, family: 4 },
          username: '1719367575:ZQHcVGkdnfgGmcP1',
          password: 'ZWYiBeFHOJyYq0mcwAXjRpcuXIJJpzWlOXVdxwttrWg',
          expiresAt: 1719367575,
        },
      ],
    });
    assert.deepEqual(ingress('connectivity/portal_relays_presence.json'), message);
  });

  test('resource_updated parses a dns resource with icmp and full-range tcp filters', () => {
    assert.deepEqual(ingress('portal/resource_updated.json'), {
      kind: 'resourceUpdated',
      resource: {
        kind: 'dns',
        id: '57f9ebbb-21d5-4f9f-bf86-b25122fc7a43',
        address: '?.httpbin',
        name: '?.httpbin',
        filters: [{ kind: 'icmp' }, { kind: 'tcp', portRangeStart: 0, portRangeEnd: 65535 }],
      },
    });
  });

  test('invalidate_ice_candidates parses', () => {
    const expected: IngressMessage = {
      kind: 'invalidateIceCandidates',
      clientId: '2b1524e6-239e-4570-bc73-70a188e12101' as ClientId,
      candidates: ['candidate:7854631899965427361 1 udp 1694498559 172.28.0.100 47717 typ srflx'],
    };

    assert.deepEqual(ingress('portal/invalidate_ice_candidates.json'), expected);
    assert.deepEqual(ingress('connectivity/portal_invalidate_ice_candidates.json'), expected);
  });

  test('the same payload as ice_candidates parses into the add variant', () => {
    const frame = readFrame('portal/invalidate_ice_candidates.json');
    const result = decodeIngress('ice_candidates', frame.payload);

    assert.equal(result.ok && result.message.kind, 'iceCandidates');
  });

  test('the client-side ice_candidates fixture is invalid for a gateway (no client_id)', () => {
    const frame = readFrame('connectivity/portal_client_ice_candidates.json');
    const result = decodeIngress(frame.event, frame.payload);

    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.error.code, 'invalidPayload');
    assert.match(!result.ok && result.error.code === 'invalidPayload' ? result.error.detail : '', /client_id/);
  });

  test('legacy request_connection ignores relays and actor', () => {
    const message = ingress('portal/request_connection.json');

    assert.equal(message.kind, 'requestConnection');
    if (message.kind !== 'requestConnection') return;
    assert.equal(message.ref, '78e1159d-9dc6-480d-b2ef-1fcec2cd5730');
    assert.equal(message.client.id, '3a25ff38-f8d7-47de-9b30-c7c40c206083');
    assert.equal(message.client.peer.publicKey.base64, 'OR2dYCLwMEtwqtjOxSm4SU7BbHJDfM8ZCqK7HKXXxDw=');
    assert.equal(message.client.peer.persistentKeepalive, 25);
    assert.equal(message.client.peer.ipv4, '100.114.114.30');
    assert.deepEqual(message.client.payload, {
      iceParameters: { username: 'PvCPFevCOgkvVCtH', password: 'xEwoXEzHuSyrcgOCSRnwOXQVnbnbeGeF' },
      domain: undefined,
    });
    assert.equal(message.resource.kind, 'cidr');
    assert.equal(message.expiresAt, 1719367575);
    assert.equal('relays' in message, false);
  });

  test('legacy request_connection carries the DNS resolve request', () => {
    const message = ingress('portal/request_connection.dns_legacy.json');

    assert.equal(message.kind, 'requestConnection');
    if (message.kind !== 'requestConnection') return;
    assert.equal(message.client.payload.domain?.name, 'download.httpbin');
    assert.equal(message.client.payload.domain?.proxyIps.length, 8);
    assert.equal(message.client.payload.domain?.proxyIps[4], 'fd00:2021:1111:8000::');
    assert.deepEqual(message.resource.kind === 'dns' && message.resource.filters, [
      { kind: 'tcp', portRangeStart: 80, portRangeEnd: 80 },
      { kind: 'tcp', portRangeStart: 433, portRangeEnd: 433 },
      { kind: 'udp', portRangeStart: 53, portRangeEnd: 53 },
      { kind: 'icmp' },
    ]);
  });

  test('every ingress fixture decodes or fails as expected', () => {
    const expectations: Record<string, string> = {
      'authorize_flow.json': 'createAuthorization',
      'init.json': 'init',
      'invalidate_ice_candidates.json': 'invalidateIceCandidates',
      'relays_presence.json': 'relaysPresence',
      'request_connection.dns_legacy.json': 'requestConnection',
      'request_connection.json': 'requestConnection',
      'resource_updated.json': 'resourceUpdated',
      'phoenix.inbound_broadcast.json': 'unknownEvent',
      'inbound.null_payload_message.json': 'unknownEvent',
    };
    for (const [file, expected] of Object.entries(expectations)) {
      const frame = readFrame(`portal/${file}`);
      const result = decodeIngress(frame.event, frame.payload);
      assert.equal(result.ok ? result.message.kind : result.error.code, expected, file);
    }
    const covered = new Set([
      ...Object.keys(expectations),
      ...['disconnect.token_expired.json', 'phx_close.json', 'phx_join.egress.json', 'egress.no_payload_message.json'],
      ...['phx_reply.error_disabled.json', 'phx_reply.error_invalid_version.json', 'phx_reply.error_other.json'],
      ...['phx_reply.error_unmatched_topic.json', 'phx_reply.ok_join.json', 'key.public_key.json'],
      ...['resource_descriptions.cidr_dns_internet.json', 'filter.icmp.json', 'filter.tcp.json', 'filter.tcp_empty.json'],
      ...['filter.udp.json', 'filter.udp_empty.json'],
    ]);
    assert.deepEqual(readdirSync(fixturePath('portal')).filter((f) => !covered.has(f)), []);
  });
});

describe('shared type fixtures', () => {
  test('filters take their defaults', () => {
    assert.deepEqual(parse(filterSchema, 'portal/filter.icmp.json'), { kind: 'icmp' });
    assert.deepEqual(parse(filterSchema, 'portal/filter.tcp.json'), { kind: 'tcp', portRangeStart: 10, portRangeEnd: 20 });
    assert.deepEqual(parse(filterSchema, 'portal/filter.tcp_empty.json'), { kind: 'tcp', portRangeStart: 0, portRangeEnd: 65535 });
    assert.deepEqual(parse(filterSchema, 'portal/filter.udp.json'), { kind: 'udp', portRangeStart: 10, portRangeEnd: 20 });
    assert.deepEqual(parse(filterSchema, 'portal/filter.udp_empty.json'), { kind: 'udp', portRangeStart: 0, portRangeEnd: 65535 });
  });

  test('resource descriptions of all three types parse, ignoring extra internet fields', () => {
    const list = JSON.parse(readFileSync(fixturePath('portal/resource_descriptions.cidr_dns_internet.json'), 'utf8')) as unknown[];

    assert.deepEqual(
      list.map((r) => resourceDescriptionSchema.parse(r)),
      [
        { kind: 'cidr', id: '73037362-715d-4a83-a749-f18eadd970e6', address: '172.172.0.0/16', name: '172.172.0.0/16', filters: [] },
        { kind: 'dns', id: '03000143-e25e-45c7-aafb-144990e57dcd', address: 'gitlab.mycorp.com', name: 'gitlab.mycorp.com', filters: [] },
        { kind: 'internet', id: '1106047c-cd5d-4151-b679-96b93da7383b' },
      ],
    );
  });

  test('the key fixture decodes to 32 bytes and keeps its text', () => {
    const key = parse(keySchema, 'portal/key.public_key.json');

    assert.equal(key.base64, 'S6REkbStSNMfn8hpLkVxibjR+zz3RO/Gq40TprHJE2U=');
    assert.equal(key.bytes.length, 32);
    assert.equal(Buffer.from(key.bytes).toString('base64'), key.base64);
  });
});

describe('strict typing', () => {
  test('an unknown resource type drops the message', () => {
    assert.equal(codeOf('resource_updated', { id: uuid(1), type: 'ftp', address: 'x', name: 'x', filters: [] }), 'invalidPayload');
  });

  test('an unknown filter protocol drops the message', () => {
    assert.equal(codeOf('resource_updated', { ...dnsResource(), filters: [{ protocol: 'sctp' }] }), 'invalidPayload');
  });

  test('ports outside u16 drop the message', () => {
    assert.equal(codeOf('resource_updated', { ...dnsResource(), filters: [{ protocol: 'tcp', port_range_end: 65536 }] }), 'invalidPayload');
  });

  test('a cidr address with host bits or without prefix drops the message', () => {
    for (const address of ['10.0.0.1/8', '10.0.0.0', 'fd00::1/64', '10.0.0.0/33', '01.0.0.0/8', 'fe80::%eth0/64']) {
      assert.equal(codeOf('resource_updated', { ...dnsResource(), type: 'cidr', address }), 'invalidPayload', address);
    }
    for (const address of ['10.0.0.0/8', 'fd00:2021:1111::/107', '0.0.0.0/0', '::/0', '1.2.3.4/32', '::ffff:1.2.3.0/120']) {
      assert.equal(codeOf('resource_updated', { ...dnsResource(), type: 'cidr', address }), 'ok', address);
    }
  });

  test('a key of the wrong length or encoding drops the message', () => {
    const flow = readFrame('portal/authorize_flow.json').payload as { client: Record<string, unknown> };
    for (const key of ['AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==', 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8', 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=']) {
      assert.equal(codeOf('authorize_flow', { ...flow, client: { ...flow.client, public_key: key } }), 'invalidPayload', key);
    }
  });

  test('expires_at must be present but may be null', () => {
    const flow = readFrame('portal/authorize_flow.json').payload as Record<string, unknown>;
    const withNull = decodeIngress('authorize_flow', { ...flow, expires_at: null });
    const { expires_at: _omitted, ...withoutKey } = flow;

    assert.equal(withNull.ok && withNull.message.kind === 'createAuthorization' && withNull.message.expiresAt, undefined);
    assert.equal(codeOf('authorize_flow', withoutKey), 'invalidPayload');
  });

  test('relays_presence needs both keys', () => {
    assert.equal(codeOf('relays_presence', { disconnected_ids: [] }), 'invalidPayload');
    assert.equal(codeOf('relays_presence', { connected: [] }), 'invalidPayload');
    assert.equal(codeOf('relays_presence', { connected: [], disconnected_ids: [] }), 'ok');
  });

  test('a stun relay is accepted and an unknown relay type is not', () => {
    const stun = { id: uuid(2), type: 'stun', addr: '[2001:db8::1]:3478' };
    assert.equal(codeOf('relays_presence', { connected: [stun], disconnected_ids: [] }), 'ok');
    assert.equal(codeOf('relays_presence', { connected: [{ ...stun, type: 'turns' }], disconnected_ids: [] }), 'invalidPayload');
  });

  test('ids in any UUID form come out canonical', () => {
    const result = decodeIngress('reject_access', { client_id: '{2B1524E6-239E-4570-BC73-70A188E12101}', resource_id: '2b1524e6239e4570bc7370a188e12101', flow_id: 'x' });

    assert.deepEqual(result.ok && result.message, {
      kind: 'rejectAccess',
      clientId: '2b1524e6-239e-4570-bc73-70a188e12101',
      resourceId: '2b1524e6-239e-4570-bc73-70a188e12101',
    });
  });

  test('init accepts relays, slug and authorizations', () => {
    const result = decodeIngress('init', {
      account_slug: 'acme',
      interface: { ipv4: '100.101.5.12', ipv6: 'fd00:2021:1111::1b:9c4e', upstream_dns: [{ protocol: 'ip_port', address: '1.1.1.1:53' }] },
      relays: [
        { id: uuid(3), type: 'turn', addr: '203.0.113.10:3478', username: 'u', password: 'p', expires_at: 1760000000 },
        { id: uuid(3), type: 'turn', addr: '[2001:db8::10]:3478', username: 'u', password: 'p', expires_at: 1760000000 },
      ],
      authorizations: [{ client_id: uuid(4), resource_id: uuid(5) }],
      config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
    });

    assert.equal(result.ok, true);
    if (!result.ok || result.message.kind !== 'init') return;
    assert.equal(result.message.accountSlug, 'acme');
    assert.equal(result.message.relays.length, 2);
    assert.deepEqual(result.message.relays[1]?.addr, { address: '2001:db8::10', port: 3478, family: 6 });
    assert.deepEqual(result.message.interface.upstreamDns, [{ address: '1.1.1.1', port: 53, family: 4 }]);
    assert.deepEqual(result.message.authorizations, [{ clientId: uuid(4), resourceId: uuid(5), expiresAt: undefined }]);
  });

  test('init without config is invalid', () => {
    assert.equal(codeOf('init', { interface: { ipv4: '100.64.0.1', ipv6: 'fd00::1' } }), 'invalidPayload');
  });

  test('decoding never throws on arbitrary JSON', () => {
    const events = ['init', 'authorize_flow', 'reject_access', 'resource_updated', 'relays_presence', 'ice_candidates', 'invalidate_ice_candidates', 'request_connection', 'allow_access', 'x'];
    fc.assert(
      fc.property(fc.constantFrom(...events), fc.jsonValue(), (event, payload) => {
        const result = decodeIngress(event, payload);
        assert.equal(typeof result.ok, 'boolean');
      }),
      { numRuns: 500 },
    );
  });

  test('decoding never throws on mutated fixtures', () => {
    const frame = readFrame('portal/authorize_flow.json');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('client', 'resource', 'ref', 'expires_at', 'client_ice_credentials'), fc.jsonValue())), (mutations) => {
        const payload: Record<string, unknown> = { ...(frame.payload as Record<string, unknown>) };
        for (const [key, value] of mutations) payload[key] = value;
        decodeIngress('authorize_flow', payload);
      }),
      { numRuns: 300 },
    );
  });
});

describe('egress', () => {
  test('flow_authorized echoes the ref', () => {
    const { event, payload } = encodeEgress({ kind: 'flowAuthorized', ref: 'SFMyNTY.g2gD' });

    assert.equal(encodeFrame('gateway', event, payload, 7), '{"topic":"gateway","event":"flow_authorized","payload":{"ref":"SFMyNTY.g2gD"},"ref":7}');
  });

  test('broadcast_ice_candidates sorts and de-duplicates candidates', () => {
    const encoded = encodeEgress({
      kind: 'broadcastIceCandidates',
      clientIds: [uuid(1) as ClientId],
      candidates: ['candidate:2 1 udp 1 10.0.0.2 1 typ host', 'candidate:1 1 udp 1 10.0.0.1 1 typ host', 'candidate:2 1 udp 1 10.0.0.2 1 typ host'],
    });

    assert.equal(
      JSON.stringify(encoded),
      `{"event":"broadcast_ice_candidates","payload":{"client_ids":["${uuid(1)}"],"candidates":["candidate:1 1 udp 1 10.0.0.1 1 typ host","candidate:2 1 udp 1 10.0.0.2 1 typ host"]}}`,
    );
  });

  test('broadcast_invalidated_ice_candidates has the same shape', () => {
    const encoded = encodeEgress({ kind: 'broadcastInvalidatedIceCandidates', clientIds: [uuid(1) as ClientId], candidates: new Set(['b', 'a']) });

    assert.deepEqual(encoded, { event: 'broadcast_invalidated_ice_candidates', payload: { client_ids: [uuid(1)], candidates: ['a', 'b'] } });
  });

  test('connection_ready uses the PascalCase ConnectionAccepted tag', () => {
    const { event, payload } = encodeEgress({ kind: 'connectionReady', ref: 'r', iceParameters: { username: 'aBcD', password: 'MMceouYA5jGIPkxbvIiLvD' } });

    assert.equal(
      encodeFrame('gateway', event, payload, 9),
      '{"topic":"gateway","event":"connection_ready","payload":{"ref":"r","gateway_payload":{"ConnectionAccepted":{"ice_parameters":{"username":"aBcD","password":"MMceouYA5jGIPkxbvIiLvD"}}}},"ref":9}',
    );
  });

  test('every egress message round-trips through the portal-side decoder', () => {
    const clientIds = [uuid(1) as ClientId];
    const messages: EgressMessage[] = [
      { kind: 'flowAuthorized', ref: 'r' },
      { kind: 'broadcastIceCandidates', clientIds, candidates: ['a'] },
      { kind: 'broadcastInvalidatedIceCandidates', clientIds, candidates: ['b'] },
      { kind: 'connectionReady', ref: 'r', iceParameters: { username: 'u', password: 'p' } },
    ];
    for (const message of messages) {
      const { event, payload } = encodeEgress(message);
      const decoded = decodeEgress(event, payload);
      assert.deepEqual(decoded.ok && decoded.message, message);
    }
  });
});

describe('frames', () => {
  test('the join frame matches the reference serializer', () => {
    assert.equal(encodeFrame('test', 'phx_join', null, 1), readFileSync(fixturePath('portal/phx_join.egress.json'), 'utf8').trim());
  });

  test('an inbound broadcast decodes with join_ref ignored', () => {
    const result = decodeFrame(readFileSync(fixturePath('portal/phoenix.inbound_broadcast.json'), 'utf8'));

    assert.deepEqual(result, { ok: true, frame: { topic: 'room:lobby', event: 'shout', payload: { hello: 'world' }, ref: undefined } });
  });

  test('a frame without ref decodes', () => {
    const result = decodeFrame(readFileSync(fixturePath('portal/inbound.null_payload_message.json'), 'utf8'));

    assert.deepEqual(result, { ok: true, frame: { topic: 'test', event: 'foo', payload: null, ref: undefined } });
  });

  test('error replies decode their reasons', () => {
    assert.deepEqual(replyOf('portal/phx_reply.error_unmatched_topic.json'), { status: 'error', reason: 'unmatched topic' });
    assert.deepEqual(replyOf('portal/phx_reply.error_invalid_version.json'), { status: 'error', reason: 'invalid_version' });
    assert.deepEqual(replyOf('portal/phx_reply.error_disabled.json'), { status: 'error', reason: 'disabled' });
    assert.deepEqual(replyOf('portal/phx_reply.error_other.json'), { status: 'error', reason: 'other' });
    assert.deepEqual(replyOf('portal/phx_reply.ok_join.json'), { status: 'ok' });
  });

  test('a string ref makes the whole frame undecodable, as in the reference', () => {
    const result = decodeFrame(readFileSync(fixturePath('portal/phx_reply.error_unmatched_topic.json'), 'utf8'));

    assert.equal(!result.ok && result.error.code, 'invalidFrame');
  });

  test('a numeric-ref reply decodes', () => {
    const result = decodeFrame(readFileSync(fixturePath('portal/phx_reply.ok_join.json'), 'utf8'));

    assert.equal(result.ok && result.frame.ref, 1);
  });

  test('an ok reply with a non-empty response cannot be typed', () => {
    assert.equal(decodeReply({ status: 'ok', response: { x: 1 } }), undefined);
  });

  test('control fixtures decode as frames', () => {
    assert.deepEqual(readFrame('portal/phx_close.json'), { topic: 'client', event: 'phx_close', payload: {}, ref: undefined });
    assert.deepEqual(readFrame('portal/disconnect.token_expired.json').payload, { reason: 'token_expired' });
  });

  test('the payload-less egress fixture is a frame our encoder never produces', () => {
    const fixture = readFileSync(fixturePath('portal/egress.no_payload_message.json'), 'utf8').trim();

    assert.equal(encodeFrame('test', 'bar', undefined, 0), '{"topic":"test","event":"bar","payload":null,"ref":0}');
    assert.notEqual(encodeFrame('test', 'bar', undefined, 0), fixture);
  });

  test('truncated JSON is EOF class and other garbage is not', () => {
    for (const text of ['', '   ', '{', '{"topic":', '{"topic":"a"', '[1,']) {
      const result = decodeFrame(text);
      assert.equal(!result.ok && result.error.code, 'eof', JSON.stringify(text));
    }
    for (const text of ['{x}', '1 2', 'nope']) {
      const result = decodeFrame(text);
      assert.equal(!result.ok && result.error.code, 'invalidJson', text);
    }
    for (const text of ['[]', '1', '{"topic":1,"event":"x"}', '{"topic":"a","event":"b","ref":"1"}', '{"topic":"a","event":"b","ref":-1}']) {
      const result = decodeFrame(text);
      assert.equal(!result.ok && result.error.code, 'invalidFrame', text);
    }
  });

  test('frame decoding never throws', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        decodeFrame(text);
      }),
      { numRuns: 1000 },
    );
  });

  test('frames round-trip', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.jsonValue(), fc.nat(), (topic, event, payload, ref) => {
        const result = decodeFrame(encodeFrame(topic, event, payload, ref));
        assert.ok(result.ok);
        assert.equal(result.frame.topic, topic);
        assert.equal(result.frame.event, event);
        assert.equal(result.frame.ref, ref);
        assert.deepEqual(result.frame.payload, JSON.parse(JSON.stringify(payload ?? null)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('keys', () => {
  test('decodeKey accepts exactly the canonical padded encoding of 32 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64');
        assert.deepEqual(decodeKey(text), bytes);
        assert.equal(decodeKey(text.slice(0, -1)), undefined);
        assert.equal(decodeKey(text.replaceAll('+', '-').replaceAll('/', '_')) === undefined, /[+/]/.test(text));
      }),
    );
  });
});

function readFrame(path: string): { topic: string; event: string; payload: unknown; ref: number | undefined } {
  const result = decodeFrame(readFileSync(fixturePath(path), 'utf8'));
  if (!result.ok) throw new Error(`${path}: ${result.error.detail}`);
  return result.frame;
}

function ingress(path: string): IngressMessage {
  const frame = readFrame(path);
  const result = decodeIngress(frame.event, frame.payload);
  if (!result.ok) throw new Error(`${path}: ${JSON.stringify(result.error)}`);
  return result.message;
}

function parse<T>(schema: { parse(value: unknown): T }, path: string): T {
  return schema.parse(JSON.parse(readFileSync(fixturePath(path), 'utf8')));
}

function replyOf(path: string): unknown {
  const frame = JSON.parse(readFileSync(fixturePath(path), 'utf8')) as { payload: unknown };
  return decodeReply(frame.payload);
}

function codeOf(event: string, payload: unknown): string {
  const result = decodeIngress(event, payload);
  return result.ok ? 'ok' : result.error.code;
}

function dnsResource(): Record<string, unknown> {
  return { id: uuid(1), type: 'dns', address: 'a.corp', name: 'a', filters: [] };
}

function uuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}
