// Voice in the web app: two users in two browser contexts join one voice channel and hear each
// other. Chromium's fake microphone (a beep) feeds each side; the offers, answers and ICE
// candidates go through Confab's `voice_signal` relay; the ICE server list is empty, so only host
// candidates on this machine are used and nothing leaves it. "Hearing" is measured where WebRTC
// counts it: an inbound-rtp audio stream whose bytesReceived keeps growing.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { cuttable, launch, newPage, rawUser, screenshot, signUp, startServer } from './harness.mjs';

/** Fake devices and no permission prompt; host candidates as plain IPs (no mDNS names to resolve). */
const MEDIA_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

let browser;
before(async () => {
  browser = await launch({ args: MEDIA_ARGS });
});
after(async () => {
  await browser?.close();
});

async function withServer(body) {
  const server = await startServer();
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

/** A voice channel `lounge` for every user, made by an owner over a raw socket. */
async function lounge(browser, server) {
  await server.cli(['user', 'add', 'boss', '--role', 'owner'], 'correct horse');
  const boss = await rawUser(browser, server, 'boss', { login: true });
  const made = await boss.rpc({ cmd: 'channel_create', name: 'lounge', type: 'voice', permissions: { view: ['user'], send: ['user'] } });
  assert.equal(made.created, true, JSON.stringify(made));
  return boss;
}

/** The bytes of audio `page` has received from `from` so far (-1 while there is no such stream). */
function received(page, from) {
  return page.evaluate(async (from) => {
    const peer = window.confab.voice.peers.get(from);
    if (!peer) return -1;
    let bytes = -1;
    (await peer.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes = Math.max(bytes, s.bytesReceived ?? 0);
    });
    return bytes;
  }, from);
}

/** Waits until `page` has received audio from `from` and the count has grown since (a live stream). */
async function hears(page, from, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  let first = null;
  let last = -1;
  while (Date.now() < deadline) {
    last = await received(page, from);
    if (last > 0 && first === null) first = last;
    else if (first !== null && last > first) return last;
    await page.waitForTimeout(100);
  }
  const state = await page.evaluate((from) => window.confab.voice.peers.get(from)?.pc.connectionState ?? 'no peer', from);
  assert.fail(`${from}'s audio did not flow (bytesReceived ${first} → ${last}, connection ${state})`);
}

async function join(page, channel = 'lounge') {
  await page.click(`.voice-channel[data-channel=${channel}] .voice-join`);
  await page.waitForSelector(`.voice-channel[data-channel=${channel}][data-state=joined]`);
}

/** A page whose context may use the (fake) microphone. */
function mediaPage() {
  return newPage(browser, undefined, { permissions: ['microphone'] });
}

test('two users in a voice channel hear each other; when one leaves the other\'s list and connection follow', () =>
  withServer(async (server) => {
    await lounge(browser, server);
    const alice = await mediaPage();
    const bob = await mediaPage();
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');

    await join(alice);
    await alice.waitForSelector('.voice-channel[data-channel=lounge] .voice-user[data-user=alice][data-peer=self][data-muted=false]');
    // Bob, not in the channel, sees who is.
    await bob.waitForSelector('.voice-channel[data-channel=lounge][data-joined=false] .voice-user[data-user=alice]');
    await join(bob);

    await alice.waitForSelector('.voice-user[data-user=bob][data-peer=connected]');
    await bob.waitForSelector('.voice-user[data-user=alice][data-peer=connected]');
    await hears(alice, 'bob');
    await hears(bob, 'alice');
    // Each side plays the other's stream.
    for (const [page, other] of [[alice, 'bob'], [bob, 'alice']]) {
      const playing = await page.$eval(`confab-voice-audio audio[data-user=${other}]`, (a) => a.srcObject?.getAudioTracks().length ?? 0);
      assert.equal(playing, 1, `an <audio> plays ${other}`);
    }
    // The fake microphone beeps: the other side's level shows as speaking at times.
    await alice.waitForSelector('.voice-user[data-user=bob][data-speaking=true]');
    await screenshot(alice, 'desktop-voice');
    const stray = await alice.$eval('confab-voice', (e) => [...e.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).length);
    assert.equal(stray, 0, 'the voice list holds elements only');

    // Mute shows on the other side.
    await bob.click('.voice-channel[data-channel=lounge] .voice-mute');
    await alice.waitForSelector('.voice-user[data-user=bob][data-muted=true]');
    await bob.click('.voice-channel[data-channel=lounge] .voice-mute');
    await alice.waitForSelector('.voice-user[data-user=bob][data-muted=false]');

    // Bob leaves: Alice's list drops him and her connection to him is closed.
    await alice.evaluate(() => {
      window.bobPc = window.confab.voice.peers.get('bob').pc;
    });
    await bob.click('.voice-channel[data-channel=lounge] .voice-leave');
    await bob.waitForSelector('.voice-channel[data-channel=lounge][data-joined=false]');
    await alice.waitForSelector('.voice-channel[data-channel=lounge] .voice-user[data-user=bob]', { state: 'detached' });
    await alice.waitForFunction(() => window.bobPc.signalingState === 'closed' && !window.confab.voice.peers.has('bob'));
    await alice.waitForSelector('confab-voice-audio audio[data-user=bob]', { state: 'detached' });
    assert.equal(await bob.evaluate(() => window.confab.voice.peers.size), 0);
    assert.equal(await bob.locator('.voice-channel[data-channel=lounge] .voice-user[data-user=bob]').count(), 0);

    // He comes back: a new connection, and the audio flows again.
    await join(bob);
    await hears(alice, 'bob');
    await hears(bob, 'alice');
    assert.equal(await alice.evaluate(() => window.confab.voice.peers.get('bob').pc !== window.bobPc), true);
    assert.deepEqual(alice.problems, []);
    assert.deepEqual(bob.problems, []);
  }));

test('after a lost connection the app joins again and the audio flows again', () =>
  withServer(async (server) => {
    await lounge(browser, server);
    const alice = await mediaPage();
    const bob = await mediaPage();
    const net = await cuttable(bob);
    await signUp(alice, server, 'alice');
    await signUp(bob, server, 'bob');
    await join(alice);
    await join(bob);
    await hears(alice, 'bob');
    await alice.evaluate(() => {
      window.bobPc = window.confab.voice.peers.get('bob').pc;
    });

    net.cut();
    await bob.waitForSelector('.conn[data-conn=online]');
    await alice.waitForFunction(() => window.bobPc.signalingState === 'closed');
    await alice.waitForSelector('.voice-user[data-user=bob][data-peer=connected]');
    await bob.waitForSelector('.voice-channel[data-channel=lounge][data-state=joined]');
    await hears(alice, 'bob');
    await hears(bob, 'alice');
    const joins = net.sent.filter((f) => f?.cmd === 'voice_join').map((f) => f.peer_id);
    assert.equal(joins.length, 2, 'joined once, then once again after the reconnect');
    assert.notEqual(joins[0], joins[1], 'under a new peer id');
    assert.deepEqual(alice.problems, []);
  }));
