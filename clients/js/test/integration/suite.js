// The same black-box tests for each transport; websocket.test.js, sse.test.js and
// longpoll.test.js run them, so that the three run in parallel as separate files.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertExactly, cutting, herald, until, watch } from './harness.js';

/** @param {'websocket'|'sse'|'longpoll'} transport */
export function transportSuite(transport) {
  test(`${transport}: two topics on one connection, a server restart, then resume from the cursor`, async () => {
    const h = await herald();
    const { client, seen } = watch({
      url: h.public, topics: ['a', 'b'], transport, getToken: () => h.token({ grants: ['a', 'b'] }),
    });
    client.connect();
    await until(() => client.state === 'open', 'the first connection');
    await h.publish('a', 'a1');
    await h.publish('b', 'b1');
    await h.publish('a', 'a2');
    await until(() => seen.messages.length === 3, 'three messages');

    await h.kill();
    await until(() => client.state === 'reconnecting', 'the client to notice the crash');
    await h.startAgain();
    // Published before the client is back (its backoff is still running, most likely): the
    // resume from its cursor replays them.
    await h.publish('a', 'a3');
    await h.publish('b', 'b2');
    await until(() => seen.messages.length === 5, 'the messages published after the restart');
    assertExactly(seen, { a: ['a1', 'a2', 'a3'], b: ['b1', 'b2'] });
    // The restarted node does not know what came before: it says so rather than stay silent.
    assert.deepEqual(seen.gaps.flatMap((g) => g.topics).sort(), ['a', 'b']);
    assert.equal(client.transport, transport);
    assert.ok(seen.opens >= 2);
    await client.close();
    await h.stop();
  });

  test(`${transport}: connections cut every few hundred ms lose and repeat nothing`, async () => {
    const h = await herald();
    const { client, seen } = watch({
      url: h.public, topics: ['a', 'b'], transport, getToken: () => h.token({ grants: ['a', 'b'] }),
      backoff: { initial: 20, max: 100 },
      ...cutting(),
    });
    client.connect();
    await until(() => client.state === 'open', 'the first connection');
    const expected = { a: [], b: [] };
    for (let i = 0; i < 150; i++) {
      const topic = i % 3 === 0 ? 'b' : 'a';
      expected[topic].push(`${topic}${i}`);
      await h.publish(topic, `${topic}${i}`);
      if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const cuts = () => seen.states.filter((s) => s.state === 'reconnecting' && s.reason.kind === 'network').length;
    await until(() => seen.messages.length >= 150 && cuts() >= 3, '150 messages through at least 3 cuts');
    // Let anything extra (a duplicate) arrive before judging.
    await until(() => client.state === 'open', 'a connection');
    assertExactly(seen, expected);
    assert.deepEqual(seen.gaps, [], 'no gap: everything was still in history');
    await client.close();
    await h.stop();
  });

  test(`${transport}: tokens of 3 s are refreshed before they expire, and nothing is lost`, async () => {
    const h = await herald();
    let issued = 0;
    const { client, seen } = watch({
      url: h.public, topics: ['a'], transport, refreshLeeway: 1000,
      getToken: () => {
        issued += 1;
        return h.token({ grants: ['a'], lifetime: 3 });
      },
    });
    client.connect();
    await until(() => client.state === 'open', 'the first connection');
    const expected = [];
    const started = Date.now();
    for (let i = 0; Date.now() - started < 7000; i++) {
      expected.push(`m${i}`);
      await h.publish('a', `m${i}`);
      await until(() => seen.messages.length === expected.length, `message ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assertExactly(seen, { a: expected });
    assert.ok(issued >= 4, `a token every ~2 s over 7 s, got ${issued}`);
    assert.deepEqual(seen.errors.map((e) => e.code), []);
    const reasons = seen.states.filter((s) => s.state === 'reconnecting').map((s) => s.reason.kind);
    if (transport === 'websocket') {
      assert.deepEqual(reasons, [], 'the auth command refreshes in place: one connection throughout');
    } else if (transport === 'sse') {
      // A stream cannot take a new token: Herald ends it at exp, the client is back at once.
      assert.ok(reasons.length >= 2 && reasons.every((k) => k === 'expired'), `reasons: ${reasons}`);
      assert.ok(seen.states.filter((s) => s.state === 'reconnecting').every((s) => s.delay === 0));
    } else {
      assert.deepEqual(reasons, [], 'each poll carries the current token');
    }
    await client.close();
    await h.stop();
  });

  test(`${transport}: a revoked token stops the client, which does not come back`, async () => {
    const h = await herald({ VERBOSE_AUTHENTICATION_ERRORS: 'true' });
    const { client, seen } = watch({
      url: h.public, topics: ['a'], transport, getToken: () => h.token({ grants: ['a'], sub: 'user-1' }),
    });
    client.connect();
    await until(() => client.state === 'open', 'the first connection');
    await h.revoke({ sub: 'user-1' });
    await until(() => client.state === 'closed', 'the client to stop');
    assert.equal(seen.errors.at(-1).code, 'revoked');
    const attempts = seen.states.filter((s) => s.state === 'connecting').length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(seen.states.filter((s) => s.state === 'connecting').length, attempts, 'no new attempt');
    await h.stop();
  });
}
