// A push parser for the text/event-stream format (WHATWG HTML §9.2.6), with no I/O.
//
// It differs from EventSource in one deliberate way: an event is dispatched whenever a blank
// line ends a block that had any field, even without `data:`. Herald's control events
// (`reconnect`, `timeout`, `credentials_expired`, `credentials_revoked`) and the id-only event
// that opens a v2 stream carry no data, and a browser's EventSource never shows them.

/**
 * @typedef {{ id: string | undefined, event: string | undefined, data: string | undefined }} SseEvent
 * `id` and `event` are undefined when the block had no such field; `data` is the `data:` lines
 * joined with "\n", or undefined when there was none.
 */

export class SseParser {
  /** @param {(event: SseEvent) => void} onEvent */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    // A chunk that ended in "\r" may be followed by the "\n" of the same CRLF.
    this.skipLeadingLf = false;
    this.first = true;
    this.reset();
  }

  reset() {
    this.id = undefined;
    this.event = undefined;
    this.data = undefined;
    this.any = false;
  }

  /** Feeds decoded text; dispatches every event it completes. */
  push(text) {
    if (this.first && text.length > 0) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.skipLeadingLf && text.length > 0) {
      this.skipLeadingLf = false;
      if (text[0] === '\n') text = text.slice(1);
    }
    let input = this.buffer + text;
    let start = 0;
    for (let i = 0; i < input.length; i++) {
      const c = input.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(input.slice(start, i));
      if (c === 13) {
        if (i + 1 === input.length) this.skipLeadingLf = true;
        else if (input.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buffer = input.slice(start);
  }

  /** @param {string} line */
  line(line) {
    if (line === '') {
      if (this.any) {
        const event = { id: this.id, event: this.event, data: this.data };
        this.reset();
        this.onEvent(event);
      }
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'id':
        if (!value.includes('\0')) {
          this.id = value;
          this.any = true;
        }
        break;
      case 'event':
        this.event = value;
        this.any = true;
        break;
      case 'data':
        this.data = this.data === undefined ? value : `${this.data}\n${value}`;
        this.any = true;
        break;
      default:
        // `retry:` and unknown fields: Herald sends neither, and the client's own backoff
        // governs reconnection.
        break;
    }
  }
}

/** Every event in `text`, for tests and one-shot bodies (an error response). */
export function parseSse(text) {
  const events = [];
  const parser = new SseParser((e) => events.push(e));
  parser.push(text);
  return events;
}
