// The SSE and long-poll transports over a fake fetch, and `auto`'s fallback.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient } from '../../src/index.js';
import { FakeClock, fakeFetch, fakeJwt, fakeWebSockets, settle } from '../helpers/fakes.js';

const v2Message = (topic, id, cursor, event = 'update') =>
  `id: ${cursor}\nevent: ${event}\ndata: ${JSON.stringify({ topic, id, payload: `p${id}` })}\n\n`;

function sseClient(fetch, options = {}) {
  const clock = new FakeClock();
  const client = new HeraldClient({
    url: 'http://herald.test/push',
    topics: ['a', 'b'],
    transport: 'sse',
    fetch,
    token: 'tok',
    clock,
    random: () => 0.5,
    ...options,
  });
  const seen = { states: [], messages: [], gaps: [], errors: [] };
  client.on('state', (s) => seen.states.push(s));
  client.on('message', (m) => seen.messages.push(m));
  client.on('gap', (g) => seen.gaps.push(g));
  client.on('error', (e) => seen.errors.push(e));
  return { client, clock, seen };
}

test('SSE: the token in the Authorization header, the cursor in Last-Event-ID, topics in the query', async () => {
  const fetch = fakeFetch(() => ({ stream: true, headers: { 'content-type': 'text/event-stream' } }));
  const { client, clock, seen } = sseClient(fetch);
  client.connect();
  await settle();
  const first = fetch.requests[0];
  assert.equal(first.url.pathname, '/push/v2/subscribe');
  assert.deepEqual(first.url.searchParams.getAll('topic'), ['a', 'b']);
  assert.equal(first.url.searchParams.get('access_token'), null);
  assert.equal(first.headers.authorization, 'Bearer tok');
  assert.equal(first.headers['last-event-id'], undefined);
  first.stream.write('id: m1.0.h..\n\n');
  first.stream.write(v2Message('a', '5', 'm1.0.h.5.'));
  first.stream.write('event: history_gap\ndata: {"topics":["b"]}\n\n');
  first.stream.write(v2Message('b', '6', 'm1.0.h.5.6', 'history_gap'));
  await settle();
  assert.equal(client.state, 'open');
  assert.deepEqual(seen.messages, [
    { topic: 'a', id: '5', event: 'update', payload: 'p5' },
    // A message named like a control event is still a message: it has an id: line.
    { topic: 'b', id: '6', event: 'history_gap', payload: 'p6' },
  ]);
  assert.deepEqual(seen.gaps, [{ topics: ['b'], reason: 'history' }]);
  first.stream.write('event: reconnect\n\n');
  await settle();
  assert.equal(seen.states.at(-1).reason.kind, 'shutdown');
  await clock.advance(1000);
  assert.equal(fetch.requests.length, 2);
  assert.equal(fetch.requests[1].headers['last-event-id'], 'm1.0.h.5.6');
  await client.close();
  assert.ok(fetch.requests[1].signal.aborted, 'close() aborts the stream');
});

test('SSE: credentials_expired reconnects at once with the token fetched ahead of time', async () => {
  const clock = new FakeClock();
  const issued = [];
  const getToken = () => {
    const now = Math.floor(clock.now() / 1000);
    const t = fakeJwt({ iat: now, exp: now + 120, n: issued.length });
    issued.push(t);
    return t;
  };
  const fetch = fakeFetch(() => ({ stream: true }));
  const { client, seen } = sseClient(fetch, { clock, getToken, token: undefined });
  client.connect();
  await settle();
  fetch.requests[0].stream.write('id: c0\n\n');
  await clock.advance(105000);
  assert.equal(issued.length, 2, 'refreshed 15 s before exp');
  assert.equal(fetch.requests.length, 1, 'the stream keeps going until Herald ends it');
  await clock.advance(15000);
  fetch.requests[0].stream.write('event: credentials_expired\n\n');
  await settle();
  assert.equal(seen.states.at(-1).delay, 0);
  await clock.advance(0);
  assert.equal(fetch.requests.length, 2);
  assert.equal(fetch.requests[1].headers.authorization, `Bearer ${issued[1]}`);
  assert.equal(issued.length, 2, 'no third token: the second was fresh');
  assert.equal(fetch.requests[1].headers['last-event-id'], 'c0');
  await client.close();
});

test('SSE: credentials_revoked stops; a 503 waits out retry-after; a refused cursor starts over', async () => {
  let answer = { stream: true };
  const fetch = fakeFetch((req) => (typeof answer === 'function' ? answer(req) : answer));
  const { client, clock, seen } = sseClient(fetch);
  client.connect();
  await settle();
  fetch.requests[0].stream.write('id: c1\n\n');
  answer = {
    status: 503,
    headers: { 'retry-after': '3', 'content-type': 'text/event-stream' },
    body: 'id:1\nevent: neurow_error_503\ndata: {"errors":[{"error_code":"subscription_rate_exceeded","error_message":"retry later"}]}\n\n',
  };
  fetch.requests[0].stream.end(); // dropped without a closing event
  await clock.advance(1000);
  assert.equal(fetch.requests.length, 2);
  await settle();
  const waiting = seen.states.at(-1);
  assert.equal(waiting.reason.kind, 'unavailable');
  assert.equal(waiting.reason.code, 'subscription_rate_exceeded');
  assert.equal(waiting.delay, 4500, 'retry-after 3 s, spread over 3 s more');
  answer = (req) =>
    req.headers['last-event-id']
      ? { status: 400, body: '{"errors":[{"error_code":"invalid_cursor","error_message":"not ours"}]}' }
      : { stream: true };
  await clock.advance(4500);
  assert.deepEqual(seen.gaps, [{ topics: ['a', 'b'], reason: 'invalid_cursor' }]);
  assert.equal(client.state, 'open');
  assert.equal(fetch.requests.at(-1).headers['last-event-id'], undefined);
  fetch.requests.at(-1).stream.write('event: credentials_revoked\n\n');
  await settle();
  assert.equal(client.state, 'closed');
  assert.equal(seen.errors.at(-1).code, 'revoked');
  const count = fetch.requests.length;
  await clock.advance(60000);
  assert.equal(fetch.requests.length, count);
});

test('SSE: a stream silent past its keep-alive is given up', async () => {
  const fetch = fakeFetch(() => ({ stream: true, headers: { 'x-sse-keepalive': '10000' } }));
  const { client, clock, seen } = sseClient(fetch);
  client.connect();
  await settle();
  await clock.advance(14999);
  fetch.requests[0].stream.write('event: ping\n\n');
  await settle();
  await clock.advance(14999);
  assert.equal(client.state, 'open', 'a ping is a sign of life');
  await clock.advance(1);
  assert.equal(seen.states.at(-1).reason.kind, 'heartbeat');
  await client.close();
});

test('long-poll: an immediate first poll, then held ones, each with the cursor of the last answer', async () => {
  const answers = [
    { messages: [], cursor: 'c0', more: false, gap: [] },
    {
      messages: [
        { topic: 'a', id: '1', event: 'e', payload: 'x' },
        { topic: 'b', id: '2', event: 'e', payload: 'y' },
      ],
      cursor: 'c2', more: false, gap: ['b'],
    },
  ];
  let held = null;
  const fetch = fakeFetch((req) => {
    const next = answers.shift();
    if (next) return { body: JSON.stringify(next), headers: { 'content-type': 'application/json' } };
    return new Promise((resolve) => (held = { req, resolve }));
  });
  const clock = new FakeClock();
  const client = new HeraldClient({
    url: 'http://herald.test', topics: ['a', 'b'], transport: 'longpoll', fetch, token: 'tok', clock, pollTimeout: 30,
  });
  const order = [];
  client.on('gap', (g) => order.push(`gap ${g.topics}`));
  client.on('message', (m) => order.push(`${m.topic} ${m.id} ${client.cursor}`));
  client.connect();
  await settle();
  await settle();
  const [first, second, third] = fetch.requests;
  assert.equal(first.url.pathname, '/v2/poll');
  assert.equal(first.url.searchParams.get('timeout'), '0');
  assert.equal(first.url.searchParams.get('cursor'), null);
  assert.equal(second.url.searchParams.get('cursor'), 'c0');
  assert.equal(second.url.searchParams.get('timeout'), '30');
  assert.equal(third.url.searchParams.get('cursor'), 'c2');
  assert.equal(first.headers.authorization, 'Bearer tok');
  assert.deepEqual(order, ['gap b', 'a 1 c0', 'b 2 c2'], 'gaps before the replay; the cursor moves per answer');
  assert.ok(held);
  await client.close();
  assert.ok(held.req.signal.aborted);
});

test('long-poll: a refused poll ends the connection like a refused stream', async () => {
  const fetch = fakeFetch(() => ({ status: 403, body: '{"errors":[{"error_code":"token_revoked","error_message":"Token revoked"}]}' }));
  const client = new HeraldClient({ url: 'http://h.test', topics: ['a'], transport: 'longpoll', fetch, token: 't', clock: new FakeClock() });
  const errors = [];
  client.on('error', (e) => errors.push(e.code));
  client.connect();
  await settle();
  await settle();
  assert.equal(client.state, 'closed');
  assert.deepEqual(errors, ['revoked']);
});

test('auto: WebSocket first; when it cannot connect, SSE at once; the one that opened is kept', async () => {
  const clock = new FakeClock();
  const net = fakeWebSockets();
  net.refuse = true;
  const fetch = fakeFetch(() => ({ stream: true }));
  const client = new HeraldClient({
    url: 'http://herald.test', topics: ['a'], WebSocket: net.WebSocket, fetch, token: 't', clock, random: () => 0.5,
  });
  const tried = [];
  client.on('state', (s) => s.state === 'connecting' && tried.push(s.transport));
  client.connect();
  await settle();
  await clock.advance(0);
  assert.deepEqual(tried, ['websocket', 'sse']);
  assert.equal(client.state, 'open');
  assert.equal(client.transport, 'sse');
  await assert.rejects(client.publish('a', 'e', 'p'), { code: 'publish_unsupported' });
  net.refuse = false;
  fetch.requests[0].stream.end();
  await clock.advance(1000);
  assert.deepEqual(tried, ['websocket', 'sse', 'sse'], 'sticks to SSE');
  await client.close();
});

test('auto: when every transport fails (server down), back off and start the list again', async () => {
  const clock = new FakeClock();
  const net = fakeWebSockets();
  net.refuse = true;
  const fetch = fakeFetch(() => {
    throw new TypeError('fetch failed');
  });
  const client = new HeraldClient({
    url: 'http://herald.test', topics: ['a'], WebSocket: net.WebSocket, fetch, token: 't', clock, random: () => 0.5,
  });
  const tried = [];
  const delays = [];
  client.on('state', (s) => {
    if (s.state === 'connecting') tried.push(s.transport);
    if (s.state === 'reconnecting') delays.push(s.delay);
  });
  client.connect();
  await clock.advance(0);
  assert.deepEqual(tried, ['websocket', 'sse', 'longpoll']);
  assert.deepEqual(delays, [0, 0, 250]);
  net.refuse = false;
  await clock.advance(250);
  assert.equal(client.transport, 'websocket');
  assert.equal(client.state, 'open');
  await client.close();
});

test('a WebSocket that cannot even be made (mixed content): auto goes on to SSE; websocket alone stops', async () => {
  class Throws {
    constructor() {
      throw new DOMException('An insecure WebSocket connection may not be initiated from a page loaded over HTTPS.', 'SecurityError');
    }
  }
  const fetch = fakeFetch(() => ({ stream: true }));
  const clock = new FakeClock();
  const auto = new HeraldClient({ url: 'http://h.test', topics: ['a'], WebSocket: Throws, fetch, token: 't', clock });
  auto.connect();
  await clock.advance(0);
  assert.equal(auto.transport, 'sse');
  assert.equal(auto.state, 'open');
  await auto.close();
  const only = new HeraldClient({ url: 'http://h.test', topics: ['a'], transport: 'websocket', WebSocket: Throws, token: 't', clock: new FakeClock() });
  const errors = [];
  only.on('error', (e) => errors.push(e.code));
  only.connect();
  await settle();
  assert.equal(only.state, 'closed');
  assert.deepEqual(errors, ['transport_failed']);
});
