// What the black-box tests share: a Herald per test, clients that record what they report,
// and cleanup that runs whatever the outcome.

import { afterEach } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { HeraldClient } from '../../src/index.js';
import { Herald } from '../helpers/herald.js';
export { until } from '../helpers/herald.js';

export const FAST_BACKOFF = { initial: 100, max: 1000 };

// Whatever a test's outcome, nothing it started outlives it: a client left reconnecting would
// keep the process (and the test run) alive.
const running = new Set();
const clients = new Set();
afterEach(async () => {
  await Promise.all([...clients].map((c) => c.close()));
  await Promise.all([...running].map((h) => h.stop()));
  clients.clear();
  running.clear();
});

export async function herald(env) {
  const h = await Herald.start(env);
  running.add(h);
  return h;
}

/** A client with everything it reports recorded. */
export function watch(options) {
  const client = new HeraldClient({ WebSocket, backoff: FAST_BACKOFF, ...options });
  clients.add(client);
  const seen = { messages: [], states: [], gaps: [], errors: [], opens: 0 };
  client.on('message', (m) => seen.messages.push(m));
  client.on('state', (s) => {
    seen.states.push(s);
    if (s.state === 'open') seen.opens += 1;
  });
  client.on('gap', (g) => seen.gaps.push(g));
  client.on('error', (e) => seen.errors.push(e));
  return { client, seen };
}

export const payloads = (seen, topic) => seen.messages.filter((m) => m.topic === topic).map((m) => m.payload);

/** Exactly these payloads per topic, in order: no loss, no duplicate. */
export function assertExactly(seen, expected) {
  for (const [topic, list] of Object.entries(expected)) assert.deepEqual(payloads(seen, topic), list, topic);
  const ids = seen.messages.map((m) => `${m.topic}/${m.id}`);
  assert.equal(new Set(ids).size, ids.length, 'no message twice');
}

/** WebSocket and fetch that cut each connection after 100–300 ms, like a flaky network. */
export function cutting() {
  const later = (fn) => setTimeout(fn, 100 + Math.random() * 200).unref();
  class CutWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      later(() => {
        if (this.readyState === 1) this.terminate();
      });
    }
  }
  const cutFetch = (url, init = {}) => {
    const controller = new AbortController();
    init.signal?.addEventListener('abort', () => controller.abort());
    later(() => {
      controller.abort();
    });
    return fetch(url, { ...init, signal: controller.signal });
  };
  return { WebSocket: CutWebSocket, fetch: cutFetch };
}
