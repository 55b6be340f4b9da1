import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffCeiling, backoffDelay, backoffOptions, DEFAULT_BACKOFF, parseRetryAfter, retryAfterDelay,
} from '../../src/backoff.js';

test('the window doubles from 500 ms and stops at 20 s', () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 50, 5000].map((a) => backoffCeiling(a, DEFAULT_BACKOFF));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000, 20000]);
});

test('full jitter: a draw spans the whole window, from 0 to just under its ceiling', () => {
  assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0), 0);
  assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0.999999), 3999);
  assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0.5), 2000);
});

test('full jitter: 20,000 draws are uniform over the window (each tenth holds 10 % ± 1.5)', () => {
  const attempt = 4; // window 8 s
  const n = 20000;
  const tenths = new Array(10).fill(0);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const d = backoffDelay(attempt);
    assert.ok(d >= 0 && d < 8000, `${d} is outside [0, 8000)`);
    tenths[Math.floor(d / 800)] += 1;
    sum += d;
  }
  for (const count of tenths) assert.ok(Math.abs(count / n - 0.1) < 0.015, `tenths ${tenths}`);
  assert.ok(Math.abs(sum / n - 4000) < 120, `mean ${sum / n}`);
});

test('retry-after is a floor, and clients told the same value spread over one more period', () => {
  assert.equal(retryAfterDelay(3000, () => 0), 3000);
  assert.equal(retryAfterDelay(3000, () => 0.999999), 5999);
  const draws = Array.from({ length: 1000 }, () => retryAfterDelay(1000));
  assert.ok(draws.every((d) => d >= 1000 && d < 2000));
  assert.ok(new Set(draws.map((d) => Math.floor(d / 100))).size === 10, 'every tenth of the period is used');
});

test('retry-after: delta-seconds, an HTTP-date, or nothing usable', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('5', now), 5000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:07 GMT', now), 7000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter(null, now), null);
  assert.equal(parseRetryAfter('soon', now), null);
  assert.equal(parseRetryAfter('-1', now), null);
});

test('bad backoff options are refused with the option named', () => {
  assert.deepEqual(backoffOptions({ max: 1000 }), { initial: 500, max: 1000, factor: 2 });
  assert.throws(() => backoffOptions({ initial: 0 }), /backoff\.initial/);
  assert.throws(() => backoffOptions({ factor: 'x' }), /backoff\.factor/);
  assert.throws(() => backoffOptions({ initial: 2000, max: 1000 }), /at least backoff\.initial/);
});
