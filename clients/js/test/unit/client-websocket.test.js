// The client over a fake WebSocket and a fake clock: what it sends, and what it does for each
// server signal. Herald itself is in test/integration.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient } from '../../src/index.js';
import { FakeClock, fakeJwt, fakeWebSockets, memoryStorage, settle } from '../helpers/fakes.js';

function setup(options = {}) {
  const clock = new FakeClock();
  const net = fakeWebSockets();
  let n = 0;
  const tokens = [];
  const getToken = async () => {
    n += 1;
    const now = Math.floor(clock.now() / 1000);
    const token = fakeJwt({ sub: 'u', iat: now, exp: now + 120, n });
    tokens.push(token);
    return token;
  };
  const client = new HeraldClient({
    url: 'http://herald.test',
    topics: ['a', 'b'],
    transport: 'websocket',
    WebSocket: net.WebSocket,
    getToken,
    clock,
    random: () => 0.5,
    ...options,
  });
  const seen = { states: [], messages: [], gaps: [], errors: [] };
  client.on('state', (s) => seen.states.push(s));
  client.on('message', (m) => seen.messages.push(m));
  client.on('gap', (g) => seen.gaps.push(g));
  client.on('error', (e) => seen.errors.push(e));
  return { clock, net, client, seen, tokens };
}

const msg = (topic, id, cursor) => ({ op: 'msg', topic, id, event: 'e', payload: `p${id}`, cursor });

test('authenticates with the auth command, then subscribes every topic in one command', async () => {
  const { net, client, seen } = setup();
  client.connect();
  await settle();
  assert.equal(net.sockets.length, 1);
  assert.equal(net.last.url, 'ws://herald.test/v2/ws', 'the token is not in the URL');
  assert.deepEqual(net.last.commands.map((c) => c.op), ['auth', 'subscribe']);
  assert.deepEqual(net.last.commands[1].topics, ['a', 'b']);
  assert.equal(net.last.commands[1].cursor, undefined, 'no cursor on a first connection');
  assert.deepEqual(seen.states.map((s) => s.state), ['connecting', 'open']);
  assert.equal(client.cursor, 'c0', "the subscribe ack's cursor");
  await client.close();
});

test('messages move the cursor, and the next connection resumes from the last one', async () => {
  const { net, client, seen, clock } = setup();
  client.connect();
  await settle();
  net.last.frame(msg('a', '1', 'c1'));
  net.last.frame(msg('b', '2', 'c2'));
  await settle();
  assert.deepEqual(seen.messages, [
    { topic: 'a', id: '1', event: 'e', payload: 'p1' },
    { topic: 'b', id: '2', event: 'e', payload: 'p2' },
  ]);
  assert.equal(client.cursor, 'c2');
  net.last.fail();
  await clock.advance(1000);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.last.commands.find((c) => c.op === 'subscribe').cursor, 'c2');
  await client.close();
});

test('history_gap: a gap frame becomes a gap event', async () => {
  const { net, client, seen } = setup();
  client.connect();
  await settle();
  net.last.frame({ op: 'gap', topics: ['b'] });
  await settle();
  assert.deepEqual(seen.gaps, [{ topics: ['b'], reason: 'history' }]);
  await client.close();
});

test('1001 (shutdown) and 4508 (slow consumer): back off with jitter, then resume', async () => {
  const { net, client, seen, clock } = setup({ random: () => 0.999 });
  client.connect();
  await settle();
  net.last.frame(msg('a', '1', 'c1'));
  await settle();
  net.last.serverClose(1001, 'going away');
  await settle();
  let waiting = seen.states.at(-1);
  assert.equal(waiting.state, 'reconnecting');
  assert.equal(waiting.reason.kind, 'shutdown');
  assert.equal(waiting.delay, 499, 'first attempt: within [0, 500)');
  await clock.advance(499);
  assert.equal(client.state, 'open');
  // Slow consumer twice in a row, before the connection is stable: the window grows.
  net.last.serverClose(4508, 'slow consumer');
  await settle();
  waiting = seen.states.at(-1);
  assert.equal(waiting.reason.kind, 'slow_consumer');
  assert.equal(waiting.delay, 999);
  await clock.advance(999);
  net.last.serverClose(4508, 'slow consumer');
  await settle();
  assert.equal(seen.states.at(-1).delay, 1998);
  await clock.advance(1998);
  assert.equal(net.last.commands.find((c) => c.op === 'subscribe').cursor, 'c1');
  // A connection that stayed up for `stableAfter` starts the backoff over.
  await clock.advance(10000);
  net.last.serverClose(1001);
  await settle();
  assert.equal(seen.states.at(-1).delay, 499);
  await client.close();
});

test('4409 (expired): a new token from getToken, and back at once', async () => {
  const { net, client, seen, clock, tokens } = setup();
  client.connect();
  await settle();
  net.last.serverClose(4409, 'the token expired');
  await settle();
  assert.equal(seen.states.at(-1).delay, 0);
  await clock.advance(0);
  assert.equal(tokens.length, 2);
  assert.equal(net.last.commands[0].token, tokens[1]);
  assert.equal(client.state, 'open');
  await client.close();
});

test('4401 revoked: the client stops, reports it, and never tries that token again', async () => {
  const { net, client, seen, clock } = setup();
  client.connect();
  await settle();
  net.last.serverClose(4401, 'the token was revoked: do not reconnect with it');
  await settle();
  assert.equal(client.state, 'closed');
  assert.equal(seen.errors.at(-1).code, 'revoked');
  assert.equal(seen.errors.at(-1).fatal, true);
  await clock.advance(60000);
  assert.equal(net.sockets.length, 1, 'no reconnection');
  assert.deepEqual(clock.pending().length, 0, 'no timer left (the refresh is cancelled too)');
});

test('a refused token (4401 after a bad auth) is replaced once; the same token again stops', async () => {
  const clock = new FakeClock();
  const net = fakeWebSockets();
  const token = fakeJwt({ iat: 1, exp: 2 });
  const client = new HeraldClient({
    url: 'http://h.test', topics: ['a'], transport: 'websocket', WebSocket: net.WebSocket, clock,
    getToken: () => token, random: () => 0,
  });
  const errors = [];
  client.on('error', (e) => errors.push(e.code));
  client.connect();
  await settle();
  net.last.serverClose(4401, 'a bad first token');
  await clock.advance(1000);
  assert.equal(client.state, 'closed');
  assert.deepEqual(errors, ['token_refused']);
  assert.equal(net.sockets.length, 1);
});

test('publish: resolved by the ack with the message id, rejected by the error frame', async () => {
  const { net, client } = setup();
  net.onCommand = (socket, cmd) => {
    if (cmd.op !== 'publish') return false;
    if (cmd.topic === 'a') socket.frame({ op: 'ack', id: cmd.id, message_id: '1796000000001' });
    else socket.frame({ op: 'error', id: cmd.id, code: 'publish_not_allowed', message: 'not b' });
    return true;
  };
  client.connect();
  await settle();
  assert.deepEqual(await client.publish('a', 'say', 'hi'), { messageId: '1796000000001' });
  await assert.rejects(client.publish('b', 'say', 'hi'), { code: 'publish_not_allowed', message: 'not b' });
  const published = net.commands('publish');
  assert.deepEqual(published.map(({ topic, event, payload }) => ({ topic, event, payload })), [
    { topic: 'a', event: 'say', payload: 'hi' },
    { topic: 'b', event: 'say', payload: 'hi' },
  ]);
  assert.notEqual(published[0].id, published[1].id);
  await client.close();
});

test('publish before the connection opens waits for it; a dropped connection rejects what is pending', async () => {
  const { net, client, clock } = setup();
  net.onCommand = (socket, cmd) => cmd.op === 'publish'; // never answered
  client.connect();
  const early = client.publish('a', 'e', 'p');
  await settle();
  assert.equal(net.commands('publish').length, 1, 'sent once the subscription is acknowledged');
  net.last.fail();
  await assert.rejects(early, { code: 'disconnected' });
  await clock.advance(1000);
  const late = assert.rejects(client.publish('a', 'e', 'p', { timeout: 500 }), { code: 'timeout' });
  await clock.advance(500);
  await late;
  await client.close();
  await assert.rejects(client.publish('a', 'e', 'p'), { code: 'closed' });
});

test('a silent connection is pinged, then given up and replaced', async () => {
  const { net, client, clock, seen } = setup({ heartbeat: { interval: 20000, timeout: 10000 } });
  net.onCommand = (socket, cmd) => cmd.op === 'ping'; // the server does not answer pings
  client.connect();
  await settle();
  await clock.advance(20000);
  assert.equal(net.last.commands.at(-1).op, 'ping');
  await clock.advance(10000);
  assert.equal(seen.states.at(-1).reason.kind, 'heartbeat');
  assert.equal(net.sockets[0].closedWith.by, 'client');
  await clock.advance(1000);
  assert.equal(net.sockets.length, 2);
  await client.close();
});

test('a refused subscription (topic_not_allowed) stops with the reason', async () => {
  const { net, client, seen } = setup();
  net.onCommand = (socket, cmd) => {
    if (cmd.op !== 'subscribe') return false;
    socket.frame({ op: 'error', id: cmd.id, code: 'topic_not_allowed', message: 'the token does not grant the topic "b"' });
    return true;
  };
  client.connect();
  await settle();
  assert.equal(client.state, 'closed');
  assert.equal(seen.errors.at(-1).code, 'topic_not_allowed');
  assert.match(seen.errors.at(-1).message, /does not grant the topic "b"/);
});

test('a refused cursor: dropped from storage, reported as a gap on every topic, then live', async () => {
  const storage = memoryStorage();
  storage.setItem('k', 'stale');
  const { net, client, seen, clock } = setup({ storage, storageKey: 'k' });
  assert.equal(client.cursor, 'stale', 'read from storage');
  net.onCommand = (socket, cmd) => {
    if (cmd.op !== 'subscribe' || !cmd.cursor) return false;
    socket.frame({ op: 'error', id: cmd.id, code: 'invalid_cursor', message: 'not one Herald made' });
    return true;
  };
  client.connect();
  await clock.advance(0);
  assert.deepEqual(seen.gaps, [{ topics: ['a', 'b'], reason: 'invalid_cursor' }]);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.last.commands.find((c) => c.op === 'subscribe').cursor, undefined);
  assert.equal(storage.getItem('k'), 'c0', "the new connection's cursor");
  await client.close();
});

test('the cursor is saved on every message, so a reloaded page resumes', async () => {
  const storage = memoryStorage();
  const first = setup({ storage });
  first.client.connect();
  await settle();
  first.net.last.frame(msg('a', '7', 'c7'));
  await settle();
  await first.client.close();
  const second = setup({ storage });
  assert.equal(second.client.cursor, 'c7');
  second.client.connect();
  await settle();
  assert.equal(second.net.last.commands.find((c) => c.op === 'subscribe').cursor, 'c7');
  await second.client.close();
  // Another set of topics has its own cursor.
  const other = setup({ storage, topics: ['a'] });
  assert.equal(other.client.cursor, null);
});

test('close() ends the socket, cancels every timer and emits closed once', async () => {
  const { net, client, clock, seen } = setup();
  client.connect();
  await settle();
  await client.close();
  assert.equal(net.last.closedWith.by, 'client');
  assert.equal(net.last.closedWith.code, 1000);
  assert.equal(client.state, 'closed');
  assert.deepEqual(clock.pending(), []);
  assert.equal(seen.states.filter((s) => s.state === 'closed').length, 1);
  await clock.advance(120000);
  assert.equal(net.sockets.length, 1);
});

test('options are checked when the client is made', () => {
  assert.throws(() => new HeraldClient({ topics: ['a'] }), /url/);
  assert.throws(() => new HeraldClient({ url: 'http://h', topics: [] }), /topics/);
  assert.throws(() => new HeraldClient({ url: 'http://h', topics: ['a'], transport: 'xhr' }), /transport/);
  assert.throws(() => new HeraldClient({ url: 'ftp://h', topics: ['a'], fetch }), /http/);
  assert.throws(
    () => new HeraldClient({ url: 'http://h', topics: ['a'], transport: 'websocket', WebSocket: undefined }),
    /ws package/,
  );
  const c = new HeraldClient({ url: 'http://h/push/', topics: ['a', 'a', 'b'], fetch });
  assert.deepEqual(c.topics, ['a', 'b']);
});

test('a gap is reported once per topic until a message of that topic arrives', async () => {
  const { net, client, seen, clock } = setup();
  client.connect();
  await settle();
  net.last.frame({ op: 'gap', topics: ['a', 'b'] });
  await settle();
  net.last.fail();
  await clock.advance(1000);
  // Resuming from the same position, Herald reports the same gap again.
  net.last.frame({ op: 'gap', topics: ['a', 'b'] });
  net.last.frame(msg('a', '9', 'c9'));
  net.last.frame({ op: 'gap', topics: ['a', 'b'] });
  await settle();
  assert.deepEqual(seen.gaps, [
    { topics: ['a', 'b'], reason: 'history' },
    { topics: ['a'], reason: 'history' },
  ]);
  await client.close();
});
