// The client: one connection at a time over the chosen (or the first working) transport, the
// cursor carried from each connection to the next, reconnection decided by disconnect.js, and
// the token kept fresh ahead of its expiry.
//
// Every asynchronous step checks `#generation`: a connection, a token fetch or a timer that
// belongs to an earlier attempt (or to a client since closed) finds it changed and does nothing.

import { Emitter } from './emitter.js';
import { backoffDelay, backoffOptions } from './backoff.js';
import { plan } from './disconnect.js';
import { HeraldError } from './errors.js';
import { DEFAULT_REFRESH_LEEWAY_MS, jwtTimes, refreshDelay } from './token.js';
import { CursorStore, normalizeTopics, storageKey } from './cursor.js';
import { v2Urls } from './transport.js';
import { openWebSocket } from './transport-websocket.js';
import { openSse } from './transport-sse.js';
import { openLongPoll } from './transport-longpoll.js';

const OPENERS = { websocket: openWebSocket, sse: openSse, longpoll: openLongPoll };
/** `auto`: the richest first (publishing, in-place token refresh), the most permissive last. */
export const AUTO_ORDER = Object.freeze(['websocket', 'sse', 'longpoll']);
const TRANSPORTS = new Set(['auto', ...AUTO_ORDER]);
/** Consecutive refusals of fresh tokens after which the client stops asking. */
const MAX_AUTH_FAILURES = 3;

const DEFAULTS = Object.freeze({
  transport: 'auto',
  refreshLeeway: DEFAULT_REFRESH_LEEWAY_MS,
  pollTimeout: 25,
  // SSE_KEEPALIVE's default (600 s) and half again: used when the stream's x-sse-keepalive
  // header cannot be read (cross-origin pages: Herald does not expose it).
  sseIdleTimeout: 900000,
  heartbeat: Object.freeze({ interval: 20000, timeout: 10000 }),
  publishTimeout: 10000,
  commandTimeout: 10000,
  stableAfter: 10000,
  withCredentials: false,
  reconnectOnOnline: true,
});

const systemClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle),
};

export class HeraldClient {
  #o;
  #emitter = new Emitter();
  #urls;
  #topics;
  #order;
  #store;
  #state = 'idle';
  #generation = 0;
  #conn = null;
  /** The transport of the current or last connection attempt. */
  #transport = null;
  /** `auto` sticks to the first transport that opened: later failures are the network's. */
  #sticky = null;
  /** Position in #order while no transport has opened yet. */
  #cycle = 0;
  #cursor = null;
  #attempt = 0;
  #openedAt = 0;
  #retryTimer = null;
  #token = null;
  #tokenTimes = null;
  #tokenAt = 0;
  #refreshTimer = null;
  #refreshFailures = 0;
  #needFreshToken = false;
  /** A token Herald refused as revoked or invalid: never sent again. */
  #refusedToken = null;
  /** The token the current connection authenticated with. */
  #connToken = null;
  #authFailures = 0;
  /** Publishes waiting for the connection to open. */
  #waiting = [];
  /**
   * Topics reported in a gap with no message of theirs since. Herald reports a gap again on
   * every resume from the same position (and on every long-poll answer: its cursor does not
   * move past the gap), which says nothing new.
   */
  #gapped = new Set();
  #removeOnline = null;

  /** @param {import('./index.js').HeraldClientOptions} options */
  constructor(options) {
    if (!options || typeof options !== 'object') throw new TypeError('options are required');
    if (typeof options.url !== 'string') throw new TypeError('url (the public API base URL) is required');
    const o = { ...DEFAULTS, ...options, heartbeat: { ...DEFAULTS.heartbeat, ...options.heartbeat } };
    o.backoff = backoffOptions(options.backoff);
    o.clock = options.clock ?? systemClock;
    o.random = options.random ?? Math.random;
    o.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    o.fetch = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
    if (!TRANSPORTS.has(o.transport)) {
      throw new TypeError(`transport must be one of ${[...TRANSPORTS].join(', ')}, got ${o.transport}`);
    }
    if (o.getToken !== undefined && typeof o.getToken !== 'function') throw new TypeError('getToken must be a function');
    if (o.token !== undefined && (typeof o.token !== 'string' || o.token === '')) throw new TypeError('token must be a non-empty string');
    const available = (name) => (name === 'websocket' ? typeof o.WebSocket === 'function' : typeof o.fetch === 'function');
    this.#order = o.transport === 'auto' ? AUTO_ORDER.filter(available) : [o.transport];
    if (this.#order.length === 0 || !available(this.#order[0])) {
      throw new TypeError(
        o.transport === 'websocket'
          ? 'no WebSocket implementation: pass one as the WebSocket option (in Node 20, the ws package)'
          : 'no fetch implementation: pass one as the fetch option',
      );
    }
    this.#o = o;
    this.#urls = v2Urls(o.url);
    this.#topics = normalizeTopics(o.topics);
    this.#store = new CursorStore(o.storage, o.storageKey ?? storageKey(o.url, this.#topics), (e) =>
      this.#report(new HeraldError('storage_failed', `the cursor storage failed: ${e?.message ?? e}`, { cause: e })),
    );
    this.#cursor = o.cursor ?? this.#store.load();
  }

  /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
  get state() {
    return this.#state;
  }

  /** Where a new connection resumes: the cursor after the last message delivered. */
  get cursor() {
    return this.#cursor;
  }

  /** The transport of the current or last connection. */
  get transport() {
    return this.#transport;
  }

  get topics() {
    return [...this.#topics];
  }

  /** @returns {() => void} removes the listener */
  on(type, listener) {
    return this.#emitter.on(type, listener);
  }

  off(type, listener) {
    this.#emitter.off(type, listener);
  }

  /** Starts connecting (again, after `close()` or a stop). */
  connect() {
    if (this.#state !== 'idle' && this.#state !== 'closed') return this;
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#cycle = 0;
    // A token kept from before close() or a stop: ask for another if Herald refused it, and
    // schedule its refresh again (close() cancelled it).
    if (this.#token !== null && this.#token === this.#refusedToken) this.#needFreshToken = true;
    else if (this.#token !== null) this.#scheduleRefresh();
    this.#listenOnline();
    this.#connectNow();
    return this;
  }

  /** Ends the connection and every timer; resolves once the socket is released. */
  close() {
    const released = this.#shutdown();
    if (this.#state !== 'closed') this.#setState('closed', { reason: { kind: 'closed' } });
    return released;
  }

  /**
   * Publishes over the WebSocket; resolves with Herald's message id once acknowledged.
   * @returns {Promise<{ messageId: string }>}
   */
  publish(topic, event, payload, { timeout = this.#o.publishTimeout } = {}) {
    for (const [name, value] of [['topic', topic], ['event', event], ['payload', payload]]) {
      if (typeof value !== 'string' || value === '') {
        return Promise.reject(new TypeError(`${name} must be a non-empty string`));
      }
    }
    if (this.#state === 'idle' || this.#state === 'closed') {
      return Promise.reject(new HeraldError('closed', 'the client is not connected: call connect() first'));
    }
    const bound = this.#sticky ?? (this.#order.length === 1 ? this.#order[0] : null);
    if (bound && bound !== 'websocket') return Promise.reject(unsupported(bound));
    if (this.#state === 'open' && this.#conn) {
      return this.#conn.canPublish
        ? this.#conn.publish(topic, event, payload, timeout)
        : Promise.reject(unsupported(this.#conn.transport));
    }
    return new Promise((resolve, reject) => {
      const entry = { topic, event, payload, resolve, reject, deadline: this.#o.clock.now() + timeout };
      entry.timer = this.#o.clock.setTimeout(() => {
        this.#waiting = this.#waiting.filter((w) => w !== entry);
        reject(new HeraldError('timeout', `not connected within ${timeout} ms: nothing was published`));
      }, timeout);
      this.#waiting.push(entry);
    });
  }

  // --- connecting -------------------------------------------------------------------------

  async #connectNow() {
    const generation = ++this.#generation;
    const name = this.#sticky ?? this.#order[this.#cycle];
    this.#transport = name;
    this.#setState('connecting', { transport: name });
    let token;
    try {
      token = await this.#tokenForConnection();
    } catch (e) {
      if (generation !== this.#generation) return;
      this.#report(new HeraldError('token_unavailable', `getToken failed: ${e?.message ?? e}`, { cause: e }));
      this.#onClose(generation, { kind: 'network', code: 'token_unavailable', opened: false });
      return;
    }
    if (generation !== this.#generation) return;
    if (this.#needFreshToken && !this.#o.getToken && this.#o.token) {
      this.#stop({ kind: 'unauthorized', code: 'no_token_refresh' }, 'unauthorized',
        'Herald needs a new token and there is no getToken option to ask for one');
      return;
    }
    if (token !== null && token === this.#refusedToken) {
      this.#stop({ kind: 'unauthorized', code: 'token_refused' }, 'token_refused',
        'getToken returned the token Herald refused; the client does not send it again');
      return;
    }
    this.#needFreshToken = false;
    this.#connToken = token;
    const current = () => this.#token ?? this.#o.token ?? null;
    const live = () => generation === this.#generation;
    const ctx = {
      urls: this.#urls,
      topics: this.#topics,
      cursor: this.#cursor,
      auth: { current },
      impl: { WebSocket: this.#o.WebSocket, fetch: this.#o.fetch },
      clock: this.#o.clock,
      options: this.#o,
      on: {
        open: (cursor) => live() && this.#onOpen(name, cursor),
        message: (message, cursor) => live() && this.#onMessage(message, cursor),
        cursor: (cursor) => live() && this.#setCursor(cursor),
        gap: (topics) => live() && this.#onGap(topics),
        error: (error) => live() && this.#report(error),
        close: (reason) => this.#onClose(generation, reason),
      },
    };
    try {
      this.#conn = OPENERS[name](ctx);
    } catch (e) {
      // The transport cannot even start here: `new WebSocket` throws on a page served over
      // https for a ws: URL, or on a URL it will not take.
      this.#onClose(generation, { kind: 'unsupported', code: 'transport_failed', message: String(e?.message ?? e), opened: false });
    }
  }

  #onOpen(name, cursor) {
    if (this.#o.transport === 'auto') this.#sticky = name;
    this.#openedAt = this.#o.clock.now();
    this.#authFailures = 0;
    if (cursor) this.#setCursor(cursor);
    this.#setState('open', { transport: name });
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) {
      this.#o.clock.clearTimeout(w.timer);
      if (!this.#conn?.canPublish) {
        w.reject(unsupported(name));
        continue;
      }
      const left = Math.max(1, w.deadline - this.#o.clock.now());
      this.#conn.publish(w.topic, w.event, w.payload, left).then(w.resolve, w.reject);
    }
  }

  #onMessage(message, cursor) {
    if (cursor) this.#setCursor(cursor);
    this.#gapped.delete(message.topic);
    this.#emitter.emit('message', message);
  }

  #onGap(topics) {
    const fresh = topics.filter((t) => !this.#gapped.has(t));
    if (fresh.length === 0) return;
    for (const t of fresh) this.#gapped.add(t);
    this.#emitter.emit('gap', { topics: fresh, reason: 'history' });
  }

  #setCursor(cursor) {
    if (cursor === this.#cursor) return;
    this.#cursor = cursor;
    this.#store.save(cursor);
  }

  #onClose(generation, reason) {
    if (generation !== this.#generation || this.#state === 'closed') return;
    this.#conn = null;
    const now = this.#o.clock.now();
    if (reason.opened && now - this.#openedAt >= this.#o.stableAfter) this.#attempt = 0;

    // `auto` before anything opened: a transport that cannot connect may be blocked on the way
    // (a proxy without WebSocket, a buffering one for streams); try the next one at once, and
    // back off only when the whole list failed.
    if (!this.#sticky && !reason.opened && this.#cycle + 1 < this.#order.length &&
        reason.code !== 'token_unavailable' && (reason.kind === 'network' || reason.kind === 'heartbeat' || reason.kind === 'unsupported')) {
      this.#cycle += 1;
      this.#scheduleConnect(0, reason);
      return;
    }
    if (!this.#sticky) this.#cycle = 0;

    const decision = plan(reason, { attempt: this.#attempt, backoff: this.#o.backoff, random: this.#o.random });
    if (decision.action === 'stop') {
      const code = reason.kind === 'revoked' ? 'revoked' : String(reason.code ?? reason.kind);
      if (reason.kind === 'revoked') this.#refusedToken = this.#connToken;
      this.#stop(reason, code, describe(reason));
      return;
    }
    this.#attempt = decision.nextAttempt;
    if (reason.kind === 'unauthorized') {
      this.#authFailures += 1;
      const refused = this.#connToken;
      if (this.#authFailures >= MAX_AUTH_FAILURES || (refused !== null && !this.#o.getToken)) {
        this.#refusedToken = refused;
        this.#stop(reason, 'unauthorized', describe(reason));
        return;
      }
      this.#refusedToken = refused;
    }
    // A token fetched ahead of time (SSE and long-poll keep theirs until Herald ends them) is
    // already the fresh one.
    if (decision.refreshToken && this.#token === this.#connToken) this.#needFreshToken = true;
    if (decision.dropCursor) {
      if (!this.#cursor) {
        this.#stop(reason, 'invalid_cursor', describe(reason));
        return;
      }
      // Herald will not resume from this cursor (another topic set, or not one it made):
      // start from now, and say that anything before may be missed.
      this.#cursor = null;
      this.#store.clear();
      for (const t of this.#topics) this.#gapped.add(t);
      this.#emitter.emit('gap', { topics: [...this.#topics], reason: 'invalid_cursor' });
    }
    this.#scheduleConnect(decision.delay, reason);
  }

  #scheduleConnect(delay, reason) {
    const generation = ++this.#generation;
    this.#setState('reconnecting', { transport: this.#transport, delay, reason });
    this.#retryTimer = this.#o.clock.setTimeout(() => {
      this.#retryTimer = null;
      if (generation === this.#generation) this.#connectNow();
    }, delay);
  }

  #stop(reason, code, message) {
    this.#shutdown();
    const error = new HeraldError(code, message, { status: reason.status, fatal: true });
    this.#setState('closed', { reason, error });
    this.#report(error);
  }

  /**
   * Everything `close()` and a stop have in common; leaves #state to the caller.
   * @returns {Promise<void>} resolves once the connection's socket is released
   */
  #shutdown() {
    this.#generation += 1;
    const { clock } = this.#o;
    clock.clearTimeout(this.#retryTimer);
    clock.clearTimeout(this.#refreshTimer);
    this.#retryTimer = null;
    this.#refreshTimer = null;
    const released = this.#conn ? this.#conn.close() : Promise.resolve();
    this.#conn = null;
    this.#removeOnline?.();
    this.#removeOnline = null;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) {
      clock.clearTimeout(w.timer);
      w.reject(new HeraldError('closed', 'the client closed before it could publish: nothing was published'));
    }
    return released;
  }

  #listenOnline() {
    const target = globalThis;
    if (!this.#o.reconnectOnOnline || typeof target.addEventListener !== 'function' || this.#removeOnline) return;
    // Back online: a reconnection waiting out its backoff need not wait any longer.
    const onOnline = () => {
      if (this.#state !== 'reconnecting') return;
      this.#attempt = 0;
      this.#o.clock.clearTimeout(this.#retryTimer);
      this.#connectNow();
    };
    target.addEventListener('online', onOnline);
    this.#removeOnline = () => target.removeEventListener('online', onOnline);
  }

  // --- tokens -----------------------------------------------------------------------------

  async #tokenForConnection() {
    if (!this.#o.getToken) return this.#o.token ?? null;
    const due =
      this.#token === null ||
      this.#needFreshToken ||
      refreshDelay(this.#tokenTimes, this.#tokenAt, this.#o.clock.now(), this.#o.refreshLeeway) === 0;
    if (due) await this.#fetchToken();
    return this.#token;
  }

  async #fetchToken() {
    const token = await this.#o.getToken();
    if (typeof token !== 'string' || token === '') throw new TypeError('getToken must return a non-empty string');
    if (this.#state === 'closed') return;
    this.#token = token;
    this.#tokenAt = this.#o.clock.now();
    this.#tokenTimes = jwtTimes(token);
    this.#refreshFailures = 0;
    this.#scheduleRefresh();
  }

  #scheduleRefresh() {
    const { clock } = this.#o;
    clock.clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    const delay = refreshDelay(this.#tokenTimes, this.#tokenAt, clock.now(), this.#o.refreshLeeway);
    if (delay === null) return;
    this.#refreshTimer = clock.setTimeout(() => this.#refresh(), delay);
  }

  /** Before `exp`: a new token, handed to the live connection when it can take one. */
  async #refresh() {
    this.#refreshTimer = null;
    if (this.#state === 'closed' || this.#state === 'idle') return;
    const before = this.#token;
    try {
      await this.#fetchToken();
    } catch (e) {
      if (this.#state === 'closed') return;
      this.#report(new HeraldError('token_refresh_failed', `getToken failed: ${e?.message ?? e}`, { cause: e }));
      const wait = Math.max(1000, backoffDelay(this.#refreshFailures++, this.#o.backoff, this.#o.random));
      this.#refreshTimer = this.#o.clock.setTimeout(() => this.#refresh(), wait);
      return;
    }
    const conn = this.#conn;
    const token = this.#token;
    if (token === before || this.#state !== 'open' || !conn?.updateToken) return;
    conn.updateToken(token).then(() => {
      if (conn === this.#conn) this.#connToken = token;
    }, (e) => {
      // The connection keeps its old token until Herald ends it (4409); the next one starts
      // with a token from getToken.
      if (e?.code !== 'disconnected') this.#report(e);
    });
  }

  // --- events -----------------------------------------------------------------------------

  #setState(state, details = {}) {
    const previous = this.#state;
    this.#state = state;
    this.#emitter.emit('state', { state, previous, transport: this.#transport, ...details });
  }

  #report(error) {
    this.#emitter.emit('error', error);
  }
}

function unsupported(transport) {
  return new HeraldError('publish_unsupported', `publishing needs the websocket transport, not ${transport}`);
}

function describe(reason) {
  const what = {
    revoked: 'Herald revoked the token: the client stops and never sends it again',
    unauthorized: 'Herald refused the token, and no other one came from getToken',
    fatal: 'Herald refused the subscription',
    invalid_cursor: 'Herald refused the cursor',
  }[reason.kind] ?? `the connection ended (${reason.kind})`;
  const detail = [reason.status, reason.code, reason.message].filter((x) => x !== undefined && x !== '').join(' ');
  return detail ? `${what}: ${detail}` : what;
}
