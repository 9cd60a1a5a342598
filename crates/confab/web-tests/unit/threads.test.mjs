// Forum threads (web/js/threads.mjs) and the composer's completion rules (web/js/composer.mjs's
// DOM-free helpers) against scripted packets.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WINDOW } from '../../web/js/state.mjs';
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

/** `setup()` with thread t1 of forum `ideas` open and its newest page (`ids`, oldest first) loaded. */
function opened(ids) {
  const s = setup();
  s.threads.handle({ cmd: 'channels_get', val: [{ name: 'ideas', type: 'forum', threads: [thread('t1', 'Long')] }] });
  s.threads.openThread('t1');
  s.threads.handle({ cmd: 'thread_messages', thread_id: 't1', listener: 'thread-history', messages: ids.map((id) => ({ id, user: 'bob', content: id, timestamp: 1 })) });
  s.sent.length = 0;
  return s;
}

const page = (from, to) => Array.from({ length: to - from }, (_, i) => `m${String(from + i).padStart(3, '0')}`);

test('reactions, edits and deletes in the open thread apply live; react toggles this user\'s own', () => {
  const { threads, sent } = opened(['a', 'b']);
  threads.react('a', '👍');
  assert.deepEqual(sent.pop(), { cmd: 'message_react_add', id: 'a', emoji: '👍', thread_id: 't1', listener: 'thread-react' });
  threads.handle({ cmd: 'message_react_add', id: 'a', emoji: '👍', channel: 'ideas', thread_id: 't1', from: 'alice', seq: 3 });
  threads.handle({ cmd: 'message_react_add', id: 'a', emoji: '👍', channel: 'ideas', thread_id: 't1', from: 'bob', seq: 4 });
  assert.deepEqual(threads.messages[0].reactions, { '👍': ['alice', 'bob'] });
  threads.react('a', '👍');
  assert.equal(sent.pop().cmd, 'message_react_remove', 'a second click takes the reaction back');
  threads.handle({ cmd: 'message_react_remove', id: 'a', emoji: '👍', channel: 'ideas', thread_id: 't1', from: 'alice', seq: 5 });
  assert.deepEqual(threads.messages[0].reactions, { '👍': ['bob'] });
  // Another thread's events leave this one alone.
  threads.handle({ cmd: 'message_react_add', id: 'b', emoji: '🎉', channel: 'ideas', thread_id: 't9', from: 'bob', seq: 6 });
  assert.equal(threads.messages[1].reactions, undefined);

  threads.edit('b', '  ');
  assert.equal(sent.length, 0, 'an empty edit is not sent');
  threads.edit('b', 'better');
  assert.deepEqual(sent.pop(), { cmd: 'message_edit', id: 'b', thread_id: 't1', content: 'better', listener: 'thread-edit' });
  threads.handle({ cmd: 'message_edit', id: 'b', content: 'better', message: { id: 'b', user: 'bob', content: 'better', edited: true }, channel: 'ideas', thread_id: 't1', seq: 7 });
  assert.deepEqual([threads.messages[1].content, threads.messages[1].edited], ['better', true]);

  threads.remove('a');
  assert.deepEqual(sent.pop(), { cmd: 'message_delete', id: 'a', thread_id: 't1', listener: 'thread-delete' });
  threads.handle({ cmd: 'message_delete', id: 'a', channel: 'ideas', thread_id: 't1', seq: 8 });
  assert.deepEqual(threads.messages.map((m) => m.id), ['b']);
  // A refused action shows its error.
  threads.handle({ cmd: 'error', val: 'You do not have permission to delete this message', listener: 'thread-delete' });
  assert.equal(threads.error, 'You do not have permission to delete this message');
});

test('a reply goes out with reply_to and its nonce, and a failed send can be retried or discarded', () => {
  const { threads, sent } = opened(['a']);
  threads.post('agreed', { reply_to: 'a' });
  assert.deepEqual(sent.pop(), { cmd: 'message_new', thread_id: 't1', channel: 'ideas', content: 'agreed', reply_to: 'a', nonce: 'n1', listener: 'thread-send:n1' });
  threads.handle({ cmd: 'rate_limit', length: 1000, listener: 'thread-send:n1' });
  assert.deepEqual(threads.pending().map((e) => [e.state, e.error]), [['failed', 'Rate limited; try again']]);
  threads.retry('n1');
  assert.deepEqual(sent.pop(), { cmd: 'message_new', thread_id: 't1', channel: 'ideas', content: 'agreed', reply_to: 'a', nonce: 'n1', listener: 'thread-send:n1' }, 'the same nonce: no duplicate if the first got through');
  assert.equal(threads.pending()[0].state, 'pending');
  threads.handle({ cmd: 'message_new', channel: 'ideas', thread_id: 't1', message: { id: 'r', user: 'alice', content: 'agreed', nonce: 'n1', reply_to: { id: 'a', user: 'bob' }, timestamp: 2 }, seq: 3 });
  assert.deepEqual(threads.messages.map((m) => m.id), ['a', 'r']);
  assert.equal(threads.pending().length, 0);
  threads.post('oops');
  threads.handle({ cmd: 'error', val: 'nope', listener: 'thread-send:n2' });
  threads.discard('n2');
  assert.equal(threads.pending().length, 0);
});

test('older pages load before the oldest held message, in order, without duplicates, until the start', () => {
  const { threads, sent } = opened(page(150, 250));
  assert.equal(threads.hasOlder, true, 'a full page may have more before it');
  assert.equal(threads.loadOlder(), true);
  assert.deepEqual(sent.pop(), { cmd: 'thread_messages', thread_id: 't1', start: 'm150', limit: THREAD_PAGE, listener: 'thread-older' });
  assert.equal(threads.loadOlder(), false, 'one request at a time');
  // The page overlaps what is held (a message arrived meanwhile): nothing shows twice.
  const older = page(50, 151).map((id) => ({ id, user: 'bob', content: id, timestamp: 1 }));
  threads.handle({ cmd: 'thread_messages', thread_id: 't1', listener: 'thread-older', messages: older });
  assert.deepEqual(threads.messages.map((m) => m.id), page(50, 250));
  assert.equal(threads.loadOlder(), true);
  assert.equal(sent.pop().start, 'm050');
  threads.handle({ cmd: 'thread_messages', thread_id: 't1', listener: 'thread-older', messages: page(0, 50).map((id) => ({ id, user: 'bob', timestamp: 1 })) });
  assert.deepEqual(threads.messages.map((m) => m.id), page(0, 250));
  assert.equal(threads.hasOlder, false, 'a short page is the start of the thread');
  assert.equal(threads.loadOlder(), false);
  assert.equal(sent.length, 0);
  // A late page of a thread no longer open is dropped.
  threads.handle({ cmd: 'thread_messages', thread_id: 't0', listener: 'thread-older', messages: [{ id: 'x' }] });
  assert.equal(threads.messages.length, 250);
  // Opening the thread again starts from its newest page.
  threads.openThread('t1');
  assert.deepEqual([threads.messages, threads.hasOlder, threads.loadingOlder], [null, false, false]);
});

test('a failed older-page request can be asked again', () => {
  const { threads, sent } = opened(page(0, 100));
  threads.loadOlder();
  threads.handle({ cmd: 'error', val: 'Rate limited', listener: 'thread-older' });
  assert.equal(threads.loadingOlder, false);
  assert.equal(threads.loadOlder(), true);
  assert.equal(sent.length, 2);
});

test('a long thread holds at most WINDOW messages: paging back drops the newest, paging forward brings them back', () => {
  const { threads, sent } = opened(page(220, 320));
  const rows = (from, to) => page(from, to).map((id) => ({ id, user: 'bob', timestamp: 1 }));
  threads.loadOlder();
  threads.handle({ cmd: 'thread_messages', thread_id: 't1', listener: 'thread-older', messages: rows(120, 220) });
  threads.loadOlder();
  threads.handle({ cmd: 'thread_messages', thread_id: 't1', listener: 'thread-older', messages: rows(20, 120) });
  assert.equal(threads.messages.length, WINDOW);
  assert.deepEqual([threads.messages[0].id, threads.messages.at(-1).id, threads.hasNewer], ['m020', 'm269', true]);
  // A live message past the window's end waits for the newer pages.
  threads.handle({ cmd: 'message_new', channel: 'ideas', thread_id: 't1', message: { id: 'm320', user: 'bob', timestamp: 2 }, seq: 9 });
  assert.equal(threads.messages.at(-1).id, 'm269');
  sent.length = 0;
  assert.equal(threads.loadNewer(), true);
  assert.deepEqual(sent.pop(), { cmd: 'messages_around', thread_id: 't1', around: 'm269', bounds: { above: THREAD_PAGE, below: 0 }, listener: 'thread-newer' });
  assert.equal(threads.loadNewer(), false, 'one request at a time');
  threads.handle({ cmd: 'messages_around', channel: 'ideas', thread_id: 't1', listener: 'thread-newer', messages: rows(269, 321) });
  assert.equal(threads.messages.length, WINDOW);
  assert.deepEqual([threads.messages[0].id, threads.messages.at(-1).id, threads.hasNewer, threads.hasOlder], ['m071', 'm320', false, true]);
  assert.equal(new Set(threads.messages.map((m) => m.id)).size, WINDOW, 'no message twice');
  assert.equal(threads.loadNewer(), false);
});
