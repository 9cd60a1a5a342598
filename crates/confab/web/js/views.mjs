// The app's custom elements. They draw what `Chat` (state.mjs) holds and turn clicks and keys into
// calls on the controller main.mjs gives them; no protocol logic lives here. Every piece of user data
// is set as text (dom.mjs), and state the tests look for is in `data-*` attributes.

import { el } from './dom.mjs';

const EMOJI = '👍';
const CONN_TEXT = { connecting: 'Connecting…', online: 'Online', offline: 'Reconnecting…', stopped: 'Disconnected' };

function time(ts) {
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Sign in / create account. */
class ConfabLogin extends HTMLElement {
  /**
   * `setup`: the first-run form, which creates the owner account (one button, mode 'setup').
   * @param {{message?: string, setup?: boolean, submit: (mode: string, user: string, pass: string) => Promise<void>}} o
   */
  show({ message = '', setup = false, submit }) {
    const error = el('p', { class: 'error', role: 'alert', text: message, hidden: !message });
    const buttons = setup
      ? [el('button', { type: 'submit', name: 'mode', value: 'setup', text: 'Create owner account' })]
      : [
        el('button', { type: 'submit', name: 'mode', value: 'login', text: 'Sign in' }),
        el('button', { type: 'submit', name: 'mode', value: 'register', class: 'secondary', text: 'Create account' }),
      ];
    const form = el(
      'form',
      { class: 'login-form', 'aria-label': setup ? 'Create the owner account' : 'Sign in', dataset: { mode: setup ? 'setup' : 'login' } },
      el('h1', { text: 'Confab' }),
      setup ? el('p', { class: 'intro', text: 'This server has no owner yet. Choose the owner account’s name and password.' }) : null,
      el('label', {}, 'Username', el('input', { name: 'username', autocomplete: 'username', required: true, minlength: 2, maxlength: 32 })),
      el('label', {}, 'Password', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
      error,
      el('div', { class: 'row' }, buttons),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const mode = ev.submitter?.value ?? 'login';
      const data = new FormData(form);
      for (const b of form.querySelectorAll('button')) b.disabled = true;
      try {
        await submit(mode, String(data.get('username')).trim(), String(data.get('password')));
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

/** The timeline of the open channel: keyed by message, keeps the reading position while it changes. */
class ConfabTimeline extends HTMLElement {
  connectedCallback() {
    this.list ??= this.appendChild(el('ol', { class: 'messages', 'aria-label': 'Messages' }));
    this.nodes = new WeakMap();
    this.shown = null;
    this.addEventListener('scroll', () => {
      if (this.scrollTop < 80) this.ctl?.chat.loadOlder();
    });
  }

  render(ctl) {
    this.ctl = ctl;
    const { chat } = ctl;
    const r = chat.current ? chat.room(chat.current) : null;
    const switched = this.shown !== chat.current;
    this.shown = chat.current;
    const atBottom = this.scrollHeight - this.scrollTop - this.clientHeight < 48;
    let anchor = null;
    let offset = 0;
    if (!atBottom && !switched) {
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
    for (const m of r?.messages ?? []) {
      let node = this.nodes.get(m);
      if (!node) {
        node = this.message(m, chat.me);
        this.nodes.set(m, node);
      }
      items.push(node);
    }
    for (const p of chat.pending()) items.push(this.pendingNode(p));
    this.list.replaceChildren(...items);
    this.dataset.channel = chat.current ?? '';
    this.dataset.loaded = String(Boolean(r?.loaded));
    if (atBottom || switched) this.scrollTop = this.scrollHeight;
    else if (anchor?.isConnected) this.scrollTop = anchor.offsetTop - offset;
    // A short first page leaves no scrollbar to pull older pages with.
    if (r?.loaded && this.scrollHeight <= this.clientHeight) chat.loadOlder();
  }

  message(m, me) {
    const { ctl } = this;
    const own = m.user === me;
    const reactions = Object.entries(m.reactions ?? {}).map(([emoji, users]) =>
      el('button', {
        class: users.includes(me) ? 'reaction mine' : 'reaction',
        dataset: { emoji },
        title: users.join(', '),
        onclick: () => ctl.chat.react(m.id, emoji),
      }, `${emoji} ${users.length}`),
    );
    return el(
      'li',
      { class: own ? 'msg own' : 'msg', dataset: { msgId: m.id, seq: String(m.seq ?? ''), state: 'sent', user: m.user } },
      el('div', { class: 'meta' },
        el('span', { class: 'author', text: m.user }),
        el('time', { text: time(m.timestamp) }),
        m.edited ? el('span', { class: 'edited', text: '(edited)' }) : null),
      el('p', { class: 'content', text: m.content }),
      reactions.length ? el('div', { class: 'reactions' }, reactions) : null,
      el('div', { class: 'actions' },
        el('button', { class: 'act react', title: 'React', 'aria-label': 'React', onclick: () => ctl.chat.react(m.id, EMOJI) }, EMOJI),
        own ? el('button', { class: 'act edit', text: 'Edit', onclick: () => ctl.editDialog(m) }) : null,
        own ? el('button', { class: 'act delete', text: 'Delete', onclick: () => ctl.chat.remove(m.id) }) : null),
    );
  }

  pendingNode(p) {
    const { chat } = this.ctl;
    return el(
      'li',
      { class: 'msg own', dataset: { nonce: p.nonce, state: p.state } },
      el('div', { class: 'meta' },
        el('span', { class: 'author', text: chat.me ?? '' }),
        el('span', { class: 'status', text: p.state === 'failed' ? `Not sent: ${p.error}` : 'Sending…' })),
      el('p', { class: 'content', text: p.content }),
      p.state === 'failed'
        ? el('div', { class: 'actions shown' },
          el('button', { class: 'act retry', text: 'Retry', onclick: () => chat.retry(p.nonce) }),
          el('button', { class: 'act discard', text: 'Discard', onclick: () => chat.discard(p.nonce) }))
        : null,
    );
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
    const send = () => {
      if (ctl.chat.post(input.value)) input.value = '';
      input.focus();
    };
    composer.addEventListener('submit', (ev) => {
      ev.preventDefault();
      send();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        send();
      }
    });
    input.addEventListener('input', () => ctl.chat.typing());
    this.input = input;
    const menu = el('button', { class: 'menu', 'aria-label': 'Channels', text: '#', onclick: () => this.classList.toggle('nav-open') });
    const me = el('span', { class: 'me', text: ctl.username });
    const logout = el('button', { class: 'logout secondary', text: 'Log out', onclick: () => ctl.logout() });
    this.replaceChildren(
      el('header', { class: 'bar' }, menu, this.server, this.heading, this.conn, me, logout),
      el('div', { class: 'body' },
        this.nav,
        el('main', { class: 'pane' }, this.notice, this.timeline, this.typing, composer)),
      this.editor(),
      this.audio,
    );
    this.tick = setInterval(() => this.renderTyping(), 1000);
    this.render();
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
      if (dialog.returnValue === 'save' && this.editing) this.ctl.chat.edit(this.editing, text.value);
      this.editing = null;
    });
    this.ctl.editDialog = (m) => {
      this.editing = m.id;
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
          'aria-current': current ? 'page' : null,
          onclick: () => {
            this.classList.remove('nav-open');
            this.ctl.open(c.name);
          },
        }, el('span', { class: 'name', text: `# ${c.display_name || c.name}` }),
        r.unread > 0 ? el('span', { class: 'badge', text: String(r.unread), 'aria-label': `${r.unread} unread` }) : null);
      }),
      this.voice,
    );
    this.voice.render(this.ctl.voice);
    this.audio.render(this.ctl.voice);
    this.notice.textContent = chat.notice ?? '';
    this.notice.hidden = !chat.notice;
    this.timeline.render(this.ctl);
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
