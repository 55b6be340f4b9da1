// The client in Node against the real Herald binary ($HERALD_BIN): publishing, a reloaded
// page's resume, auto's fallback, an SSE stream's timeout.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { assertExactly, herald, until, watch } from './harness.js';

test('websocket: publish resolves with the message id, which an SSE subscriber receives', async () => {
  const h = await herald();
  const reader = watch({ url: h.public, topics: ['room'], transport: 'sse', getToken: () => h.token({ grants: ['room'] }) });
  const writer = watch({
    url: h.public, topics: ['room'], transport: 'websocket',
    getToken: () => h.publishingToken({ grants: ['room', 'other'], publish: ['room'] }),
  });
  reader.client.connect();
  // A first connection has no cursor, so it is live from when it opens: wait for the reader.
  await until(() => reader.client.state === 'open', 'the reader');
  writer.client.connect();
  // Sent before the connection opens: it waits for it.
  const ack = await writer.client.publish('room', 'say', 'hello');
  assert.match(ack.messageId, /^\d+$/);
  await until(() => reader.seen.messages.length === 1, 'the SSE reader to receive it');
  assert.deepEqual(reader.seen.messages[0], { topic: 'room', id: ack.messageId, event: 'say', payload: 'hello' });
  await assert.rejects(writer.client.publish('other', 'say', 'no'), { code: 'publish_not_allowed' });
  await until(() => writer.seen.messages.length === 1, 'the writer to receive its own message');
  await Promise.all([reader.client.close(), writer.client.close()]);
  await h.stop();
});

test('a cursor saved in storage resumes a new client (a reloaded page) exactly', async () => {
  const h = await herald();
  const storage = new Map();
  const store = { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) };
  const options = { url: h.public, topics: ['a', 'b'], transport: 'sse', storage: store, getToken: () => h.token({ grants: ['a', 'b'] }) };
  const first = watch(options);
  first.client.connect();
  await until(() => first.client.state === 'open', 'the first page');
  await h.publish('a', 'seen');
  await until(() => first.seen.messages.length === 1, 'the first message');
  await first.client.close();
  await h.publish('a', 'missed-a');
  await h.publish('b', 'missed-b');
  const second = watch(options);
  second.client.connect();
  await until(() => second.seen.messages.length === 2, 'the messages published between the pages');
  assertExactly(second.seen, { a: ['missed-a'], b: ['missed-b'] });
  await second.client.close();
  await h.stop();
});

test('auto: WebSocket when it works; SSE when the WebSocket cannot connect', async () => {
  const h = await herald();
  const direct = watch({ url: h.public, topics: ['a'], getToken: () => h.token({ grants: ['a'] }) });
  direct.client.connect();
  await until(() => direct.client.state === 'open', 'auto to open');
  assert.equal(direct.client.transport, 'websocket');
  class Blocked extends WebSocket {
    constructor(url) {
      super(url.replace(/:\d+\//, ':1/')); // a port nothing listens on: as if a proxy refused it
    }
  }
  const fallback = watch({ url: h.public, topics: ['a'], WebSocket: Blocked, getToken: () => h.token({ grants: ['a'] }) });
  fallback.client.connect();
  await until(() => fallback.client.state === 'open', 'auto to fall back');
  assert.equal(fallback.client.transport, 'sse');
  await h.publish('a', 'x');
  await until(() => fallback.seen.messages.length === 1 && direct.seen.messages.length === 1, 'both to receive');
  await Promise.all([direct.client.close(), fallback.client.close()]);
  await h.stop();
});

test('sse: a stream ended by `timeout` (SSE_TIMEOUT) comes back at once and resumes', async () => {
  const h = await herald({ SSE_TIMEOUT: '300' });
  const { client, seen } = watch({ url: h.public, topics: ['a', 'b'], transport: 'sse', getToken: () => h.token({ grants: ['a', 'b'] }) });
  client.connect();
  await until(() => client.state === 'open', 'the first connection');
  const timeouts = () => seen.states.filter((s) => s.state === 'reconnecting' && s.reason.kind === 'timeout').length;
  await until(() => timeouts() >= 1, 'a timeout');
  await h.publish('a', 'a1');
  await until(() => timeouts() >= 2, 'another timeout');
  await h.publish('b', 'b1');
  await h.publish('a', 'a2');
  await until(() => seen.messages.length === 3, 'three messages');
  assertExactly(seen, { a: ['a1', 'a2'], b: ['b1'] });
  const delays = seen.states.filter((s) => s.state === 'reconnecting').map((s) => s.delay);
  assert.ok(delays.every((d) => d < 100), `within the first window: ${delays}`);
});
