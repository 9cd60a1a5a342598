// The web app in a real Chromium against a fresh `confab serve` per test.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { cuttable, expectContents, launch, newPage, online, rawUser, screenshot, send, signUp, startServer } from './harness.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Runs `body` with a fresh server, closed afterwards whatever happens. */
async function withServer(body, env) {
  const server = await startServer(env);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

test('register → #general → send: one confirmed message, kept across a reload', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    assert.equal(await page.textContent('.bar .title'), '#general');
    assert.equal(await page.getAttribute('.channel[aria-current=page]', 'data-channel'), 'general');
    await send(page, 'hello from the browser');
    await expectContents(page, ['hello from the browser']);
    await page.waitForSelector('li.msg[data-state=pending]', { state: 'detached' });
    assert.equal(await page.locator('li.msg[data-state=sent]').count(), 1);
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
    assert.deepEqual(history.messages.map((m) => m.content), ['sent into the void'], 'stored once');
    const nonces = net.sent.filter((f) => f?.cmd === 'message_new').map((f) => f.nonce);
    assert.ok(nonces.length >= 1 && nonces.every((n) => n === nonces[0]), `one nonce: ${nonces}`);
    assert.deepEqual(page.problems, []);
  }));

test('a restarted server: the app reconnects by itself and catches up', () =>
  withServer(async (server) => {
    const page = await newPage(browser);
    await signUp(page, server, 'alice');
    await send(page, 'before restart');
    await expectContents(page, ['before restart']);
    await server.restart();
    await page.waitForSelector('.conn[data-conn=online]', { timeout: 30_000 });
    const bob = await rawUser(browser, server, 'bob');
    await bob.post('after restart');
    await expectContents(page, ['before restart', 'after restart']);
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

test('screenshots at desktop and phone sizes', () =>
  withServer(async (server) => {
    for (const [name, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      const page = await newPage(browser, viewport);
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
      if (name === 'phone') {
        await page.click('.bar .menu');
        await page.waitForSelector('.channels .channel[data-channel=general]', { state: 'visible' });
        await screenshot(page, 'phone-channels');
      }
      assert.deepEqual(page.problems, []);
    }
  }));
