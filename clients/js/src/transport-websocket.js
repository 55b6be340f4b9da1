// The WebSocket transport (/v2/ws): one connection that authenticates with the `auth` command
// (so the token is never in a URL, and browsers need no header), subscribes every topic in one
// command with the cursor, refreshes the token in place and publishes.

import { command, FrameError, parseServerFrame } from './frames.js';
import { disconnect, fromRefusal, fromWsClose } from './disconnect.js';
import { HeraldError } from './errors.js';

/**
 * @param {import('./transport.js').TransportContext} ctx
 * @returns {import('./transport.js').Connection}
 */
export function openWebSocket(ctx) {
  const { clock, on } = ctx;
  const Impl = ctx.impl.WebSocket;
  let ended = false;
  let opened = false;
  let lastFrameAt = clock.now();
  let heartbeatTimer = null;
  let pingSentAt = null;
  let nextId = 1;
  let closedResolve;
  const closed = new Promise((resolve) => (closedResolve = resolve));
  /** Commands waiting for their answer: id → {resolve, reject, timer}. */
  const pending = new Map();

  const ws = new Impl(ctx.urls.ws);
  const token = ctx.auth.current();
  const authId = token ? nextId++ : null;
  const subscribeId = nextId++;

  const send = (text) => ws.send(text);

  const end = (reason, { code = 1000, why = '' } = {}) => {
    if (ended) return;
    ended = true;
    clock.clearTimeout(heartbeatTimer);
    for (const [, p] of pending) {
      clock.clearTimeout(p.timer);
      p.reject(
        new HeraldError('disconnected', 'the connection ended before the answer: the command may or may not have taken effect'),
      );
    }
    pending.clear();
    if (ws.readyState === 0 || ws.readyState === 1) {
      try {
        ws.close(code, why);
      } catch {
        // already closing
      }
    }
    if (reason) on.close({ ...reason, opened });
  };

  // A dead connection shows no error until TCP gives up, which can take minutes. Any frame is a
  // sign of life; after `interval` of silence ask for a pong, after `timeout` more give up.
  const heartbeat = () => {
    if (ended) return;
    const silent = clock.now() - lastFrameAt;
    if (pingSentAt !== null && clock.now() - pingSentAt >= ctx.options.heartbeat.timeout) {
      end(disconnect('heartbeat', { message: 'no frame from the server' }), { code: 4000, why: 'heartbeat' });
      return;
    }
    if (pingSentAt === null && silent >= ctx.options.heartbeat.interval && ws.readyState === 1) {
      pingSentAt = clock.now();
      send(command.ping(nextId++));
    }
    const wait = pingSentAt === null ? ctx.options.heartbeat.interval - silent : ctx.options.heartbeat.timeout;
    heartbeatTimer = clock.setTimeout(heartbeat, Math.max(wait, 10));
  };

  ws.onopen = () => {
    if (ended) return;
    if (token) send(command.auth(authId, token));
    send(command.subscribe(subscribeId, ctx.topics, ctx.cursor));
    lastFrameAt = clock.now();
    heartbeat();
  };

  ws.onmessage = (event) => {
    if (ended) return;
    lastFrameAt = clock.now();
    pingSentAt = null;
    if (typeof event.data !== 'string') {
      end(disconnect('fatal', { code: 'binary_frame', message: 'Herald sent a binary frame' }), { code: 1003 });
      return;
    }
    let frame;
    try {
      frame = parseServerFrame(event.data);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      end(disconnect('fatal', { code: 'invalid_frame', message: e.message }), { code: 1002 });
      return;
    }
    switch (frame.op) {
      case 'msg':
        on.message({ topic: frame.topic, id: frame.id, event: frame.event, payload: frame.payload }, frame.cursor);
        break;
      case 'gap':
        on.gap(frame.topics);
        break;
      case 'ack':
        if (frame.id === subscribeId) {
          opened = true;
          on.open(frame.cursor ?? null);
        } else if (frame.id !== authId) {
          settle(frame.id, (p) => p.resolve(frame));
        }
        break;
      case 'error':
        if (frame.id === subscribeId || frame.id === authId) {
          // Refused subscription or first token: the connection is of no use as it is.
          end(fromRefusal(undefined, frame.code, null, frame.message));
        } else if (!settle(frame.id, (p) => p.reject(new HeraldError(frame.code, frame.message)))) {
          on.error(new HeraldError(frame.code, frame.message ?? 'error frame'));
        }
        break;
      default:
        // ping, pong, and ops newer than this client.
        break;
    }
  };

  ws.onerror = () => {
    // Always followed by close, which says more.
  };

  ws.onclose = (event) => {
    closedResolve();
    end(opened || event.code !== 1006 ? fromWsClose(event.code, event.reason) : disconnect('network', { code: event.code }));
  };

  function settle(id, fn) {
    const p = pending.get(id);
    if (!p) return false;
    pending.delete(id);
    clock.clearTimeout(p.timer);
    fn(p);
    return true;
  }

  function request(text, id, timeoutMs) {
    return new Promise((resolve, reject) => {
      if (ended || ws.readyState !== 1) {
        reject(new HeraldError('disconnected', 'the connection is not open'));
        return;
      }
      const timer = clock.setTimeout(() => {
        pending.delete(id);
        reject(new HeraldError('timeout', `no answer within ${timeoutMs} ms: the command may or may not have taken effect`));
      }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      send(text);
    });
  }

  return {
    transport: 'websocket',
    canPublish: true,
    publish(topic, event, payload, timeoutMs) {
      const id = nextId++;
      return request(command.publish(id, topic, event, payload), id, timeoutMs).then((ack) => ({
        messageId: ack.message_id,
      }));
    },
    updateToken(newToken) {
      const id = nextId++;
      return request(command.auth(id, newToken), id, ctx.options.commandTimeout).then((ack) => ({
        expiresIn: ack.expires_in,
      }));
    },
    close() {
      const wasOpen = ws.readyState === 0 || ws.readyState === 1;
      end(null, { code: 1000, why: 'closed by the client' });
      if (!wasOpen) closedResolve();
      return closed;
    },
  };
}
