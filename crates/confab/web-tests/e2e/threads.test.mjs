// Forum threads as full conversations in a real Chromium against a fresh `confab serve` per test:
// reactions, edits, deletes and replies seen live by the other user, actions offered by role, and a
// long thread read back to its first message page by page.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage, online, rawUser, signUp, withServer } from './harness.mjs';

const NO_LIMITS = { CONFAB_RATE_LIMITS__ENABLED: 'false' };
const FORUM = { cmd: 'channel_create', name: 'ideas', type: 'forum', permissions: { view: ['user'], send: ['user'], create_thread: ['user'] } };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The owner `boss` on a raw socket, with the forum #ideas and a thread `name` in it; resolves with both. */
async function forumThread(server, name) {
  await server.cli(['user', 'add', 'boss', '--role', 'owner'], 'correct horse');
  const boss = await rawUser(browser, server, 'boss', { login: true });
  const made = await boss.rpc(FORUM);
  assert.equal(made.created, true, JSON.stringify(made));
  const t = await boss.rpc({ cmd: 'thread_create', channel: 'ideas', name });
  assert.ok(t.thread?.id, JSON.stringify(t));
  return { boss, thread: t.thread };
}

/** Opens thread `name` of #ideas in `page`. */
async function openThread(page, name) {
  await page.click('.channel.forum[data-forum=ideas]');
  await page.click(`.thread:has-text("${name}")`);
  await page.waitForSelector(`confab-forum[data-thread] .forum-head h3:text-is("${name}")`);
}

async function post(page, text) {
  await page.fill('.thread-composer textarea', text);
  await page.press('.thread-composer textarea', 'Enter');
}

const msg = (text) => `.thread-messages li.msg[data-msg-id]:has(.content:text-is("${text}"))`;

/** Hovers message `text` and clicks its action `act`. */
async function act(page, text, act) {
  await page.hover(msg(text));
  await page.click(`${msg(text)} .act.${act}`);
}

test('in a thread, one user reacts, edits, deletes and replies and the other sees each live; actions follow roles', () =>
  withServer(async (server) => {
    const { boss, thread } = await forumThread(server, 'Plans');
    await server.cli(['user', 'add', 'mod', '--role', 'user', '--role', 'moderator'], 'correct horse');
    const alice = await newPage(browser);
    const bob = await newPage(browser);
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');
    await openThread(alice, 'Plans');
    await openThread(bob, 'Plans');
    await post(alice, 'shall we?');
    await bob.waitForSelector(msg('shall we?'));

    // Reactions: Bob's count shows for Alice, and Bob's second click takes it back.
    await act(bob, 'shall we?', 'react');
    await alice.waitForSelector(`${msg('shall we?')} .reaction[data-emoji="👍"]:has-text("1")`);
    await alice.hover(msg('shall we?'));
    await alice.click(`${msg('shall we?')} .reaction[data-emoji="👍"]`);
    await bob.waitForSelector(`${msg('shall we?')} .reaction[data-emoji="👍"][aria-pressed=true]:has-text("2")`);
    await bob.click(`${msg('shall we?')} .reaction[data-emoji="👍"]`);
    await alice.waitForSelector(`${msg('shall we?')} .reaction[data-emoji="👍"][aria-pressed=true]:has-text("1")`);

    // Edit: Bob fixes his own message.
    await post(bob, 'typo herre');
    await alice.waitForSelector(msg('typo herre'));
    await act(bob, 'typo herre', 'edit');
    await bob.fill('.edit-dialog textarea', 'typo fixed');
    await bob.click('.edit-dialog button[value=save]');
    await alice.waitForSelector(`${msg('typo fixed')} .edited`);

    // Reply: the quote names the original, for both.
    await act(bob, 'shall we?', 'reply');
    await bob.waitForSelector('.thread-composer .reply-bar:has-text("Replying to @alice")');
    await post(bob, 'yes, tomorrow');
    const aliceId = await alice.getAttribute(msg('shall we?'), 'data-msg-id');
    await alice.waitForSelector(`${msg('yes, tomorrow')} .reply-quote[data-reply-to="${aliceId}"]:has-text("shall we?")`);
    await bob.waitForSelector('.thread-composer .reply-bar', { state: 'hidden' });
    await bob.waitForSelector('.thread-messages li[data-state=pending]', { state: 'detached' });

    // Delete: Bob's own message goes for Alice too.
    await act(bob, 'typo fixed', 'delete');
    await alice.waitForSelector(msg('typo fixed'), { state: 'detached' });

    // A plain user is offered edit and delete on their own messages only.
    assert.equal(await bob.locator(`${msg('shall we?')} .act.delete`).count(), 0);
    assert.equal(await bob.locator(`${msg('shall we?')} .act.edit`).count(), 0);
    assert.equal(await bob.locator(`${msg('yes, tomorrow')} .act.delete`).count(), 1);
    assert.equal(await alice.locator(`${msg('yes, tomorrow')} .act.delete`).count(), 0);

    // A moderator (manage_messages) is offered delete on others' messages, and it works.
    const mod = await newPage(browser);
    await mod.goto(server.url + '/');
    await mod.fill('input[name=username]', 'mod');
    await mod.fill('input[name=password]', 'correct horse');
    await mod.click('button[value=login]');
    await online(mod);
    await openThread(mod, 'Plans');
    assert.equal(await mod.locator(`${msg('shall we?')} .act.edit`).count(), 0);
    await act(mod, 'yes, tomorrow', 'delete');
    await alice.waitForSelector(msg('yes, tomorrow'), { state: 'detached' });
    await bob.waitForSelector(msg('yes, tomorrow'), { state: 'detached' });

    // The thread's messages never reached a channel timeline.
    assert.equal(await alice.locator('confab-timeline li.msg:has-text("shall we?")').count(), 0);
    assert.equal((await boss.rpc({ cmd: 'thread_messages', thread_id: thread.id })).messages.length, 1);
    assert.deepEqual([...alice.problems, ...bob.problems, ...mod.problems], []);
  }));

/** The ids and texts of the thread's message elements, in DOM order. */
const shownMessages = (page) => page.$$eval('.thread-messages li.msg[data-msg-id]', (ns) => ns.map((n) => [n.dataset.msgId, n.querySelector('.content').textContent]));

/** Scrolls the thread to its top (`top`) or bottom until `done` (a Playwright selector) shows, a page at a time. */
async function scrollUntil(page, top, done) {
  for (let round = 0; round < 20 && !(await page.locator(done).count()); round++) {
    const before = JSON.stringify(await shownMessages(page));
    await page.evaluate((top) => {
      const s = document.querySelector('.thread-scroll');
      s.scrollTop = top ? 0 : s.scrollHeight;
    }, top);
    // Each scroll to an end brings a page, until the end is reached.
    await page.waitForFunction((before) => JSON.stringify([...document.querySelectorAll('.thread-messages li.msg[data-msg-id]')]
      .map((n) => [n.dataset.msgId, n.querySelector('.content').textContent])) !== before, before);
  }
  await page.waitForSelector(done);
}

/** Asserts that `shown` is `post from` … `post to`, each once. */
function assertRun(shown, from, to) {
  assert.equal(new Set(shown.map(([id]) => id)).size, shown.length, 'no message twice');
  assert.deepEqual(shown.map(([, text]) => text), Array.from({ length: to - from + 1 }, (_, i) => `post ${from + i}`));
}

test('a long thread scrolls back to its first message and forward again, in order, with no duplicates and a bounded DOM', () =>
  withServer(async (server) => {
    const { boss, thread } = await forumThread(server, 'Long');
    // More than the 250 messages (state.mjs WINDOW) a view holds.
    const N = 320;
    await boss.page.evaluate(async ([id, n]) => {
      for (let i = 1; i <= n; i++) {
        const p = await window.rpc({ cmd: 'message_new', thread_id: id, content: `post ${i}` });
        if (p.cmd !== 'message_new') throw new Error(JSON.stringify(p));
      }
    }, [thread.id, N]);
    const alice = await newPage(browser);
    await signUp(alice, server, 'alice');
    await openThread(alice, 'Long');
    await alice.waitForSelector(msg(`post ${N}`));
    // The newest page first, scrolled to its end.
    assert.ok(await alice.locator('.thread-messages li.msg[data-msg-id]').count() < N);
    assert.equal(await alice.locator('.thread-start').count(), 0);
    await scrollUntil(alice, true, '.thread-start');
    // The window holds 250 messages: the first 250.
    assertRun(await shownMessages(alice), 1, 250);
    // Loading older pages kept the reader where they were: the first message is in view.
    assert.ok(await alice.locator(msg('post 1')).isVisible());
    // And forward again to the newest, which sends now show after.
    await scrollUntil(alice, false, msg(`post ${N}`));
    assertRun(await shownMessages(alice), N - 249, N);
    await post(alice, 'the end');
    await alice.waitForSelector(msg('the end'));
    assert.deepEqual(alice.problems, []);
  }, NO_LIMITS));
