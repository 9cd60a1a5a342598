// The chat state machine (web/js/state.mjs) against scripted server packets: seq bookkeeping,
// resume, the nonce outbox, unreads and typing.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Chat, PAGE, TYPING_MS, WINDOW } from '../../web/js/state.mjs';

/** A Chat whose frames land in `sent`; `online` says whether the socket takes them. */
function setup({ me = 'alice', online = true } = {}) {
  const sent = [];
  let n = 0;
  let clock = 1_000_000;
  const timers = [];
  const chat = new Chat({
    timers: { setTimeout: (f) => timers.push(f), clearTimeout: () => {} },
    send: (f) => {
      if (!h.online) return false;
      sent.push(f);
      return true;
    },
    nonce: () => `n${++n}`,
    now: () => clock,
  });
  const h = {
    chat,
    sent,
    online,
    tick(ms) {
      clock += ms;
    },
    /** Runs the timers that are due (all of them: the tests never need partial delays). */
    fire() {
      for (const f of timers.splice(0)) f();
    },
    /** Frames sent since the last call, then forgets them. */
    take() {
      return sent.splice(0);
    },
    connect(channels = ['general', 'dev']) {
      chat.handle({ cmd: 'ready', user: { username: me } });
      chat.handle({ cmd: 'channels_get', val: channels.map((name) => ({ name, type: 'text' })) });
    },
  };
  return h;
}

const msg = (seq, user = 'bob', content = `m${seq}`) => ({ id: `id${seq}`, user, content, seq, timestamp: seq });
const live = (seq, channel = 'general', user = 'bob', extra = {}) => ({ cmd: 'message_new', channel, message: msg(seq, user), seq, global: true, ...extra });
const page = (channel, messages, seq, listener = `hist:${channel}`) => ({ cmd: 'messages_get', channel, messages, seq, listener });
const ids = (chat, name = 'general') => chat.room(name).messages.map((m) => m.id);

test('first connect opens #general and loads its newest page', () => {
  const h = setup();
  h.connect();
  assert.equal(h.chat.current, 'general');
  const frames = h.take();
  assert.deepEqual(frames.map((f) => f.cmd), ['channels_get', 'unreads_get', 'roles_list', 'emoji_get_all', 'messages_get']);
  assert.deepEqual(frames[4], { cmd: 'messages_get', channel: 'general', start: 0, limit: PAGE, listener: 'hist:general' });
});

test('live events that race the first page are held, then applied only past its seq', () => {
  const h = setup();
  h.connect();
  h.chat.handle(live(3)); // committed before the read: also in the page
  h.chat.handle(live(4)); // committed after the read
  h.chat.handle(page('general', [msg(1), msg(2), msg(3)], 3));
  assert.deepEqual(ids(h.chat), ['id1', 'id2', 'id3', 'id4']);
  assert.equal(h.chat.room('general').seq, 4);
  h.chat.handle(live(4)); // a copy arriving late changes nothing
  assert.deepEqual(ids(h.chat), ['id1', 'id2', 'id3', 'id4']);
});

test('edits, deletes and reactions change the loaded timeline', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [msg(1), msg(2)], 2));
  h.chat.handle({ cmd: 'message_edit', id: 'id1', content: 'changed', channel: 'general', seq: 3 });
  h.chat.handle({ cmd: 'message_react_add', id: 'id2', emoji: '👍', from: 'bob', channel: 'general', seq: 4 });
  h.chat.handle({ cmd: 'message_react_add', id: 'id2', emoji: '👍', from: 'carol', channel: 'general', seq: 5 });
  h.chat.handle({ cmd: 'message_react_remove', id: 'id2', emoji: '👍', from: 'bob', channel: 'general', seq: 6 });
  const [a, b] = h.chat.room('general').messages;
  assert.equal(a.content, 'changed');
  assert.equal(a.edited, true);
  assert.deepEqual(b.reactions, { '👍': ['carol'] });
  h.chat.handle({ cmd: 'message_delete', id: 'id1', channel: 'general', seq: 7 });
  assert.deepEqual(ids(h.chat), ['id2']);
  // A replayed copy of an event already applied is ignored by seq.
  h.chat.handle({ cmd: 'message_edit', id: 'id2', content: 'old replay', channel: 'general', seq: 5, replay: true });
  assert.equal(h.chat.room('general').messages[0].content, 'm2');
});

test('a send is pending until its echo, which carries the nonce', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [], 0));
  h.take();
  const e = h.chat.post('hello');
  assert.deepEqual(h.take(), [{ cmd: 'message_new', channel: 'general', content: 'hello', nonce: 'n1', listener: 'send:n1' }]);
  assert.deepEqual(h.chat.pending().map((p) => p.state), ['pending']);
  h.chat.handle({ ...live(1, 'general', 'alice'), message: { ...msg(1, 'alice', 'hello'), nonce: e.nonce }, listener: 'send:n1' });
  assert.deepEqual(h.chat.pending(), []);
  assert.deepEqual(ids(h.chat), ['id1']);
  assert.equal(h.chat.post('   '), null, 'blank messages are not sent');
});

test('a send refused by the server is marked failed and can be retried with the same nonce', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [], 0));
  h.take();
  h.chat.post('x'.repeat(3000));
  h.chat.handle({ cmd: 'error', src: 'message_new', val: 'Message too long. Maximum length is 2000 characters', code: 'too_long', listener: 'send:n1' });
  assert.equal(h.chat.pending()[0].state, 'failed');
  h.take();
  h.chat.retry('n1');
  assert.equal(h.take()[0].nonce, 'n1');
  h.chat.discard('n1');
  assert.deepEqual(h.chat.pending(), []);
});

test('after a reconnect: resume from the last seq, ignore live events until resumed, re-send with the same nonce', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [msg(1), msg(2)], 2));
  h.chat.post('while connected'); // echo lost with the socket
  h.online = false;
  h.chat.post('while offline');
  h.online = true;
  h.take();
  h.chat.handle({ cmd: 'ready', user: { username: 'alice' } });
  const frames = h.take();
  assert.deepEqual(frames.map((f) => f.cmd), ['channels_get', 'unreads_get', 'roles_list', 'emoji_get_all', 'resume']);
  assert.deepEqual(frames[4].channels, { general: 2 });
  // A live event before `resumed` is not shown; its replay is.
  h.chat.handle(live(4));
  assert.deepEqual(ids(h.chat), ['id1', 'id2']);
  h.chat.handle({ ...live(3), replay: true });
  h.chat.handle({ ...live(4), replay: true });
  assert.deepEqual(ids(h.chat), ['id1', 'id2', 'id3', 'id4']);
  assert.deepEqual(h.take(), [], 'nothing is re-sent before resumed');
  h.chat.handle({ cmd: 'resumed', channels: { general: 4 }, stale: [], unknown: [], listener: 'resume' });
  assert.deepEqual(ids(h.chat), ['id1', 'id2', 'id3', 'id4'], 'the held live copy is not shown twice');
  h.fire();
  const after = h.take();
  assert.equal(after.filter((f) => f.cmd === 'unreads_ack').length, 1, 'the replay is acknowledged once');
  const resent = after.filter((f) => f.cmd === 'message_new');
  assert.deepEqual(resent.map((f) => [f.nonce, f.content]), [['n1', 'while connected'], ['n2', 'while offline']]);
  // The server had committed the first before the cut: it answers with the original, marked duplicate.
  h.chat.handle({ ...live(3, 'general', 'alice'), message: { ...msg(3, 'alice'), nonce: 'n1' }, duplicate: true, listener: 'send:n1' });
  assert.deepEqual(h.chat.pending().map((p) => p.nonce), ['n2']);
  assert.deepEqual(ids(h.chat), ['id1', 'id2', 'id3', 'id4']);
});

test('a stale channel is reloaded from its newest page', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [msg(1)], 1));
  h.chat.handle({ cmd: 'ready', user: { username: 'alice' } });
  h.take();
  h.chat.handle({ cmd: 'resumed', channels: { general: 9000 }, stale: ['general'], unknown: [] });
  assert.deepEqual(h.take(), [{ cmd: 'messages_get', channel: 'general', start: 0, limit: PAGE, listener: 'hist:general' }]);
  h.chat.handle(page('general', [msg(8999), msg(9000)], 9000));
  assert.deepEqual(ids(h.chat), ['id8999', 'id9000']);
});

test('older pages are asked for by the oldest id and merged without duplicates', () => {
  const h = setup();
  h.connect();
  const first = Array.from({ length: PAGE }, (_, i) => msg(100 + i));
  h.chat.handle(page('general', first, 149));
  h.take();
  assert.equal(h.chat.loadOlder(), true);
  assert.equal(h.chat.loadOlder(), false, 'one page at a time');
  assert.deepEqual(h.take(), [{ cmd: 'messages_get', channel: 'general', start: 'id100', limit: PAGE, listener: 'older:general' }]);
  h.chat.handle(page('general', [msg(98), msg(99), msg(100)], 149, 'older:general'));
  assert.deepEqual(ids(h.chat).slice(0, 4), ['id98', 'id99', 'id100', 'id101']);
  assert.equal(h.chat.room('general').messages.length, PAGE + 2);
  assert.equal(h.chat.loadOlder(), false, 'a short page was the start of the channel');
});

test('unread counts: from unreads_get, counted live in other channels, cleared on open', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [], 0));
  h.chat.handle({ cmd: 'unreads_get', unreads: { general: { unread_count: 5 }, dev: { unread_count: 2 }, 'thread/x': { unread_count: 9 } } });
  assert.equal(h.chat.room('general').unread, 0, 'the open channel is read');
  assert.equal(h.chat.room('dev').unread, 2);
  h.chat.handle(live(3, 'dev'));
  h.chat.handle(live(4, 'dev', 'alice')); // own messages are not unread
  assert.equal(h.chat.room('dev').unread, 3);
  h.take();
  h.chat.handle(live(1, 'general'));
  h.chat.handle(live(2, 'general'));
  assert.deepEqual(h.take(), []);
  h.fire();
  assert.deepEqual(h.take(), [{ cmd: 'unreads_ack', channel: 'general' }], 'a burst in the open channel is read once');
  h.chat.open('dev');
  assert.equal(h.chat.room('dev').unread, 0);
  assert.equal(h.take()[0].cmd, 'messages_get', 'first open loads the page, which marks it read');
});

test('typing indicators expire and end with the typist’s message', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [], 0));
  h.chat.handle({ cmd: 'typing', channel: 'general', user: 'bob' });
  h.chat.handle({ cmd: 'typing', channel: 'general', user: 'alice' }); // self
  assert.deepEqual(h.chat.typers(), ['bob']);
  h.tick(TYPING_MS + 1);
  assert.deepEqual(h.chat.typers(), []);
  h.chat.handle({ cmd: 'typing', channel: 'general', user: 'bob' });
  h.chat.handle(live(1));
  assert.deepEqual(h.chat.typers(), []);
});

test('own typing frames are throttled', () => {
  const h = setup();
  h.connect();
  h.take();
  h.chat.typing();
  h.chat.typing();
  h.tick(3000);
  h.chat.typing();
  assert.deepEqual(h.take(), [{ cmd: 'typing', channel: 'general' }, { cmd: 'typing', channel: 'general' }]);
  // Sending ends the indicator; the next key announces typing again at once.
  h.chat.post('done');
  h.take();
  h.chat.typing();
  assert.deepEqual(h.take(), [{ cmd: 'typing', channel: 'general' }]);
});

test('paging back past the window drops the newest end; paging forward brings it back and drops the oldest', () => {
  const h = setup();
  h.connect();
  const newest = Array.from({ length: PAGE }, (_, i) => msg(1000 - PAGE + 1 + i));
  h.chat.handle(page('general', newest, 1000));
  const r = h.chat.room('general');
  let oldest = 1000 - PAGE + 1;
  while (oldest > 1000 - WINDOW - 3 * PAGE) {
    h.take();
    assert.equal(h.chat.loadOlder(), true);
    const [f] = h.take();
    assert.equal(f.start, `id${oldest}`);
    const older = Array.from({ length: PAGE }, (_, i) => msg(oldest - PAGE + i));
    h.chat.handle({ ...page('general', older, 1000, 'older:general') });
    oldest -= PAGE;
    assert.ok(r.messages.length <= WINDOW, `${r.messages.length} held`);
  }
  assert.equal(r.hasNewer, true);
  const seqs = () => r.messages.map((m) => m.seq);
  assert.deepEqual(seqs(), Array.from({ length: WINDOW }, (_, i) => oldest + i));
  // A live message past the window's end is not drawn, but its seq counts (resume starts after it).
  h.chat.handle(live(1001));
  assert.equal(r.messages.at(-1).seq, oldest + WINDOW - 1);
  assert.equal(r.seq, 1001);
  // Forward: messages_around the newest held, `above` newer ones.
  h.take();
  assert.equal(h.chat.loadNewer(), true);
  const [f] = h.take();
  const last = oldest + WINDOW - 1;
  assert.deepEqual(f, { cmd: 'messages_around', channel: 'general', around: `id${last}`, bounds: { above: PAGE, below: 0 }, listener: 'newer:general' });
  h.chat.handle({ cmd: 'messages_around', channel: 'general', listener: 'newer:general', messages: Array.from({ length: PAGE + 1 }, (_, i) => msg(last + i)) });
  assert.equal(r.messages.length, WINDOW);
  assert.equal(r.messages.at(-1).seq, last + PAGE);
  assert.equal(r.hasOlder, true);
  assert.deepEqual(seqs(), [...new Set(seqs())].sort((a, b) => a - b), 'ordered, no duplicates');
  // Jump to latest: the newest page again.
  h.chat.jumpLatest();
  assert.deepEqual(h.take().at(-1), { cmd: 'messages_get', channel: 'general', start: 0, limit: PAGE, listener: 'hist:general' });
  h.chat.handle(page('general', Array.from({ length: PAGE }, (_, i) => msg(1001 - PAGE + 1 + i)), 1001));
  assert.equal(r.hasNewer, false);
  h.chat.handle(live(1002));
  assert.equal(r.messages.at(-1).seq, 1002);
});

test('a search hit opens the messages around it; pins and polls follow their events', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [msg(99), msg(100)], 100));
  h.chat.search('needle');
  assert.deepEqual(h.take().at(-1), { cmd: 'messages_search', channel: 'general', query: 'needle', listener: 'search' });
  h.chat.handle({ cmd: 'messages_search', channel: 'general', query: 'needle', results: [msg(10)] });
  assert.deepEqual(h.chat.panel.results.map((m) => m.id), ['id10']);
  h.chat.jumpTo('general', 'id10');
  assert.deepEqual(h.take().at(-1), { cmd: 'messages_around', channel: 'general', around: 'id10', bounds: { above: 25, below: 25 }, listener: 'jump:general' });
  h.chat.handle({ cmd: 'messages_around', channel: 'general', listener: 'jump:general', messages: Array.from({ length: 35 }, (_, i) => msg(i + 1)) });
  const r = h.chat.room('general');
  assert.equal(r.focus, 'id10');
  assert.equal(r.hasOlder, false, 'only 9 older came back');
  assert.equal(r.hasNewer, true);
  h.chat.handle({ cmd: 'message_pin', id: 'id10', channel: 'general', pinned: true, seq: 101 });
  assert.equal(r.messages.find((m) => m.id === 'id10').pinned, true);
  h.chat.handle({ cmd: 'poll_vote_update', poll_id: 'p1', user: 'bob', option_ids: ['a'], results: { total_votes: 1, results: [{ id: 'a', votes: 1 }] }, seq: 102 });
  assert.equal(h.chat.polls.get('p1').total_votes, 1);
  h.chat.handle({ cmd: 'poll_vote', poll_id: 'p1', option_ids: ['a'], results: { total_votes: 2, results: [{ id: 'a', votes: 2 }] } });
  assert.deepEqual(h.chat.polls.get('p1').user_votes, ['a']);
});

test('a live mention of me in another channel counts a mention badge and is reported once', () => {
  const seen = [];
  const h = setup();
  h.chat.onMention = (channel, m) => seen.push([channel, m.content]);
  h.connect();
  h.chat.handle(page('general', [msg(1)], 1));
  h.chat.handle({ ...live(2, 'dev'), message: { ...msg(2), content: 'hey @alice look', pings: { users: ['alice'], roles: [], replies: [] } } });
  h.chat.handle({ ...live(3, 'dev'), message: { ...msg(3), content: 'not you', pings: { users: [], roles: [], replies: [] } } });
  assert.equal(h.chat.room('dev').mentions, 1);
  assert.equal(h.chat.room('dev').unread, 2);
  assert.deepEqual(seen, [['dev', 'hey @alice look']]);
  h.chat.open('dev');
  assert.equal(h.chat.room('dev').mentions, 0);
});

test('mention badges come from the server\'s mention_count at start and after a reconnect', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [], 0));
  h.chat.handle({ cmd: 'unreads_get', unreads: { general: { unread_count: 4, mention_count: 2 }, dev: { unread_count: 3, mention_count: 2 } } });
  assert.equal(h.chat.room('general').mentions, 0, 'the open channel is read');
  assert.equal(h.chat.room('dev').mentions, 2);
  h.chat.handle({ ...live(1, 'dev'), message: { ...msg(1), content: 'hey @alice', pings: { users: ['alice'], roles: [], replies: [] } } });
  assert.equal(h.chat.room('dev').mentions, 3, 'then counted live');
  // After a reconnect the server's count replaces the live one; a server without the extension leaves it.
  h.chat.handle({ cmd: 'unreads_get', unreads: { dev: { unread_count: 5, mention_count: 1 } } });
  assert.equal(h.chat.room('dev').mentions, 1);
  h.chat.handle({ cmd: 'unreads_count', channel: 'dev', unread_count: 5 });
  assert.deepEqual([h.chat.room('dev').unread, h.chat.room('dev').mentions], [5, 1]);
  h.chat.handle({ cmd: 'unreads_count', channel: 'dev', unread_count: 0, mention_count: 0 });
  assert.equal(h.chat.room('dev').mentions, 0, 'read on another device');
  h.chat.handle({ cmd: 'unreads_get', unreads: { dev: { unread_count: 3, mention_count: 2 } } });
  h.chat.open('dev');
  assert.equal(h.chat.room('dev').mentions, 0, 'opening the channel clears it');
});

test('post with a reply and attachments sends them, and re-sends them with the same nonce', () => {
  const h = setup();
  h.connect();
  h.chat.handle(page('general', [msg(1)], 1));
  h.take();
  h.chat.post('', { reply_to: 'id1', attachments: [{ id: 'att1', name: 'a.png' }] });
  const [f] = h.take();
  assert.deepEqual(f, { cmd: 'message_new', channel: 'general', content: '', nonce: 'n1', listener: 'send:n1', reply_to: 'id1', attachments: [{ id: 'att1' }] });
  h.chat.flushOutbox();
  assert.deepEqual(h.take(), [f]);
  assert.equal(h.chat.post('   '), null, 'nothing to send');
});
