// The composer's completion rules (web/js/composer.mjs): which word is completed and with what.
// composer.mjs builds DOM only inside its functions, so its pure helpers load under node.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { completionAt, suggest } from '../../web/js/composer.mjs';

const chat = {
  me: 'alice',
  users: ['alice', 'bob', 'boss', 'Carol'],
  roleNames: ['owner', 'mods', 'user'],
  emoji: new Map([['1', { name: 'party' }], ['2', { name: 'parrot' }], ['3', { name: 'wave' }]]),
};

test('completionAt finds @user, @&role and :emoji before the caret, not inside words', () => {
  assert.deepEqual(completionAt('hi @bo', 6), { kind: 'user', query: 'bo', start: 3 });
  assert.deepEqual(completionAt('@', 1), { kind: 'user', query: '', start: 0 });
  assert.deepEqual(completionAt('ping @&mo', 9), { kind: 'role', query: 'mo', start: 5 });
  assert.deepEqual(completionAt('so :par', 7), { kind: 'emoji', query: 'par', start: 3 });
  assert.equal(completionAt('mail@bo', 7), null, 'an address is not a mention');
  assert.equal(completionAt('12:30', 5), null, 'a time is not an emoji');
  assert.equal(completionAt('hi @bob there', 13), null);
});

test('suggest ranks prefix matches first and leaves out this user', () => {
  assert.deepEqual(suggest(chat, { kind: 'user', query: 'b' }).map((s) => s.label), ['@bob', '@boss']);
  assert.deepEqual(suggest(chat, { kind: 'user', query: 'ol' }).map((s) => s.label), ['@Carol'], 'substring, any case');
  assert.deepEqual(suggest(chat, { kind: 'user', query: 'c' }).map((s) => s.insert), ['@Carol ']);
  assert.deepEqual(suggest(chat, { kind: 'user', query: 'al' }), []);
  assert.deepEqual(suggest(chat, { kind: 'role', query: 'm' }).map((s) => s.insert), ['@&mods ']);
  assert.deepEqual(suggest(chat, { kind: 'emoji', query: 'par' }).map((s) => [s.label, s.emoji]), [[':parrot:', '2'], [':party:', '1']]);
});
