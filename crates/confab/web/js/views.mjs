// The app's custom elements. They draw what `Chat` (state.mjs) holds and turn clicks and keys into
// calls on the controller main.mjs gives them; no protocol logic lives here. Every piece of user data
// is set as text (dom.mjs), and state the tests look for is in `data-*` attributes.

import { el } from './dom.mjs';
import { ask, canAsk } from './notify.mjs';
import { enhanceComposer } from './composer.mjs';
import './forum.mjs';
import { mayOnMessages, renderMessage, renderPending } from './message.mjs';
import './panel.mjs';
import { encodeEmoji, may } from './render.mjs';
const CONN_TEXT = { connecting: 'Connecting…', online: 'Online', offline: 'Reconnecting…', stopped: 'Disconnected' };

function time(ts) {
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Sign in / create account. */
class ConfabLogin extends HTMLElement {
  /**
   * `setup`: the first-run form, which creates the owner account (one button, mode 'setup').
   * `registration`: the server's mode (`open | invite | closed`, from `/info`); `invite`: the code of
   * the invite link the app was opened with, filled into the sign-up form.
   * @param {{message?: string, setup?: boolean, registration?: string, invite?: string|null,
   *   submit: (mode: string, user: string, pass: string, invite?: string) => Promise<void>}} o
   */
  show({ message = '', setup = false, registration = 'open', invite = null, submit }) {
    const error = el('p', { class: 'error', role: 'alert', text: message, hidden: !message });
    const canRegister = registration !== 'closed';
    const invited = canRegister && Boolean(invite);
    const signIn = el('button', { type: 'submit', name: 'mode', value: 'login', class: invited ? 'secondary' : null, text: 'Sign in' });
    const signUp = el('button', { type: 'submit', name: 'mode', value: 'register', class: invited ? null : 'secondary', text: 'Create account' });
    const buttons = setup
      ? [el('button', { type: 'submit', name: 'mode', value: 'setup', text: 'Create owner account' })]
      // The first button is what Enter does: signing up for someone who came with an invite.
      : invited ? [signUp, signIn] : [signIn, canRegister ? signUp : null];
    const intro = setup
      ? 'This server has no owner yet. Choose the owner account’s name and password.'
      : invited ? 'You have been invited. Choose a username and password to join.'
        : registration === 'invite' ? 'New accounts need an invite: open the invite link you were given, or paste its code below.'
          : registration === 'closed' ? 'This server does not take new accounts.' : null;
    const form = el(
      'form',
      { class: 'login-form', 'aria-label': setup ? 'Create the owner account' : 'Sign in', dataset: { mode: setup ? 'setup' : 'login', registration } },
      el('h1', { text: 'Confab' }),
      intro ? el('p', { class: 'intro', text: intro }) : null,
      el('label', {}, 'Username', el('input', { name: 'username', autocomplete: 'username', required: true, minlength: 2, maxlength: 32 })),
      el('label', {}, 'Password', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
      !setup && (invited || registration === 'invite')
        ? el('label', {}, 'Invite code', el('input', { name: 'invite', value: invite ?? '', autocomplete: 'off', maxlength: 64 }))
        : null,
      error,
      el('div', { class: 'row' }, buttons),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const mode = ev.submitter?.value ?? 'login';
      const data = new FormData(form);
      for (const b of form.querySelectorAll('button')) b.disabled = true;
      try {
        await submit(mode, String(data.get('username')).trim(), String(data.get('password')), String(data.get('invite') ?? '').trim() || undefined);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      } finally {
        for (const b of form.querySelectorAll('button')) b.disabled = false;
      }
    });
    this.replaceChildren(form);
    form.querySelector('input')?.focus();
  }
}

/** The timeline of the open channel: a window of at most WINDOW messages (state.mjs), paged in both
 * directions as the reader nears either end, keyed by message, keeping the reading position while it
 * changes. */
class ConfabTimeline extends HTMLElement {
  connectedCallback() {
    this.list ??= this.appendChild(el('ol', { class: 'messages', 'aria-label': 'Messages' }));
    this.latest ??= this.appendChild(el('button', {
      type: 'button', class: 'jump-latest', hidden: true, text: 'Jump to latest ↓',
      onclick: () => {
        this.ctl?.chat.jumpLatest();
        this.scrollTop = this.scrollHeight;
      },
    }));
    this.nodes = new WeakMap();
    this.shown = null;
    this.addEventListener('scroll', () => this.edges());
  }

  /** Pages in more history when the reader is near either end of the window. */
  edges() {
    const chat = this.ctl?.chat;
    if (!chat) return;
    if (this.scrollTop < 200) chat.loadOlder();
    const fromBottom = this.scrollHeight - this.scrollTop - this.clientHeight;
    if (fromBottom < 200) chat.loadNewer();
    const r = chat.current ? chat.room(chat.current) : null;
    this.latest.hidden = !(r?.hasNewer || fromBottom > 3 * this.clientHeight);
  }

  render(ctl) {
    this.ctl = ctl;
    const { chat } = ctl;
    const r = chat.current ? chat.room(chat.current) : null;
    const switched = this.shown !== chat.current;
    this.shown = chat.current;
    const atBottom = this.scrollHeight - this.scrollTop - this.clientHeight < 48;
    // Stay at the bottom only while the window ends at the newest message.
    const stick = atBottom && !this.hadNewer;
    this.hadNewer = Boolean(r?.hasNewer);
    let anchor = null;
    let offset = 0;
    if (!stick && !switched) {
      for (const c of this.list.children) {
        if (c.offsetTop + c.offsetHeight > this.scrollTop) {
          anchor = c;
          offset = c.offsetTop - this.scrollTop;
          break;
        }
      }
    }
    const items = [];
    if (r?.loadingOlder) items.push(el('li', { class: 'note', text: 'Loading older messages…' }));
    else if (r?.loaded && !r.hasOlder) items.push(el('li', { class: 'note', text: `This is the start of #${r.name}.` }));
    if (r?.error) items.push(el('li', { class: 'note error', text: r.error }));
    const emojiKey = `${chat.emoji.size}:${[...chat.emoji.keys()].join(',')}`;
    const messages = r?.messages ?? [];
    for (const m of messages) {
      const poll = m.poll_id ? chat.polls.get(m.poll_id) : undefined;
      let node = this.nodes.get(m);
      if (!node || node.emojiKey !== emojiKey || node.poll !== poll) {
        node = this.message(m, chat, messages);
        Object.assign(node, { emojiKey, poll });
        this.nodes.set(m, node);
      }
      items.push(node);
    }
    if (r?.loadingNewer) items.push(el('li', { class: 'note', text: 'Loading newer messages…' }));
    if (!r?.hasNewer) for (const p of chat.pending()) items.push(renderPending(p, chat, chat));
    this.list.replaceChildren(...items);
    this.dataset.channel = chat.current ?? '';
    this.dataset.loaded = String(Boolean(r?.loaded));
    this.dataset.hasNewer = String(Boolean(r?.hasNewer));
    if (r?.focus) {
      const target = this.list.querySelector(`li[data-msg-id="${CSS.escape(r.focus)}"]`);
      if (target) {
        r.focus = null;
        for (const old of this.list.querySelectorAll('li.focused')) old.classList.remove('focused');
        target.classList.add('focused');
        target.scrollIntoView({ block: 'center' });
      }
    } else if (stick || switched) this.scrollTop = this.scrollHeight;
    else if (anchor?.isConnected) this.scrollTop = anchor.offsetTop - offset;
    // A short first page leaves no scrollbar to pull older pages with.
    if (r?.loaded && this.scrollHeight <= this.clientHeight) chat.loadOlder() || chat.loadNewer();
    this.latest.hidden = !r?.hasNewer;
  }

  message(m, chat, messages) {
    const { ctl } = this;
    return renderMessage(m, messages, chat, ctl, {
      react: (id, emoji) => chat.react(id, emoji),
      reply: (msg) => ctl.reply(msg),
      edit: (msg) => ctl.editDialog(msg, (content) => chat.edit(msg.id, content)),
      remove: (id) => chat.remove(id),
      pin: may(chat, chat.current, 'pin') ? (msg) => chat.pin(msg.id, msg.pinned) : null,
      may: mayOnMessages(chat, chat.current),
      jump: (id) => chat.jumpTo(chat.current, id),
      time,
    });
  }
}

/** Signed-in layout: header with the connection state, channel list, timeline, typing line, composer. */
class ConfabChat extends HTMLElement {
  show(ctl) {
    this.ctl = ctl;
    this.conn = el('span', { class: 'conn', role: 'status', dataset: { conn: 'connecting' }, text: CONN_TEXT.connecting });
    this.heading = el('h2', { class: 'title' });
    this.server = el('span', { class: 'server', text: 'Confab' });
    this.nav = el('nav', { class: 'channels', 'aria-label': 'Channels' });
    this.voice = el('confab-voice');
    this.audio = el('confab-voice-audio');
    this.timeline = el('confab-timeline', { tabindex: '0' });
    this.typing = el('div', { class: 'typing', 'aria-live': 'polite' });
    this.notice = el('p', { class: 'notice', role: 'alert', hidden: true });
    const input = el('textarea', { name: 'content', rows: '1', placeholder: 'Message', 'aria-label': 'Message', maxlength: '2000' });
    const composer = el('form', { class: 'composer' }, input, el('button', { type: 'submit', text: 'Send' }));
    const extras = enhanceComposer(composer, input, ctl);
    this.extras = extras;
    ctl.reply = (m) => extras.reply(m);
    const send = () => {
      if (extras.busy()) return;
      if (ctl.chat.post(encodeEmoji(ctl.chat, input.value, location.host), extras.extra())) {
        input.value = '';
        extras.clear();
      }
      input.focus();
    };
    composer.addEventListener('submit', (ev) => {
      ev.preventDefault();
      send();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.defaultPrevented) {
        ev.preventDefault();
        send();
      }
    });
    input.addEventListener('input', () => ctl.chat.typing());
    this.input = input;
    const menu = el('button', { class: 'menu', 'aria-label': 'Channels', text: '#', onclick: () => this.classList.toggle('nav-open') });
    const me = el('span', { class: 'me', text: ctl.username });
    const logout = el('button', { class: 'logout secondary', text: 'Log out', onclick: () => ctl.logout() });
    this.panel = el('confab-panel', { hidden: true });
    this.forum = el('confab-forum', { class: 'pane', hidden: true });
    this.replaceChildren(
      el('header', { class: 'bar' }, menu, this.server, this.heading, this.tools(), this.conn, me, logout),
      el('div', { class: 'body' },
        this.nav,
        this.main = el('main', { class: 'pane' }, this.notice, this.timeline, this.typing, composer),
        this.forum,
        this.panel),
      this.editor(),
      ...extras.dialogs,
      this.audio,
    );
    this.tick = setInterval(() => this.renderTyping(), 1000);
    this.render();
  }

  /** Search, pins and the notification switch in the header. */
  tools() {
    const { chat } = this.ctl;
    const query = el('input', { type: 'search', name: 'q', class: 'search-input', placeholder: 'Search', 'aria-label': 'Search this channel', maxlength: '200' });
    const search = el('form', { class: 'search', role: 'search' }, query);
    search.addEventListener('submit', (ev) => {
      ev.preventDefault();
      chat.search(query.value);
    });
    this.bell = el('button', {
      type: 'button', class: 'secondary tool notify', title: 'Notify me of mentions', 'aria-label': 'Notify me of mentions', text: '🔔',
      hidden: !canAsk(),
      onclick: async () => {
        await ask();
        this.bell.hidden = !canAsk();
      },
    });
    return el('div', { class: 'bar-tools' }, search,
      el('button', { type: 'button', class: 'secondary tool pins', title: 'Pinned messages', 'aria-label': 'Pinned messages', text: '📌', onclick: () => chat.showPins() }),
      this.bell);
  }

  disconnectedCallback() {
    clearInterval(this.tick);
  }

  editor() {
    const text = el('textarea', { name: 'content', rows: '4', 'aria-label': 'Edited message', maxlength: '2000' });
    const form = el('form', { method: 'dialog' },
      el('h3', { text: 'Edit message' }), text,
      el('div', { class: 'row' },
        el('button', { value: 'cancel', class: 'secondary', text: 'Cancel' }),
        el('button', { value: 'save', text: 'Save' })));
    const dialog = el('dialog', { class: 'edit-dialog' }, form);
    dialog.addEventListener('close', () => {
      if (dialog.returnValue === 'save' && this.editing) this.editing(text.value);
      this.editing = null;
    });
    /** Edits `m` in the dialog; `save(content)` sends the edit. */
    this.ctl.editDialog = (m, save) => {
      this.editing = save;
      text.value = m.content;
      dialog.showModal();
      text.focus();
    };
    return dialog;
  }

  setConn(state, detail = '') {
    this.conn.dataset.conn = state;
    this.conn.textContent = CONN_TEXT[state] ?? state;
    this.conn.title = detail;
  }

  render() {
    const { chat } = this.ctl;
    if (chat.server?.name) this.server.textContent = chat.server.name;
    this.heading.textContent = chat.current ? `#${chat.current}` : '';
    this.input.placeholder = chat.current ? `Message #${chat.current}` : 'Message';
    this.nav.replaceChildren(
      ...chat.channels.map((c) => {
        const r = chat.room(c.name);
        const current = c.name === chat.current;
        return el('button', {
          class: 'channel',
          dataset: { channel: c.name, unread: String(r.unread) },
          'aria-current': current && !this.ctl.threads.open ? 'page' : null,
          onclick: () => {
            this.classList.remove('nav-open');
            this.ctl.open(c.name);
          },
        }, el('span', { class: 'name', text: `# ${c.display_name || c.name}` }),
        r.mentions > 0 ? el('span', { class: 'badge mention-badge', dataset: { mentions: String(r.mentions) }, text: `@${r.mentions}`, 'aria-label': `${r.mentions} mentions` }) : null,
        r.unread > 0 ? el('span', { class: 'badge', text: String(r.unread), 'aria-label': `${r.unread} unread` }) : null);
      }),
      this.voice,
    );
    this.voice.render(this.ctl.voice);
    this.audio.render(this.ctl.voice);
    this.notice.textContent = chat.notice ?? '';
    this.notice.hidden = !chat.notice;
    const { threads } = this.ctl;
    this.nav.append(...threads.forums.map((f) => el('button', {
      class: 'channel forum',
      dataset: { forum: f.name },
      'aria-current': threads.open?.forum === f.name ? 'page' : null,
      onclick: () => {
        this.classList.remove('nav-open');
        threads.openForum(f.name);
      },
    }, el('span', { class: 'name', text: `💬 ${f.display_name || f.name}` }))));
    this.main.hidden = Boolean(threads.open);
    this.forum.hidden = !threads.open;
    this.forum.render(this.ctl);
    if (threads.open) this.heading.textContent = `💬 ${threads.open.forum}`;
    this.timeline.render(this.ctl);
    this.panel.render(chat);
    this.extras.refresh();
    this.renderTyping();
  }

  renderTyping() {
    const who = this.ctl.chat.typers();
    this.typing.textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`;
  }
}

/** The root: the login form or the chat. */
class ConfabApp extends HTMLElement {
  showLogin(opts) {
    const login = el('confab-login');
    this.replaceChildren(login);
    login.show(opts);
    this.chat = null;
  }

  showChat(ctl) {
    this.chat = el('confab-chat');
    this.replaceChildren(this.chat);
    this.chat.show(ctl);
  }

  /** Redraws once per frame however many packets arrived in it (a replay can bring hundreds). */
  update() {
    if (this.queued) return;
    this.queued = requestAnimationFrame(() => {
      this.queued = 0;
      this.chat?.render();
    });
  }

  setConn(state, detail) {
    this.chat?.setConn(state, detail);
  }
}

customElements.define('confab-login', ConfabLogin);
customElements.define('confab-timeline', ConfabTimeline);
customElements.define('confab-chat', ConfabChat);
customElements.define('confab-app', ConfabApp);
