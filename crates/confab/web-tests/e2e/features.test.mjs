// The chat features of the web app in a real Chromium against a fresh `confab serve` per test:
// long history through a bounded window, markdown and its safety, replies, pins, search, mentions
// and their notifications, attachments, custom emoji and polls.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { PAGE, WINDOW } from '../../web/js/state.mjs';
import { launch, newPage, online, rawUser, screenshot, send, signUp, WELCOME, withServer } from './harness.mjs';

/** The most message elements the timeline may hold: the app's window, plus room for notes and pending sends. */
const DOM_BOUND = WINDOW + 50;
/** Messages in the long-history test. */
const HISTORY = 10_000;
/** How far the JS heap (after a forced GC) may grow between the newest page before and after the trip through all of history. */
const HEAP_GROWTH = 4 * 1024 * 1024;
/** An 8×8 orange PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP4X8GAFWEXHbQSAOGkXcFq3LySAAAAAElFTkSuQmCC', 'base64');
const NO_LIMITS = { CONFAB_RATE_LIMITS__ENABLED: 'false' };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Posts `n` messages `prefix 1` … `prefix n` from a raw user's socket, in order (one socket's frames are
 * handled in order), a hundred in flight at a time, in one page script. */
function seed(user, n, prefix = 'message') {
  return user.page.evaluate(async ([n, prefix]) => {
    for (let first = 1; first <= n; first += 100) {
      const batch = [];
      for (let i = first; i < Math.min(first + 100, n + 1); i++) batch.push(window.rpc({ cmd: 'message_new', channel: 'general', content: `${prefix} ${i}` }));
      for (const p of await Promise.all(batch)) if (p.cmd !== 'message_new') throw new Error(JSON.stringify(p));
    }
  }, [n, prefix]);
}

/** The JS heap in use after a forced garbage collection, in bytes (CDP `Performance` must be enabled). */
async function heapUsed(cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  const { metrics } = await cdp.send('Performance.getMetrics');
  return metrics.find((m) => m.name === 'JSHeapUsedSize').value;
}

/** The seqs of the message elements on screen, in DOM order. */
const seqs = (page) => page.$$eval('li.msg[data-msg-id]', (ns) => ns.map((n) => Number(n.dataset.seq)));

function assertWindow(list, where) {
  assert.ok(list.length <= DOM_BOUND, `${where}: ${list.length} message elements`);
  for (let i = 1; i < list.length; i++) assert.ok(list[i - 1] < list[i], `${where}: seq ${list[i - 1]} before ${list[i]}`);
}

test('10 000 messages: scrolling to the top and back keeps order, no duplicates, a bounded DOM and a flat heap', (t) =>
  withServer(async (server) => {
    const started = Date.now();
    const bob = await rawUser(browser, server, 'bob');
    await seed(bob, HISTORY);
    const seeded = Date.now();
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    await page.waitForSelector(`li.msg[data-msg-id] .content:text-is("message ${HISTORY}")`);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const heapFirst = await heapUsed(cdp);
    const seen = new Map();
    let maxNodes = 0;
    // One call a step: read the window, then scroll `toward` 'up' or 'down' unless that end is reached.
    const record = async (where, toward = null) => {
      const view = await page.$eval('confab-timeline', (t, toward) => {
        const texts = [...t.querySelectorAll('li.msg[data-msg-id]')].map((n) => [Number(n.dataset.seq), n.querySelector('.content')?.textContent]);
        const atStart = [...t.querySelectorAll('li.note')].some((n) => n.textContent.includes('This is the start of #general'));
        const hasNewer = t.dataset.hasNewer === 'true';
        if (toward === 'up' && !atStart) t.scrollTop = 0;
        if (toward === 'down' && hasNewer) t.scrollTop = t.scrollHeight;
        return { texts, atStart, hasNewer };
      }, toward);
      const list = view.texts.map(([seq]) => seq);
      assertWindow(list, where);
      for (const [seq, text] of view.texts) {
        if (seen.has(seq)) assert.equal(seen.get(seq), text, `seq ${seq} changed`);
        seen.set(seq, text);
      }
      maxNodes = Math.max(maxNodes, list.length);
      return { list, atStart: view.atStart, hasNewer: view.hasNewer };
    };
    const steps = Math.ceil(HISTORY / PAGE) + 20;
    // Up: pull older pages until the start of the channel.
    for (let step = 0; ; step++) {
      assert.ok(step < steps, 'reached the start');
      const { list, atStart } = await record(`up ${step}`, 'up');
      if (atStart) break;
      await page.waitForFunction((first) => {
        const n = document.querySelector('li.msg[data-msg-id]');
        return (n && Number(n.dataset.seq) < first) || document.querySelector('li.note')?.textContent.includes('start of');
      }, list[0]);
    }
    const top = await record('top');
    const heapTop = await heapUsed(cdp);
    assert.equal(await page.textContent('li.msg[data-msg-id] .content'), WELCOME);
    assert.equal(top.hasNewer, true, 'the newest end was dropped');
    await screenshot(page, 'desktop-history-top');
    // Down again by scrolling (not the jump button) until the newest message.
    for (let step = 0; ; step++) {
      assert.ok(step < steps, 'reached the newest');
      const { list, hasNewer } = await record(`down ${step}`, 'down');
      if (!hasNewer) break;
      await page.waitForFunction((last) => {
        const ns = document.querySelectorAll('li.msg[data-msg-id]');
        return Number(ns[ns.length - 1]?.dataset.seq) > last || document.querySelector('confab-timeline').dataset.hasNewer === 'false';
      }, list[list.length - 1]);
    }
    await record('bottom');
    const heapLast = await heapUsed(cdp);
    const contents = [...seen.keys()].sort((a, b) => a - b).map((s) => seen.get(s)).filter((t) => t !== WELCOME);
    assert.deepEqual(contents, Array.from({ length: HISTORY }, (_, i) => `message ${i + 1}`), 'every message was shown, in seq order');
    assert.ok(maxNodes <= DOM_BOUND, `at most ${maxNodes} message elements`);
    const mb = (n) => (n / 1024 / 1024).toFixed(1);
    t.diagnostic(`heap ${mb(heapFirst)} MB at the newest page, ${mb(heapTop)} MB at the top, ${mb(heapLast)} MB back at the newest; ` +
      `at most ${maxNodes} message elements (bound ${DOM_BOUND}); seeding ${seeded - started} ms, scrolling ${Date.now() - seeded} ms`);
    assert.ok(heapLast - heapFirst <= HEAP_GROWTH, `heap grew ${mb(heapLast - heapFirst)} MB over the trip`);
    // Live messages show again at the bottom.
    await bob.post('live after the trip');
    await page.waitForSelector('li.msg[data-msg-id] .content:text-is("live after the trip")');
    // Jump to latest from far up: one click back to the newest page.
    for (let i = 0; i < 8; i++) {
      const first = (await seqs(page))[0];
      await page.$eval('confab-timeline', (t) => { t.scrollTop = 0; });
      await page.waitForFunction((f) => Number(document.querySelector('li.msg[data-msg-id]')?.dataset.seq) < f, first);
    }
    await page.click('.jump-latest');
    await page.waitForSelector('confab-timeline[data-has-newer=false] li.msg[data-msg-id] .content:text-is("live after the trip")');
    assertWindow(await seqs(page), 'after jump');
    assert.deepEqual(page.problems, []);
  }, NO_LIMITS));

test('markdown renders as elements built from text; javascript: links never become links', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    const bob = await rawUser(browser, server, 'bob');
    await bob.post('**bold** *it* `x<y` [site](https://example.com/a) [bad](javascript:alert(1)) javascript:alert(2) <img src=x onerror=alert(3)>');
    await bob.post('```\n<script>alert(4)</script>\n```');
    const msg = page.locator('li.msg[data-user=bob]').first();
    await msg.locator('strong:text-is("bold")').waitFor();
    assert.equal(await msg.locator('em').textContent(), 'it');
    assert.equal(await msg.locator('code').first().textContent(), 'x<y');
    const links = await page.$$eval('confab-timeline .content a', (as) => as.map((a) => [a.textContent, a.getAttribute('href'), a.rel, a.target]));
    assert.deepEqual(links, [['site', 'https://example.com/a', 'noopener noreferrer nofollow', '_blank']]);
    assert.match(await msg.textContent(), /\[bad\]\(javascript:alert\(1\)\) javascript:alert\(2\) <img src=x onerror=alert\(3\)>/);
    assert.equal(await page.locator('li.msg[data-user=bob] pre code').textContent(), '<script>alert(4)</script>');
    assert.equal(await page.locator('confab-timeline img, confab-timeline script').count(), 0);
    // An embed: its title links to its URL, its description is markdown, its fields a list.
    const embed = { title: 'Release <b>notes</b>', url: 'https://example.com/r', description: '**rich** <i>text</i>', fields: [{ name: 'version', value: '1.0' }], color: 0x3b5bdb };
    const posted = await bob.rpc({ cmd: 'message_new', channel: 'general', content: '', embeds: [embed] });
    assert.equal(posted.cmd, 'message_new', JSON.stringify(posted));
    const box = page.locator('li.msg .embed');
    await box.waitFor();
    assert.equal(await box.locator('.embed-title a').textContent(), 'Release <b>notes</b>');
    assert.equal(await box.locator('.embed-title a').getAttribute('href'), 'https://example.com/r');
    assert.equal(await box.locator('.embed-description strong').textContent(), 'rich');
    assert.match(await box.locator('.embed-description').textContent(), /<i>text<\/i>/);
    assert.deepEqual(await box.locator('.embed-fields > *').allTextContents(), ['version', '1.0']);
    assert.equal(await page.locator('confab-timeline b, confab-timeline i').count(), 0);
    assert.deepEqual(page.problems, [], 'no dialog, no error');
  }));

test('reply, pin, search and mentions: highlight, badge, autocomplete and a desktop notification', () =>
  withServer(async (server) => {
    await server.cli(['user', 'add', 'boss', '--role', 'owner'], 'correct horse');
    const boss = await rawUser(browser, server, 'boss', { login: true });
    const made = await boss.rpc({ cmd: 'channel_create', name: 'dev', type: 'text', permissions: { view: ['user'], send: ['user'], pin: ['user'] } });
    assert.equal(made.created, true, JSON.stringify(made));
    const page = await newPage(browser, undefined, { permissions: ['notifications'] });
    // Record every Notification the app creates, passing each on to the browser's own.
    await page.addInitScript(() => {
      const Real = window.Notification;
      window.notified = [];
      window.Notification = class extends Real {
        constructor(title, options) {
          super(title, options);
          window.notified.push({ title, body: options?.body });
        }
      };
    });
    await signUp(page, server, 'alice');
    await page.click('.channel[data-channel=dev]');
    await online(page);
    const bob = await rawUser(browser, server, 'bob');
    // A mention in a channel alice is not reading: a badge, a notification, a highlight.
    await bob.post('hey @alice, the build is green');
    await bob.post('unrelated chatter');
    await page.waitForSelector('.channel[data-channel=general] .mention-badge:has-text("@1")');
    await page.waitForFunction(() => window.notified.length === 1);
    assert.deepEqual(await page.evaluate(() => window.notified), [{ title: 'bob in #general', body: 'hey @alice, the build is green' }]);
    await page.click('.channel[data-channel=general]');
    await page.waitForSelector('li.msg.mentioned .content:has-text("the build is green")');
    assert.equal(await page.locator('li.msg.mentioned').count(), 1);
    assert.equal(await page.locator('.channel[data-channel=general] .mention-badge').count(), 0);

    // Reply: the composer shows what is answered; the sent message quotes it.
    const target = page.locator('li.msg[data-user=bob]', { hasText: 'unrelated chatter' });
    await target.hover();
    await target.locator('.act.reply').click();
    await page.waitForSelector('.reply-bar:has-text("Replying to @bob")');
    // Autocomplete: @bo offers bob and boss (the member list is fetched on the first @); the arrows
    // move, and Enter completes instead of sending.
    await page.fill('.composer textarea', '');
    await page.type('.composer textarea', 'thanks @bo');
    await page.waitForFunction(() => [...document.querySelectorAll('.suggest li')].map((l) => l.textContent).join() === '@bob,@boss');
    await page.press('.composer textarea', 'ArrowDown');
    await page.waitForSelector('.suggest li.active:has-text("@boss")');
    await page.press('.composer textarea', 'ArrowUp');
    await page.waitForSelector('.suggest li.active:has-text("@bob")');
    await page.press('.composer textarea', 'Enter');
    assert.equal(await page.inputValue('.composer textarea'), 'thanks @bob ');
    await page.type('.composer textarea', 'noted');
    await page.press('.composer textarea', 'Enter');
    const reply = page.locator('li.msg[data-user=alice][data-msg-id]', { hasText: 'noted' });
    await reply.locator('.reply-quote:has-text("↪ @bob")').waitFor();
    assert.match(await reply.locator('.reply-quote').textContent(), /unrelated chatter/);
    assert.equal(await reply.locator('.mention').textContent(), '@bob');

    // Pins are not offered in #general (pin: owner only by default); in #dev they are.
    assert.equal(await page.locator('li.msg .act.pin').count(), 0);
    await page.click('.channel[data-channel=dev]');
    await boss.post('pin me please', 'dev');
    const pinMe = page.locator('li.msg', { hasText: 'pin me please' });
    await pinMe.hover();
    await pinMe.locator('.act.pin').click();
    await page.waitForSelector('li.msg[data-pinned=true]:has-text("pin me please") .pinned');
    await page.click('.bar .pins');
    await page.waitForSelector('.panel-list[data-kind=pins] .panel-hit:has-text("pin me please")');

    // Search #general: the hit opens the message around it.
    await page.click('.channel[data-channel=general]');
    await page.fill('.search-input', 'build is');
    await page.press('.search-input', 'Enter');
    await page.click('.panel-list[data-kind=search] .panel-hit:has-text("the build is green")');
    await page.waitForSelector('li.msg.focused:has-text("the build is green")');
    assert.deepEqual(page.problems, []);
  }));

test('attachments: an uploaded image shows for the other user; custom emoji in text and reactions', () =>
  withServer(async (server) => {
    await server.cli(['user', 'add', 'boss', '--role', 'owner'], 'correct horse');
    const boss = await rawUser(browser, server, 'boss', { login: true });
    const added = await boss.rpc({ cmd: 'emoji_add', name: 'party', image: `data:image/png;base64,${PNG.toString('base64')}` });
    assert.equal(added.added, true, JSON.stringify(added));
    const alice = await newPage(browser);
    const bob = await newPage(browser);
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');

    await alice.setInputFiles('.composer .file-input', { name: 'dot.png', mimeType: 'image/png', buffer: PNG });
    await alice.waitForSelector('.upload[data-state=ready]');
    await alice.fill('.composer textarea', 'a picture');
    const loaded = bob.waitForResponse((r) => /\/attachments\/[^/]+$/.test(new URL(r.url()).pathname) && r.request().resourceType() === 'image');
    await alice.press('.composer textarea', 'Enter');
    const img = bob.locator('li.msg[data-user=alice] img.attachment.image');
    await img.waitFor();
    assert.equal((await loaded).status(), 200);
    await bob.waitForFunction(() => document.querySelector('img.attachment.image')?.naturalWidth > 0);
    assert.equal(await alice.locator('.uploads .upload').count(), 0, 'the composer is cleared');

    // Drop a PDF and paste an image into the composer: one message with both; the PDF is a download link.
    await alice.evaluate(async (png) => {
      const input = document.querySelector('.composer textarea');
      const drop = new DataTransfer();
      drop.items.add(new File(['%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n'], 'notes.pdf', { type: 'application/pdf' }));
      input.dispatchEvent(new DragEvent('drop', { dataTransfer: drop, bubbles: true, cancelable: true }));
      const paste = new DataTransfer();
      paste.items.add(new File([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], 'pasted.png', { type: 'image/png' }));
      input.dispatchEvent(new ClipboardEvent('paste', { clipboardData: paste, bubbles: true, cancelable: true }));
    }, PNG.toString('base64'));
    await alice.waitForFunction(() => [...document.querySelectorAll('.upload')].map((u) => u.dataset.state).join() === 'ready,ready');
    await alice.press('.composer textarea', 'Enter');
    const file = bob.locator('li.msg[data-user=alice] a.attachment.file');
    await file.waitFor();
    assert.match(await file.textContent(), /notes\.pdf/);
    assert.equal(await file.getAttribute('download'), 'notes.pdf');
    const head = await bob.evaluate(async (href) => {
      const r = await fetch(href);
      return [r.status, r.headers.get('content-disposition')?.split(';')[0]];
    }, await file.getAttribute('href'));
    assert.deepEqual(head, [200, 'attachment']);
    await bob.waitForFunction(() => document.querySelectorAll('li.msg[data-user=alice] img.attachment.image').length === 2);

    // `:par` completes to :party:, which is sent in the official client's form and drawn as the emoji.
    await alice.type('.composer textarea', 'so :par');
    await alice.waitForSelector('.suggest li.active:has-text(":party:")');
    await alice.press('.composer textarea', 'Tab');
    await alice.press('.composer textarea', 'Enter');
    const party = bob.locator('li.msg[data-user=alice]', { hasText: 'so' }).locator('.content img.emoji');
    await party.waitFor();
    assert.equal(await party.getAttribute('alt'), ':party:');
    await bob.waitForFunction(() => [...document.querySelectorAll('.content img.emoji')].every((i) => i.naturalWidth > 0));
    const history = await boss.rpc({ cmd: 'messages_get', channel: 'general', start: 0, limit: 5 });
    assert.match(history.messages.at(-1).content, /^so originChats:<emoji>\/\/127\.0\.0\.1:\d+\/\d+ $/);

    // A custom emoji reaction from the picker.
    const msg = bob.locator('li.msg[data-user=alice]', { hasText: 'a picture' });
    await msg.hover();
    await msg.locator('.act.react-more').click();
    await msg.locator('.react-picker .emoji-choice[data-emoji-name=party]').click();
    await alice.waitForSelector('li.msg:has-text("a picture") .reaction img.emoji[alt=":party:"]');
    await screenshot(bob, 'desktop-media');
    assert.deepEqual([...alice.problems, ...bob.problems], []);
  }));

test('polls: created in a dialog, voted by another user, both see the count; ending shows the ended state', () =>
  withServer(async (server) => {
    const alice = await newPage(browser);
    const bob = await newPage(browser, { width: 390, height: 844 });
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');
    await alice.click('.composer .poll-button');
    await alice.fill('.poll-dialog input[name=question]', 'Lunch?');
    const options = alice.locator('.poll-dialog input[name=option]');
    await options.nth(0).fill('Pizza');
    await options.nth(1).fill('Soup');
    await alice.click('.poll-dialog .create-poll');
    const bobPoll = bob.locator('.poll:has-text("Lunch?")');
    await bobPoll.waitFor();
    assert.equal(await bobPoll.locator('.poll-total').textContent(), '0 votes');
    await bobPoll.locator('.poll-option:has-text("Soup")').click();
    for (const page of [alice, bob]) {
      await page.waitForSelector('.poll:has-text("Lunch?") .poll-total:text-is("1 vote")');
      await page.waitForSelector('.poll .poll-option[data-votes="1"]:has-text("Soup")');
    }
    assert.equal(await bobPoll.locator('.poll-option.voted').textContent().then((t) => t.includes('Soup')), true);
    await screenshot(bob, 'phone-poll');
    // Still counted after a reload (history pages carry the results).
    await bob.reload();
    await online(bob);
    await bob.waitForSelector('.poll .poll-total:text-is("1 vote")');
    await alice.click('.poll .poll-end');
    await bob.waitForSelector('.poll[data-ended=true] .poll-ended');
    assert.equal(await bob.locator('.poll .poll-option[disabled]').count(), 2);
    assert.deepEqual([...alice.problems, ...bob.problems], []);
  }));

test('screenshots of the chat features at desktop and phone sizes; nothing overflows; keyboard reaches the tools', () =>
  withServer(async (server) => {
    const bob = await rawUser(browser, server, 'bob');
    for (const [name, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      const page = await newPage(browser, viewport);
      await signUp(page, server, `${name}-user`);
      const me = `${name}-user`;
      await bob.post(`**Welcome**, @${me}! The notes are at https://example.com/notes and \`confab serve\` starts it all.`);
      await bob.post('```\ncargo build -p confab\n```');
      await send(page, 'Thanks! *Looking now.*');
      await page.waitForSelector('li.msg.mentioned');
      await page.waitForSelector(`li.msg[data-user="${me}"][data-msg-id]`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name}: ${overflow}px wider than the viewport`);
      // Keyboard: Tab from the composer reaches the send button; the tools are buttons.
      await page.focus('.composer textarea');
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.type), 'submit');
      await screenshot(page, `${name}-chat-features`);
      await page.fill('.search-input', 'notes');
      await page.press('.search-input', 'Enter');
      await page.waitForSelector('.panel-hit');
      await screenshot(page, `${name}-search`);
      assert.deepEqual(page.problems, []);
      await page.context().close();
    }
  }));

test('forum channels: start a thread, post in it, and the other user sees both live', () =>
  withServer(async (server) => {
    await server.cli(['user', 'add', 'boss', '--role', 'owner'], 'correct horse');
    const boss = await rawUser(browser, server, 'boss', { login: true });
    const made = await boss.rpc({ cmd: 'channel_create', name: 'ideas', type: 'forum', permissions: { view: ['user'], send: ['user'], create_thread: ['user'] } });
    assert.equal(made.created, true, JSON.stringify(made));
    const alice = await newPage(browser);
    const bob = await newPage(browser, { width: 390, height: 844 });
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');
    await alice.click('.channel.forum[data-forum=ideas]');
    await alice.waitForSelector('confab-forum .thread-list .note:has-text("No threads yet")');
    await alice.fill('.new-thread input', 'Dark mode');
    await alice.press('.new-thread input', 'Enter');
    // Starting a thread opens it.
    await alice.waitForSelector('confab-forum[data-thread] .forum-head h3:text-is("Dark mode")');
    await alice.fill('.thread-composer textarea', 'first **post**');
    await alice.press('.thread-composer textarea', 'Enter');
    await alice.waitForSelector('.thread-messages li.msg[data-msg-id] strong:text-is("post")');
    // Bob (on a phone) finds it through the menu.
    await bob.click('.bar .menu');
    await bob.click('.channel.forum[data-forum=ideas]');
    await bob.click('.thread:has-text("Dark mode")');
    await bob.waitForSelector('.thread-messages li.msg[data-user=alice] .content:has-text("first post")');
    await bob.fill('.thread-composer textarea', 'yes please');
    await bob.press('.thread-composer textarea', 'Enter');
    await alice.waitForSelector('.thread-messages li.msg[data-user=bob] .content:text-is("yes please")');
    assert.equal(await alice.locator('.thread-messages li.msg[data-msg-id]').count(), 2);
    await bob.waitForSelector('.thread-messages li[data-state=pending]', { state: 'detached' });
    await screenshot(bob, 'phone-thread');
    // Thread messages stay out of the channel timelines; back to #general works.
    await alice.click('.channel[data-channel=general]');
    await online(alice);
    assert.equal(await alice.locator('confab-timeline li.msg:has-text("yes please")').count(), 0);
    assert.deepEqual([...alice.problems, ...bob.problems], []);
  }));
