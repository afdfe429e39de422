import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  MAX_CANDIDATES_PER_CLIENT,
  MAX_CANDIDATES_PER_MESSAGE,
  MAX_PORTAL_MESSAGE_BYTES,
  MAX_RELAYS_PER_FAMILY,
  PortalInputLimits,
} from '../../src/portal/input-limits.ts';
import { decodeIngress } from '../../src/portal/messages.ts';

const FIXTURES = new URL('../../../shared/fixtures/portal-1.6/', import.meta.url);

test('a relays_presence with 10,000 relays keeps the first few of each family, in the portal’s order, and decodes', () => {
  const { limits, warnings } = make();
  const connected = [...relays(5_000, 4), ...relays(5_000, 6)];
  const payload = limits.limitPayload('relays_presence', { disconnected_ids: [], connected }) as { connected: { addr: string }[] };
  assert.deepEqual(
    payload.connected.map((r) => r.addr),
    [...connected.filter((r) => !r.addr.startsWith('[')).slice(0, MAX_RELAYS_PER_FAMILY), ...connected.filter((r) => r.addr.startsWith('[')).slice(0, MAX_RELAYS_PER_FAMILY)].map((r) => r.addr),
  );
  const decoded = limits.decoder(decodeIngress)('relays_presence', { disconnected_ids: [], connected });
  assert.equal(decoded.ok, true);
  assert.equal(limits.cuts.relays, 2 * (10_000 - 2 * MAX_RELAYS_PER_FAMILY), "both messages cut");
  assert.equal(warnings.length, 1, 'one WARN for the kind, the second message is held back');
});

test('init relays are cut the same way; what the portal really sends passes untouched', () => {
  const { limits, warnings } = make();
  const init = JSON.parse(readFileSync(new URL('init.json', FIXTURES), 'utf8')).frame.payload as Record<string, unknown>;
  assert.equal(limits.limitPayload('init', init), init);
  const presence = JSON.parse(readFileSync(new URL('relays_presence.json', FIXTURES), 'utf8')).frame.payload as Record<string, unknown>;
  assert.equal(limits.limitPayload('relays_presence', presence), presence);
  const big = { ...init, relays: relays(40, 4) };
  assert.equal((limits.limitPayload('init', big) as { relays: unknown[] }).relays.length, MAX_RELAYS_PER_FAMILY);
  assert.equal(warnings.length, 1);
});

test('candidates: at most the per-message limit, then each client’s budget refills one a second', () => {
  let now = 0;
  const { limits } = make(() => now);
  const candidates = (n: number): string[] => Array.from({ length: n }, (_, i) => `candidate:${i} 1 udp 1 10.0.${i >> 8}.${i & 0xff} 1 typ host`);
  const sent = (clientId: string, n: number): number =>
    (limits.limitPayload('ice_candidates', { client_id: clientId, candidates: candidates(n) }) as { candidates: string[] }).candidates.length;

  assert.equal(sent('a', 1_000), MAX_CANDIDATES_PER_MESSAGE);
  assert.equal(sent('a', MAX_CANDIDATES_PER_MESSAGE), MAX_CANDIDATES_PER_CLIENT - MAX_CANDIDATES_PER_MESSAGE);
  assert.equal(sent('a', 1), 0, 'the budget is spent');
  assert.equal(sent('b', 4), 4, 'another client has its own budget');
  now += 5_000;
  assert.equal(sent('a', 10), 5);
  // Withdrawals are only cut per message.
  const withdrawn = limits.limitPayload('invalidate_ice_candidates', { client_id: 'a', candidates: candidates(10) }) as { candidates: string[] };
  assert.equal(withdrawn.candidates.length, 10);
});

test('a frame longer than the limit is refused before parsing; other events and shapes pass unchanged', () => {
  const { limits, warnings } = make();
  assert.equal(limits.acceptsFrame('x'.repeat(MAX_PORTAL_MESSAGE_BYTES)), true);
  assert.equal(limits.acceptsFrame('x'.repeat(MAX_PORTAL_MESSAGE_BYTES + 1)), false);
  assert.equal(warnings.length, 1);
  for (const [event, payload] of [['reject_access', { client_id: 'a' }], ['init', null], ['init', { relays: 'nope' }], ['relays_presence', [1, 2]]] as const) {
    assert.equal(limits.limitPayload(event, payload), payload);
  }
});

function make(clock: () => number = () => 0): { limits: PortalInputLimits; warnings: string[] } {
  const warnings: string[] = [];
  return { limits: new PortalInputLimits({ clock, warn: (message) => warnings.push(message) }), warnings };
}

function relays(count: number, family: 4 | 6): { id: string; type: 'turn'; addr: string; username: string; password: string; expires_at: number }[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    type: 'turn' as const,
    addr: family === 4 ? `198.51.${100 + (i >> 8)}.${i & 0xff}:3478` : `[2001:db8::${i.toString(16)}]:3478`,
    username: 'u',
    password: 'p',
    expires_at: 2145916800,
  }));
}
