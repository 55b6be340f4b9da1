// A small typed event emitter. EventTarget would do in browsers and Node, but it wraps every
// payload in an Event and swallows listener exceptions differently on each runtime.

export class Emitter {
  #listeners = new Map();

  /**
   * @param {string} type
   * @param {(value: any) => void} listener
   * @returns {() => void} removes the listener
   */
  on(type, listener) {
    if (typeof listener !== 'function') throw new TypeError('a listener must be a function');
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  /** @returns {boolean} whether any listener was called */
  emit(type, value) {
    const set = this.#listeners.get(type);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        listener(value);
      } catch (e) {
        // A listener's bug must not stop delivery to the others or the client's own work;
        // report it the way an uncaught exception would be.
        reportError(e);
      }
    }
    return true;
  }
}

function reportError(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else queueMicrotask(() => {
    throw e;
  });
}
