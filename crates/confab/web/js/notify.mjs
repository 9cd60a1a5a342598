// Desktop notifications for messages that mention this user (the Notification API). Shown when the
// user is not already reading that channel: the tab is hidden or unfocused, or another channel is open.

import { plain } from './markdown.mjs';

/** Whether the browser can notify and the user has not decided yet (offer the button then). */
export function canAsk(N = globalThis.Notification) {
  return Boolean(N) && N.permission === 'default';
}

export function ask(N = globalThis.Notification) {
  return N?.requestPermission?.() ?? Promise.resolve('denied');
}

/**
 * `onMention` for the app: notifies about message `m` in `channel` (a channel name, or a thread's
 * label); clicking the notification focuses the tab and calls `open(channel)`. `reading(channel, …)`
 * says whether that place is on screen (then a focused, visible tab needs no notification).
 */
export function mentionNotifier(chat, open, { N = globalThis.Notification, doc = globalThis.document, reading = (channel) => chat.current === channel } = {}) {
  return (channel, m, ...where) => {
    if (!N || N.permission !== 'granted') return;
    if (doc && !doc.hidden && doc.hasFocus() && reading(channel, m, ...where)) return;
    const body = plain(m.content ?? '', (id) => chat.emoji.get(id)?.name).slice(0, 120) || (m.attachments?.length ? '📎 attachment' : '');
    const n = new N(`${m.user} in #${channel}`, { body, tag: `confab:${m.id}` });
    n.onclick = () => {
      globalThis.focus?.();
      open(channel, ...where);
      n.close();
    };
  };
}
