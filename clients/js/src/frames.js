// Herald's WebSocket frames (docs/api.md "WebSocket"), parsed and checked without I/O.

/** @typedef {{op:'ack', id:number|null, cursor?:string, topics?:string[], message_id?:string, expires_in?:number}} AckFrame */
/** @typedef {{op:'error', id:number|null, code:string, message:string}} ErrorFrame */
/** @typedef {{op:'msg', topic:string, id:string, event:string, payload:string, cursor:string}} MsgFrame */
/** @typedef {{op:'gap', topics:string[]}} GapFrame */
/** @typedef {{op:'ping'|'pong', id?:number|null}} PingFrame */
/** @typedef {AckFrame|ErrorFrame|MsgFrame|GapFrame|PingFrame} ServerFrame */

export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameError';
  }
}

const isString = (v) => typeof v === 'string';
const isId = (v) => v === undefined || v === null || Number.isInteger(v);
const isStrings = (v) => Array.isArray(v) && v.every(isString);

/**
 * One text frame from Herald; throws FrameError on anything the protocol does not allow.
 * Unknown `op`s are returned as they are, for a client older than its server to skip.
 * @param {string} text
 * @returns {ServerFrame | {op:string}}
 */
export function parseServerFrame(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch (e) {
    throw new FrameError(`a frame is not JSON: ${e.message}`);
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    throw new FrameError('a frame is not a JSON object');
  }
  if (!isString(frame.op)) throw new FrameError('a frame has no op');
  const bad = (what) => {
    throw new FrameError(`${frame.op} frame: ${what}`);
  };
  switch (frame.op) {
    case 'msg':
      if (!isString(frame.topic)) bad('topic is not a string');
      if (!isString(frame.id)) bad('id is not a string');
      if (!isString(frame.event)) bad('event is not a string');
      if (!isString(frame.payload)) bad('payload is not a string');
      if (!isString(frame.cursor)) bad('cursor is not a string');
      break;
    case 'ack':
      if (!isId(frame.id)) bad('id is not an integer');
      if (frame.cursor !== undefined && !isString(frame.cursor)) bad('cursor is not a string');
      if (frame.message_id !== undefined && !isString(frame.message_id)) bad('message_id is not a string');
      break;
    case 'error':
      if (!isId(frame.id)) bad('id is not an integer');
      if (!isString(frame.code)) bad('code is not a string');
      if (frame.message !== undefined && !isString(frame.message)) bad('message is not a string');
      break;
    case 'gap':
      if (!isStrings(frame.topics)) bad('topics is not a list of strings');
      break;
    case 'ping':
    case 'pong':
      if (!isId(frame.id)) bad('id is not an integer');
      break;
    default:
      break;
  }
  return frame;
}

/** The command frames the client sends. */
export const command = {
  auth: (id, token) => JSON.stringify({ op: 'auth', id, token }),
  subscribe: (id, topics, cursor) =>
    JSON.stringify(cursor ? { op: 'subscribe', id, topics, cursor } : { op: 'subscribe', id, topics }),
  publish: (id, topic, event, payload) => JSON.stringify({ op: 'publish', id, topic, event, payload }),
  ping: (id) => JSON.stringify({ op: 'ping', id }),
};

/**
 * The body of a refused HTTP request: v2's JSON `{"errors":[{error_code,error_message}]}`, or
 * the same JSON inside an SSE `neurow_error_<status>` event (v1 errors, and every 503).
 * @param {string} body
 * @returns {{ code?: string, message?: string }}
 */
export function parseErrorBody(body) {
  const fromJson = (text) => {
    try {
      const first = JSON.parse(text)?.errors?.[0];
      if (first && typeof first === 'object') {
        return { code: first.error_code, message: first.error_message };
      }
    } catch {
      // not JSON
    }
    return null;
  };
  const direct = fromJson(body);
  if (direct) return direct;
  const data = /^data: ?(.*)$/m.exec(body);
  if (data) {
    const inner = fromJson(data[1]);
    if (inner) return inner;
  }
  return { message: body.trim() || undefined };
}
