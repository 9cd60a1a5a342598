// Builds the DOM of one message's body: content (markdown.mjs's tree, as text nodes and a few
// safe elements), the quoted reply, attachments, embeds, polls and reactions. URLs come only from
// safeUrl() or are paths on this server (attachments, emoji), and links open with
// rel="noopener noreferrer" in a new tab.

import { el } from './dom.mjs';
import { parse, safeUrl } from './markdown.mjs';

/** The reaction form the official client sends for a custom emoji. */
const REACTION_EMOJI_RE = /^originChats:\/\/[^/\s]+\/emojis\/(\d{1,18})$/;

export const emojiUrl = (id) => `/emojis/${encodeURIComponent(id)}`;

/** A message time with its date, for lists outside the timeline (search, pins, threads). */
export function dateTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' }) : '';
}

/** id of the custom emoji called `name`, or null. */
export function emojiId(chat, name) {
  for (const [id, e] of chat.emoji) if (e.name === name) return id;
  return null;
}

/** `:name:` of known custom emoji → the official client's inline form, so every client shows them. */
export function encodeEmoji(chat, text, host) {
  return text.replace(/:([A-Za-z0-9_]{1,64}):/g, (all, name) => {
    const id = emojiId(chat, name);
    return id ? `originChats:<emoji>//${host}/${id}` : all;
  });
}

function emojiImg(id, name) {
  return el('img', { class: 'emoji', src: emojiUrl(id), alt: `:${name ?? 'emoji'}:`, title: `:${name ?? 'emoji'}:`, dataset: { emojiId: id } });
}

function link(href, children) {
  return el('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' }, children);
}

/** The nodes of `text` rendered for `chat.me`. */
export function renderContent(text, chat) {
  const me = (chat.me ?? '').toLowerCase();
  const mine = new Set((chat.roles ?? []).map((r) => r.toLowerCase()));
  const build = (nodes) =>
    nodes.map((n) => {
      switch (n.t) {
        case 'text':
          return n.v;
        case 'b':
          return el('strong', {}, build(n.c));
        case 'i':
          return el('em', {}, build(n.c));
        case 's':
          return el('s', {}, build(n.c));
        case 'code':
          return el('code', { text: n.v });
        case 'pre':
          return el('pre', { dataset: n.lang ? { lang: n.lang } : {} }, el('code', { text: n.v }));
        case 'a':
          return link(n.href, build(n.c));
        case 'emoji':
          return emojiImg(n.id, chat.emoji.get(n.id)?.name);
        case 'shortcode': {
          const id = emojiId(chat, n.name);
          return id ? emojiImg(id, n.name) : `:${n.name}:`;
        }
        case 'mention': {
          const self = n.role ? mine.has(n.name.toLowerCase()) : n.name.toLowerCase() === me;
          return el('span', { class: self ? 'mention me' : 'mention' }, `@${n.role ? '&' : ''}${n.name}`);
        }
        default:
          return '';
      }
    });
  return build(parse(text));
}

/** A reaction's emoji: Unicode as text, custom emoji (`originChats://…/emojis/<id>` or `:name:`) as images. */
export function renderReactionEmoji(emoji, chat) {
  const byUrl = REACTION_EMOJI_RE.exec(emoji);
  if (byUrl) return emojiImg(byUrl[1], chat.emoji.get(byUrl[1])?.name);
  const code = /^:([A-Za-z0-9_]{1,64}):$/.exec(emoji);
  const id = code && emojiId(chat, code[1]);
  return id ? emojiImg(id, code[1]) : emoji;
}

/** This server's path for an attachment (its `url` may name a public host the CSP does not allow). */
function attachmentPath(a) {
  return `/attachments/${encodeURIComponent(a.id)}`;
}

function size(n) {
  if (!(n >= 0)) return '';
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

export function renderAttachments(list) {
  if (!Array.isArray(list) || !list.length) return null;
  return el('div', { class: 'attachments' }, list.map((a) => {
    const src = attachmentPath(a);
    const type = String(a.mime_type ?? '');
    const dataset = { attachmentId: a.id, mime: type };
    if (type.startsWith('image/')) {
      return link(src, el('img', { class: 'attachment image', src, alt: a.name ?? 'image', loading: 'lazy', width: a.width, height: a.height, dataset }));
    }
    if (type.startsWith('video/')) return el('video', { class: 'attachment video', src, controls: true, preload: 'metadata', dataset });
    if (type.startsWith('audio/')) return el('audio', { class: 'attachment audio', src, controls: true, preload: 'metadata', dataset });
    return el('a', { class: 'attachment file', href: src, download: a.name ?? '', dataset }, `📎 ${a.name ?? 'file'}`, el('span', { class: 'size', text: size(a.size) }));
  }));
}

/** Rich/link embeds: title (a link when its URL is safe), description as content, fields, footer. */
function renderEmbed(e, chat) {
  const url = e.url ? safeUrl(e.url) : null;
  const image = e.image?.url ? safeUrl(e.image.url) : null;
  const color = Number.isInteger(e.color) ? `#${e.color.toString(16).padStart(6, '0')}` : null;
  const box = el('div', { class: 'embed', dataset: { type: e.type ?? 'rich' } },
    e.author?.name ? el('div', { class: 'embed-author', text: e.author.name }) : null,
    e.title ? el('div', { class: 'embed-title' }, url ? link(url, e.title) : e.title) : null,
    e.description ? el('div', { class: 'embed-description' }, renderContent(e.description, chat)) : null,
    Array.isArray(e.fields) && e.fields.length
      ? el('dl', { class: 'embed-fields' }, e.fields.flatMap((f) => [el('dt', { text: f.name ?? '' }), el('dd', {}, renderContent(String(f.value ?? ''), chat))]))
      : null,
    image ? el('div', { class: 'embed-image' }, link(image, image)) : null,
    e.footer?.text ? el('div', { class: 'embed-footer', text: e.footer.text }) : null);
  if (color) box.style.borderLeftColor = color;
  return box;
}

/** A poll: options as vote buttons with counts and bars, the total, and its ended state. */
export function renderPoll(poll, state, chat, ctl, author) {
  const results = new Map((state?.results ?? poll.results ?? []).map((o) => [o.id, o]));
  const total = state?.total_votes ?? poll.total_votes ?? 0;
  const ended = Boolean(state?.ended ?? poll.ended) || (poll.expires_at && poll.expires_at * 1000 < Date.now());
  const mine = new Set(state?.user_votes ?? poll.user_votes ?? []);
  const options = (poll.options ?? []).map((o) => {
    const votes = results.get(o.id)?.votes ?? 0;
    const pct = total ? Math.round((votes / total) * 100) : 0;
    const choose = () => {
      if (poll.allow_multiselect) {
        const next = new Set(mine);
        if (next.has(o.id)) next.delete(o.id);
        else next.add(o.id);
        chat.vote(poll.id, [...next]);
      } else chat.vote(poll.id, [o.id]);
    };
    const bar = el('span', { class: 'bar' });
    bar.style.width = `${pct}%`;
    return el('button', {
      class: mine.has(o.id) ? 'poll-option voted' : 'poll-option',
      type: 'button',
      disabled: ended,
      'aria-pressed': String(mine.has(o.id)),
      dataset: { optionId: o.id, votes: String(votes) },
      onclick: choose,
    }, bar, el('span', { class: 'label' }, o.emoji ? `${o.emoji} ` : '', o.text ?? ''), el('span', { class: 'count', text: `${votes}` }));
  });
  return el('div', { class: 'poll', dataset: { pollId: poll.id, ended: String(ended), total: String(total) } },
    el('div', { class: 'poll-question', text: poll.question ?? '' }),
    el('div', { class: 'poll-options', role: 'group', 'aria-label': poll.question ?? 'Poll' }, options),
    el('div', { class: 'poll-footer' },
      el('span', { class: 'poll-total', text: `${total} vote${total === 1 ? '' : 's'}` }),
      poll.allow_multiselect ? el('span', { text: ' · choose any' }) : null,
      ended ? el('span', { class: 'poll-ended', text: ' · Poll ended' }) : null,
      !ended && author === chat.me ? el('button', { class: 'act poll-end', type: 'button', text: 'End poll', onclick: () => chat.endPoll(poll.id) }) : null));
}

export function renderEmbeds(m, chat, ctl) {
  const list = Array.isArray(m.embeds) ? m.embeds : [];
  if (!list.length) return null;
  return list.map((e) => (e?.type === 'poll' && e.poll?.id ? renderPoll(e.poll, chat.polls.get(e.poll.id), chat, ctl, m.user) : renderEmbed(e ?? {}, chat)));
}

/** The quoted line above a reply; clicking it opens the original (`jump(id)`). */
export function renderReply(m, messages, jump) {
  if (!m.reply_to?.id) return null;
  const orig = messages.find((x) => x.id === m.reply_to.id);
  const snippet = orig ? (orig.content || (orig.attachments?.length ? '📎 attachment' : '')).slice(0, 120) : 'original message';
  return el('button', {
    class: 'reply-quote',
    type: 'button',
    dataset: { replyTo: m.reply_to.id },
    onclick: () => jump(m.reply_to.id),
  }, el('span', { class: 'reply-author', text: `↪ @${m.reply_to.user ?? orig?.user ?? ''}` }), ' ', el('span', { class: 'reply-text', text: snippet }));
}

/** Whether this user may use channel permission `key` in `channel` (PROTOCOL §5.5), for what to offer;
 * `permissions` for a channel `chat.channels` does not hold (a forum). */
export function may(chat, channel, key, permissions = chat.channels.find((c) => c.name === channel)?.permissions) {
  const roles = chat.roles ?? [];
  if (roles.includes('owner')) return true;
  const info = chat.roleInfo ?? {};
  if (roles.some((r) => (info[r]?.permissions ?? []).includes('administrator'))) return true;
  const defaults = { view: ['owner'], send: ['owner'], delete: ['owner'], pin: ['owner'], create_thread: ['owner'], delete_own: ['user'], edit_own: ['user'], react: ['user'] };
  const list = permissions?.[key] ?? defaults[key] ?? [];
  if ((key === 'pin' || key === 'delete') && roles.some((r) => (info[r]?.permissions ?? []).includes('manage_messages'))) return true;
  for (const r of roles) {
    if (list.includes(`!${r}`)) return false;
    if (list.includes(r)) return true;
  }
  return false;
}
