import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  authorizationHeader,
  createLoginUrl,
  externalId,
  loginUrlWithPublicKey,
  parseUuidText,
  portalConnectTarget,
  type LoginUrl,
} from '../../src/portal/login-url.ts';
import { userAgent } from '../../src/portal/user-agent.ts';

const KEY_0_TO_31 = Uint8Array.from({ length: 32 }, (_, i) => i);
const SPEC_ID = '4694E56C-7643-4A15-9DF3-638E5B05F570';
const SPEC_EXTERNAL_ID = 'c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca';

describe('login URL', () => {
  test('v2 (1.6.0): the v2 path, external_id, name and public_key in that order, no token', () => {
    const login = build('wss://api.firezone.dev', { token: '.SFMyNTY.abc', firezoneId: SPEC_ID, name: 'gw 1' });

    assert.equal(
      loginUrlWithPublicKey(login, KEY_0_TO_31),
      'wss://api.firezone.dev/gateway/v2/websocket?external_id=c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca&name=gw+1&public_key=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8%3D',
    );
    assert.ok(!loginUrlWithPublicKey(login, KEY_0_TO_31).includes('SFMyNTY'));
  });

  test('v1 (1.4.13, the fallback) matches the 1.4.13 example byte for byte', () => {
    const login = build('wss://api.firezone.dev', { token: '.SFMyNTY.abc', firezoneId: SPEC_ID, name: 'gw 1' }, 'v1');

    assert.equal(
      loginUrlWithPublicKey(login, KEY_0_TO_31),
      'wss://api.firezone.dev/gateway/websocket?token=.SFMyNTY.abc&external_id=c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca&name=gw+1&public_key=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8%3D',
    );
  });

  test('the token header strips every whitespace character', () => {
    assert.equal(authorizationHeader('valid-token-part\ninjected'), 'Bearer valid-token-partinjected');
    assert.equal(authorizationHeader('valid-token-part\rinjected'), 'Bearer valid-token-partinjected');
    assert.equal(authorizationHeader(' a\tb \u00a0c\u2028d\u3000 '), 'Bearer abcd');
    assert.equal(authorizationHeader('a-perfectly-valid.token_123'), 'Bearer a-perfectly-valid.token_123');
  });

  test('maps http to ws and https to wss and keeps ws and wss', () => {
    assert.ok(href('http://a').startsWith('ws://a/gateway/v2/websocket?'));
    assert.ok(href('https://a').startsWith('wss://a/gateway/v2/websocket?'));
    assert.ok(href('ws://a:8081').startsWith('ws://a:8081/gateway/v2/websocket?'));
    assert.ok(href('wss://a').startsWith('wss://a/gateway/v2/websocket?'));
  });

  test('rejects other schemes with the reference message', () => {
    const result = createLoginUrl('ftp://a', params());

    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.error.code, 'invalidScheme');
    assert.equal(!result.ok && result.error.message, 'invalid scheme `ftp`; only http(s) and ws(s) are allowed');
  });

  test('rejects text that is not a URL', () => {
    const result = createLoginUrl('not a url', params());

    assert.equal(!result.ok && result.error.code, 'invalidUrl');
  });

  test('removes one trailing empty path segment before appending gateway/v2/websocket', () => {
    assert.equal(path('https://x/foo/'), '/foo/gateway/v2/websocket');
    assert.equal(path('https://x/foo'), '/foo/gateway/v2/websocket');
    assert.equal(path('https://x/'), '/gateway/v2/websocket');
    assert.equal(path('https://x/foo//'), '/foo//gateway/v2/websocket');
  });

  test('discards an existing query and fragment and orders the parameters', () => {
    const url = new URL(loginUrlWithPublicKey(build('https://x/?vsn=2.0.0&a=b#frag', params()), KEY_0_TO_31));

    assert.deepEqual([...url.searchParams.keys()], ['external_id', 'name', 'public_key']);
    assert.equal(url.hash, '');
  });

  test('form-urlencodes parameter values', () => {
    const login = build('https://x', { token: 'a+b/c=d e*-._~!', firezoneId: 'id', name: 'n' }, 'v1');

    assert.ok(login.href.includes('token=a%2Bb%2Fc%3Dd+e*-._%7E%21&'), login.href);
  });

  test('never sends a vsn parameter', () => {
    assert.ok(!href('wss://api.firezone.dev').includes('vsn'));
  });
});

describe('external id', () => {
  test('hashes the spec example UUID', () => {
    assert.equal(externalId(SPEC_ID), SPEC_EXTERNAL_ID);
  });

  test('hashes the original text of every UUID form, not the canonical UUID', () => {
    const forms = [
      '4694e56c-7643-4a15-9df3-638e5b05f570',
      '4694E56C76434A159DF3638E5B05F570',
      'urn:uuid:4694e56c-7643-4a15-9df3-638e5b05f570',
      '{4694E56C-7643-4A15-9DF3-638E5B05F570}',
    ];
    const hashes = new Set(forms.map(externalId));

    assert.equal(hashes.size, forms.length);
    for (const hash of hashes) assert.match(hash, /^[0-9a-f]{64}$/);
  });

  test('passes a non-UUID id through verbatim', () => {
    assert.equal(externalId('abc'), 'abc');
    assert.equal(externalId(SPEC_EXTERNAL_ID), SPEC_EXTERNAL_ID);
    assert.equal(externalId('4694E56C-7643-4A15-9DF3-638E5B05F57'), '4694E56C-7643-4A15-9DF3-638E5B05F57');
    assert.equal(externalId('4694E56C_7643-4A15-9DF3-638E5B05F570'), '4694E56C_7643-4A15-9DF3-638E5B05F570');
  });

  test('parses a UUID to its canonical form', () => {
    assert.equal(parseUuidText('{4694E56C-7643-4A15-9DF3-638E5B05F570}'), '4694e56c-7643-4a15-9df3-638e5b05f570');
    assert.equal(parseUuidText('4694E56C76434A159DF3638E5B05F570'), '4694e56c-7643-4a15-9df3-638e5b05f570');
    assert.equal(parseUuidText('zz94E56C76434A159DF3638E5B05F570'), undefined);
  });

  test('any random UUID parses in all four forms', () => {
    fc.assert(
      fc.property(fc.uuid(), (uuid) => {
        const simple = uuid.replaceAll('-', '');
        for (const form of [uuid, uuid.toUpperCase(), simple, `urn:uuid:${uuid}`, `{${uuid}}`]) {
          assert.equal(parseUuidText(form), uuid.toLowerCase());
        }
      }),
    );
  });
});

describe('portal connect target', () => {
  test('uses the explicit port', () => {
    assert.deepEqual(portalConnectTarget('ws://a:8081/x'), { host: 'a', port: 8081 });
    assert.deepEqual(portalConnectTarget('wss://a:8443'), { host: 'a', port: 8443 });
  });

  test('uses 443 without an explicit port even for ws', () => {
    assert.deepEqual(portalConnectTarget('wss://api.firezone.dev/gateway/websocket'), { host: 'api.firezone.dev', port: 443 });
    assert.deepEqual(portalConnectTarget('ws://a/'), { host: 'a', port: 443 });
    assert.deepEqual(portalConnectTarget('ws://a:80/'), { host: 'a', port: 443 });
  });

  test('keeps brackets on IPv6 hosts', () => {
    assert.deepEqual(portalConnectTarget('ws://[::1]:9000/'), { host: '[::1]', port: 9000 });
  });

  test('is part of the login URL', () => {
    const login = build('http://127.0.0.1:80', params());

    assert.equal(login.host, '127.0.0.1');
    assert.equal(login.port, 443);
  });
});

describe('user agent', () => {
  test('has the reference shape with arch and kernel', () => {
    const ua = userAgent({ osType: 'Ubuntu', osVersion: '22.04', arch: 'x86_64', kernel: '5.15.0-105-generic' });

    assert.equal(ua, 'Ubuntu/22.04 gateway/1.6.0 (x86_64; 5.15.0-105-generic)');
  });

  test('falls back when arch or kernel are unknown', () => {
    assert.equal(userAgent({ osType: 'Linux', osVersion: 'Unknown', arch: 'aarch64', kernel: undefined }), 'Linux/Unknown gateway/1.6.0 (aarch64)');
    assert.equal(userAgent({ osType: 'Linux', osVersion: '1', arch: undefined, kernel: '6.1' }), 'Linux/1 gateway/1.6.0 (6.1)');
    assert.equal(userAgent({ osType: 'Linux', osVersion: '1', arch: undefined, kernel: undefined }), 'Linux/1 gateway/1.6.0');
  });

  test('removes non-ASCII characters', () => {
    assert.equal(
      userAgent({ osType: 'Alpine Linüx', osVersion: '3.1✓', arch: 'x86_64', kernel: 'é6.1' }),
      'Alpine Linx/3.1 gateway/1.6.0 (x86_64; 6.1)',
    );
  });

  test('carries a gateway/ token the portal can parse as SemVer', () => {
    const ua = userAgent({ osType: 'Alpine Linux', osVersion: '3.20.0', arch: 'x86_64', kernel: '6.1' });
    const token = ua.split(' ').find((part) => part.startsWith('gateway/'));

    assert.equal(token, 'gateway/1.6.0');
  });
});

function params(): { token: string; firezoneId: string; name: string } {
  return { token: 't', firezoneId: 'id', name: 'n' };
}

function build(apiUrl: string, loginParams: { token: string; firezoneId: string; name: string }, dialect: 'v1' | 'v2' = 'v2'): LoginUrl {
  const result = createLoginUrl(apiUrl, loginParams, dialect);
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

function href(apiUrl: string): string {
  return build(apiUrl, params()).href;
}

function path(apiUrl: string): string {
  return new URL(href(apiUrl)).pathname;
}
