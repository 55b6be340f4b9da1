// Reconnection delays: exponential backoff with full jitter, and the server's retry-after.
//
// Full jitter (a uniform draw in [0, min(max, initial·factor^attempt))) rather than "equal" or
// "decorrelated" jitter: it spreads a crowd that lost its node at the same instant over the
// whole window, which is what keeps a recovering cluster from a reconnection storm.

/** Defaults, as centrifuge-js: 500 ms doubling up to 20 s. */
export const DEFAULT_BACKOFF = Object.freeze({ initial: 500, max: 20000, factor: 2 });

/**
 * The delay before reconnection attempt `attempt` (0 for the first after a stable connection).
 * @param {number} attempt
 * @param {{initial:number,max:number,factor:number}} options
 * @param {() => number} random uniform in [0, 1)
 */
export function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
  return Math.floor(random() * backoffCeiling(attempt, options));
}

/** The upper bound of attempt `attempt`'s delay: the window it is spread over. */
export function backoffCeiling(attempt, { initial, max, factor } = DEFAULT_BACKOFF) {
  // factor ** attempt overflows to Infinity long after max is reached; min() absorbs it.
  return Math.min(max, initial * factor ** Math.max(0, attempt));
}

/**
 * The delay after a refusal that carried `retry-after`: never sooner than the server asked, and
 * spread over one more such period so that clients told the same number do not all come back
 * in the same millisecond. Herald already grows retry-after with the size of a storm.
 * @param {number} retryAfterMs
 * @param {() => number} random
 */
export function retryAfterDelay(retryAfterMs, random = Math.random) {
  return retryAfterMs + Math.floor(random() * retryAfterMs);
}

/**
 * A `retry-after` header value in milliseconds: delta-seconds or an HTTP-date; null when absent
 * or unreadable (then the caller's backoff applies).
 * @param {string | null | undefined} value
 * @param {number} nowMs
 */
export function parseRetryAfter(value, nowMs) {
  if (value == null) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date names its day and month; Date.parse alone would read "-1" as a year.
  if (!/^[A-Za-z]{3}, /.test(text)) return null;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - nowMs);
}

/** Checks and completes a user's backoff options. */
export function backoffOptions(user = {}) {
  const options = { ...DEFAULT_BACKOFF, ...user };
  for (const key of ['initial', 'max', 'factor']) {
    if (typeof options[key] !== 'number' || !(options[key] > 0)) {
      throw new TypeError(`backoff.${key} must be a positive number, got ${options[key]}`);
    }
  }
  if (options.max < options.initial) {
    throw new TypeError(`backoff.max (${options.max}) must be at least backoff.initial (${options.initial})`);
  }
  return options;
}
