// What the app knows about the chat, and the protocol rules that keep it right: per-channel `seq`
// bookkeeping, `resume` after a reconnect (PROTOCOL §7.2), the nonce outbox that re-sends without
// duplicating (§7.4), unread counts (§6.7), typing. No DOM and no socket: frames go out through the
// `send` function given to the constructor, packets come in through `handle`, and `onChange` tells
// the view to redraw. `node --test` drives it directly.

import { mentionsMe } from './markdown.mjs';

/** Messages per history page. */
export const PAGE = 50;
/** At most this many messages of a channel are held (and drawn) at once: paging further one way
 * drops the far end, so scrolling through any history keeps memory and DOM nodes flat. */
export const WINDOW = 250;
/** Messages each side of a message opened from search. */
const AROUND = 25;
/** How long a typing indicator lasts without a new `typing` event. */
export const TYPING_MS = 6000;
/** A burst of messages in the open channel is acknowledged once, this long after the last. */
const ACK_DELAY_MS = 500;
/** At most one `typing` frame this often. */
const TYPING_EVERY_MS = 3000;
/** Channel events that carry a `seq` and change a loaded timeline. */
const TIMELINE = new Set(['message_new', 'message_edit', 'message_delete', 'message_react_add', 'message_react_remove', 'message_pin', 'message_unpin']);
/** Poll packets: they carry the poll's whole current result, so they apply in any order. */
const POLL = new Set(['poll_vote', 'poll_vote_update', 'poll_end', 'poll_results']);

/** `page` (older messages, oldest first) before `messages`, leaving out any already there. */
export function withOlder(page, messages) {
  const known = new Set(messages.map((m) => m.id));
  return page.filter((m) => !known.has(m.id)).concat(messages);
}

/** `m` changed by a `message_edit` (`p`) or a `message_react_add` / `message_react_remove` event. */
export function changed(m, p) {
  if (p.cmd === 'message_edit') return { ...m, ...(p.message ?? {}), content: p.content ?? p.message?.content, edited: true };
  const reactions = { ...(m.reactions ?? {}) };
  const users = (reactions[p.emoji] ?? []).filter((u) => u !== p.from);
  if (p.cmd === 'message_react_add') users.push(p.from);
  if (users.length) reactions[p.emoji] = users;
  else delete reactions[p.emoji];
  return { ...m, reactions };
}

/** The command that toggles `me`'s `emoji` on `m`: takes it back when already there. */
export function reactCommand(m, emoji, me) {
  return m?.reactions?.[emoji]?.includes(me) ? 'message_react_remove' : 'message_react_add';
}

/** A random nonce (hex); `crypto.getRandomValues` exists on plain-HTTP pages too. */
export function randomNonce() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function newRoom(name) {
  return {
    name,
    /** Oldest first, ordered by `seq`. */
    messages: [],
    loaded: false,
    loading: false,
    hasOlder: true,
    loadingOlder: false,
    /** Newer messages exist past the window's end (the reader paged far back, or opened a search hit). */
    hasNewer: false,
    loadingNewer: false,
    /** Unread messages that mention this user: the server's `mention_count` [ext], then counted live. */
    mentions: 0,
    /** A message to scroll to and mark once drawn (a search hit or pin), or null. */
    focus: null,
    /** The last channel event applied; a resume starts here. */
    seq: 0,
    unread: 0,
    /** Live events held back while history or a resume is in flight, or null. */
    buffer: null,
    /** username → time the indicator ends. */
    typing: new Map(),
    error: null,
  };
}

export class Chat {
  /**
   * @param {object} o
   * @param {(frame: object) => boolean} o.send  false when the socket cannot take it now
   * @param {() => string} [o.nonce]
   * @param {() => number} [o.now]
   * @param {(what: string) => void} [o.onChange]
   * @param {{setTimeout: Function, clearTimeout: Function}} [o.timers]
   */
  constructor({ send, nonce = randomNonce, now = () => Date.now(), onChange = () => {}, timers = globalThis, onMention = () => {} }) {
    Object.assign(this, { send, nonce, now, onChange, timers });
    this.ackTimer = null;
    this.me = null;
    this.server = null;
    /** Text channels in display order. */
    this.channels = [];
    this.rooms = new Map();
    this.current = null;
    /** Sends not yet confirmed by their echo, in the order typed. */
    this.outbox = [];
    this.resuming = false;
    this.lastTyping = 0;
    /** The last error the server answered an action with, for the view to show. */
    this.notice = null;
    /** This user's roles (ready), for role mentions. */
    this.roles = [];
    /** Usernames (users_list, asked for by the first @ completion: it can be long) and role names, for @ completion. */
    this.users = [];
    this.roleNames = [];
    /** roles_list: name → {permissions, position, …}. */
    this.roleInfo = {};
    /** Custom emoji: id → {name, fileName}. */
    this.emoji = new Map();
    /** poll_id → latest results packet body ({results,total_votes,ended,…}). */
    this.polls = new Map();
    /** The side panel: null, {kind:'pins',channel,messages} or {kind:'search',channel,query,results}. */
    this.panel = null;
    /** Called with (channel, message) for a live message that mentions this user. */
    this.onMention = onMention;
  }

  room(name) {
    let r = this.rooms.get(name);
    if (!r) {
      r = newRoom(name);
      this.rooms.set(name, r);
    }
    return r;
  }

  handle(p) {
    switch (p.cmd) {
      case 'handshake':
        this.server = p.val?.server ?? null;
        return this.onChange('server');
      case 'ready':
        this.me = p.user?.username ?? null;
        this.roles = Array.isArray(p.user?.roles) ? p.user.roles : [];
        return this.ready();
      case 'channels_get':
        return this.setChannels(p.val ?? []);
      case 'unreads_get':
        return this.setUnreads(p.unreads ?? {});
      case 'unreads_count':
        if (p.channel && p.channel !== this.current) {
          this.counts(this.room(p.channel), p);
          this.onChange('channels');
        }
        return;
      case 'unreads_update':
        // Another tab of this user read (or un-read) a channel: ask for its count.
        if (p.channel && p.channel !== this.current) this.send({ cmd: 'unreads_count', channel: p.channel });
        return;
      case 'messages_get':
        return this.history(p);
      case 'messages_around':
        return this.around(p);
      case 'messages_pinned':
        if (this.panel?.kind === 'pins' && this.panel.channel === p.channel) this.panel.messages = p.messages ?? [];
        return this.onChange('panel');
      case 'messages_search':
        if (this.panel?.kind === 'search' && this.panel.channel === p.channel) Object.assign(this.panel, { results: p.results ?? [], busy: false });
        return this.onChange('panel');
      case 'users_list':
        this.users = (p.users ?? []).map((u) => u.username).filter(Boolean);
        return this.onChange('users');
      case 'roles_list':
        this.roleInfo = p.roles ?? {};
        this.roleNames = Object.keys(this.roleInfo);
        return;
      case 'emoji_get_all':
        this.emoji = new Map(Object.entries(p.emojis ?? {}).map(([id, e]) => [String(id), e]));
        return this.onChange('all');
      case 'emoji_add':
      case 'emoji_update':
        if (p.id != null) this.emoji.set(String(p.id), { name: p.name, fileName: p.fileName });
        return this.onChange('all');
      case 'emoji_delete':
        this.emoji.delete(String(p.id));
        return this.onChange('all');
      case 'resumed':
        return this.resumed(p);
      case 'typing':
        return this.typingEvent(p);
      case 'error':
      case 'rate_limit':
        return this.failed(p);
      default:
        if (TIMELINE.has(p.cmd)) return this.event(p);
        if (POLL.has(p.cmd) && p.poll_id && p.results) return this.pollResults(p);
    }
  }

  /** After every (re)connect: refetch what is not replayed, resume loaded channels, re-send. */
  ready() {
    this.send({ cmd: 'channels_get' });
    this.send({ cmd: 'unreads_get' });
    this.send({ cmd: 'roles_list' });
    this.send({ cmd: 'emoji_get_all' });
    for (const r of this.rooms.values()) {
      if (r.loading || r.loadingNewer) {
        r.loading = false;
        r.loadingNewer = false;
        r.buffer = null;
      }
      r.loadingOlder = false;
    }
    const loaded = [...this.rooms.values()].filter((r) => r.loaded);
    if (loaded.length) {
      this.resuming = true;
      for (const r of loaded) r.buffer = [];
      const channels = Object.fromEntries(loaded.map((r) => [r.name, r.seq]));
      this.send({ cmd: 'resume', channels, listener: 'resume' });
    } else {
      this.flushOutbox();
    }
    if (this.current) this.load(this.current);
    this.onChange('all');
  }

  setChannels(list) {
    this.channels = list.filter((c) => c && c.type === 'text').map((c) => ({ name: c.name, display_name: c.display_name ?? null, description: c.description ?? '', permissions: c.permissions ?? {} }));
    const names = new Set(this.channels.map((c) => c.name));
    for (const name of [...this.rooms.keys()]) if (!names.has(name)) this.rooms.delete(name);
    for (const c of this.channels) this.room(c.name);
    if (!this.current || !names.has(this.current)) {
      const first = names.has('general') ? 'general' : this.channels[0]?.name ?? null;
      if (first) this.open(first);
      else this.current = null;
    }
    this.onChange('channels');
  }

  setUnreads(unreads) {
    for (const [name, u] of Object.entries(unreads)) {
      if (name.startsWith('thread/') || !this.rooms.has(name)) continue;
      const r = this.room(name);
      if (name === this.current) Object.assign(r, { unread: 0, mentions: 0 });
      else this.counts(r, u ?? {});
    }
    this.onChange('channels');
  }

  /** Takes a channel's unread count, and its mention count where the server sends one (a Confab extension). */
  counts(r, u) {
    r.unread = u.unread_count ?? 0;
    if (typeof u.mention_count === 'number') r.mentions = u.mention_count;
  }

  /** Switches to a channel, loading its newest page (which also marks it read) the first time. */
  open(name) {
    this.current = name;
    this.notice = null;
    const r = this.room(name);
    if (r.loaded && r.unread > 0) this.send({ cmd: 'unreads_ack', channel: name });
    r.unread = 0;
    r.mentions = 0;
    if (this.panel && this.panel.channel !== name) this.panel = null;
    this.load(name);
    this.onChange('all');
  }

  load(name) {
    const r = this.room(name);
    if (r.loaded || r.loading) return;
    r.buffer = [];
    r.loading = this.send({ cmd: 'messages_get', channel: name, start: 0, limit: PAGE, listener: `hist:${name}` });
    if (!r.loading) r.buffer = null;
  }

  /** Asks for the page before the oldest loaded message; false when there is nothing to ask. */
  loadOlder(name = this.current) {
    const r = this.rooms.get(name);
    if (!r || !r.loaded || r.loadingOlder || !r.hasOlder || !r.messages.length) return false;
    const start = r.messages[0].id;
    r.loadingOlder = this.send({ cmd: 'messages_get', channel: name, start, limit: PAGE, listener: `older:${name}` });
    return r.loadingOlder;
  }

  /** Asks for the page after the newest message held; false when the window already ends at the newest. */
  loadNewer(name = this.current) {
    const r = this.rooms.get(name);
    if (!r || !r.loaded || r.loadingNewer || !r.hasNewer || !r.messages.length) return false;
    const around = r.messages[r.messages.length - 1].id;
    r.buffer ??= [];
    r.loadingNewer = this.send({ cmd: 'messages_around', channel: name, around, bounds: { above: PAGE, below: 0 }, listener: `newer:${name}` });
    if (!r.loadingNewer) r.buffer = null;
    return r.loadingNewer;
  }

  /** Opens `id` in `name` with the messages around it (a search hit or a pin), replacing the window. */
  jumpTo(name, id) {
    if (name !== this.current) this.open(name);
    const r = this.room(name);
    if (r.messages.some((m) => m.id === id)) {
      r.focus = id;
      return this.onChange('all');
    }
    r.focus = id;
    this.send({ cmd: 'messages_around', channel: name, around: id, bounds: { above: AROUND, below: AROUND }, listener: `jump:${name}` });
  }

  /** Back to the newest page after paging away from it. */
  jumpLatest(name = this.current) {
    const r = this.rooms.get(name);
    if (!r) return;
    Object.assign(r, { loaded: false, loading: false, loadingOlder: false, loadingNewer: false, buffer: null, hasNewer: false, focus: null });
    this.load(name);
    this.onChange('all');
  }

  around(p) {
    const listener = p.listener ?? '';
    const name = listener.slice(listener.indexOf(':') + 1);
    const r = this.rooms.get(name);
    if (!r) return;
    const messages = Array.isArray(p.messages) ? p.messages : [];
    if (listener.startsWith('jump:')) {
      const at = messages.findIndex((m) => m.id === r.focus);
      this.collectPolls(messages);
      r.messages = messages.slice();
      r.hasOlder = at >= AROUND;
      r.hasNewer = messages.length - at - 1 >= AROUND;
      r.loadingOlder = false;
    } else if (listener.startsWith('newer:')) {
      r.loadingNewer = false;
      const known = new Set(r.messages.map((m) => m.id));
      const fresh = messages.filter((m) => !known.has(m.id));
      this.collectPolls(fresh);
      r.messages = r.messages.concat(fresh);
      r.hasNewer = messages.length > PAGE;
      if (r.messages.length > WINDOW) {
        r.messages = r.messages.slice(-WINDOW);
        r.hasOlder = true;
      }
      this.release(r);
    }
    this.onChange('all');
  }

  history(p) {
    const r = this.room(p.channel);
    const messages = Array.isArray(p.messages) ? p.messages : [];
    if (p.listener?.startsWith('older:')) {
      this.collectPolls(messages);
      r.loadingOlder = false;
      r.messages = withOlder(messages, r.messages);
      r.hasOlder = messages.length >= PAGE;
      if (r.messages.length > WINDOW) {
        r.messages = r.messages.slice(0, WINDOW);
        r.hasNewer = true;
      }
      return this.onChange('messages');
    }
    this.collectPolls(messages);
    r.messages = messages.slice();
    r.hasNewer = false;
    r.seq = typeof p.seq === 'number' ? p.seq : Math.max(0, ...messages.map((m) => m.seq ?? 0));
    r.loaded = true;
    r.loading = false;
    r.error = null;
    r.hasOlder = messages.length >= PAGE;
    if (r.name === this.current) r.unread = 0;
    if (!this.resuming) this.release(r);
    this.onChange('all');
  }

  resumed(p) {
    this.resuming = false;
    const stale = new Set(p.stale ?? []);
    for (const name of p.unknown ?? []) {
      const r = this.rooms.get(name);
      if (r) Object.assign(r, { loaded: false, buffer: null, messages: [], seq: 0 });
    }
    for (const [name, seq] of Object.entries(p.channels ?? {})) {
      const r = this.rooms.get(name);
      if (!r) continue;
      if (stale.has(name)) {
        // Too far behind to replay: start again from the newest page.
        r.loaded = false;
        r.loading = false;
        this.load(name);
        continue;
      }
      r.seq = Math.max(r.seq, seq);
      this.release(r);
    }
    for (const r of this.rooms.values()) if (r.loaded && r.buffer) this.release(r);
    this.flushOutbox();
    this.onChange('all');
  }

  /** Applies the live events held back for `r`; those a page or a replay already covered drop out by seq. */
  release(r) {
    const held = r.buffer ?? [];
    r.buffer = null;
    for (const p of held) this.apply(r, p);
  }

  event(p) {
    if (p.thread_id) return; // threads are not shown yet
    if (p.cmd === 'message_new' && p.message?.nonce && p.message.user === this.me) this.confirm(p.message.nonce);
    const r = this.room(p.channel);
    if (!r.loaded) {
      if (r.buffer && !p.replay) r.buffer.push(p);
      else if (p.cmd === 'message_new' && !p.duplicate && p.message?.user !== this.me && !p.replay) {
        r.unread++;
        this.mentioned(r, p.message);
      }
      return this.onChange('channels');
    }
    // While a resume is in flight, live events of a resumed channel wait: the replay covers them.
    if (r.buffer && !p.replay) {
      r.buffer.push(p);
      return;
    }
    this.apply(r, p);
  }

  apply(r, p) {
    if (typeof p.seq === 'number') {
      if (p.seq <= r.seq) return;
      r.seq = p.seq;
    }
    const find = (id) => r.messages.findIndex((m) => m.id === id);
    switch (p.cmd) {
      case 'message_new': {
        const m = p.message;
        if (!m || find(m.id) >= 0) return;
        this.collectPolls([m]);
        // Past the window's end (the reader paged back): the message is fetched when they page forward.
        if (!r.hasNewer) {
          let i = r.messages.length;
          while (i > 0 && (r.messages[i - 1].seq ?? 0) > (m.seq ?? 0)) i--;
          r.messages.splice(i, 0, m);
          if (r.messages.length > WINDOW && i > 0) {
            r.messages.shift();
            r.hasOlder = true;
          }
        }
        r.typing.delete(m.user);
        // Someone who signed up after users_list: known from now on, for @ completion.
        if (m.user && !this.users.includes(m.user)) this.users.push(m.user);
        if (m.user !== this.me) {
          if (r.name === this.current) this.scheduleAck();
          else r.unread++;
          this.mentioned(r, m);
        }
        break;
      }
      case 'message_pin':
      case 'message_unpin': {
        const i = find(p.id);
        if (i >= 0) r.messages[i] = { ...r.messages[i], pinned: p.cmd === 'message_pin' };
        if (this.panel?.kind === 'pins' && this.panel.channel === r.name) this.send({ cmd: 'messages_pinned', channel: r.name });
        if (i < 0) return;
        break;
      }
      case 'message_edit': {
        const i = find(p.id);
        if (i < 0) return;
        r.messages[i] = changed(r.messages[i], p);
        break;
      }
      case 'message_delete': {
        const i = find(p.id);
        if (i >= 0) r.messages.splice(i, 1);
        break;
      }
      case 'message_react_add':
      case 'message_react_remove': {
        const i = find(p.id);
        if (i < 0) return;
        r.messages[i] = changed(r.messages[i], p);
        break;
      }
    }
    this.onChange(r.name === this.current ? 'all' : 'channels');
  }

  /** Counts and reports a message that mentions this user (not one of their own). */
  mentioned(r, m) {
    if (!m || m.user === this.me || !mentionsMe(m, this.me, this.roles)) return;
    if (r.name !== this.current) r.mentions++;
    this.onMention(r.name, m);
  }

  pollResults(p) {
    const old = this.polls.get(p.poll_id) ?? {};
    const next = { ...old, ...p.results };
    if (p.cmd === 'poll_end') next.ended = true;
    if (p.cmd === 'poll_vote' || (p.cmd === 'poll_vote_update' && p.user === this.me)) next.user_votes = p.option_ids ?? [];
    if (p.cmd === 'poll_results') next.user_votes = (p.results.results ?? []).filter((o) => o.voted).map((o) => o.id);
    this.polls.set(p.poll_id, next);
    this.onChange('all');
  }

  /** Remembers the results that history pages carry in their poll embeds. */
  collectPolls(messages) {
    for (const m of messages) {
      for (const e of m.embeds ?? []) {
        const poll = e?.type === 'poll' ? e.poll : null;
        if (poll?.id && poll.results && !this.polls.has(poll.id)) {
          this.polls.set(poll.id, { results: poll.results, total_votes: poll.total_votes, ended: poll.ended, user_votes: poll.user_votes });
        }
      }
    }
  }

  /** Marks the open channel read up to its newest message, once per burst (a replay can bring hundreds). */
  scheduleAck() {
    if (this.ackTimer) return;
    this.ackTimer = this.timers.setTimeout(() => {
      this.ackTimer = null;
      if (this.current) this.send({ cmd: 'unreads_ack', channel: this.current });
    }, ACK_DELAY_MS);
  }

  typingEvent(p) {
    if (p.thread_id || !p.channel || p.user === this.me) return;
    this.room(p.channel).typing.set(p.user, this.now() + TYPING_MS);
    this.onChange('typing');
  }

  /** Who is typing in `name` now. */
  typers(name = this.current) {
    const r = this.rooms.get(name);
    if (!r) return [];
    const now = this.now();
    for (const [u, until] of r.typing) if (until <= now) r.typing.delete(u);
    return [...r.typing.keys()].sort();
  }

  /** Queues a message for the current channel; it stays pending until its echo arrives. */
  /** `extra`: `reply_to` (an id) and `attachments` (`[{id,…}]` as uploaded; shown while pending). */
  post(content, extra = {}) {
    if (!this.current || (!content.trim() && !extra.attachments?.length)) return null;
    this.notice = null;
    if (this.room(this.current).hasNewer) this.jumpLatest();
    const entry = { nonce: this.nonce(), channel: this.current, content, extra, state: 'pending', error: null };
    this.outbox.push(entry);
    // The message ends this user's typing indicator on the other side; the next key starts a new one.
    this.lastTyping = 0;
    // Before `resumed` the frame would race the replay; flushOutbox sends it then.
    if (!this.resuming) this.transmit(entry);
    this.onChange('all');
    return entry;
  }

  transmit(e) {
    const { reply_to, attachments } = e.extra ?? {};
    return this.send({
      cmd: 'message_new', channel: e.channel, content: e.content, nonce: e.nonce, listener: `send:${e.nonce}`,
      ...(reply_to ? { reply_to } : {}),
      ...(attachments?.length ? { attachments: attachments.map((a) => ({ id: a.id })) } : {}),
    });
  }

  /** Re-sends every unconfirmed message with its original nonce: the server answers a repeat with the original. */
  flushOutbox() {
    for (const e of this.outbox) if (e.state === 'pending') this.transmit(e);
  }

  confirm(nonce) {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((e) => e.nonce !== nonce);
    if (this.outbox.length !== before) this.onChange('all');
  }

  retry(nonce) {
    const e = this.outbox.find((x) => x.nonce === nonce);
    if (!e) return;
    e.state = 'pending';
    e.error = null;
    this.transmit(e);
    this.onChange('all');
  }

  discard(nonce) {
    this.confirm(nonce);
  }

  /** Unconfirmed sends of `name`, for the timeline's tail. */
  pending(name = this.current) {
    return this.outbox.filter((e) => e.channel === name);
  }

  failed(p) {
    const listener = p.listener ?? '';
    if (listener.startsWith('thread')) return; // threads.mjs shows those
    if (listener === 'search' && this.panel?.kind === 'search') this.panel.results = [];
    if (listener.startsWith('send:')) {
      const e = this.outbox.find((x) => x.nonce === listener.slice(5));
      if (e) {
        e.state = 'failed';
        e.error = p.cmd === 'rate_limit' ? 'Rate limited; try again' : p.val;
      }
    } else if (listener.startsWith('hist:') || listener.startsWith('older:')) {
      const r = this.rooms.get(listener.slice(listener.indexOf(':') + 1));
      if (r) Object.assign(r, { loading: false, loadingOlder: false, buffer: null, error: p.val });
    } else if (p.cmd === 'error') {
      this.notice = p.val ?? 'Error';
    }
    this.onChange('all');
  }

  typing() {
    const now = this.now();
    if (!this.current || now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.send({ cmd: 'typing', channel: this.current });
  }

  edit(id, content) {
    if (content.trim()) this.send({ cmd: 'message_edit', id, channel: this.current, content, listener: 'edit' });
  }

  remove(id) {
    this.send({ cmd: 'message_delete', id, channel: this.current, listener: 'delete' });
  }

  /** Adds `emoji` to a message, or takes it back when this user already reacted with it. */
  react(id, emoji) {
    const m = this.room(this.current).messages.find((x) => x.id === id);
    this.send({ cmd: reactCommand(m, emoji, this.me), id, emoji, channel: this.current, listener: 'react' });
  }

  // Pins, search and polls: requests whose answers land in `panel` and `polls`.

  pin(id, pinned) {
    this.send({ cmd: pinned ? 'message_unpin' : 'message_pin', id, channel: this.current, listener: 'pin' });
  }

  showPins() {
    this.panel = { kind: 'pins', channel: this.current, messages: null };
    this.send({ cmd: 'messages_pinned', channel: this.current });
    this.onChange('panel');
  }

  search(query) {
    if (!query.trim()) return;
    this.panel = { kind: 'search', channel: this.current, query, results: null, busy: true };
    this.send({ cmd: 'messages_search', channel: this.current, query, listener: 'search' });
    this.onChange('panel');
  }

  closePanel() {
    this.panel = null;
    this.onChange('panel');
  }

  createPoll(question, options, allow_multiselect = false) {
    return this.send({ cmd: 'poll_create', channel: this.current, question, options, allow_multiselect, listener: 'poll' });
  }

  vote(poll_id, option_ids) {
    this.send({ cmd: 'poll_vote', poll_id, option_ids, listener: `vote:${poll_id}` });
  }

  endPoll(poll_id) {
    this.send({ cmd: 'poll_end', poll_id, listener: 'poll_end' });
  }
}
