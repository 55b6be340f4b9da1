// Reading a JWT's expiry client-side, to refresh it before the server ends the connection.
// The signature is not checked: the client only schedules from the claims, the server decides.

/** The default margin before `exp` at which a new token is asked for. */
export const DEFAULT_REFRESH_LEEWAY_MS = 15000;

/** Never refresh sooner than this after the previous refresh, whatever the clocks say. */
const MIN_REFRESH_DELAY_MS = 2000;

/**
 * The `exp` and `iat` claims (seconds) of a JWT, or null when it is not a readable JWT (an
 * opaque token: then no refresh is scheduled and the server's expiry signal drives it).
 * @param {string} token
 * @returns {{ exp: number, iat?: number } | null}
 */
export function jwtTimes(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  let claims;
  try {
    claims = JSON.parse(base64UrlDecode(parts[1]));
  } catch {
    return null;
  }
  if (claims === null || typeof claims !== 'object' || !Number.isFinite(claims.exp)) return null;
  const times = { exp: claims.exp };
  if (Number.isFinite(claims.iat)) times.iat = claims.iat;
  return times;
}

/** @param {string} text base64url without padding */
export function base64UrlDecode(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * Milliseconds from `nowMs` until the token should be replaced, or null for a token with no
 * readable expiry.
 *
 * Two estimates, the earlier wins: `exp` on this machine's clock, and (when `iat` is present)
 * the token's lifetime counted from when the client received it, which is right even when the
 * browser's clock is behind, for a token minted just before. A token that already looks expired
 * (a stale cached one, or a clock far ahead) is kept MIN_REFRESH_DELAY_MS, so that a wrong clock
 * cannot turn refreshing into a busy loop; the server's own expiry signal covers the rest.
 *
 * @param {{ exp: number, iat?: number } | null} times
 * @param {number} receivedAtMs when getToken returned it
 * @param {number} nowMs
 * @param {number} leewayMs how long before expiry to refresh (at most half the lifetime)
 */
export function refreshDelay(times, receivedAtMs, nowMs, leewayMs = DEFAULT_REFRESH_LEEWAY_MS) {
  if (!times) return null;
  let at = times.exp * 1000 - leewayMs;
  if (times.iat !== undefined && times.exp > times.iat) {
    const lifetimeMs = (times.exp - times.iat) * 1000;
    const leeway = Math.min(leewayMs, lifetimeMs / 2);
    at = Math.min(times.exp * 1000, receivedAtMs + lifetimeMs) - leeway;
  }
  return Math.max(0, Math.max(at, receivedAtMs + MIN_REFRESH_DELAY_MS) - nowMs);
}
