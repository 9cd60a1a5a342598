// Mention notifications (web/js/notify.mjs) with a recording Notification class and a fake document.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { mentionNotifier } from '../../web/js/notify.mjs';

function fakes(permission = 'granted') {
  const made = [];
  class N {
    static permission = permission;
    constructor(title, options) {
      made.push({ title, ...options });
      this.closed = false;
    }
    close() {
      this.closed = true;
    }
  }
  const doc = { hidden: false, focused: true, hasFocus() {
    return this.focused;
  } };
  return { N, doc, made };
}

const chat = { current: 'general', emoji: new Map([['7', { name: 'wave' }]]) };
const m = { id: 'm1', user: 'bob', content: '**hey** @alice originChats:<emoji>//h/7' };

test('notifies unless the channel is on screen in a focused, visible tab', () => {
  const { N, doc, made } = fakes();
  const notify = mentionNotifier(chat, () => {}, { N, doc });
  notify('general', m);
  assert.equal(made.length, 0, 'reading it already');
  doc.focused = false;
  notify('general', m);
  notify('dev', m);
  doc.focused = true;
  doc.hidden = true;
  notify('general', m);
  assert.deepEqual(made.map((n) => [n.title, n.body, n.tag]), Array(3).fill(null).map((_, i) => [`bob in #${i === 1 ? 'dev' : 'general'}`, 'hey @alice :wave:', 'confab:m1']));
});

test('nothing without permission', () => {
  for (const permission of ['default', 'denied']) {
    const { N, doc, made } = fakes(permission);
    doc.hidden = true;
    mentionNotifier(chat, () => {}, { N, doc })('dev', m);
    assert.equal(made.length, 0, permission);
  }
});
