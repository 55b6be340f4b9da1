// Why a connection ended, in one vocabulary for the three transports, and what the client does
// about it. Every server signal of docs/api.md (SSE control events, WebSocket close codes and
// error frames, HTTP statuses and error codes) maps to one kind here; `plan` turns a kind into
// a decision. Both are pure so that the table is tested as a table.

import { backoffDelay, retryAfterDelay } from './backoff.js';

/**
 * @typedef {'network'|'shutdown'|'slow_consumer'|'heartbeat'|'timeout'|'expired'|'unauthorized'
 *   |'revoked'|'unavailable'|'rate_limited'|'invalid_cursor'|'fatal'|'unsupported'} Kind
 * @typedef {{ kind: Kind, code?: string|number, status?: number, message?: string,
 *   retryAfterMs?: number|null, opened?: boolean }} Disconnect
 */

/** A disconnect record; `opened` is filled in by the transport that reports it. */
export function disconnect(kind, fields = {}) {
  return { kind, ...fields };
}

/** SSE control events that end a stream, by name. */
export const SSE_CLOSING_EVENTS = Object.freeze({
  // The node shuts down (spread over SHUTDOWN_RECONNECT_WINDOW), or this stream read too slowly:
  // SSE cannot tell which, and both are answered by a backoff and a resume.
  reconnect: 'shutdown',
  // No message for SSE_TIMEOUT: an idle stream's normal end.
  timeout: 'timeout',
  credentials_expired: 'expired',
  credentials_revoked: 'revoked',
});

/** @param {string} event an SSE control event's name */
export function fromSseControl(event) {
  const kind = SSE_CLOSING_EVENTS[event];
  return kind ? disconnect(kind, { code: event }) : null;
}

/**
 * A WebSocket close, by code (docs/api.md "Close codes"; RFC 6455 §7.4).
 * @param {number} code
 * @param {string} [reason]
 */
export function fromWsClose(code, reason = '') {
  const fields = { code, message: reason };
  switch (code) {
    case 1001: // the node shuts down
    case 1012: // service restart
    case 4503: // a cluster node could not read the shared history: another node may
      return disconnect('shutdown', fields);
    case 4508:
      return disconnect('slow_consumer', fields);
    case 4512:
      return disconnect('heartbeat', fields);
    case 4409:
      return disconnect('expired', fields);
    case 4401:
      // No token within 5 s, a bad first token, or a revoked one: the reason tells them apart.
      return disconnect(/revoked/i.test(reason) ? 'revoked' : 'unauthorized', fields);
    case 4429:
      return disconnect('rate_limited', fields);
    case 1002: // protocol error
    case 1003: // binary frame
    case 1007: // not UTF-8
    case 1009: // over WS_MAX_MESSAGE_SIZE
    case 1008: // policy
      return disconnect('fatal', fields);
    default:
      // 1000, 1005, 1006 (no close frame: the network), 1011, 1013 and unknown codes.
      return disconnect('network', fields);
  }
}

/**
 * A refused HTTP request (subscribe, poll, ticket) or a WebSocket error frame's code.
 * @param {number | undefined} status undefined for a WebSocket error frame
 * @param {string | undefined} code the body's error_code
 * @param {number | null} [retryAfterMs]
 */
export function fromRefusal(status, code, retryAfterMs = null, message = undefined) {
  const fields = { status, code, message, retryAfterMs };
  switch (code) {
    case 'token_revoked':
      return disconnect('revoked', fields);
    case 'invalid_cursor':
      return disconnect('invalid_cursor', fields);
    case 'topic_not_allowed':
    case 'too_many_topics':
    case 'invalid_topic':
    case 'no_topic':
    case 'invalid_query':
    case 'origin_not_allowed':
    case 'invalid_upgrade':
      return disconnect('fatal', fields);
    case 'token_expired':
      return disconnect('expired', fields);
    case 'not_authenticated':
    case 'invalid_token':
    case 'token_mismatch':
      return disconnect('unauthorized', fields);
    case 'backplane_unavailable':
      return disconnect(retryAfterMs != null ? 'unavailable' : 'shutdown', fields);
    default:
      break;
  }
  if (status === 401 || status === 403) return disconnect('unauthorized', fields);
  if (status === 429 || status === 503) {
    return disconnect(retryAfterMs != null ? 'unavailable' : 'rate_limited', fields);
  }
  if (status !== undefined && status >= 500) return disconnect('network', fields);
  if (status !== undefined && status >= 400) return disconnect('fatal', fields);
  return disconnect('network', fields);
}

/**
 * What to do after a disconnect.
 * @param {Disconnect} reason
 * @param {{ attempt: number, backoff: {initial:number,max:number,factor:number},
 *   random: () => number }} context attempt counts the failures since the last stable connection
 * @returns {{ action: 'retry', delay: number, nextAttempt: number, refreshToken?: boolean,
 *   dropCursor?: boolean } | { action: 'stop' }}
 */
export function plan(reason, { attempt, backoff, random }) {
  const jittered = () => backoffDelay(attempt, backoff, random);
  switch (reason.kind) {
    case 'revoked':
    case 'fatal':
    // A transport that cannot start here (`auto` has already tried the next one).
    case 'unsupported':
      return { action: 'stop' };
    case 'expired':
      // The token ran out: a new one, and back at once (docs: "reconnects at once, resumes").
      return { action: 'retry', delay: 0, nextAttempt: attempt, refreshToken: true };
    case 'unauthorized':
      // The client stops instead when the refreshed token is the one that was refused.
      return { action: 'retry', delay: jittered(), nextAttempt: attempt + 1, refreshToken: true };
    case 'invalid_cursor':
      return { action: 'retry', delay: 0, nextAttempt: attempt, dropCursor: true };
    case 'timeout':
      // An idle stream's normal end: every stream opened together times out together, so
      // spread them, but do not grow the backoff for it.
      return { action: 'retry', delay: backoffDelay(0, backoff, random), nextAttempt: attempt };
    case 'unavailable':
      if (reason.retryAfterMs != null) {
        return {
          action: 'retry',
          delay: Math.max(retryAfterDelay(reason.retryAfterMs, random), 0),
          nextAttempt: attempt + 1,
        };
      }
      return { action: 'retry', delay: jittered(), nextAttempt: attempt + 1 };
    case 'rate_limited':
      // WS_MAX_COMMANDS_PER_SECOND is a per-second budget: wait out the second, then back off.
      return { action: 'retry', delay: 1000 + jittered(), nextAttempt: attempt + 1 };
    case 'shutdown':
    case 'slow_consumer':
    case 'heartbeat':
    case 'network':
    default:
      return { action: 'retry', delay: jittered(), nextAttempt: attempt + 1 };
  }
}
