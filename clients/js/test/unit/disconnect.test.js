import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromRefusal, fromSseControl, fromWsClose, plan } from '../../src/disconnect.js';
import { DEFAULT_BACKOFF } from '../../src/backoff.js';

test('every close code of docs/api.md has its meaning', () => {
  const table = {
    1001: 'shutdown', 1002: 'fatal', 1003: 'fatal', 1007: 'fatal', 1009: 'fatal',
    4409: 'expired', 4429: 'rate_limited', 4503: 'shutdown', 4508: 'slow_consumer', 4512: 'heartbeat',
    1000: 'network', 1006: 'network', 1011: 'network', 4999: 'network',
  };
  for (const [code, kind] of Object.entries(table)) assert.equal(fromWsClose(Number(code)).kind, kind, code);
  assert.equal(fromWsClose(4401, 'the token was revoked: do not reconnect with it').kind, 'revoked');
  assert.equal(fromWsClose(4401, 'no auth command within 5 s').kind, 'unauthorized');
});

test('SSE control events that end a stream, and the ones that do not', () => {
  assert.equal(fromSseControl('reconnect').kind, 'shutdown');
  assert.equal(fromSseControl('timeout').kind, 'timeout');
  assert.equal(fromSseControl('credentials_expired').kind, 'expired');
  assert.equal(fromSseControl('credentials_revoked').kind, 'revoked');
  assert.equal(fromSseControl('ping'), null);
  assert.equal(fromSseControl('history_gap'), null);
});

test('refusals: by error code first, then by status', () => {
  const cases = [
    [403, 'token_revoked', 'revoked'], [400, 'invalid_cursor', 'invalid_cursor'],
    [403, 'topic_not_allowed', 'fatal'], [400, 'too_many_topics', 'fatal'], [403, 'origin_not_allowed', 'fatal'],
    [403, 'invalid_authentication_token', 'unauthorized'], [401, 'missing_token', 'unauthorized'],
    [401, 'invalid_ticket', 'unauthorized'], [403, 'token_expired', 'expired'],
    [503, 'shutting_down', 'unavailable', 1000], [503, 'backplane_unavailable', 'shutdown'],
    [503, undefined, 'rate_limited'], [500, undefined, 'network'], [404, undefined, 'fatal'],
    [undefined, 'not_authenticated', 'unauthorized'], [undefined, 'backplane_unavailable', 'shutdown'],
  ];
  for (const [status, code, kind, retryAfter = null] of cases) {
    assert.equal(fromRefusal(status, code, retryAfter).kind, kind, `${status} ${code}`);
  }
});

test('what the client does for each kind', () => {
  const context = { attempt: 2, backoff: DEFAULT_BACKOFF, random: () => 0.5 };
  const p = (kind, extra = {}) => plan({ kind, ...extra }, context);
  assert.deepEqual(p('revoked'), { action: 'stop' });
  assert.deepEqual(p('fatal'), { action: 'stop' });
  assert.deepEqual(p('unsupported'), { action: 'stop' });
  assert.deepEqual(p('expired'), { action: 'retry', delay: 0, nextAttempt: 2, refreshToken: true });
  assert.deepEqual(p('invalid_cursor'), { action: 'retry', delay: 0, nextAttempt: 2, dropCursor: true });
  assert.deepEqual(p('unauthorized'), { action: 'retry', delay: 1000, nextAttempt: 3, refreshToken: true });
  assert.deepEqual(p('timeout'), { action: 'retry', delay: 250, nextAttempt: 2 }, 'an idle end does not grow the backoff');
  for (const kind of ['shutdown', 'slow_consumer', 'heartbeat', 'network']) {
    assert.deepEqual(p(kind), { action: 'retry', delay: 1000, nextAttempt: 3 }, kind);
  }
  assert.deepEqual(p('unavailable', { retryAfterMs: 4000 }), { action: 'retry', delay: 6000, nextAttempt: 3 });
  assert.deepEqual(p('rate_limited'), { action: 'retry', delay: 2000, nextAttempt: 3 });
});
