// The SSE transport (/v2/subscribe) over fetch streams, so that the token travels in the
// Authorization header (not the URL), control events without data are seen, and no
// EventSource is needed in Node.

import { SseParser } from './sse-parser.js';
import { parseErrorBody } from './frames.js';
import { disconnect, fromRefusal, fromSseControl } from './disconnect.js';
import { parseRetryAfter } from './backoff.js';
import { HeraldError } from './errors.js';
import { authHeaders, subscriptionUrl } from './transport.js';

/**
 * @param {import('./transport.js').TransportContext} ctx
 * @returns {import('./transport.js').Connection}
 */
export function openSse(ctx) {
  const { clock, on } = ctx;
  const controller = new AbortController();
  let ended = false;
  let opened = false;
  let idleTimer = null;
  let lastBytesAt = clock.now();

  const end = (reason) => {
    if (ended) return;
    ended = true;
    clock.clearTimeout(idleTimer);
    controller.abort();
    if (reason) on.close({ ...reason, opened });
  };

  const run = async () => {
    const headers = { accept: 'text/event-stream', ...authHeaders(ctx.auth.current()) };
    if (ctx.cursor) headers['last-event-id'] = ctx.cursor;
    let response;
    try {
      response = await ctx.impl.fetch(subscriptionUrl(ctx.urls.sse, ctx.topics), {
        method: 'GET',
        headers,
        signal: controller.signal,
        credentials: ctx.options.withCredentials ? 'include' : 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      end(disconnect('network', { message: String(e?.message ?? e) }));
      return;
    }
    if (ended) return;
    if (response.status !== 200 || !response.body) {
      const body = await response.text().catch(() => '');
      const { code, message } = parseErrorBody(body);
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), clock.now());
      end(fromRefusal(response.status, code, retryAfterMs, message));
      return;
    }
    // A silent stream may be a dead one. Herald writes `event: ping` after SSE_KEEPALIVE of
    // silence and says how long that is; a cross-origin page cannot read the header (it is not
    // exposed), and then the client's own bound applies.
    const keepalive = Number(response.headers.get('x-sse-keepalive'));
    const idleLimit =
      Number.isFinite(keepalive) && keepalive > 0
        ? keepalive + Math.max(5000, keepalive / 2)
        : ctx.options.sseIdleTimeout;
    const watchIdle = () => {
      const silent = clock.now() - lastBytesAt;
      if (silent >= idleLimit) {
        end(disconnect('heartbeat', { message: `no bytes for ${silent} ms` }));
        return;
      }
      idleTimer = clock.setTimeout(watchIdle, idleLimit - silent);
    };
    idleTimer = clock.setTimeout(watchIdle, idleLimit);

    opened = true;
    on.open(null);

    let closing = null;
    // Herald does not reserve event names, so a message may be called `reconnect` or
    // `history_gap`. What tells them apart is the `id:` line: every message and the opening
    // event carry the cursor, control events and history_gap never do.
    const parser = new SseParser((event) => {
      if (ended) return;
      if (event.id === undefined) {
        control(event);
        return;
      }
      if (event.event === undefined && event.data === undefined) {
        on.cursor(event.id);
        return;
      }
      let data;
      try {
        data = JSON.parse(event.data ?? '');
      } catch {
        data = null;
      }
      if (!data || typeof data.topic !== 'string' || typeof data.id !== 'string' || typeof data.payload !== 'string') {
        on.error(new HeraldError('invalid_event', `an event that is not a v2 message: ${event.data}`));
        return;
      }
      on.message({ topic: data.topic, id: data.id, event: event.event ?? 'message', payload: data.payload }, event.id);
    });
    const control = (event) => {
      const name = event.event;
      if (name === undefined || name === 'ping') return;
      if (name === 'history_gap') {
        let topics = null;
        try {
          topics = JSON.parse(event.data ?? '').topics;
        } catch {
          // reported below
        }
        if (Array.isArray(topics)) on.gap(topics);
        else on.error(new HeraldError('invalid_event', `history_gap without a topic list: ${event.data}`));
        return;
      }
      const closingReason = fromSseControl(name);
      if (closingReason) closing = closingReason;
    };

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (ended) break;
        if (done) break;
        lastBytesAt = clock.now();
        parser.push(decoder.decode(value, { stream: true }));
        // A closing event is the last thing Herald writes; do not wait for the socket to end.
        if (closing) break;
      }
    } catch (e) {
      if (!ended) end(disconnect('network', { message: String(e?.message ?? e) }));
      return;
    }
    end(closing ?? disconnect('network', { message: 'the stream ended without a closing event' }));
  };
  run().catch((e) => end(disconnect('network', { message: String(e?.message ?? e) })));

  return {
    transport: 'sse',
    canPublish: false,
    // A stream cannot take a new token: it ends with credentials_expired and the client comes
    // back at once with the token it fetched ahead of time.
    updateToken: null,
    close() {
      end(null);
      return Promise.resolve();
    },
  };
}
