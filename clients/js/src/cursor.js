// The resume position: topics as the client names them, and the cursor saved where the
// application asked (localStorage or anything with its three methods) so a reloaded page
// resumes too. A cursor belongs to one set of topics (Herald refuses it for any other), so the
// storage key names the set, in sorted order because Herald accepts the topics in any order.

/** Most topics Herald lets one connection hold (PUBLIC_API_MAX_TOPICS_PER_CONNECTION's ceiling). */
const MAX_TOPICS = 256;

/**
 * The topics, checked and without repeats (Herald counts a repeated topic once).
 * @param {unknown} topics
 * @returns {string[]}
 */
export function normalizeTopics(topics) {
  if (!Array.isArray(topics) || topics.length === 0) {
    throw new TypeError('topics must be a non-empty array of topic names');
  }
  const seen = new Set();
  for (const topic of topics) {
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new TypeError(`a topic must be a non-empty string, got ${JSON.stringify(topic)}`);
    }
    seen.add(topic);
  }
  if (seen.size > MAX_TOPICS) throw new TypeError(`at most ${MAX_TOPICS} topics, got ${seen.size}`);
  return [...seen];
}

/** The default storage key of a client's cursor. */
export function storageKey(url, topics) {
  return `herald:cursor:${url}:${JSON.stringify([...topics].sort())}`;
}

/** A cursor in storage. Storage failures (quota, privacy modes) never break delivery. */
export class CursorStore {
  /**
   * @param {{ getItem(k: string): string | null, setItem(k: string, v: string): void,
   *   removeItem(k: string): void } | null | undefined} storage
   * @param {string} key
   * @param {(e: unknown) => void} onError
   */
  constructor(storage, key, onError) {
    this.storage = storage ?? null;
    this.key = key;
    this.onError = onError;
  }

  load() {
    if (!this.storage) return null;
    try {
      const value = this.storage.getItem(this.key);
      return typeof value === 'string' && value.length > 0 ? value : null;
    } catch (e) {
      this.onError(e);
      return null;
    }
  }

  save(cursor) {
    if (!this.storage) return;
    try {
      this.storage.setItem(this.key, cursor);
    } catch (e) {
      this.onError(e);
    }
  }

  clear() {
    if (!this.storage) return;
    try {
      this.storage.removeItem(this.key);
    } catch (e) {
      this.onError(e);
    }
  }
}
