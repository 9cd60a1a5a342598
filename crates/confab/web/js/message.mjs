// One message of a timeline — a channel's (views.mjs) or a forum thread's (forum.mjs) — with the
// actions this user may take on it, and one unconfirmed send. The timeline says where the message
// lives through `acts`; what is not allowed is not offered.

import { el } from './dom.mjs';
import { emojiGrid } from './composer.mjs';
import { mentionsMe } from './markdown.mjs';
import { may, renderAttachments, renderContent, renderEmbeds, renderReactionEmoji, renderReply } from './render.mjs';

const EMOJI = '👍';

/**
 * @typedef {object} MessageActs
 * @property {(id: string, emoji: string) => void} react
 * @property {(m: object) => void} reply
 * @property {(m: object) => void} edit  opens the edit dialog
 * @property {(id: string) => void} remove
 * @property {((m: object) => void)|null} pin  null where this user may not pin
 * @property {{react: boolean, edit: boolean, deleteOwn: boolean, deleteAny: boolean}} may
 * @property {(id: string) => void} jump  shows the original of a reply
 * @property {(ts: number) => string} time
 */

/** The list item of confirmed message `m` of `messages` (the replies' originals are looked up there). */
export function renderMessage(m, messages, chat, ctl, acts) {
  const me = chat.me;
  const own = m.user === me;
  const reactions = Object.entries(m.reactions ?? {}).map(([emoji, users]) =>
    el('button', {
      class: users.includes(me) ? 'reaction mine' : 'reaction',
      dataset: { emoji },
      title: users.join(', '),
      'aria-pressed': String(users.includes(me)),
      disabled: !acts.may.react,
      onclick: () => acts.react(m.id, emoji),
    }, renderReactionEmoji(emoji, chat), ` ${users.length}`),
  );
  const classes = ['msg'];
  if (own) classes.push('own');
  if (!own && mentionsMe(m, me, chat.roles)) classes.push('mentioned');
  const li = el(
    'li',
    { class: classes.join(' '), dataset: { msgId: m.id, seq: String(m.seq ?? ''), state: 'sent', user: m.user, pinned: String(Boolean(m.pinned)) } },
    renderReply(m, messages, acts.jump),
    el('div', { class: 'meta' },
      el('span', { class: 'author', text: m.user }),
      el('time', { text: acts.time(m.timestamp) }),
      m.edited ? el('span', { class: 'edited', text: '(edited)' }) : null,
      m.pinned ? el('span', { class: 'pinned', text: '📌 pinned' }) : null),
    m.content ? el('div', { class: 'content' }, renderContent(m.content, chat)) : null,
    renderAttachments(m.attachments),
    renderEmbeds(m, chat, ctl),
    reactions.length ? el('div', { class: 'reactions' }, reactions) : null,
  );
  const picker = el('div', { class: 'react-picker', hidden: true });
  const canDelete = own ? acts.may.deleteOwn : acts.may.deleteAny;
  li.append(picker, el('div', { class: 'actions' },
    acts.may.react ? el('button', { class: 'act react', title: 'React', 'aria-label': 'React', onclick: () => acts.react(m.id, EMOJI) }, EMOJI) : null,
    acts.may.react ? el('button', { class: 'act react-more', title: 'More reactions', 'aria-label': 'More reactions', text: '+', onclick: () => {
      picker.hidden = !picker.hidden;
      if (picker.hidden) return;
      const host = location.host;
      picker.replaceChildren(emojiGrid(chat, (e) => {
        picker.hidden = true;
        acts.react(m.id, e.custom ? `originChats://${host}/emojis/${e.id}` : e.text);
      }));
      picker.querySelector('button')?.focus();
    } }) : null,
    el('button', { class: 'act reply', text: 'Reply', onclick: () => acts.reply(m) }),
    acts.pin ? el('button', { class: 'act pin', text: m.pinned ? 'Unpin' : 'Pin', onclick: () => acts.pin(m) }) : null,
    own && acts.may.edit ? el('button', { class: 'act edit', text: 'Edit', onclick: () => acts.edit(m) }) : null,
    canDelete ? el('button', { class: 'act delete', text: 'Delete', onclick: () => acts.remove(m.id) }) : null));
  return li;
}

/** The list item of unconfirmed send `p`; `outbox` retries or discards it. */
export function renderPending(p, chat, outbox) {
  return el(
    'li',
    { class: 'msg own', dataset: { nonce: p.nonce, state: p.state } },
    el('div', { class: 'meta' },
      el('span', { class: 'author', text: chat.me ?? '' }),
      el('span', { class: 'status', text: p.state === 'failed' ? `Not sent: ${p.error}` : 'Sending…' })),
    el('p', { class: 'content', text: p.content }),
    p.extra?.attachments?.length ? el('p', { class: 'note', text: p.extra.attachments.map((a) => `📎 ${a.name}`).join(' ') }) : null,
    p.state === 'failed'
      ? el('div', { class: 'actions shown' },
        el('button', { class: 'act retry', text: 'Retry', onclick: () => outbox.retry(p.nonce) }),
        el('button', { class: 'act discard', text: 'Discard', onclick: () => outbox.discard(p.nonce) }))
      : null,
  );
}

/** What this user may do to messages in `channel` (forums pass their `permissions`). */
export function mayOnMessages(chat, channel, permissions) {
  return {
    react: may(chat, channel, 'react', permissions),
    edit: may(chat, channel, 'edit_own', permissions),
    deleteOwn: may(chat, channel, 'delete_own', permissions),
    deleteAny: may(chat, channel, 'delete', permissions),
  };
}
