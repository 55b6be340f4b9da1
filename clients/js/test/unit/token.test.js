import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jwtTimes, refreshDelay } from '../../src/token.js';
import { fakeJwt } from '../helpers/fakes.js';

// A token printed by `herald token --api public --issuer test_issuer1 --grant a --grant b`.
const HERALD_TOKEN =
  'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJwdWJsaWNfYXBpIiwiZXhwIjoxNzk2MzA2MDYyLCJpYXQiOjE3OTYzMDU5NDIsImlzcyI6InRlc3RfaXNzdWVyMSIsInRvcGljcyI6WyJhIiwiYiJdfQ.hNupCdzUO03fX7zAQRQaX65118zIoKqsnSiQVQsAZM4';

test("exp and iat from a token Herald's CLI printed, and nothing from what is not a JWT", () => {
  assert.deepEqual(jwtTimes(HERALD_TOKEN), { exp: 1796306062, iat: 1796305942 });
  assert.deepEqual(jwtTimes(fakeJwt({ exp: 10 })), { exp: 10 });
  for (const t of ['opaque', 'a.b', 'a.!!!.c', fakeJwt({ exp: '10' }), fakeJwt(null), undefined]) {
    assert.equal(jwtTimes(t), null, String(t));
  }
  // base64url with - and _ and no padding: claims holding characters that encode to them.
  assert.equal(jwtTimes(fakeJwt({ exp: 5, sub: '>>>???' })).exp, 5);
});

const S = 1000;
const iat = 1_800_000_000;

test('a fresh 120 s token is replaced 15 s before it expires', () => {
  const received = iat * S;
  assert.equal(refreshDelay({ iat, exp: iat + 120 }, received, received, 15 * S), 105 * S);
  // Asked again 30 s later, the same moment.
  assert.equal(refreshDelay({ iat, exp: iat + 120 }, received, received + 30 * S, 15 * S), 75 * S);
});

test('the leeway is at most half the lifetime', () => {
  const received = iat * S;
  assert.equal(refreshDelay({ iat, exp: iat + 4 }, received, received, 15 * S), 2 * S);
});

test("a browser clock 60 s behind: the token's lifetime counts from its receipt", () => {
  const received = (iat - 60) * S; // local time when the server's clock read iat
  assert.equal(refreshDelay({ iat, exp: iat + 120 }, received, received, 15 * S), 105 * S);
});

test('a browser clock ahead, or a stale cached token: refreshed early, never in a busy loop', () => {
  const received = (iat + 60) * S;
  assert.equal(refreshDelay({ iat, exp: iat + 120 }, received, received, 15 * S), 45 * S);
  const farAhead = (iat + 600) * S;
  assert.equal(refreshDelay({ iat, exp: iat + 120 }, farAhead, farAhead, 15 * S), 2 * S);
});

test('without iat, exp on the local clock; without exp, no schedule', () => {
  assert.equal(refreshDelay({ exp: iat + 100 }, iat * S, iat * S, 15 * S), 85 * S);
  assert.equal(refreshDelay(null, 0, 0), null);
});
