// The long-poll transport (/v2/poll): a loop of stateless requests, each carrying the cursor the
// previous one answered. The first poll of a connection asks for an immediate answer, so that
// the client knows at once that it is connected (and gets any replay); later polls are held by
// the server for `pollTimeout` seconds.

import { parseErrorBody } from './frames.js';
import { disconnect, fromRefusal } from './disconnect.js';
import { parseRetryAfter } from './backoff.js';
import { HeraldError } from './errors.js';
import { authHeaders, subscriptionUrl } from './transport.js';

/** Beyond the poll's own timeout, how long a request may take before it counts as lost. */
const POLL_GRACE_MS = 10000;

/**
 * @param {import('./transport.js').TransportContext} ctx
 * @returns {import('./transport.js').Connection}
 */
export function openLongPoll(ctx) {
  const { clock, on } = ctx;
  let ended = false;
  let opened = false;
  let controller = null;
  let cursor = ctx.cursor;

  const end = (reason) => {
    if (ended) return;
    ended = true;
    controller?.abort();
    if (reason) on.close({ ...reason, opened });
  };

  const pollOnce = async (timeoutS) => {
    controller = new AbortController();
    const extra = { timeout: timeoutS };
    if (cursor) extra.cursor = cursor;
    const lost = clock.setTimeout(() => controller.abort(), timeoutS * 1000 + POLL_GRACE_MS);
    try {
      const response = await ctx.impl.fetch(subscriptionUrl(ctx.urls.poll, ctx.topics, extra), {
        method: 'GET',
        headers: { accept: 'application/json', ...authHeaders(ctx.auth.current()) },
        signal: controller.signal,
        credentials: ctx.options.withCredentials ? 'include' : 'same-origin',
        cache: 'no-store',
      });
      const body = await response.text();
      if (response.status !== 200) {
        const { code, message } = parseErrorBody(body);
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), clock.now());
        return { refused: fromRefusal(response.status, code, retryAfterMs, message) };
      }
      const answer = JSON.parse(body);
      if (!answer || !Array.isArray(answer.messages) || typeof answer.cursor !== 'string') {
        return { refused: disconnect('fatal', { code: 'invalid_answer', message: `a poll answer Herald would not send: ${body.slice(0, 200)}` }) };
      }
      return { answer };
    } finally {
      clock.clearTimeout(lost);
    }
  };

  const run = async () => {
    let timeoutS = 0;
    for (;;) {
      let result;
      try {
        result = await pollOnce(timeoutS);
      } catch (e) {
        if (!ended) end(disconnect('network', { message: String(e?.message ?? e) }));
        return;
      }
      if (ended) return;
      if (result.refused) {
        end(result.refused);
        return;
      }
      const { messages, cursor: next, gap } = result.answer;
      if (!opened) {
        opened = true;
        on.open(null);
      }
      if (Array.isArray(gap) && gap.length > 0) on.gap(gap);
      // The answer has one cursor, after its last message: earlier messages carry none.
      messages.forEach((m, i) => {
        if (ended) return;
        if (typeof m?.topic !== 'string' || typeof m.id !== 'string' || typeof m.payload !== 'string') {
          on.error(new HeraldError('invalid_event', `a polled message Herald would not send: ${JSON.stringify(m)}`));
          return;
        }
        on.message(
          { topic: m.topic, id: m.id, event: m.event ?? 'message', payload: m.payload },
          i === messages.length - 1 ? next : null,
        );
      });
      if (ended) return;
      if (messages.length === 0) on.cursor(next);
      cursor = next;
      // `more`: Herald holds further retained messages; with a cursor and messages waiting it
      // answers at once anyway, so the next poll is the same either way.
      timeoutS = ctx.options.pollTimeout;
    }
  };
  run().catch((e) => end(disconnect('network', { message: String(e?.message ?? e) })));

  return {
    transport: 'longpoll',
    canPublish: false,
    // Each poll reads the current token: a refreshed one is used from the next poll on.
    updateToken: null,
    close() {
      end(null);
      return Promise.resolve();
    },
  };
}
