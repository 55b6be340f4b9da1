import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSse, SseParser } from '../../src/sse-parser.js';

// A v2 stream as Herald writes it (docs/api.md "Herald's own API (v2)"), byte for byte.
const V2_STREAM =
  'id: m1.mx6kwv74.3k9x1c.0.-1aao\n\n' +
  'event: history_gap\ndata: {"topics":["orders.42"]}\n\n' +
  'id: m1.mx6kwv74.3k9x1c.3f.-1aao\nevent: update\ndata: {"topic":"news","id":"1796243350123","payload":"Hello"}\n\n' +
  'event: ping\n\n' +
  'id: 1795435251681\nevent: a\ndata: line1\ndata: line2\n\n' +
  'event: reconnect\n\n';

const EXPECTED = [
  { id: 'm1.mx6kwv74.3k9x1c.0.-1aao', event: undefined, data: undefined },
  { id: undefined, event: 'history_gap', data: '{"topics":["orders.42"]}' },
  { id: 'm1.mx6kwv74.3k9x1c.3f.-1aao', event: 'update', data: '{"topic":"news","id":"1796243350123","payload":"Hello"}' },
  { id: undefined, event: 'ping', data: undefined },
  { id: '1795435251681', event: 'a', data: 'line1\nline2' },
  { id: undefined, event: 'reconnect', data: undefined },
];

test("Herald's v2 stream: the opening cursor, a gap, messages and control events without data", () => {
  assert.deepEqual(parseSse(V2_STREAM), EXPECTED);
});

test('the same events whatever the chunking: split at every position, and byte by byte', () => {
  for (let cut = 0; cut <= V2_STREAM.length; cut++) {
    const events = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push(V2_STREAM.slice(0, cut));
    parser.push(V2_STREAM.slice(cut));
    assert.deepEqual(events, EXPECTED, `cut at ${cut}`);
  }
  const events = [];
  const parser = new SseParser((e) => events.push(e));
  for (const ch of V2_STREAM) parser.push(ch);
  assert.deepEqual(events, EXPECTED);
});

test('CRLF and CR end lines too, even when a CRLF is split across chunks', () => {
  const crlf = V2_STREAM.replace(/\n/g, '\r\n');
  const cr = V2_STREAM.replace(/\n/g, '\r');
  assert.deepEqual(parseSse(crlf), EXPECTED);
  assert.deepEqual(parseSse(cr), EXPECTED);
  for (let cut = 0; cut <= crlf.length; cut++) {
    const events = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push(crlf.slice(0, cut));
    parser.push(crlf.slice(cut));
    assert.deepEqual(events, EXPECTED, `cut at ${cut}`);
  }
});

test("Neurow's error event: `id:` without a space, and the SSE details", () => {
  const body = 'id:1795435260\nevent: neurow_error_401\ndata: {"errors":[]}\n\n';
  assert.deepEqual(parseSse(body), [{ id: '1795435260', event: 'neurow_error_401', data: '{"errors":[]}' }]);
  // A BOM, comments, a field without a colon, an unknown field and an empty data line.
  assert.deepEqual(parseSse('\uFEFF: hi\nretry: 10\ndata\ndata:x\nfoo: bar\n\n'), [
    { id: undefined, event: undefined, data: '\nx' },
  ]);
  // An id with NUL is ignored; an incomplete last event is not dispatched.
  assert.deepEqual(parseSse('id: a\0b\nevent: e\n\nevent: half\n'), [{ id: undefined, event: 'e', data: undefined }]);
  // Only one leading space is stripped.
  assert.deepEqual(parseSse('data:  two\n\n'), [{ id: undefined, event: undefined, data: ' two' }]);
});
