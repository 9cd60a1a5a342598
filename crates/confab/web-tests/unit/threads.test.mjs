// Forum threads (web/js/threads.mjs) and the composer's completion rules (web/js/composer.mjs's
// DOM-free helpers) against scripted packets.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Threads, THREAD_PAGE } from '../../web/js/threads.mjs';

function setup() {
  const sent = [];
  let n = 0;
  const threads = new Threads({ send: (f) => sent.push(f) > 0, nonce: () => `n${++n}` });
  threads.handle({ cmd: 'ready', user: { username: 'alice' } });
  return { threads, sent };
}

const thread = (id, name, extra = {}) => ({ id, name, parent_channel: 'ideas', created_by: 'alice', created_at: 1, locked: false, archived: false, participants: ['alice'], last_message: null, last_message_id: null, ...extra });

test('forums come from channels_get; a thread this user creates opens; its messages load and arrive live once', () => {
  const { threads, sent } = setup();
  threads.handle({ cmd: 'channels_get', val: [{ name: 'general', type: 'text' }, { name: 'ideas', type: 'forum', threads: [thread('t0', 'Old', { last_message: 5 })] }] });
  assert.deepEqual(threads.forums.map((f) => f.name), ['ideas']);
  threads.openForum('ideas');
  threads.create('ideas', '  Dark mode ');
  assert.deepEqual(sent.pop(), { cmd: 'thread_create', channel: 'ideas', name: 'Dark mode', listener: 'thread-create' });
  threads.handle({ cmd: 'thread_create', thread: thread('t1', 'Dark mode', { created_at: 9 }), channel: 'ideas', seq: 1 });
  assert.deepEqual(threads.forum('ideas').threads.map((t) => t.id), ['t1', 't0'], 'newest activity first');
  assert.deepEqual(threads.open, { forum: 'ideas', thread: 't1' });
  assert.deepEqual(sent.slice(-2), [
    { cmd: 'thread_messages', thread_id: 't1', start: 0, limit: THREAD_PAGE, listener: 'thread-history' },
    { cmd: 'unreads_ack', thread_id: 't1', listener: 'thread-ack' },
  ]);
  threads.handle({ cmd: 'thread_messages', thread_id: 't1', messages: [] });
  threads.post('first');
  assert.deepEqual(sent.pop(), { cmd: 'message_new', thread_id: 't1', channel: 'ideas', content: 'first', nonce: 'n1', listener: 'thread-send:n1' });
  assert.equal(threads.pending().length, 1);
  const echo = { cmd: 'message_new', channel: 'ideas', thread_id: 't1', message: { id: 'm1', user: 'alice', content: 'first', nonce: 'n1', timestamp: 10 }, seq: 2 };
  threads.handle(echo);
  threads.handle(echo);
  assert.deepEqual(threads.messages.map((m) => m.id), ['m1']);
  assert.equal(threads.pending().length, 0);
  // A message of another thread only moves that thread up.
  threads.handle({ ...echo, thread_id: 't0', message: { id: 'm2', user: 'bob', content: 'x', timestamp: 20 } });
  assert.deepEqual(threads.messages.map((m) => m.id), ['m1']);
  assert.equal(threads.thread('t0').last_message, 20);
  // After a reconnect the open thread is fetched again and unconfirmed sends go out with their nonce.
  threads.post('lost');
  sent.length = 0;
  threads.handle({ cmd: 'ready', user: { username: 'alice' } });
  assert.deepEqual(sent.map((f) => f.cmd), ['thread_messages', 'unreads_ack', 'message_new']);
  assert.equal(sent[2].nonce, 'n2');
  threads.handle({ cmd: 'thread_delete', thread_id: 't1', channel: 'ideas', seq: 3 });
  assert.deepEqual(threads.open, { forum: 'ideas' });
});
