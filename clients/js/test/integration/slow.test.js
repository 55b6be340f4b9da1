// A consumer too slow for its outbox (SUBSCRIPTION_OUTBOX_CAPACITY): Herald ends its connection
// (WebSocket 4508, SSE `reconnect`), and the client comes back after a backoff draw and resumes
// from its cursor, so nothing is lost or repeated.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { assertExactly, herald, until, watch } from './harness.js';

const PAYLOAD = 'x'.repeat(200 * 1024);
// Enough to fill loopback's socket buffers (autotuned to several MB each way) and then the
// outbox, whatever the kernel's tuning: 30 MB.
const COUNT = 150;

/** The first connection stops reading for `ms` after it opens, like a busy tab. */
function stalling(ms) {
  let first = true;
  class StallingWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      if (!first) return;
      first = false;
      this.once('open', () => {
        this._socket.pause();
        setTimeout(() => this._socket.resume(), ms).unref();
      });
    }
  }
  const stallingFetch = async (url, init) => {
    const response = await fetch(url, init);
    if (!first || !response.body) return response;
    first = false;
    const reader = response.body.getReader();
    const until = Date.now() + ms;
    const body = new ReadableStream({
      async pull(controller) {
        if (Date.now() < until) await new Promise((resolve) => setTimeout(resolve, until - Date.now()));
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (why) => reader.cancel(why),
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { WebSocket: StallingWebSocket, fetch: stallingFetch };
}

for (const transport of ['websocket', 'sse']) {
  // Skipped: whether the outbox overflows while the client stalls depends on how much loopback's
  // autotuned socket buffers absorb and on how fast the serial publishes go on a busy machine, so
  // the test passed or failed by the machine's load (2026-12-03). The server's slow-consumer ends
  // are tested in crates/herald/tests (ws.rs, lifecycle); the client's handling of 4508 and
  // `reconnect` in test/unit. To re-enable: make the overflow certain (e.g. stall until closed).
  test.skip(`${transport}: a slow consumer is disconnected, backs off and resumes exactly`, async () => {
    const h = await herald({ SUBSCRIPTION_OUTBOX_CAPACITY: '4' });
    const { client, seen } = watch({
      url: h.public, topics: ['a'], transport, getToken: () => h.token({ grants: ['a'] }), ...stalling(4000),
    });
    client.connect();
    await until(() => client.state === 'open', 'the first connection');
    const expected = [];
    for (let i = 0; i < COUNT; i++) {
      expected.push(`${i}:${PAYLOAD}`);
      await h.publish('a', `${i}:${PAYLOAD}`);
    }
    await until(() => seen.messages.length >= COUNT, `${COUNT} messages`);
    const reasons = seen.states.filter((s) => s.state === 'reconnecting').map((s) => s.reason.kind);
    // A replay of large messages can overflow the outbox again on a busy machine: then the
    // client is dropped again and backs off longer; every drop is for the same reason.
    const kind = transport === 'websocket' ? 'slow_consumer' : 'shutdown';
    // When the stall outlasts Herald's 2 s grace for a stuck write, the closing frame cannot be
    // written and the connection is dropped instead: the client sees a network end. Either way
    // it backs off and resumes exactly, which is what this test is about.
    assert.ok(reasons.length >= 1 && reasons.every((r) => r === kind || r === 'network'), `reasons: ${reasons}`);
    assertExactly(seen, { a: expected });
  });
}
