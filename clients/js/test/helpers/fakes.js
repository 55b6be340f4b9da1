// Test doubles: a clock the test moves by hand, a WebSocket whose server side the test plays,
// and a fetch whose responses the test writes. The client takes all three as options.

/** A manual clock with the client's clock interface. */
export class FakeClock {
  constructor(start = 1_800_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn, id });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Runs every timer due within `ms`, in time order, letting promises settle after each. */
  async advance(ms) {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (next === null || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) {
          next = timer;
        }
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
      await settle();
    }
    this.t = end;
  }

  /** The delays of the pending timers, from now. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.t);
  }
}

/** Lets queued promise callbacks and I/O callbacks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A network of fake WebSockets. By default the server side accepts each socket, acknowledges
 * `auth` and `subscribe` (with `cursorFor(subscribe)`), and records every command. Tests set
 * `refuse = true` to make new sockets fail like an unreachable server (1006 before open).
 */
export function fakeWebSockets() {
  const net = {
    sockets: [],
    refuse: false,
    autoOpen: true,
    cursorFor: (cmd) => cmd.cursor ?? 'c0',
    /** Called with (socket, command) for commands the test wants to answer itself. */
    onCommand: null,
    get last() {
      return net.sockets[net.sockets.length - 1];
    },
    commands: (op) => net.sockets.flatMap((s) => s.commands.filter((c) => c.op === op)),
  };

  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.commands = [];
      this.closedWith = null;
      net.sockets.push(this);
      queueMicrotask(() => {
        if (this.readyState !== 0) return;
        if (net.refuse) this.fail();
        else if (net.autoOpen) this.accept();
      });
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      const cmd = JSON.parse(text);
      this.commands.push(cmd);
      if (net.onCommand && net.onCommand(this, cmd) === true) return;
      if (cmd.op === 'auth') this.frame({ op: 'ack', id: cmd.id, expires_in: 60 });
      if (cmd.op === 'subscribe') this.frame({ op: 'ack', id: cmd.id, cursor: net.cursorFor(cmd), topics: cmd.topics });
      if (cmd.op === 'ping') this.frame({ op: 'pong', id: cmd.id });
    }

    close(code = 1005, reason = '') {
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason, by: 'client' };
      this.readyState = 3;
      queueMicrotask(() => this.onclose?.({ code, reason, wasClean: true }));
    }

    // --- the server's side ---
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }

    /** The server sends a frame (an object is JSON-encoded). */
    frame(value) {
      const data = typeof value === 'string' ? value : JSON.stringify(value);
      queueMicrotask(() => this.readyState === 1 && this.onmessage?.({ data }));
    }

    /** The server closes with a code. */
    serverClose(code, reason = '') {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      this.closedWith = { code, reason, by: 'server' };
      queueMicrotask(() => this.onclose?.({ code, reason, wasClean: true }));
    }

    /** The connection fails without a close frame. */
    fail() {
      this.readyState = 3;
      this.closedWith = { code: 1006, reason: '', by: 'network' };
      queueMicrotask(() => {
        this.onerror?.({});
        this.onclose?.({ code: 1006, reason: '', wasClean: false });
      });
    }
  }

  net.WebSocket = FakeWebSocket;
  return net;
}

/**
 * A fetch whose answers `respond(request)` writes: return `{status, headers, body}` (body a
 * string), or `{status, headers, stream: true}` to get a writable SSE stream back through
 * `request.stream` (`write(text)`, `end()`), or throw to fail like the network.
 */
export function fakeFetch(respond) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const request = { url: new URL(url), headers: init.headers ?? {}, signal: init.signal };
    requests.push(request);
    const answer = await respond(request);
    const headers = new Headers(answer.headers ?? {});
    if (!answer.stream) return new Response(answer.body ?? '', { status: answer.status ?? 200, headers });
    let controller;
    const encoder = new TextEncoder();
    const body = new ReadableStream({ start: (c) => (controller = c) });
    request.stream = {
      closed: false,
      write: (text) => !request.stream.closed && controller.enqueue(encoder.encode(text)),
      end: () => {
        if (request.stream.closed) return;
        request.stream.closed = true;
        controller.close();
      },
    };
    init.signal?.addEventListener('abort', () => {
      if (request.stream.closed) return;
      request.stream.closed = true;
      controller.error(new DOMException('aborted', 'AbortError'));
    });
    return new Response(body, { status: answer.status ?? 200, headers });
  };
  fetch.requests = requests;
  return fetch;
}

/** An unsigned JWT with these claims (the client never checks signatures). */
export function fakeJwt(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.signature`;
}

/** A Storage with localStorage's three methods, over a Map. */
export function memoryStorage() {
  const map = new Map();
  return {
    map,
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => map.set(k, String(v)),
    removeItem: (k) => map.delete(k),
  };
}
