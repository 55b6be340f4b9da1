// 1,000 simulated clients (real HeraldClient instances over fake WebSockets, one fake clock)
// lose their node at the same instant. What a recovering node sees is when they come back: with
// full jitter they arrive spread over the backoff window, not in one instant.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldClient } from '../../src/index.js';
import { FakeClock, fakeFetch, fakeWebSockets, settle } from '../helpers/fakes.js';

const CLIENTS = 1000;

/** A small seeded generator (mulberry32), so that every run draws the same delays. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function crowd({ random = (i) => seeded(i + 1) } = {}) {
  const clock = new FakeClock(0);
  const net = fakeWebSockets();
  const clients = [];
  const opens = []; // [client index, time] of every open after the first
  for (let i = 0; i < CLIENTS; i++) {
    const client = new HeraldClient({
      url: 'http://herald.test', topics: ['news'], transport: 'websocket', WebSocket: net.WebSocket,
      token: 't', clock, random: random(i),
    });
    let first = true;
    client.on('state', (s) => {
      if (s.state !== 'open') return;
      if (!first) opens.push(clock.now());
      first = false;
    });
    clients.push(client.connect());
  }
  await settle();
  assert.equal(net.sockets.filter((s) => s.readyState === 1).length, CLIENTS);
  return { clock, net, clients, opens };
}

/** Counts per bucket of `width` ms from `from`. */
function histogram(times, from, width, buckets) {
  const counts = new Array(buckets).fill(0);
  for (const t of times) counts[Math.min(buckets - 1, Math.floor((t - from) / width))] += 1;
  return counts;
}

const bar = (counts) => counts.map((c) => String(c).padStart(4)).join(' ');

/** The node dies (no close frame) at t = 0 and is back at t = 5 s; when do the clients return? */
async function restart(options) {
  const { clock, net, clients, opens } = await crowd(options);
  const attempts = [];
  net.refuse = true;
  for (const s of net.sockets) if (s.readyState === 1) s.fail();
  const push = net.sockets.push.bind(net.sockets);
  net.sockets.push = (s) => {
    attempts.push(clock.now());
    return push(s);
  };
  await clock.advance(5000);
  net.refuse = false;
  await clock.advance(40000);
  await Promise.all(clients.map((c) => c.close()));
  return { opens, attempts };
}

test('the node restarts: 1,000 clients come back spread over seconds, not at once', async (t) => {
  const { opens, attempts } = await restart();
  assert.equal(opens.length, CLIENTS, 'every client is back');
  t.diagnostic(`reconnections per 500 ms after the node is back (t = 5 s): ${bar(histogram(opens, 5000, 500, 20))}`);
  t.diagnostic(`connection attempts per 500 ms from the crash:            ${bar(histogram(attempts, 0, 500, 20))}`);
  const busiest = Math.max(...histogram(opens, 5000, 100, 400));
  t.diagnostic(`busiest 100 ms: ${busiest} of ${CLIENTS} reconnections`);
  assert.ok(busiest < CLIENTS * 0.05, `at most 5 % in any 100 ms, got ${busiest}`);
  const sorted = [...opens].sort((a, b) => a - b);
  const p10 = sorted[CLIENTS * 0.1] - 5000;
  const p90 = sorted[CLIENTS * 0.9] - 5000;
  t.diagnostic(`10th-90th percentile of return: ${p10}–${p90} ms after the node is back`);
  assert.ok(p90 - p10 > 2000, 'the middle 80 % spread over more than 2 s');
  // No storm while it was down either: the first attempts spread over the first 500 ms window.
  const firstBurst = attempts.filter((a) => a < 100).length;
  assert.ok(firstBurst < CLIENTS * 0.3, `first 100 ms after the crash: ${firstBurst} attempts`);
});

test('the same crowd without jitter (every client draws alike) would return in one instant', async (t) => {
  const { opens } = await restart({ random: () => () => 0.999 });
  const busiest = Math.max(...histogram(opens, 5000, 100, 400));
  t.diagnostic(`without jitter, busiest 100 ms: ${busiest} of ${CLIENTS}`);
  assert.equal(busiest, CLIENTS, 'what the test above would catch');
});

test('shutdown (1001 to all at once): reconnections spread over the first backoff window', async (t) => {
  const { clock, net, clients, opens } = await crowd();
  for (const s of [...net.sockets]) s.serverClose(1001, 'going away');
  await clock.advance(1000);
  assert.equal(opens.length, CLIENTS);
  const counts = histogram(opens, 0, 50, 10);
  t.diagnostic(`reconnections per 50 ms after 1001: ${bar(counts)}`);
  assert.ok(Math.max(...opens) < 500, 'all within the 500 ms window');
  for (const c of counts) assert.ok(c > CLIENTS * 0.05 && c < CLIENTS * 0.15, `uniform: ${counts}`);
  await Promise.all(clients.map((c) => c.close()));
});

test('503 with retry-after 2: no one back before 2 s, and spread over the next 2 s', async (t) => {
  const clock = new FakeClock(0);
  let refusing = true;
  const fetch = fakeFetch(() =>
    refusing
      ? {
          status: 503,
          headers: { 'retry-after': '2', 'content-type': 'text/event-stream' },
          body: 'id:1\nevent: neurow_error_503\ndata: {"errors":[{"error_code":"shutting_down","error_message":"reconnect"}]}\n\n',
        }
      : { stream: true });
  const clients = [];
  const opens = [];
  for (let i = 0; i < CLIENTS; i++) {
    const client = new HeraldClient({
      url: 'http://herald.test', topics: ['news'], transport: 'sse', fetch, token: 't', clock, random: seeded(i + 1),
    });
    client.on('state', (s) => s.state === 'open' && opens.push(clock.now()));
    clients.push(client.connect());
  }
  await settle();
  await settle();
  assert.equal(fetch.requests.length, CLIENTS, 'every client asked once, at t = 0, and was refused');
  refusing = false;
  await clock.advance(5000);
  assert.equal(opens.length, CLIENTS);
  const counts = histogram(opens, 2000, 200, 10);
  t.diagnostic(`connections per 200 ms from 2 s: ${bar(counts)}`);
  assert.ok(opens.every((d) => d >= 2000 && d < 4000), 'never sooner than retry-after');
  for (const c of counts) assert.ok(c > CLIENTS * 0.05 && c < CLIENTS * 0.15, `uniform: ${counts}`);
  await Promise.all(clients.map((c) => c.close()));
});
