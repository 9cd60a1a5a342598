// What the composer gains beyond a text box: the reply bar, attachments (button, paste and drop;
// uploaded at once over HTTP with the access token, PROTOCOL §3.6), the emoji picker, the poll
// dialog, and completion of `@user`, `@&role` and `:emoji:` as the user types.

import { el } from './dom.mjs';
import { emojiUrl } from './render.mjs';

/** A few Unicode emoji for the picker and quick reactions. */
export const UNICODE_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '👀', '✅', '🔥', '🙏'];
const MAX_SUGGESTIONS = 8;

/** The word being completed before the caret: `{kind:'user'|'role'|'emoji', query, start}` or null. */
export function completionAt(text, caret) {
  const before = text.slice(0, caret);
  let m = /(^|[^A-Za-z0-9])@(&?)([A-Za-z0-9_-]*)$/.exec(before);
  if (m) return { kind: m[2] ? 'role' : 'user', query: m[3], start: caret - m[3].length - 1 - m[2].length };
  m = /(^|\s):([A-Za-z0-9_]{1,64})$/.exec(before);
  if (m) return { kind: 'emoji', query: m[2], start: caret - m[2].length - 1 };
  return null;
}

/** Candidates for a completion, best first: prefix matches, then substring matches, each alphabetical. */
export function suggest(chat, c) {
  const q = c.query.toLowerCase();
  const rank = (unsorted) => {
    const names = unsorted.slice().sort((a, b) => a.localeCompare(b, undefined, { sensitivity: 'base' }));
    const pre = names.filter((n) => n.toLowerCase().startsWith(q));
    const mid = names.filter((n) => !n.toLowerCase().startsWith(q) && n.toLowerCase().includes(q));
    return [...pre, ...mid].slice(0, MAX_SUGGESTIONS);
  };
  if (c.kind === 'user') return rank(chat.users.filter((u) => u !== chat.me)).map((u) => ({ label: `@${u}`, insert: `@${u} ` }));
  if (c.kind === 'role') return rank(chat.roleNames).map((r) => ({ label: `@&${r}`, insert: `@&${r} ` }));
  const byName = new Map([...chat.emoji].map(([id, e]) => [e.name, id]));
  return rank([...byName.keys()]).map((n) => ({ label: `:${n}:`, insert: `:${n}: `, emoji: byName.get(n) }));
}

function fileToDataUrl(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

/**
 * Adds the extras to the composer `form` (holding `input`). `ctl.token()` gives an access token.
 * `attachments` and `polls` false leave those out (a thread's composer). Returns `{extra(), clear(), reply(m), busy(), dialogs}`: the send path's hooks, and the dialogs to
 * place outside the form.
 */
export function enhanceComposer(form, input, ctl, { attachments = true, polls = true } = {}) {
  const chat = ctl.chat;
  let replyTo = null;
  /** {file, state: 'uploading'|'ready'|'failed', attachment?, error?} */
  let uploads = [];

  const replyBar = el('div', { class: 'reply-bar', hidden: true });
  const chips = el('ul', { class: 'uploads', 'aria-label': 'Attachments', hidden: true });
  const list = el('ul', { class: 'suggest', role: 'listbox', 'aria-label': 'Suggestions', hidden: true });
  const picker = el('div', { class: 'picker', role: 'dialog', 'aria-label': 'Emoji', hidden: true });
  const fileInput = el('input', { type: 'file', multiple: true, hidden: true, class: 'file-input' });
  const attach = el('button', { type: 'button', class: 'secondary tool attach', title: 'Attach files', 'aria-label': 'Attach files', text: '📎', onclick: () => fileInput.click() });
  const emojiBtn = el('button', { type: 'button', class: 'secondary tool emoji-button', title: 'Emoji', 'aria-label': 'Emoji', text: '🙂', onclick: () => togglePicker() });
  const pollBtn = el('button', { type: 'button', class: 'secondary tool poll-button', title: 'New poll', 'aria-label': 'New poll', text: '📊', onclick: () => pollDialog.open() });
  const pollDialog = makePollDialog(chat);
  form.prepend(el('div', { class: 'composer-top' }, replyBar, chips, list, picker));
  input.before(el('div', { class: 'tools' }, attachments ? attach : null, emojiBtn, polls ? pollBtn : null));
  form.append(fileInput);

  const drawReply = () => {
    replyBar.hidden = !replyTo;
    replyBar.replaceChildren(...(replyTo
      ? [el('span', { text: `Replying to @${replyTo.user}: ` }), el('span', { class: 'reply-text', text: (replyTo.content ?? '').slice(0, 80) }),
        el('button', { type: 'button', class: 'act cancel-reply', 'aria-label': 'Cancel reply', text: '✕', onclick: () => setReply(null) })]
      : []));
  };
  const setReply = (m) => {
    replyTo = m;
    drawReply();
    input.focus();
  };

  const drawUploads = () => {
    chips.hidden = uploads.length === 0;
    chips.replaceChildren(...uploads.map((u) => el('li', { class: 'upload', dataset: { state: u.state } },
      el('span', { text: u.file.name }),
      el('span', { class: 'upload-state', text: u.state === 'uploading' ? ' uploading…' : u.state === 'failed' ? ` failed: ${u.error}` : ' ✓' }),
      el('button', { type: 'button', class: 'act', 'aria-label': `Remove ${u.file.name}`, text: '✕', onclick: () => {
        uploads = uploads.filter((x) => x !== u);
        drawUploads();
      } }))));
  };
  const upload = async (file) => {
    const u = { file, state: 'uploading' };
    uploads.push(u);
    drawUploads();
    try {
      const token = await ctl.token();
      const body = JSON.stringify({ file: await fileToDataUrl(file), name: file.name || 'pasted', mime_type: file.type || 'application/octet-stream', channel: chat.current });
      const r = await fetch('/attachments/upload', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body });
      const reply = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(reply.error ?? `HTTP ${r.status}`);
      Object.assign(u, { state: 'ready', attachment: reply.attachment });
    } catch (e) {
      Object.assign(u, { state: 'failed', error: e.message });
    }
    drawUploads();
  };
  const addFiles = (files) => {
    for (const f of files) upload(f);
  };
  fileInput.addEventListener('change', () => {
    addFiles([...fileInput.files]);
    fileInput.value = '';
  });
  input.addEventListener('paste', (ev) => {
    const files = [...(ev.clipboardData?.files ?? [])];
    if (files.length) {
      ev.preventDefault();
      addFiles(files);
    }
  });
  form.addEventListener('dragover', (ev) => {
    if (ev.dataTransfer?.types?.includes('Files')) ev.preventDefault();
  });
  form.addEventListener('drop', (ev) => {
    const files = [...(ev.dataTransfer?.files ?? [])];
    if (files.length) {
      ev.preventDefault();
      addFiles(files);
    }
  });

  // Completion.
  let items = [];
  let active = 0;
  let at = null;
  const closeList = () => {
    list.hidden = true;
    items = [];
    at = null;
    input.removeAttribute('aria-activedescendant');
  };
  const drawList = () => {
    list.hidden = items.length === 0;
    list.replaceChildren(...items.map((s, i) => el('li', {
      id: `suggest-${i}`,
      role: 'option',
      class: i === active ? 'active' : '',
      'aria-selected': String(i === active),
      onmousedown: (ev) => {
        ev.preventDefault();
        accept(i);
      },
    }, s.emoji ? el('img', { class: 'emoji', src: emojiUrl(s.emoji), alt: '' }) : null, s.label)));
    if (items.length) input.setAttribute('aria-activedescendant', `suggest-${active}`);
  };
  const accept = (i) => {
    const s = items[i];
    if (!s || !at) return;
    const caret = input.selectionStart;
    input.value = input.value.slice(0, at.start) + s.insert + input.value.slice(caret);
    const pos = at.start + s.insert.length;
    input.setSelectionRange(pos, pos);
    closeList();
    input.focus();
  };
  let listedAt = 0;
  input.addEventListener('input', () => {
    at = completionAt(input.value, input.selectionStart);
    // The member list is fetched when a completion first needs it (it can be long), and refreshed at most once a minute.
    if (at?.kind === 'user' && Date.now() - listedAt > 60_000) {
      listedAt = Date.now();
      chat.send({ cmd: 'users_list' });
    }
    items = at ? suggest(chat, at) : [];
    active = 0;
    drawList();
  });
  input.addEventListener('blur', () => setTimeout(closeList, 150));
  // Capture phase on the form: runs before the composer's own Enter-to-send.
  form.addEventListener('keydown', (ev) => {
    if (ev.target !== input) return;
    if (!list.hidden && items.length) {
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        active = (active + (ev.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
        drawList();
      } else if (ev.key === 'Enter' || ev.key === 'Tab') {
        accept(active);
      } else if (ev.key === 'Escape') {
        closeList();
      } else return;
      ev.preventDefault();
      ev.stopImmediatePropagation();
    } else if (ev.key === 'Escape' && replyTo) {
      setReply(null);
      ev.preventDefault();
    }
  }, true);

  // Emoji picker: Unicode and this server's custom emoji; inserts at the caret.
  const insert = (text) => {
    const s = input.selectionStart ?? input.value.length;
    input.value = input.value.slice(0, s) + text + input.value.slice(input.selectionEnd ?? s);
    input.setSelectionRange(s + text.length, s + text.length);
    input.focus();
  };
  const togglePicker = () => {
    if (!picker.hidden) {
      picker.hidden = true;
      return;
    }
    picker.replaceChildren(emojiGrid(chat, (e) => {
      picker.hidden = true;
      insert(e.custom ? `:${e.name}: ` : e.text);
    }));
    picker.hidden = false;
    picker.querySelector('button')?.focus();
  };
  picker.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      picker.hidden = true;
      emojiBtn.focus();
    }
  });

  return {
    dialogs: polls ? [pollDialog.dialog] : [],
    /** Redraws an open completion whose candidates changed (the member list arrived). */
    refresh() {
      if (!at || document.activeElement !== input) return;
      const next = suggest(chat, at);
      if (next.map((s) => s.label).join() === items.map((s) => s.label).join()) return;
      items = next;
      active = Math.min(active, Math.max(0, items.length - 1));
      drawList();
    },
    reply: setReply,
    /** Whether an upload is still running (sending waits for it). */
    busy: () => uploads.some((u) => u.state === 'uploading'),
    extra: () => ({
      ...(replyTo ? { reply_to: replyTo.id } : {}),
      attachments: uploads.filter((u) => u.state === 'ready').map((u) => u.attachment),
    }),
    clear() {
      uploads = [];
      drawUploads();
      setReply(null);
      closeList();
    },
  };
}

/** A grid of emoji buttons; `pick({text} | {custom, id, name})`. */
export function emojiGrid(chat, pick) {
  const custom = [...chat.emoji].map(([id, e]) =>
    el('button', { type: 'button', class: 'emoji-choice', title: `:${e.name}:`, 'aria-label': `:${e.name}:`, dataset: { emojiName: e.name }, onclick: () => pick({ custom: true, id, name: e.name }) },
      el('img', { class: 'emoji', src: emojiUrl(id), alt: `:${e.name}:` })));
  const unicode = UNICODE_EMOJI.map((e) => el('button', { type: 'button', class: 'emoji-choice', 'aria-label': e, text: e, onclick: () => pick({ text: e }) }));
  return el('div', { class: 'emoji-grid' }, unicode, custom);
}

function makePollDialog(chat) {
  const question = el('input', { name: 'question', maxlength: '300', required: true, 'aria-label': 'Question', placeholder: 'Question' });
  const options = el('div', { class: 'poll-inputs' });
  const addOption = () => {
    if (options.children.length >= 10) return;
    options.append(el('input', { name: 'option', maxlength: '100', 'aria-label': `Option ${options.children.length + 1}`, placeholder: `Option ${options.children.length + 1}` }));
  };
  const multi = el('input', { type: 'checkbox', name: 'multi' });
  const error = el('p', { class: 'error', hidden: true });
  const form = el('form', { method: 'dialog', class: 'poll-form' },
    el('h3', { text: 'New poll' }), question, options,
    el('button', { type: 'button', class: 'secondary add-option', text: 'Add option', onclick: addOption }),
    el('label', { class: 'check' }, multi, ' Allow several choices'),
    error,
    el('div', { class: 'row' },
      el('button', { value: 'cancel', class: 'secondary', formnovalidate: true, text: 'Cancel' }),
      el('button', { value: 'create', class: 'create-poll', text: 'Create poll' })));
  const dialog = el('dialog', { class: 'edit-dialog poll-dialog' }, form);
  form.addEventListener('submit', (ev) => {
    if (ev.submitter?.value !== 'create') return;
    const texts = [...options.querySelectorAll('input')].map((i) => i.value.trim()).filter(Boolean);
    if (texts.length < 2) {
      ev.preventDefault();
      error.textContent = 'A poll needs at least two options.';
      error.hidden = false;
      return;
    }
    chat.createPoll(question.value.trim(), texts, multi.checked);
  });
  return {
    dialog,
    open() {
      question.value = '';
      multi.checked = false;
      error.hidden = true;
      options.replaceChildren();
      addOption();
      addOption();
      dialog.showModal();
      question.focus();
    },
  };
}
