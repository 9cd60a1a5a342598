// Wires the app together: the stored session (auth.mjs), the socket (conn.mjs), the chat state
// (state.mjs) and the elements (views.mjs). The channel being read is kept in the URL's hash
// (`#/c/general`), so a reload opens it again.

import { Auth } from './auth.mjs';
import { Connection } from './conn.mjs';
import { Chat } from './state.mjs';
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

function signedOut(message = '') {
  conn?.stop();
  conn = null;
  voice?.stop();
  voice = null;
  const setup = setupToken();
  root.showLogin({
    message,
    setup: Boolean(setup),
    submit: async (mode, username, password) => {
      if (mode === 'setup') {
        await auth.setup(setup, username, password);
        history.replaceState(null, '', location.pathname);
      } else {
        await (mode === 'register' ? auth.register(username, password) : auth.login(username, password));
      }
      signedIn();
    },
  });
}

function signedIn() {
  const chat = new Chat({ send: (frame) => conn?.send(frame) ?? false, onChange: () => root.update() });
  chat.current = hashChannel();
  voice?.stop();
  const talk = browserVoice({ send: (frame) => conn?.send(frame) ?? false, onChange: () => root.update() });
  voice = talk;
  const ctl = {
    chat,
    voice: talk,
    username: auth.username,
    open(name) {
      chat.open(name);
      history.replaceState(null, '', `#/c/${encodeURIComponent(name)}`);
    },
    async logout() {
      conn?.stop();
      await auth.logout();
      signedOut();
    },
  };
  conn = new Connection({
    url: wsUrl,
    WebSocket,
    token: (rejected) => auth.accessToken(rejected),
    onPacket: (p) => talk.handle(p) || chat.handle(p),
    onState: (state, detail) => {
      root.setConn(state, detail);
      if (state === 'stopped') signedOut(detail === 'Not signed in' ? '' : detail);
    },
  });
  root.showChat(ctl);
  // For the browser tests: the live objects, read-only by convention.
  window.confab = { auth, chat, conn, voice: talk };
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
