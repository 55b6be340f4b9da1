import { test } from 'node:test';
import assert from 'node:assert/strict';
import { command, FrameError, parseErrorBody, parseServerFrame } from '../../src/frames.js';

test('every frame of docs/api.md parses as written there', () => {
  const frames = [
    '{"op":"ack","id":1,"cursor":"m1.a.b.c","topics":["a","b"]}',
    '{"op":"ack","id":2,"cursor":"m1.a.b.c"}',
    '{"op":"ack","id":3,"message_id":"1796243350123"}',
    '{"op":"ack","id":4,"expires_in":3600}',
    '{"op":"pong","id":5}',
    '{"op":"msg","topic":"a","id":"1796243350123","event":"update","payload":"Hello","cursor":"m1.mx6kwv74.3k9x1c.3f.-1aao"}',
    '{"op":"gap","topics":["a"]}',
    '{"op":"ping"}',
    '{"op":"error","id":null,"code":"unknown_op","message":"say \\"why\\""}',
  ];
  for (const text of frames) assert.deepEqual(parseServerFrame(text), JSON.parse(text));
});

test('frames the protocol does not allow are refused with the reason', () => {
  const bad = {
    'not json': /not JSON/,
    '[1]': /not a JSON object/,
    'null': /not a JSON object/,
    '{"id":1}': /no op/,
    '{"op":"msg","topic":"a","id":17,"event":"e","payload":"p","cursor":"c"}': /msg frame: id/,
    '{"op":"msg","topic":"a","id":"1","event":"e","payload":"p"}': /cursor/,
    '{"op":"ack","id":"1"}': /ack frame: id/,
    '{"op":"error","id":1}': /code/,
    '{"op":"gap","topics":"a"}': /topics/,
  };
  for (const [text, why] of Object.entries(bad)) {
    assert.throws(() => parseServerFrame(text), (e) => e instanceof FrameError && why.test(e.message), text);
  }
});

test('an op newer than the client passes through, to be skipped', () => {
  assert.deepEqual(parseServerFrame('{"op":"presence","who":["x"]}'), { op: 'presence', who: ['x'] });
});

test('commands are the JSON the server expects', () => {
  assert.equal(command.subscribe(2, ['a', 'b'], null), '{"op":"subscribe","id":2,"topics":["a","b"]}');
  assert.equal(command.subscribe(2, ['a'], 'c'), '{"op":"subscribe","id":2,"topics":["a"],"cursor":"c"}');
  assert.equal(command.auth(1, 't'), '{"op":"auth","id":1,"token":"t"}');
  assert.equal(command.publish(3, 'a', 'e', 'p'), '{"op":"publish","id":3,"topic":"a","event":"e","payload":"p"}');
});

test('error bodies: v2 JSON, an SSE neurow_error event (every 503), and plain text', () => {
  assert.deepEqual(
    parseErrorBody('{"errors":[{"error_code":"invalid_cursor","error_message":"no"}]}'),
    { code: 'invalid_cursor', message: 'no' },
  );
  const sse =
    'id:1796306058\nevent: neurow_error_503\ndata: {"errors":[{"error_code":"subscription_rate_exceeded","error_message":"retry later"}]}\n\n';
  assert.deepEqual(parseErrorBody(sse), { code: 'subscription_rate_exceeded', message: 'retry later' });
  assert.deepEqual(parseErrorBody('Expected JWT claims are missing'), { message: 'Expected JWT claims are missing' });
  assert.deepEqual(parseErrorBody(''), { message: undefined });
});
