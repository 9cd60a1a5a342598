// The forum view: a forum channel's threads (newest activity first) with a form to start one, or one
// thread's messages with a composer. Draws what `Threads` (threads.mjs) holds; content goes through
// render.mjs like channel messages.

import { el } from './dom.mjs';
import { dateTime as when, may, renderAttachments, renderContent, renderEmbeds } from './render.mjs';

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

  renderThread(ctl) {
    const { threads, chat } = ctl;
    const t = threads.thread(threads.open.thread);
    const input = el('textarea', { name: 'content', rows: '1', placeholder: `Reply in ${t?.name ?? 'thread'}`, 'aria-label': 'Thread message', maxlength: '2000' });
    const form = el('form', { class: 'composer thread-composer' }, input, el('button', { type: 'submit', text: 'Send' }));
    const send = () => {
      if (threads.post(input.value)) input.value = '';
      input.focus();
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      send();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        send();
      }
    });
    const messages = threads.messages;
    const items = messages == null
      ? [el('li', { class: 'note', text: 'Loading…' })]
      : messages.map((m) => el('li', { class: m.user === chat.me ? 'msg own' : 'msg', dataset: { msgId: m.id, user: m.user, state: 'sent' } },
        el('div', { class: 'meta' }, el('span', { class: 'author', text: m.user }), el('time', { text: when(m.timestamp) }), m.edited ? el('span', { class: 'edited', text: '(edited)' }) : null),
        m.content ? el('div', { class: 'content' }, renderContent(m.content, chat)) : null,
        renderAttachments(m.attachments),
        renderEmbeds(m, chat, ctl)));
    for (const p of threads.pending()) {
      items.push(el('li', { class: 'msg own', dataset: { nonce: p.nonce, state: p.state } },
        el('div', { class: 'meta' }, el('span', { class: 'author', text: chat.me ?? '' }), el('span', { class: 'status', text: p.state === 'failed' ? `Not sent: ${p.error}` : 'Sending…' })),
        el('p', { class: 'content', text: p.content })));
    }
    const hadFocus = this.contains(document.activeElement) && document.activeElement.tagName === 'TEXTAREA';
    const draft = this.querySelector('.thread-composer textarea')?.value ?? '';
    const list = el('ol', { class: 'messages thread-messages', 'aria-label': 'Thread messages' }, items);
    const scroller = el('div', { class: 'thread-scroll' }, list);
    this.show(
      el('div', { class: 'forum-head' },
        el('button', { type: 'button', class: 'secondary back', text: '← Threads', onclick: () => threads.openForum(threads.open.forum) }),
        el('h3', { text: t?.name ?? '' })),
      threads.error ? el('p', { class: 'error', role: 'alert', text: threads.error }) : null,
      scroller,
      form,
    );
    input.value = draft;
    if (hadFocus) input.focus();
    scroller.scrollTop = scroller.scrollHeight;
  }
}

customElements.define('confab-forum', ConfabForum);
