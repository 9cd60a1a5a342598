// The web app in a real Chromium against a fresh `confab serve` per test.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  cuttable, expectContents, launch, newPage, online, rawUser, screenshot, send, signUp, watch, WELCOME, withServer,
} from './harness.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test('register → #general → send: one confirmed message, kept across a reload', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    assert.equal(await page.textContent('.bar .title'), '#general');
    assert.equal(await page.getAttribute('.channel[aria-current=page]', 'data-channel'), 'general');
    await send(page, 'hello from the browser');
    await expectContents(page, ['hello from the browser']);
    const all = await page.$$eval('li.msg[data-msg-id] .content', (ns) => ns.map((n) => n.textContent));
    assert.deepEqual(all, [WELCOME, 'hello from the browser'], 'the server\'s welcome message comes first');
    await page.waitForSelector('li.msg[data-state=pending]', { state: 'detached' });
    assert.equal(await page.locator('li.msg[data-state=sent]').count(), 2, 'the welcome and the message, both confirmed');
    assert.equal(await page.inputValue('.composer textarea'), '');

    await page.reload();
    await online(page);
    await expectContents(page, ['hello from the browser']);
    assert.equal(await page.textContent('.bar .me'), 'alice', 'the session survived the reload');
    assert.deepEqual(page.problems, []);
  }));

test('two users see each other’s messages, edits, deletes, reactions and typing live', () =>
  withServer(async (server) => {
    const alice = await newPage(browser);
    const bob = await newPage(browser);
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');

    await send(alice, 'hi bob');
    await expectContents(bob, ['hi bob']);
    await send(bob, 'hi alice');
    await expectContents(alice, ['hi bob', 'hi alice']);
    assert.equal(await bob.textContent('li.msg[data-user=alice] .author'), 'alice');

    // Typing shows on the other side.
    await alice.type('.composer textarea', 'x');
    await bob.waitForSelector('.typing:has-text("alice is typing")');

    // Alice edits her message through the dialog.
    await alice.fill('.composer textarea', '');
    await alice.hover('li.msg[data-user=alice]');
    await alice.click('li.msg[data-user=alice] .act.edit');
    await alice.fill('.edit-dialog textarea', 'hi bob (edited text)');
    await alice.click('.edit-dialog button[value=save]');
    await expectContents(bob, ['hi bob (edited text)', 'hi alice']);
    await bob.waitForSelector('li.msg[data-user=alice] .edited');

    // Bob reacts to Alice's message; Alice sees the count.
    await bob.hover('li.msg[data-user=alice]');
    await bob.click('li.msg[data-user=alice] .act.react');
    await alice.waitForSelector('li.msg[data-user=alice] .reaction[data-emoji="👍"]:has-text("1")');

    // Alice deletes hers; it disappears for Bob.
    await alice.hover('li.msg[data-user=alice]');
    await alice.click('li.msg[data-user=alice] .act.delete');
    await expectContents(bob, ['hi alice']);
    await expectContents(alice, ['hi alice']);
    // Only one's own messages offer edit and delete.
    assert.equal(await alice.locator('li.msg[data-user=bob] .act.delete').count(), 0);
    assert.deepEqual([...alice.problems, ...bob.problems], []);
  }));

test('a cut socket reconnects, resumes from its last seq, and shows every missed message once', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    const net = await cuttable(page);
    await signUp(page, server, 'alice');
    const bob = await rawUser(browser, server, 'bob');
    const first = await bob.post('before the cut');
    await expectContents(page, ['before the cut']);

    net.hold = true;
    net.cut();
    await page.waitForSelector('.conn[data-conn=offline]');
    for (const text of ['missed 1', 'missed 2', 'missed 3']) await bob.post(text);
    net.hold = false;

    await page.waitForSelector('.conn[data-conn=online]', { timeout: 20_000 });
    await expectContents(page, ['before the cut', 'missed 1', 'missed 2', 'missed 3']);
    const resume = net.sent.find((f) => f?.cmd === 'resume');
    assert.ok(resume, 'the app sent resume');
    assert.equal(resume.channels.general, first.seq, 'resume starts at the last seq seen');
    // Live traffic after the resume still arrives, once.
    await bob.post('after');
    await expectContents(page, ['before the cut', 'missed 1', 'missed 2', 'missed 3', 'after']);
    assert.deepEqual(page.problems, []);
  }));

test('a send whose echo was lost is re-sent with its nonce after reconnect and never duplicated', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    const net = await cuttable(page);
    await signUp(page, server, 'alice');
    const bob = await rawUser(browser, server, 'bob');
    net.cutAfter = (f) => f?.cmd === 'message_new';
    await send(page, 'sent into the void');
    // The echo never came: the message stays pending while the socket is down.
    await page.waitForSelector('li.msg[data-state=pending]');
    await page.waitForSelector('.conn[data-conn=online]', { timeout: 20_000 });
    await expectContents(page, ['sent into the void']);
    await page.waitForSelector('li.msg[data-state=pending]', { state: 'detached' });
    const history = await bob.rpc({ cmd: 'messages_get', channel: 'general', start: 0, limit: 50 });
    const stored = history.messages.map((m) => m.content).filter((c) => c !== WELCOME);
    assert.deepEqual(stored, ['sent into the void'], 'stored once');
    const nonces = net.sent.filter((f) => f?.cmd === 'message_new').map((f) => f.nonce);
    assert.ok(nonces.length >= 1 && nonces.every((n) => n === nonces[0]), `one nonce: ${nonces}`);
    assert.deepEqual(page.problems, []);
  }));

test('two users across a server restart: both reconnect by themselves, nothing missed, nothing twice', () =>
  withServer(async (server) => {
    const alice = await newPage(browser);
    const bob = await newPage(browser);
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');
    await send(alice, 'a1');
    await expectContents(bob, ['a1']);
    await send(bob, 'b1');
    await expectContents(alice, ['a1', 'b1']);

    await server.stop();
    await alice.waitForSelector('.conn[data-conn=offline]');
    await bob.waitForSelector('.conn[data-conn=offline]');
    // Typed while the server is down: pending until the app is back online.
    await send(bob, 'typed while down');
    await bob.waitForSelector('li.msg[data-state=pending]');
    await server.start();

    await alice.waitForSelector('.conn[data-conn=online]', { timeout: 30_000 });
    await bob.waitForSelector('.conn[data-conn=online]', { timeout: 30_000 });
    await bob.waitForSelector('li.msg[data-state=pending]', { state: 'detached' });
    await send(bob, 'b2');
    await send(bob, 'b3');
    const all = ['a1', 'b1', 'typed while down', 'b2', 'b3'];
    await expectContents(alice, all);
    await send(alice, 'a2');
    await expectContents(bob, [...all, 'a2']);
    await expectContents(alice, [...all, 'a2']);
    const carol = await rawUser(browser, server, 'carol');
    const history = await carol.rpc({ cmd: 'messages_get', channel: 'general', start: 0, limit: 50 });
    assert.deepEqual(history.messages.map((m) => m.content).filter((c) => c !== WELCOME), [...all, 'a2'], 'stored once each, in order');
    assert.deepEqual([...alice.problems, ...bob.problems].filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(p)), []);
  }));

test('markup in a message is shown as text and never runs', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    const bob = await rawUser(browser, server, 'bob');
    const evil = '<img src=x onerror=alert(1)><script>alert(2)</script><b>bold</b>';
    await bob.post(evil);
    await send(page, '<img src=y onerror=alert(3)>');
    await expectContents(page, [evil, '<img src=y onerror=alert(3)>']);
    assert.equal(await page.locator('confab-timeline img, confab-timeline script, confab-timeline b').count(), 0);
    assert.deepEqual(page.problems, [], 'no dialog, no error');
  }));

test('scrolling up pages through older history in order, without duplicates', () =>
  withServer(
    async (server) => {
      const bob = await rawUser(browser, server, 'bob');
      const all = [];
      for (let i = 1; i <= 130; i++) {
        all.push(`message ${i}`);
        await bob.post(`message ${i}`);
      }
      const page = await newPage(browser);
      await signUp(page, server, 'alice');
      await expectContents(page, all.slice(-50));
      for (let i = 0; i < 10 && (await page.locator('li.msg[data-msg-id]').count()) < all.length; i++) {
        await page.$eval('confab-timeline', (t) => {
          t.scrollTop = 0;
        });
        await page.waitForTimeout(200);
      }
      await expectContents(page, all);
      await page.waitForSelector('li.note:has-text("This is the start of #general")');
    },
    { CONFAB_RATE_LIMITS__ENABLED: 'false' },
  ));

test('logout revokes the refresh token and shows the sign-in form', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    const refresh = await page.evaluate(() => JSON.parse(localStorage.getItem('confab.session')).refresh_token);
    await page.click('.logout');
    await page.waitForSelector('confab-login input[name=username]');
    assert.equal(await page.evaluate(() => localStorage.getItem('confab.session')), null);
    const status = await page.evaluate(async (token) => {
      const r = await fetch('/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: token }) });
      return r.status;
    }, refresh);
    assert.equal(status, 401);
    // A wrong password shows the server's answer in the form.
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'wrong password');
    await page.click('button[value=login]');
    await page.waitForSelector('.login-form .error:has-text("Invalid username or password")');
  }));

test('screenshots at desktop and phone sizes, light and dark', () =>
  withServer(async (server) => {
    const shots = [
      ['desktop', { width: 1280, height: 800 }, 'light'],
      ['phone', { width: 390, height: 844 }, 'light'],
      ['desktop-dark', { width: 1280, height: 800 }, 'dark'],
    ];
    const backgrounds = {};
    for (const [name, viewport, colorScheme] of shots) {
      const page = await newPage(browser, viewport, { colorScheme });
      await page.goto(server.url + '/');
      await page.waitForSelector('confab-login form');
      await screenshot(page, `${name}-sign-in`);
      await signUp(page, server, `${name}-user`);
      await send(page, `Hello from a ${viewport.width}×${viewport.height} screen`);
      await page.waitForSelector('li.msg[data-state=sent]');
      // Nothing is wider than the screen.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name}: ${overflow}px wider than the viewport`);
      await screenshot(page, `${name}-chat`);
      backgrounds[colorScheme] = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      if (name === 'phone') {
        await page.click('.bar .menu');
        await page.waitForSelector('.channels .channel[data-channel=general]', { state: 'visible' });
        await screenshot(page, 'phone-channels');
      }
      assert.deepEqual(page.problems, []);
    }
    assert.notEqual(backgrounds.light, backgrounds.dark, 'the theme follows prefers-color-scheme');
  }));

/** An owner `boss` (a raw socket) who creates the text channel `dev`, and alice in the app, signed up before it exists. */
async function withDev(server) {
  await server.cli(['user', 'add', 'boss', '--role', 'owner'], 'correct horse');
  const boss = await rawUser(browser, server, 'boss', { login: true });
  const page = await newPage(browser);
  await signUp(page, server, 'alice');
  const made = await boss.rpc({ cmd: 'channel_create', name: 'dev', type: 'text', permissions: { view: ['user'], send: ['user'] } });
  assert.equal(made.created, true, JSON.stringify(made));
  return { boss, page };
}

test('unread counts arrive live, survive a reload, and clear when the channel is read', () =>
  withServer(async (server) => {
    const { boss, page } = await withDev(server);
    // The new channel appears without a reload (the server pushes channels_get).
    await page.waitForSelector('.channel[data-channel=dev][data-unread="0"]');
    await boss.post('one', 'dev');
    await boss.post('two', 'dev');
    await page.waitForSelector('.channel[data-channel=dev][data-unread="2"] .badge:has-text("2")');
    await page.reload();
    await online(page);
    await page.waitForSelector('.channel[data-channel=dev][data-unread="2"]');
    await page.click('.channel[data-channel=dev]');
    await expectContents(page, ['one', 'two']);
    await page.waitForSelector('.channel[data-channel=dev][data-unread="0"]');
    assert.equal(await page.textContent('.bar .title'), '#dev');
    // Reading it was stored: after a reload dev is still read, and the app reopens it.
    await page.reload();
    await online(page);
    assert.equal(await page.textContent('.bar .title'), '#dev');
    await boss.post('three', 'general');
    await page.waitForSelector('.channel[data-channel=general][data-unread="1"]');
    assert.equal(await page.getAttribute('.channel[data-channel=dev]', 'data-unread'), '0');
    assert.deepEqual(page.problems, []);
  }));

test('mention badges survive a reload: counted by the server while away, cleared by opening the channel', () =>
  withServer(async (server) => {
    const { boss, page } = await withDev(server);
    await page.click('.channel[data-channel=dev]');
    await send(page, 'a question');
    await expectContents(page, ['a question']);
    const history = await boss.rpc({ cmd: 'messages_get', channel: 'dev', start: 0, limit: 10 });
    const question = history.messages.find((m) => m.content === 'a question');
    await page.click('.channel[data-channel=general]');
    await page.waitForSelector('.bar .title:has-text("#general")');

    // Alice is away: a mention, a reply to her, a mention of her role, and a plain message.
    await page.goto('about:blank');
    await boss.post('hey @alice', 'dev');
    const reply = await boss.rpc({ cmd: 'message_new', channel: 'dev', content: 'an answer', reply_to: question.id });
    assert.equal(reply.cmd, 'message_new', JSON.stringify(reply));
    await boss.post('@&user standup', 'dev');
    await boss.post('no ping here', 'dev');

    await page.goto(server.url + '/');
    await online(page);
    await page.waitForSelector('.channel[data-channel=dev] .mention-badge[data-mentions="3"]');
    await page.reload();
    await online(page);
    await page.waitForSelector('.channel[data-channel=dev] .mention-badge[data-mentions="3"]');
    await page.click('.channel[data-channel=dev]');
    await expectContents(page, ['a question', 'hey @alice', 'an answer', '@&user standup', 'no ping here']);
    await page.waitForSelector('.channel[data-channel=dev][data-unread="0"]');
    assert.equal(await page.locator('.channel[data-channel=dev] .mention-badge').count(), 0);
    // Reading it was stored: after a reload the badge stays gone.
    await page.reload();
    await online(page);
    await page.waitForSelector('.channel[data-channel=dev][data-unread="0"]');
    assert.equal(await page.locator('.mention-badge').count(), 0);
    assert.deepEqual(page.problems, []);
  }));

test('two tabs whose token was refused at the same moment refresh once and both stay signed in', () =>
  withServer(async (server) => {
    const tab1 = await newPage(browser);
    await signUp(tab1, server, 'alice');
    const tab2 = watch(await tab1.context().newPage());
    await tab2.goto(server.url + '/');
    await online(tab2);
    for (let round = 0; round < 3; round++) {
      const refused = await tab1.evaluate(() => JSON.parse(localStorage.getItem('confab.session')).access_token);
      const force = (t) => window.confab.auth.accessToken(t).then(() => 'ok', (e) => `${e.name}: ${e.message}`);
      const results = await Promise.all([tab1.evaluate(force, refused), tab2.evaluate(force, refused), tab1.evaluate(force, refused)]);
      assert.deepEqual(results, ['ok', 'ok', 'ok'], `round ${round}`);
    }
    // Both tabs' sessions are still live on the server: their sockets reconnect after a cut.
    for (const tab of [tab1, tab2]) {
      assert.equal(await tab.evaluate(() => localStorage.getItem('confab.session') !== null), true);
      await tab.evaluate(() => window.confab.conn.ws.close(4000));
      await tab.waitForSelector('.conn[data-conn=online]', { timeout: 20_000 });
    }
    await send(tab1, 'still here');
    await expectContents(tab2, ['still here']);
    assert.deepEqual([...tab1.problems, ...tab2.problems], []);
  }));

test('first run: the printed setup link creates the owner once', () =>
  withServer(async (server) => {
    const find = () => /open (http:\/\/\S+\/#setup=[A-Za-z0-9_-]+) /.exec(server.output())?.[1];
    for (let i = 0; i < 50 && !find(); i++) await new Promise((r) => setTimeout(r, 100));
    const link = find();
    assert.ok(link, `no setup link in:\n${server.output()}`);
    const page = await newPage(browser);
    await page.goto(link);
    await page.waitForSelector('.login-form[data-mode=setup]');
    await screenshot(page, 'desktop-setup');
    await page.fill('input[name=username]', 'boss');
    await page.fill('input[name=password]', 'correct horse');
    await page.click('button[value=setup]');
    await online(page);
    assert.equal(await page.textContent('.bar .me'), 'boss');
    assert.equal(new URL(page.url()).hash.startsWith('#setup='), false, 'the link leaves the address bar');
    // The link is spent: opening it again shows the form, and the server refuses it.
    const other = await newPage(browser);
    await other.goto(link);
    await other.fill('input[name=username]', 'mallory');
    await other.fill('input[name=password]', 'correct horse');
    await other.click('button[value=setup]');
    await other.waitForSelector('.login-form .error:has-text("Invalid or expired setup link")');
    assert.deepEqual(page.problems, []);
  }));
