// The admin side of the web app in a real Chromium against a fresh `confab serve` in invite mode:
// the newcomer story (setup link → owner → invite → second person joins → both chat), what a plain
// user is not offered, a server rename seen live, a promotion that opens exactly one screen.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { expectContents, launch, newPage, online, screenshot, send, startServer } from './harness.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

const PASSWORD = 'correct horse';

/** Opens the admin panel on `section` and waits until that section has loaded. */
async function openAdmin(page, section) {
  if (!(await page.locator('dialog.admin-dialog[open]').count())) await page.click('.admin-open');
  await page.click(`.admin-tab[data-section=${section}]`);
  await page.waitForSelector(`confab-admin[data-section=${section}] .admin-body h3`);
}

/** Creates the owner account through the setup link `confab serve` prints once it listens. */
async function ownerViaSetupLink(server, name = 'owner') {
  const find = () => /open (http:\/\/\S+\/#setup=[A-Za-z0-9_-]+) /.exec(server.output())?.[1];
  for (let i = 0; i < 50 && !find(); i++) await new Promise((r) => setTimeout(r, 100));
  const link = find();
  assert.ok(link, `a setup link is printed:\n${server.output()}`);
  const page = await newPage(browser);
  await page.goto(link);
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[value=setup]');
  await online(page);
  return page;
}

/** Waits until the app knows the user's roles and their permissions (the roles_list answer). */
async function rightsKnown(page) {
  await page.waitForFunction(() => Object.keys(window.confab?.admin?.roles ?? {}).length > 0);
}

test('newcomer: setup link → owner invites → the invited person joins and both chat; admin screens only for admins', async () => {
  const server = await startServer({ CONFAB_AUTH__REGISTRATION: 'invite' });
  try {
    // The owner opens the printed link and creates the owner account.
    const owner = await ownerViaSetupLink(server);

    // …creates a two-use invite in the admin screen, using the keyboard for the form.
    await openAdmin(owner, 'invites');
    await owner.selectOption('select[name=expires_in]', '86400');
    await owner.fill('input[name=max_uses]', '2');
    await owner.press('input[name=max_uses]', 'Enter');
    await owner.waitForSelector('.admin-list.invites li[data-code]');
    const link = await owner.inputValue('.admin-list.invites li[data-code] .invite-url');
    const code = await owner.getAttribute('.admin-list.invites li[data-code]', 'data-code');
    assert.equal(link, `${server.url}/invite/${code}`);
    assert.match(await owner.textContent('.admin-list.invites li[data-code] .meta'), /0\/2 uses · expires in 1 d/);
    await screenshot(owner, 'admin-invites-desktop');

    // Without an invite, the sign-up form says what is needed and the server refuses.
    const stranger = await newPage(browser);
    await stranger.goto(server.url + '/');
    await stranger.waitForSelector('.login-form[data-registration=invite]');
    await stranger.fill('input[name=username]', 'stranger');
    await stranger.fill('input[name=password]', PASSWORD);
    await stranger.click('button[value=register]');
    await stranger.waitForSelector('.login-form .error:has-text("An invite is required to register on this server")');
    await stranger.context().close();

    // The invited person opens the link in another browser: the code is filled in; Enter signs up.
    const guest = await newPage(browser);
    await guest.goto(link);
    assert.equal(await guest.inputValue('input[name=invite]'), code);
    await guest.fill('input[name=username]', 'newcomer');
    await guest.fill('input[name=password]', PASSWORD);
    await guest.press('input[name=password]', 'Enter');
    await online(guest);
    assert.equal(new URL(guest.url()).pathname, '/', 'the app leaves the invite address once signed in');

    // Both chat and see each other's messages.
    await owner.click('.admin-close');
    await send(owner, 'welcome aboard');
    await expectContents(guest, ['welcome aboard']);
    await send(guest, 'thanks for the invite');
    await expectContents(owner, ['welcome aboard', 'thanks for the invite']);

    // A plain user is offered no admin action: no entry point, no panel in the page.
    await rightsKnown(guest);
    assert.equal(await guest.locator('.admin-open').count(), 0);
    assert.equal(await guest.locator('dialog.admin-dialog, confab-admin').count(), 0);

    // The owner sees the use counted.
    await openAdmin(owner, 'invites');
    await owner.waitForSelector(`.admin-list.invites li[data-code="${code}"] .meta:has-text("1/2 uses")`);

    // The owner renames the server; the other user sees the new name live.
    await openAdmin(owner, 'server');
    await owner.fill('input[name=name]', 'Newcomers Club');
    await owner.click('button:has-text("Save server")');
    await owner.waitForSelector('.admin-status:has-text("Server updated")');
    await guest.waitForSelector('.bar .server:has-text("Newcomers Club")');

    // Promoted to moderator, the newcomer gets the admin entry with exactly the audit log.
    await openAdmin(owner, 'members');
    await owner.fill('li[data-user=newcomer] input[name=roles]', 'moderator, user');
    await owner.click('li[data-user=newcomer] button:has-text("Set roles")');
    await owner.waitForSelector('.admin-status:has-text("Roles of newcomer saved")');
    await guest.waitForSelector('.admin-open');
    await openAdmin(guest, 'audit');
    assert.deepEqual(await guest.$$eval('.admin-tab', (ts) => ts.map((t) => t.dataset.section)), ['audit']);
    const actions = await guest.$$eval('table.audit tbody tr td:nth-child(3)', (ts) => ts.map((t) => t.textContent));
    for (const action of ['invite_create', 'server_update', 'user_roles_set']) assert.ok(actions.includes(action), `${action} in ${actions}`);

    // The same screens at phone size.
    await owner.setViewportSize({ width: 390, height: 844 });
    await openAdmin(owner, 'channels');
    await screenshot(owner, 'admin-channels-phone');
    await owner.emulateMedia({ colorScheme: 'dark' });
    await screenshot(owner, 'admin-channels-phone-dark');
    const box = await owner.locator('dialog.admin-dialog').boundingBox();
    assert.ok(box.width <= 390 && box.height <= 844, `the panel fits the phone screen: ${JSON.stringify(box)}`);
    await owner.keyboard.press('Escape');
    await owner.waitForSelector('dialog.admin-dialog[open]', { state: 'detached' });

    for (const page of [owner, guest]) assert.deepEqual(page.problems, []);
  } finally {
    await server.close();
  }
});

test('channels, roles and webhooks from the admin screens', async () => {
  const server = await startServer();
  try {
    const owner = await ownerViaSetupLink(server);

    // A new text channel appears in the channel list; renamed, it follows.
    await openAdmin(owner, 'channels');
    await owner.fill('.admin-form[aria-label="Create channel"] input[name=name]', 'random');
    await owner.click('button:has-text("Create channel")');
    await owner.waitForSelector('li[data-channel=random]');
    await owner.waitForSelector('nav.channels .channel[data-channel=random]');
    await owner.fill('li[data-channel=random] input[name=name]', 'offtopic');
    await owner.click('li[data-channel=random] button:has-text("Rename")');
    await owner.waitForSelector('nav.channels .channel[data-channel=offtopic]');
    // Moved above general, it comes first in the list.
    await owner.click('li[data-channel=offtopic] button[aria-label="Move offtopic up"]');
    await owner.waitForFunction(() => document.querySelector('nav.channels .channel')?.dataset.channel === 'offtopic');

    // A role with a colour and a permission.
    await openAdmin(owner, 'roles');
    await owner.fill('.admin-form[aria-label="Create role"] input[name=name]', 'helpers');
    await owner.click('button:has-text("Create role")');
    await owner.waitForSelector('li[data-role=helpers]');
    await owner.click('li[data-role=helpers] summary');
    await owner.check('li[data-role=helpers] input[value=manage_channels]');
    await owner.click('li[data-role=helpers] button:has-text("Save role")');
    await owner.waitForSelector('.admin-status:has-text("Role helpers saved")');
    const perms = await owner.evaluate(() => window.confab.admin.roles.helpers.permissions);
    assert.deepEqual(perms, ['manage_channels']);

    // A webhook for #general; its token is shown once.
    await openAdmin(owner, 'webhooks');
    await owner.fill('.admin-form[aria-label="Create webhook"] input[name=name]', 'ci');
    await owner.click('button:has-text("Create webhook")');
    await owner.waitForSelector('.admin-status:has-text("Webhook created")');
    await owner.waitForSelector('.admin-list li:has-text("ci")');

    // Deleting asks again in place.
    await openAdmin(owner, 'channels');
    await owner.click('li[data-channel=offtopic] button.danger');
    await owner.click('li[data-channel=offtopic] button.danger:has-text("Confirm")');
    await owner.waitForSelector('nav.channels .channel[data-channel=offtopic]', { state: 'detached' });
    assert.deepEqual(owner.problems, []);
  } finally {
    await server.close();
  }
});
