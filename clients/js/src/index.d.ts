// Types of @herald/client. Hand-written beside the plain-JS sources; test/types/usage.ts checks
// them with tsc.

export type Transport = 'websocket' | 'sse' | 'longpoll';
export type TransportOption = 'auto' | Transport;
export type State = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** What ended a connection, in one vocabulary for the three transports. */
export type DisconnectKind =
  | 'network'
  | 'shutdown'
  | 'slow_consumer'
  | 'heartbeat'
  | 'timeout'
  | 'expired'
  | 'unauthorized'
  | 'revoked'
  | 'unavailable'
  | 'rate_limited'
  | 'invalid_cursor'
  | 'fatal'
  | 'unsupported'
  | 'closed';

export interface Disconnect {
  kind: DisconnectKind;
  /** The close code, control event name or Herald error code behind it. */
  code?: string | number;
  /** The HTTP status of a refused request. */
  status?: number;
  message?: string;
  retryAfterMs?: number | null;
  /** Whether the connection had opened before it ended. */
  opened?: boolean;
}

export interface HeraldMessage {
  /** The topic as the client named it. */
  topic: string;
  /** Herald's event id, a string: ids may exceed Number.MAX_SAFE_INTEGER. */
  id: string;
  event: string;
  payload: string;
}

export interface GapEvent {
  topics: string[];
  /** `history`: Herald says messages after the cursor are gone (expired, trimmed, node restarted).
   *  `invalid_cursor`: Herald refused the cursor, and the client started again from now. */
  reason: 'history' | 'invalid_cursor';
}

export interface StateEvent {
  state: State;
  previous: State;
  transport: Transport | null;
  /** For `reconnecting`: milliseconds until the next attempt. */
  delay?: number;
  /** For `reconnecting` and `closed`: why the connection ended. */
  reason?: Disconnect;
  /** For `closed` after a stop: what stopped it (also emitted as `error`). */
  error?: HeraldError;
}

export interface HeraldEvents {
  message: HeraldMessage;
  gap: GapEvent;
  state: StateEvent;
  error: HeraldError;
}

/** localStorage, sessionStorage, or anything with these three methods. */
export interface CursorStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface BackoffOptions {
  /** Window of the first attempt, ms (default 500). */
  initial?: number;
  /** Largest window, ms (default 20000). */
  max?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

export interface HeraldClientOptions {
  /** The public API's base URL, with PUBLIC_API_CONTEXT_PATH if set: `https://push.example.com`. */
  url: string;
  /** Topics to receive on one connection, named within the token's issuer. Fixed for the client's life. */
  topics: string[];
  /** Default `auto`: WebSocket, then SSE, then long-polling. */
  transport?: TransportOption;
  /** Asked for a token before the first connection, before each token's `exp`, and when Herald
   *  says it expired or refused it. */
  getToken?: () => string | Promise<string>;
  /** A fixed token, when there is no getToken. Neither: the browser's cookie authenticates. */
  token?: string;
  /** How long before `exp` to refresh, ms (default 15000; at most half the token's lifetime). */
  refreshLeeway?: number;
  /** Where to resume from at the first connection (a cursor an earlier client reported). */
  cursor?: string;
  /** Saves the cursor on every move and reads it at construction: resume across page reloads. */
  storage?: CursorStorage;
  /** The storage key (default: from url and the sorted topics). */
  storageKey?: string;
  backoff?: BackoffOptions;
  /** A connection that lived this long (ms) resets the backoff (default 10000). */
  stableAfter?: number;
  /** Seconds a poll is held by Herald (0–55, default 25). */
  pollTimeout?: number;
  /** SSE: ms of silence before the stream counts as dead when `x-sse-keepalive` cannot be read (default 900000). */
  sseIdleTimeout?: number;
  /** WebSocket: after `interval` ms of silence send a ping; `timeout` ms later give up (20000, 10000). */
  heartbeat?: { interval?: number; timeout?: number };
  /** Default time limit of publish(), ms (default 10000). */
  publishTimeout?: number;
  /** Time limit of a token refresh over WebSocket, ms (default 10000). */
  commandTimeout?: number;
  /** Send cookies cross-origin (fetch `credentials: 'include'`). */
  withCredentials?: boolean;
  /** In browsers, reconnect at once on the `online` event (default true). */
  reconnectOnOnline?: boolean;
  /** A WebSocket constructor (default globalThis.WebSocket; in Node 20 pass the `ws` package). */
  WebSocket?: unknown;
  /** A fetch implementation (default globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
  /** For tests: time and timers. */
  clock?: Clock;
  /** For tests: uniform in [0, 1). */
  random?: () => number;
}

export class HeraldError extends Error {
  constructor(code: string, message: string, details?: { status?: number; fatal?: boolean; cause?: unknown });
  readonly code: string;
  readonly status?: number;
  /** The client stopped because of it. */
  readonly fatal: boolean;
}

export class HeraldClient {
  constructor(options: HeraldClientOptions);
  readonly state: State;
  /** Where a new connection resumes. */
  readonly cursor: string | null;
  readonly transport: Transport | null;
  readonly topics: string[];
  on<K extends keyof HeraldEvents>(type: K, listener: (event: HeraldEvents[K]) => void): () => void;
  off<K extends keyof HeraldEvents>(type: K, listener: (event: HeraldEvents[K]) => void): void;
  /** Starts connecting; again after close() or a stop. */
  connect(): this;
  /** Ends the connection and every timer; resolves once the socket is released. */
  close(): Promise<void>;
  /** Over WebSocket only: resolves with Herald's message id once acknowledged. */
  publish(topic: string, event: string, payload: string, options?: { timeout?: number }): Promise<{ messageId: string }>;
}

/** `new HeraldClient(options).connect()`. */
export function connect(options: HeraldClientOptions): HeraldClient;

export const AUTO_ORDER: readonly Transport[];
export const DEFAULT_BACKOFF: Readonly<Required<BackoffOptions>>;
export function backoffDelay(attempt: number, options?: Required<BackoffOptions>, random?: () => number): number;
export function backoffCeiling(attempt: number, options?: Required<BackoffOptions>): number;
export function retryAfterDelay(retryAfterMs: number, random?: () => number): number;
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null;
export function jwtTimes(token: string): { exp: number; iat?: number } | null;
export function refreshDelay(
  times: { exp: number; iat?: number } | null,
  receivedAtMs: number,
  nowMs: number,
  leewayMs?: number,
): number | null;

export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string | undefined;
}
export class SseParser {
  constructor(onEvent: (event: SseEvent) => void);
  push(text: string): void;
}
export function parseSse(text: string): SseEvent[];

export class FrameError extends Error {}
export function parseServerFrame(text: string): { op: string; [field: string]: unknown };

export function fromWsClose(code: number, reason?: string): Disconnect;
export function fromSseControl(event: string): Disconnect | null;
export function fromRefusal(status: number | undefined, code: string | undefined, retryAfterMs?: number | null, message?: string): Disconnect;
export function plan(
  reason: Disconnect,
  context: { attempt: number; backoff: Required<BackoffOptions>; random: () => number },
):
  | { action: 'stop' }
  | { action: 'retry'; delay: number; nextAttempt: number; refreshToken?: boolean; dropCursor?: boolean };
