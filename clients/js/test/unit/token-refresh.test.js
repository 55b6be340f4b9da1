// Token refresh timing under a fake clock: before exp over a live WebSocket, and when
// getToken fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient } from '../../src/index.js';
import { FakeClock, fakeJwt, fakeWebSockets, settle } from '../helpers/fakes.js';

function setup({ lifetime = 120, refreshLeeway, failAt = new Set() } = {}) {
  const clock = new FakeClock();
  const net = fakeWebSockets();
  const calls = [];
  const getToken = async () => {
    calls.push(clock.now());
    if (failAt.has(calls.length)) throw new Error('the backend is down');
    const now = Math.floor(clock.now() / 1000);
    return fakeJwt({ iat: now, exp: now + lifetime, n: calls.length });
  };
  const client = new HeraldClient({
    url: 'https://herald.test', topics: ['a'], transport: 'websocket', WebSocket: net.WebSocket,
    getToken, clock, refreshLeeway,
  });
  const errors = [];
  client.on('error', (e) => errors.push(e.code));
  return { clock, net, client, calls, errors };
}

test('WebSocket: a new token 15 s before exp, sent with the auth command on the same connection', async () => {
  const { clock, net, client, calls } = setup();
  const start = clock.now();
  client.connect();
  await settle();
  assert.equal(net.last.url, 'wss://herald.test/v2/ws');
  await clock.advance(104999);
  assert.equal(calls.length, 1);
  await clock.advance(1);
  assert.deepEqual(calls.map((t) => t - start), [0, 105000]);
  const auths = net.last.commands.filter((c) => c.op === 'auth');
  assert.equal(auths.length, 2);
  assert.notEqual(auths[1].token, auths[0].token);
  // And again, 105 s after the second token arrived.
  await clock.advance(105000);
  assert.deepEqual(calls.map((t) => t - start), [0, 105000, 210000]);
  assert.equal(net.sockets.length, 1, 'never reconnected');
  assert.equal(client.state, 'open');
  await client.close();
});

test('a short token: refreshed at half its life when the leeway is longer than that', async () => {
  const { clock, client, calls } = setup({ lifetime: 10, refreshLeeway: 15000 });
  const start = clock.now();
  client.connect();
  await settle();
  await clock.advance(12000);
  assert.deepEqual(calls.map((t) => t - start), [0, 5000, 10000]);
  await client.close();
});

test('getToken failing: reported, retried with backoff, and the connection lives on meanwhile', async () => {
  const { clock, client, calls, errors } = setup({ failAt: new Set([2, 3]) });
  const start = clock.now();
  client.connect();
  await settle();
  await clock.advance(105000);
  assert.deepEqual(errors, ['token_refresh_failed']);
  await clock.advance(5000);
  assert.equal(calls.length, 4);
  assert.deepEqual(errors, ['token_refresh_failed', 'token_refresh_failed']);
  assert.ok(calls[3] - start < 120000, 'a good token before the old one expired');
  assert.equal(client.state, 'open');
  await client.close();
});

test('an opaque token (not a JWT): no schedule; Herald\'s expiry signal asks for the next one', async () => {
  const clock = new FakeClock();
  const net = fakeWebSockets();
  let n = 0;
  const client = new HeraldClient({
    url: 'http://h.test', topics: ['a'], transport: 'websocket', WebSocket: net.WebSocket, clock,
    getToken: () => `opaque-${++n}`,
  });
  client.connect();
  await settle();
  assert.deepEqual(clock.pending().filter((d) => d > 30000), [], 'no refresh timer');
  net.last.serverClose(4409);
  await clock.advance(0);
  assert.equal(n, 2);
  assert.equal(net.last.commands[0].token, 'opaque-2');
  await client.close();
});

test('connect() after close() keeps refreshing the token it kept', async () => {
  const { clock, client, calls } = setup();
  const start = clock.now();
  client.connect();
  await settle();
  await client.close();
  await clock.advance(50000);
  client.connect();
  await settle();
  assert.equal(calls.length, 1, 'the token is still good');
  await clock.advance(55000);
  assert.deepEqual(calls.map((t) => t - start), [0, 105000]);
  await client.close();
});

test('connect() after a revocation asks for a new token instead of sending the revoked one', async () => {
  const { clock, net, client, calls } = setup();
  client.connect();
  await settle();
  net.last.serverClose(4401, 'the token was revoked: do not reconnect with it');
  await settle();
  assert.equal(client.state, 'closed');
  client.connect();
  await clock.advance(0);
  assert.equal(calls.length, 2);
  assert.notEqual(net.last.commands[0].token, net.sockets[0].commands[0].token);
  assert.equal(client.state, 'open');
  await client.close();
});
