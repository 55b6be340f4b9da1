// What the client hands a transport and gets back. Each transport turns one connection's
// bytes into these callbacks and reports exactly one `close` (unless the client closed it).

/**
 * @typedef {{ ws: string, sse: string, poll: string }} Urls
 * @typedef {{
 *   urls: Urls,
 *   topics: string[],
 *   cursor: string | null,
 *   auth: { current(): string | null },
 *   impl: { WebSocket?: any, fetch?: typeof fetch },
 *   clock: { now(): number, setTimeout(fn: () => void, ms: number): any, clearTimeout(handle: any): void },
 *   options: { withCredentials: boolean, pollTimeout: number, sseIdleTimeout: number,
 *     commandTimeout: number, heartbeat: { interval: number, timeout: number } },
 *   on: {
 *     open(cursor: string | null): void,
 *     message(message: { topic: string, id: string, event: string, payload: string }, cursor: string | null): void,
 *     cursor(cursor: string): void,
 *     gap(topics: string[]): void,
 *     error(error: Error): void,
 *     close(reason: import('./disconnect.js').Disconnect): void,
 *   },
 * }} TransportContext
 * @typedef {{
 *   transport: 'websocket' | 'sse' | 'longpoll',
 *   canPublish: boolean,
 *   publish?(topic: string, event: string, payload: string, timeoutMs: number): Promise<{ messageId: string }>,
 *   updateToken: ((token: string) => Promise<unknown>) | null,
 *   close(): Promise<void>,
 * }} Connection
 */

/** The Authorization header for a token; none when the page relies on its cookie. */
export function authHeaders(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** `base?topic=a&topic=b` plus `extra` parameters. */
export function subscriptionUrl(base, topics, extra = {}) {
  const url = new URL(base);
  for (const topic of topics) url.searchParams.append('topic', topic);
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, String(v));
  return url.toString();
}

/**
 * The v2 routes under a public API base URL (with its PUBLIC_API_CONTEXT_PATH, if any).
 * @param {string} base e.g. "https://push.example.com" or "http://127.0.0.1:4000/push"
 * @returns {Urls}
 */
export function v2Urls(base) {
  const root = new URL(base, globalThis.location?.href);
  if (root.protocol !== 'http:' && root.protocol !== 'https:') {
    throw new TypeError(`url must be http: or https:, got ${root.protocol}`);
  }
  const path = root.pathname.replace(/\/+$/, '');
  const at = (p) => {
    const u = new URL(root.href);
    u.pathname = `${path}${p}`;
    u.search = '';
    u.hash = '';
    return u;
  };
  const ws = at('/v2/ws');
  ws.protocol = root.protocol === 'https:' ? 'wss:' : 'ws:';
  return { ws: ws.toString(), sse: at('/v2/subscribe').toString(), poll: at('/v2/poll').toString() };
}
