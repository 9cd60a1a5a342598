// Wires the app together: the stored session (auth.mjs), the socket (conn.mjs), the chat state
// (state.mjs) and the elements (views.mjs). The channel being read is kept in the URL's hash
// (`#/c/general`), so a reload opens it again.

import { inviteCode } from './admin-model.mjs';
import { Admin } from './admin.mjs';
import { Auth } from './auth.mjs';
import { Connection } from './conn.mjs';
import { Chat } from './state.mjs';
import { mentionNotifier } from './notify.mjs';
import { Threads } from './threads.mjs';
import { indexedDbVault } from './vault.mjs';
import { browserVoice } from './voice-view.mjs';
import './views.mjs';

const root = document.querySelector('confab-app');
const vault = (await indexedDbVault(globalThis.indexedDB).catch(() => null)) ?? undefined;
const auth = new Auth({ fetch: (...a) => fetch(...a), storage: localStorage, vault, locks: navigator.locks });
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
let conn = null;
let voice = null;

function hashChannel() {
  const m = /^#\/c\/(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

/** The token of a first-run link (`#setup=…`, printed by `confab serve` while there is no owner). */
function setupToken() {
  const m = /^#setup=([A-Za-z0-9_-]+)$/.exec(location.hash);
  return m ? m[1] : null;
}

/** The registration mode `/info` reports (`open | invite | closed`), so the right form is offered. */
async function registrationMode() {
  try {
    return (await (await fetch('/info')).json()).registration ?? 'open';
  } catch {
    return 'open';
  }
}

/** Counts screen changes, so a late `/info` answer does not bring back a form already left. */
let screen = 0;

function signedOut(message = '') {
  conn?.stop();
  conn = null;
  voice?.stop();
  voice = null;
  const setup = setupToken();
  const shown = ++screen;
  registrationMode().then((registration) => {
    if (shown !== screen) return;
    root.showLogin({
      message,
      setup: Boolean(setup),
      registration,
      invite: inviteCode(location),
      submit: async (mode, username, password, invite) => {
        if (mode === 'setup') {
          await auth.setup(setup, username, password);
          history.replaceState(null, '', location.pathname);
        } else {
          await (mode === 'register' ? auth.register(username, password, invite) : auth.login(username, password));
        }
        signedIn();
      },
    });
  });
}

function signedIn() {
  ++screen;
  // An invite link has done its work once signed in: the app lives at `/`.
  if (inviteCode(location)) history.replaceState(null, '', '/');
  const chat = new Chat({ send: (frame) => conn?.send(frame) ?? false, onChange: () => root.update() });
  chat.current = hashChannel();
  const threads = new Threads({ send: (frame) => conn?.send(frame) ?? false, onChange: () => root.update() });
  voice?.stop();
  const talk = browserVoice({ send: (frame) => conn?.send(frame) ?? false, onChange: () => root.update() });
  voice = talk;
  const ctl = {
    chat,
    threads,
    voice: talk,
    username: auth.username,
    /** An access token for HTTP calls (attachment uploads). */
    token: () => auth.accessToken(),
    open(name) {
      threads.close();
      chat.open(name);
      history.replaceState(null, '', `#/c/${encodeURIComponent(name)}`);
    },
    async logout() {
      conn?.stop();
      await auth.logout();
      signedOut();
    },
  };
  chat.onMention = mentionNotifier(chat, (name) => ctl.open(name), { reading: (name) => chat.current === name && !threads.open });
  threads.onMention = mentionNotifier(chat, (_, id) => threads.openThread(id), { reading: (_, _m, id) => threads.open?.thread === id });
  conn = new Connection({
    url: wsUrl,
    WebSocket,
    token: (rejected) => auth.accessToken(rejected),
    onPacket: (p) => {
      if (talk.handle(p)) return;
      if (!admin.handle(p)) chat.handle(p);
      threads.handle(p);
    },
    onState: (state, detail) => {
      root.setConn(state, detail);
      if (state !== 'online') admin.offline();
      if (state === 'stopped') signedOut(detail === 'Not signed in' ? '' : detail);
    },
  });
  // The admin screens, offered only when the user's roles allow some (admin.mjs).
  const admin = new Admin({
    send: (frame) => conn?.send(frame) ?? false,
    onChange: () => admin.mount(root.chat),
    onServer: (server) => {
      chat.server = { ...chat.server, ...server };
      root.update();
    },
  });
  root.showChat(ctl);
  // For the browser tests: the live objects, read-only by convention.
  window.confab = { auth, chat, conn, admin, threads, voice: talk };
  conn.start();
}

// Another tab signed out (or in as someone else): follow it.
window.addEventListener('storage', (ev) => {
  if (ev.key !== null && ev.key !== 'confab.session') return;
  const user = auth.username;
  if (!user && conn) signedOut();
  else if (user && (!conn || root.chat?.ctl?.username !== user)) {
    conn?.stop();
    conn = null;
    signedIn();
  }
});

if (auth.session && !setupToken()) signedIn();
else signedOut();
