// Forum channels and their threads (PROTOCOL §6.3): the forums from channels_get with their thread
// lists kept current by thread events, and the open thread's messages, posted with a nonce like
// channel messages (§7.4), replied to, reacted to, edited and deleted like them (state.mjs's helpers),
// with older and newer pages loaded on request, at most WINDOW messages held as in a channel. The
// newest page is refetched after a reconnect (`resume` covers channels only), so nothing is missed
// and, keyed by id, nothing shows twice. No DOM.

import { mentionsMe } from './markdown.mjs';
import { changed, randomNonce, reactCommand, WINDOW, withOlder } from './state.mjs';

/** Messages per thread page. */
export const THREAD_PAGE = 100;

export class Threads {
  /**
   * @param {object} o
   * @param {(frame: object) => boolean} o.send
   * @param {() => string} [o.nonce]
   * @param {(what: string) => void} [o.onChange]
   * @param {(where: string, message: object, threadId: string) => void} [o.onMention]  a live thread message that mentions this user
   */
  constructor({ send, nonce = randomNonce, onChange = () => {}, onMention = () => {} }) {
    Object.assign(this, { send, nonce, onChange, onMention });
    this.me = null;
    this.roles = [];
    /** Forum channels in display order: {name, display_name, permissions, threads: [thread, newest activity first]}. */
    this.forums = [];
    /** null, {forum} (its thread list) or {forum, thread} (a thread's messages). */
    this.open = null;
    /** Messages of the open thread, oldest first, or null while loading. */
    this.messages = null;
    /** Whether the open thread has messages before the oldest held / after the newest held (at most
     * WINDOW are held, as in a channel), and whether they are being fetched. */
    this.hasOlder = false;
    this.loadingOlder = false;
    this.hasNewer = false;
    this.loadingNewer = false;
    /** Sends in the open thread not yet echoed: {nonce, thread, content, extra, state, error}. */
    this.outbox = [];
    /** The name of a thread this user asked to create, to open it when it exists. */
    this.creating = null;
    this.error = null;
  }

  forum(name) {
    return this.forums.find((f) => f.name === name) ?? null;
  }

  thread(id) {
    for (const f of this.forums) {
      const t = f.threads.find((x) => x.id === id);
      if (t) return t;
    }
    return null;
  }

  handle(p) {
    switch (p.cmd) {
      case 'ready':
        this.me = p.user?.username ?? null;
        this.roles = p.user?.roles ?? [];
        if (this.open?.thread) this.load(this.open.thread);
        for (const e of this.outbox) if (e.state === 'pending') this.transmit(e);
        return;
      case 'channels_get':
        return this.setForums(p.val ?? []);
      case 'thread_create':
        if (p.thread) return this.upsert(p.thread, true);
        return;
      case 'thread_update':
      case 'thread_join':
      case 'thread_leave':
        if (p.thread) return this.upsert(p.thread, false);
        return;
      case 'thread_delete':
        for (const f of this.forums) f.threads = f.threads.filter((t) => t.id !== p.thread_id);
        if (this.open?.thread === p.thread_id) this.openForum(this.open.forum);
        return this.onChange('threads');
      case 'thread_messages':
        if (this.open?.thread !== p.thread_id) return;
        return this.page(p);
      case 'messages_around':
        if (p.listener !== 'thread-newer' || this.open?.thread !== p.thread_id) return;
        return this.newer(p);
      case 'error':
      case 'rate_limit':
        if (p.listener?.startsWith('thread')) {
          const error = p.cmd === 'rate_limit' ? 'Rate limited; try again' : p.val ?? 'Error';
          const e = this.outbox.find((x) => `thread-send:${x.nonce}` === p.listener);
          if (e) Object.assign(e, { state: 'failed', error });
          else this.error = error;
          if (p.listener === 'thread-older') this.loadingOlder = false;
          if (p.listener === 'thread-newer') this.loadingNewer = false;
          this.creating = null;
          return this.onChange('threads');
        }
        return;
      default:
        if (p.thread_id && p.cmd?.startsWith('message_')) return this.event(p);
    }
  }

  setForums(list) {
    const old = new Map(this.forums.map((f) => [f.name, f]));
    this.forums = list.filter((c) => c?.type === 'forum').map((c) => ({
      name: c.name,
      display_name: c.display_name ?? null,
      permissions: c.permissions ?? {},
      threads: sortThreads(Array.isArray(c.threads) ? c.threads : old.get(c.name)?.threads ?? []),
    }));
    if (this.open && !this.forum(this.open.forum)) this.close();
    this.onChange('threads');
  }

  upsert(thread, created) {
    const f = this.forum(thread.parent_channel);
    if (!f) return;
    const i = f.threads.findIndex((t) => t.id === thread.id);
    if (i >= 0) f.threads[i] = thread;
    else f.threads.push(thread);
    f.threads = sortThreads(f.threads);
    if (created && this.creating && thread.created_by === this.me && thread.name === this.creating) {
      this.creating = null;
      this.openThread(thread.id);
    }
    this.onChange('threads');
  }

  /** A page of the open thread: the newest (replacing what is held) or the one before the oldest held. */
  page(p) {
    const list = Array.isArray(p.messages) ? p.messages : [];
    if (p.listener === 'thread-older') {
      this.loadingOlder = false;
      if (!this.messages) return;
      this.messages = withOlder(list, this.messages);
      if (this.messages.length > WINDOW) {
        this.messages = this.messages.slice(0, WINDOW);
        this.hasNewer = true;
      }
    } else {
      this.messages = list.slice();
      Object.assign(this, { loadingOlder: false, hasNewer: false, loadingNewer: false });
    }
    this.hasOlder = list.length >= THREAD_PAGE;
    this.error = null;
    this.onChange('threads');
  }

  /** Asks for the page before the oldest message held; false when there is nothing to ask. */
  loadOlder() {
    const thread = this.open?.thread;
    if (!thread || !this.messages?.length || !this.hasOlder || this.loadingOlder) return false;
    this.loadingOlder = this.send({ cmd: 'thread_messages', thread_id: thread, start: this.messages[0].id, limit: THREAD_PAGE, listener: 'thread-older' });
    return this.loadingOlder;
  }

  /** The page after the newest message held (`messages_around` it): the window moves forward. */
  newer(p) {
    this.loadingNewer = false;
    if (!this.messages) return;
    const list = Array.isArray(p.messages) ? p.messages : [];
    const known = new Set(this.messages.map((m) => m.id));
    this.messages = this.messages.concat(list.filter((m) => !known.has(m.id)));
    // The answer holds the message asked around plus up to a page after it.
    this.hasNewer = list.length > THREAD_PAGE;
    if (this.messages.length > WINDOW) {
      this.messages = this.messages.slice(-WINDOW);
      this.hasOlder = true;
    }
    this.onChange('threads');
  }

  /** Asks for the page after the newest message held; false when the window already ends at the newest. */
  loadNewer() {
    const thread = this.open?.thread;
    if (!thread || !this.messages?.length || !this.hasNewer || this.loadingNewer) return false;
    this.loadingNewer = this.send({ cmd: 'messages_around', thread_id: thread, around: this.messages[this.messages.length - 1].id, bounds: { above: THREAD_PAGE, below: 0 }, listener: 'thread-newer' });
    return this.loadingNewer;
  }

  openForum(name) {
    this.open = { forum: name };
    this.messages = null;
    this.error = null;
    this.onChange('all');
  }

  openThread(id) {
    const t = this.thread(id);
    if (!t) return;
    this.open = { forum: t.parent_channel, thread: id };
    this.messages = null;
    Object.assign(this, { hasOlder: false, loadingOlder: false, hasNewer: false, loadingNewer: false });
    this.error = null;
    this.load(id);
    this.onChange('all');
  }

  load(id) {
    this.send({ cmd: 'thread_messages', thread_id: id, start: 0, limit: THREAD_PAGE, listener: 'thread-history' });
    this.send({ cmd: 'unreads_ack', thread_id: id, listener: 'thread-ack' });
  }

  close() {
    this.open = null;
    this.messages = null;
    this.onChange('all');
  }

  create(forum, name) {
    if (!name.trim()) return;
    this.creating = name.trim();
    this.send({ cmd: 'thread_create', channel: forum, name: this.creating, listener: 'thread-create' });
  }

  /** Sends `content` to the open thread; `extra` adds fields such as `reply_to`. */
  post(content, extra = {}) {
    const thread = this.open?.thread;
    if (!thread || !content.trim()) return null;
    const e = { nonce: this.nonce(), thread, content, extra, state: 'pending', error: null };
    this.outbox.push(e);
    this.transmit(e);
    this.onChange('threads');
    return e;
  }

  transmit(e) {
    return this.send({ cmd: 'message_new', thread_id: e.thread, channel: this.thread(e.thread)?.parent_channel, content: e.content, ...e.extra, nonce: e.nonce, listener: `thread-send:${e.nonce}` });
  }

  retry(nonce) {
    const e = this.outbox.find((x) => x.nonce === nonce);
    if (!e) return;
    Object.assign(e, { state: 'pending', error: null });
    this.transmit(e);
    this.onChange('threads');
  }

  discard(nonce) {
    this.outbox = this.outbox.filter((e) => e.nonce !== nonce);
    this.onChange('threads');
  }

  /** Adds `emoji` to a message of the open thread, or takes it back when this user already reacted with it. */
  react(id, emoji) {
    const m = this.messages?.find((x) => x.id === id);
    this.send({ cmd: reactCommand(m, emoji, this.me), id, emoji, thread_id: this.open?.thread, listener: 'thread-react' });
  }

  edit(id, content) {
    if (content.trim()) this.send({ cmd: 'message_edit', id, thread_id: this.open?.thread, content, listener: 'thread-edit' });
  }

  remove(id) {
    this.send({ cmd: 'message_delete', id, thread_id: this.open?.thread, listener: 'thread-delete' });
  }

  /** Unconfirmed sends in the open thread. */
  pending() {
    return this.outbox.filter((e) => e.thread === this.open?.thread);
  }

  event(p) {
    const m = p.message;
    if (p.cmd === 'message_new' && m?.nonce && m.user === this.me) this.outbox = this.outbox.filter((e) => e.nonce !== m.nonce);
    if (p.cmd === 'message_new') {
      const t = this.thread(p.thread_id);
      if (t && m) Object.assign(t, { last_message: m.timestamp, last_message_id: m.id });
      if (t && m && m.user !== this.me && !p.replay && mentionsMe(m, this.me, this.roles)) this.onMention(`${t.parent_channel} › ${t.name}`, m, t.id);
    }
    if (this.open?.thread !== p.thread_id || !this.messages) return this.onChange('threads');
    const i = this.messages.findIndex((x) => x.id === (m?.id ?? p.id));
    switch (p.cmd) {
      case 'message_new':
        // Past the window's end (the reader paged back): it comes with the newer pages.
        if (m && i < 0 && !this.hasNewer) this.messages.push(m);
        break;
      case 'message_edit':
      case 'message_react_add':
      case 'message_react_remove':
        if (i >= 0) this.messages[i] = changed(this.messages[i], p);
        break;
      case 'message_delete':
        if (i >= 0) this.messages.splice(i, 1);
        break;
    }
    this.onChange('threads');
  }
}

/** Threads with the latest activity first. */
function sortThreads(list) {
  return list.slice().sort((a, b) => (b.last_message ?? b.created_at ?? 0) - (a.last_message ?? a.created_at ?? 0));
}
