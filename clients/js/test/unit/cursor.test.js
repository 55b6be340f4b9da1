import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CursorStore, normalizeTopics, storageKey } from '../../src/cursor.js';
import { memoryStorage } from '../helpers/fakes.js';

test('topics: repeats dropped (Herald counts them once), order kept, bad names refused', () => {
  assert.deepEqual(normalizeTopics(['b', 'a', 'b']), ['b', 'a']);
  assert.throws(() => normalizeTopics([]), /non-empty array/);
  assert.throws(() => normalizeTopics('a'), /non-empty array/);
  assert.throws(() => normalizeTopics(['a', '']), /non-empty string/);
  assert.throws(() => normalizeTopics(['a', 7]), /non-empty string/);
  assert.throws(() => normalizeTopics(Array.from({ length: 257 }, (_, i) => `t${i}`)), /at most 256/);
});

test('the storage key names the topic set in any order, and only that set', () => {
  assert.equal(storageKey('https://h', ['b', 'a']), storageKey('https://h', ['a', 'b']));
  assert.notEqual(storageKey('https://h', ['a']), storageKey('https://h', ['a', 'b']));
  assert.notEqual(storageKey('https://h', ['a']), storageKey('https://other', ['a']));
  // A topic with a comma is not confused with two topics.
  assert.notEqual(storageKey('https://h', ['a,b']), storageKey('https://h', ['a', 'b']));
});

test('a storage that fails (quota, privacy mode) is reported, never thrown', () => {
  const errors = [];
  const broken = { getItem() { throw new Error('denied'); }, setItem() { throw new Error('quota'); }, removeItem() { throw new Error('x'); } };
  const store = new CursorStore(broken, 'k', (e) => errors.push(e.message));
  assert.equal(store.load(), null);
  store.save('c');
  store.clear();
  assert.deepEqual(errors, ['denied', 'quota', 'x']);
  const memory = memoryStorage();
  const ok = new CursorStore(memory, 'k', () => assert.fail());
  assert.equal(ok.load(), null);
  ok.save('m1.a.b');
  assert.equal(ok.load(), 'm1.a.b');
  ok.clear();
  assert.equal(ok.load(), null);
  assert.equal(new CursorStore(null, 'k', () => {}).load(), null);
});
