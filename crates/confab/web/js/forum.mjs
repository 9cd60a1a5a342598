// The forum view: a forum channel's threads (newest activity first) with a form to start one, or one
// thread's messages with a composer. Draws what `Threads` (threads.mjs) holds; messages and pending
// sends are drawn by message.mjs and the composer extended by composer.mjs, as in a channel, and
// scrolling up loads older pages.

import { enhanceComposer } from './composer.mjs';
import { el } from './dom.mjs';
import { mayOnMessages, renderMessage, renderPending } from './message.mjs';
import { dateTime as when, encodeEmoji, may } from './render.mjs';

export class ConfabForum extends HTMLElement {
  render(ctl) {
    const { threads, chat } = ctl;
    const open = threads.open;
    if (!open) return this.replaceChildren();
    this.dataset.forum = open.forum;
    this.dataset.thread = open.thread ?? '';
    if (open.thread) return this.renderThread(ctl);
    const forum = threads.forum(open.forum);
    const canCreate = forum && may(chat, open.forum, 'create_thread', forum.permissions);
    const name = el('input', { name: 'thread-name', maxlength: '100', required: true, placeholder: 'New thread title', 'aria-label': 'New thread title' });
    const form = canCreate
      ? el('form', { class: 'new-thread' }, name, el('button', { type: 'submit', text: 'Start thread' }))
      : null;
    form?.addEventListener('submit', (ev) => {
      ev.preventDefault();
      threads.create(open.forum, name.value);
      name.value = '';
    });
    const list = forum?.threads ?? [];
    this.show(
      el('div', { class: 'forum-head' }, el('h3', { text: `Threads in ${forum?.display_name || open.forum}` })),
      threads.error ? el('p', { class: 'error', role: 'alert', text: threads.error }) : null,
      form,
      el('ol', { class: 'thread-list', 'aria-label': 'Threads' },
        list.length
          ? list.map((t) => el('li', {},
            el('button', { type: 'button', class: 'thread', dataset: { threadId: t.id }, onclick: () => threads.openThread(t.id) },
              el('span', { class: 'thread-name', text: t.name }),
              el('span', { class: 'thread-meta', text: `by ${t.created_by} · ${when(t.last_message ?? t.created_at)}${t.locked ? ' · locked' : ''}` }))))
          : el('li', { class: 'note', text: 'No threads yet.' })),
    );
  }

  /** replaceChildren without the parts left out (null). */
  show(...parts) {
    this.replaceChildren(...parts.filter(Boolean));
  }

  /** The thread view's parts, kept across redraws so the draft, the reply bar and the reading
   * position survive live events. */
  threadParts(ctl) {
    if (this.parts) return this.parts;
    const { threads, chat } = ctl;
    const input = el('textarea', { name: 'content', rows: '1', 'aria-label': 'Thread message', maxlength: '2000' });
    const form = el('form', { class: 'composer thread-composer' }, input, el('button', { type: 'submit', text: 'Send' }));
    const extras = enhanceComposer(form, input, ctl, { attachments: false, polls: false });
    const send = () => {
      const { reply_to } = extras.extra();
      if (threads.post(encodeEmoji(chat, input.value, location.host), reply_to ? { reply_to } : {})) {
        input.value = '';
        extras.clear();
      }
      input.focus();
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      send();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.defaultPrevented) {
        ev.preventDefault();
        send();
      }
    });
    const list = el('ol', { class: 'messages thread-messages', 'aria-label': 'Thread messages' });
    const scroller = el('div', { class: 'thread-scroll' }, list);
    scroller.addEventListener('scroll', () => {
      if (scroller.scrollTop < 200) threads.loadOlder();
      if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 200) threads.loadNewer();
    });
    this.nodes = new WeakMap();
    this.parts = { input, form, extras, list, scroller, head: el('div', { class: 'forum-head' }), error: el('p', { class: 'error', role: 'alert' }) };
    return this.parts;
  }

  renderThread(ctl) {
    const { threads, chat } = ctl;
    const { input, form, extras, list, scroller, head, error } = this.threadParts(ctl);
    const id = threads.open.thread;
    const t = threads.thread(id);
    const switched = this.shown !== id || !head.isConnected;
    this.shown = id;
    if (switched) {
      this.replaceChildren(head, error, scroller, form);
      input.value = '';
      extras.clear();
    }
    head.replaceChildren(
      el('button', { type: 'button', class: 'secondary back', text: '← Threads', onclick: () => threads.openForum(threads.open.forum) }),
      el('h3', { text: t?.name ?? '' }));
    error.textContent = threads.error ?? '';
    error.hidden = !threads.error;
    input.placeholder = `Reply in ${t?.name ?? 'thread'}`;
    // Keep the message at the top of the view where it is while pages come and go around it; stay
    // at the bottom only while the window ends at the newest message.
    const stick = switched || (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48 && !this.hadNewer);
    this.hadNewer = threads.hasNewer;
    const anchor = stick ? null : [...list.children].find((c) => c.offsetTop + c.offsetHeight > scroller.scrollTop);
    const offset = anchor ? anchor.offsetTop - scroller.scrollTop : 0;
    const messages = threads.messages;
    const forum = threads.forum(threads.open.forum);
    const acts = {
      react: (msgId, emoji) => threads.react(msgId, emoji),
      reply: (m) => extras.reply(m),
      edit: (m) => ctl.editDialog(m, (content) => threads.edit(m.id, content)),
      remove: (msgId) => threads.remove(msgId),
      pin: null,
      may: mayOnMessages(chat, threads.open.forum, forum?.permissions ?? {}),
      jump: (msgId) => list.querySelector(`li[data-msg-id="${CSS.escape(msgId)}"]`)?.scrollIntoView({ block: 'center' }),
      time: when,
    };
    const items = [];
    if (messages == null) items.push(el('li', { class: 'note', text: 'Loading…' }));
    else if (threads.loadingOlder) items.push(el('li', { class: 'note', text: 'Loading older messages…' }));
    else if (!threads.hasOlder) items.push(el('li', { class: 'note thread-start', text: `This is the start of ${t?.name ?? 'the thread'}.` }));
    for (const m of messages ?? []) {
      let node = this.nodes.get(m);
      if (!node) this.nodes.set(m, (node = renderMessage(m, messages, chat, ctl, acts)));
      items.push(node);
    }
    if (threads.loadingNewer) items.push(el('li', { class: 'note', text: 'Loading newer messages…' }));
    if (!threads.hasNewer) for (const p of threads.pending()) items.push(renderPending(p, chat, threads));
    list.replaceChildren(...items);
    if (stick) scroller.scrollTop = scroller.scrollHeight;
    else if (anchor?.isConnected) scroller.scrollTop = anchor.offsetTop - offset;
    // A short first page leaves no scrollbar to pull older pages with.
    if (messages && scroller.scrollHeight <= scroller.clientHeight) threads.loadOlder() || threads.loadNewer();
  }
}

customElements.define('confab-forum', ConfabForum);
