// The side panel beside the timeline: search results and the channel's pinned messages. Clicking
// an entry opens that message in the timeline (messages_around, a fresh window around it).

import { el } from './dom.mjs';
import { plain } from './markdown.mjs';
import { dateTime as time } from './render.mjs';

export class ConfabPanel extends HTMLElement {
  connectedCallback() {
    this.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.chat?.closePanel();
    });
  }

  render(chat) {
    this.chat = chat;
    const p = chat.panel;
    this.hidden = !p;
    if (!p) return this.replaceChildren();
    const list = p.kind === 'pins' ? p.messages : p.results;
    const title = p.kind === 'pins' ? `Pinned in #${p.channel}` : `Search “${p.query}” in #${p.channel}`;
    const entries = list == null
      ? [el('li', { class: 'note', text: 'Loading…' })]
      : list.length === 0
        ? [el('li', { class: 'note', text: p.kind === 'pins' ? 'Nothing is pinned.' : 'No messages found.' })]
        : list.map((m) => el('li', {},
          el('button', {
            type: 'button',
            class: 'panel-hit',
            dataset: { msgId: m.id },
            onclick: () => {
              chat.jumpTo(p.channel, m.id);
              if (matchMedia('(max-width: 720px)').matches) chat.closePanel();
            },
          },
          el('span', { class: 'author', text: m.user }), ' ', el('time', { text: time(m.timestamp) }),
          el('span', { class: 'snippet', text: plain(m.content ?? '', (id) => chat.emoji.get(id)?.name).slice(0, 200) || '📎' }))));
    this.replaceChildren(
      el('div', { class: 'panel-head' },
        el('h3', { text: title }),
        el('button', { type: 'button', class: 'act close-panel', 'aria-label': 'Close panel', text: '✕', onclick: () => chat.closePanel() })),
      el('ol', { class: 'panel-list', dataset: { kind: p.kind } }, entries));
  }
}

customElements.define('confab-panel', ConfabPanel);
