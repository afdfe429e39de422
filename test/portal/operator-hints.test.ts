import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OperatorHints } from '../../src/portal/operator-hints.ts';

test('a refused token and an expired token each get their hint', () => {
  const hints = new OperatorHints();
  const refused = hints.forEvent({ kind: 'fatal', exitCode: 1, error: { code: 'invalidToken', status: 401, message: 'Authentication token invalid' } });
  assert.match(refused ?? '', /401/);
  assert.match(refused ?? '', /FIREZONE_TOKEN/);
  const expired = hints.forEvent({ kind: 'fatal', exitCode: 1, error: { code: 'tokenExpired', message: 'Authentication token invalid' } });
  assert.match(expired ?? '', /expired/);
  assert.equal(hints.forEvent({ kind: 'fatal', exitCode: 1, error: { code: 'maxRetriesReached', message: 'x' } }), undefined);
});

test('403 is said once over any number of retries; other statuses say nothing', () => {
  const hints = new OperatorHints();
  const hiccup = (error: string) => ({ kind: 'hiccup' as const, delayMs: 1000, maxElapsedMs: undefined, error });
  assert.equal(hints.forEvent(hiccup('websocket connection failed: HTTP error: 500 Internal Server Error')), undefined);
  assert.equal(hints.forEvent(hiccup('websocket connection failed: HTTP error: 4030 Odd')), undefined);
  assert.match(hints.forEvent(hiccup('websocket connection failed: HTTP error: 403 Forbidden')) ?? '', /403 Forbidden/);
  assert.equal(hints.forEvent(hiccup('websocket connection failed: HTTP error: 403 Forbidden')), undefined);
});
