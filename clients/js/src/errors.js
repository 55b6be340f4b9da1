// The one error type the client reports: a stable `code` the application can switch on.

export class HeraldError extends Error {
  /**
   * @param {string} code Herald's error code (`publish_not_allowed`, `token_revoked`, …) or the
   *   client's own (`disconnected`, `timeout`, `closed`, `publish_unsupported`, `revoked`, …)
   * @param {string} message
   * @param {{ status?: number, fatal?: boolean, cause?: unknown }} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'HeraldError';
    this.code = code;
    if (details.status !== undefined) this.status = details.status;
    this.fatal = details.fatal === true;
  }
}
