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
 * `chat.onMention` for the app: notifies about message `m` in `channel`; clicking the notification
 * focuses the tab and opens the channel with `open(channel)`.
 */
export function mentionNotifier(chat, open, { N = globalThis.Notification, doc = globalThis.document } = {}) {
  return (channel, m) => {
    if (!N || N.permission !== 'granted') return;
    const reading = doc && !doc.hidden && doc.hasFocus() && chat.current === channel;
    if (reading) return;
    const body = plain(m.content ?? '', (id) => chat.emoji.get(id)?.name).slice(0, 120) || (m.attachments?.length ? '📎 attachment' : '');
    const n = new N(`${m.user} in #${channel}`, { body, tag: `confab:${m.id}` });
    n.onclick = () => {
      globalThis.focus?.();
      open(channel);
      n.close();
    };
  };
}
