// @herald/client: Herald's v2 API (docs/api.md) from browsers and Node ≥ 20.

import { HeraldClient } from './client.js';

export { HeraldClient, AUTO_ORDER } from './client.js';
export { HeraldError } from './errors.js';
export { backoffDelay, backoffCeiling, retryAfterDelay, parseRetryAfter, DEFAULT_BACKOFF } from './backoff.js';
export { jwtTimes, refreshDelay } from './token.js';
export { SseParser, parseSse } from './sse-parser.js';
export { parseServerFrame, FrameError } from './frames.js';
export { fromWsClose, fromSseControl, fromRefusal, plan } from './disconnect.js';

/**
 * `new HeraldClient(options).connect()`.
 * @param {import('./index.js').HeraldClientOptions} options
 */
export function connect(options) {
  return new HeraldClient(options).connect();
}
