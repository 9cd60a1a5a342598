// Message content as a small tree of typed nodes: the markdown subset chats use (**bold**, *italic*,
// ~~strike~~, `code`, ```blocks```, [links](https://…) and bare URLs), @mentions and custom emoji
// (`originChats:<emoji>//<host>/<id>`, the official client's form). No DOM here: views turn the tree
// into elements with text nodes, so nothing a user typed is ever parsed as HTML, and only http(s)
// and mailto URLs ever become links.

/** The official client's inline custom emoji: the `<emoji>` is literal. */
const EMOJI_RE = /originChats:<emoji>\/\/[^\s/]+\/(\d{1,18})/y;
const URL_RE = /https?:\/\/[^\s<>"']+/y;
const MENTION_RE = /@(&?)([A-Za-z0-9_-]+)/y;
const SHORTCODE_RE = /:([A-Za-z0-9_]{1,64}):/y;

/** `href` when it is safe to open from a message (http, https, mailto), else null. */
export function safeUrl(href) {
  let u;
  try {
    u = new URL(href);
  } catch {
    return null;
  }
  return ['http:', 'https:', 'mailto:'].includes(u.protocol) ? u.href : null;
}

/** A bare URL without the punctuation that usually ends the sentence around it. */
function trimUrl(s) {
  let end = s.length;
  while (end > 0 && '.,;:!?'.includes(s[end - 1])) end--;
  if (s[end - 1] === ')' && !s.slice(0, end).includes('(')) end--;
  return s.slice(0, end);
}

/**
 * Parses `content` into nodes: `{t:'text',v}`, `{t:'b'|'i'|'s',c}`, `{t:'code',v}`,
 * `{t:'pre',v,lang}`, `{t:'a',href,c}`, `{t:'emoji',id}` (a custom emoji by id),
 * `{t:'shortcode',name}` (`:name:`, for the view to resolve), `{t:'mention',name,role}`.
 */
export function parse(content) {
  const out = [];
  const parts = String(content ?? '').split(/```/);
  // An unclosed fence is text.
  if (parts.length % 2 === 0) parts[parts.length - 2] += '```' + parts.pop();
  parts.forEach((part, i) => {
    if (i % 2 === 0) {
      if (part) out.push(...inline(part, 0));
      return;
    }
    const nl = part.indexOf('\n');
    const lang = nl > 0 && /^[\w+-]{1,20}$/.test(part.slice(0, nl)) ? part.slice(0, nl) : '';
    const body = (lang ? part.slice(nl + 1) : part.replace(/^\n/, '')).replace(/\n$/, '');
    out.push({ t: 'pre', v: body, lang });
  });
  return merge(out);
}

/** Joins neighbouring text nodes. */
function merge(nodes) {
  const out = [];
  for (const n of nodes) {
    const last = out[out.length - 1];
    if (n.t === 'text' && last?.t === 'text') last.v += n.v;
    else out.push(n);
  }
  return out;
}

const WRAPS = [['**', 'b'], ['__', 'b'], ['~~', 's'], ['*', 'i'], ['_', 'i']];

function inline(s, depth) {
  const out = [];
  let text = '';
  const flush = () => {
    if (text) out.push({ t: 'text', v: text });
    text = '';
  };
  let i = 0;
  const at = (re) => {
    re.lastIndex = i;
    return re.exec(s);
  };
  while (i < s.length) {
    const ch = s[i];
    const prev = i > 0 ? s[i - 1] : '';
    let m;
    if (ch === '\\' && i + 1 < s.length && /[\\`*_~[\]()@:]/.test(s[i + 1])) {
      text += s[i + 1];
      i += 2;
      continue;
    }
    if (ch === '`') {
      const end = s.indexOf('`', i + 1);
      if (end > i + 1) {
        flush();
        out.push({ t: 'code', v: s.slice(i + 1, end) });
        i = end + 1;
        continue;
      }
    }
    if (ch === 'o' && (m = at(EMOJI_RE))) {
      flush();
      out.push({ t: 'emoji', id: m[1] });
      i += m[0].length;
      continue;
    }
    if (ch === 'h' && !/[A-Za-z0-9]/.test(prev) && (m = at(URL_RE))) {
      const url = trimUrl(m[0]);
      const href = safeUrl(url);
      if (href) {
        flush();
        out.push({ t: 'a', href, c: [{ t: 'text', v: url }] });
        i += url.length;
        continue;
      }
    }
    if (ch === '[' && depth < 3) {
      const close = s.indexOf('](', i + 1);
      const end = close > i ? s.indexOf(')', close + 2) : -1;
      if (close > i + 1 && end > close + 2 && !s.slice(close + 2, end).includes(' ')) {
        const href = safeUrl(s.slice(close + 2, end));
        if (href) {
          flush();
          out.push({ t: 'a', href, c: inline(s.slice(i + 1, close), depth + 1) });
          i = end + 1;
          continue;
        }
        // An unsafe target (javascript:, data:, …) stays as the characters typed.
      }
    }
    if (ch === '@' && !/[A-Za-z0-9]/.test(prev) && (m = at(MENTION_RE))) {
      flush();
      out.push({ t: 'mention', name: m[2], role: m[1] === '&' });
      i += m[0].length;
      continue;
    }
    if (ch === ':' && (m = at(SHORTCODE_RE))) {
      flush();
      out.push({ t: 'shortcode', name: m[1] });
      i += m[0].length;
      continue;
    }
    if (depth < 3) {
      const w = WRAPS.find(([mark]) => s.startsWith(mark, i));
      if (w) {
        const [mark, t] = w;
        const end = s.indexOf(mark, i + mark.length);
        const inner = end > 0 ? s.slice(i + mark.length, end) : '';
        // `_` inside words (snake_case) is not emphasis; neither is `* x *`.
        const wordy = mark[0] === '_' && (/[A-Za-z0-9]/.test(prev) || /[A-Za-z0-9]/.test(s[end + mark.length] ?? ''));
        if (inner && !/^\s|\s$/.test(inner) && !wordy) {
          flush();
          out.push({ t, c: inline(inner, depth + 1) });
          i = end + mark.length;
          continue;
        }
      }
    }
    text += ch;
    i++;
  }
  flush();
  return merge(out);
}

/** The usernames and role names a content mentions (`@name`, `@&role`), as typed. */
export function mentions(content) {
  const users = [];
  const roles = [];
  const walk = (nodes) => {
    for (const n of nodes) {
      if (n.t === 'mention') (n.role ? roles : users).push(n.name);
      if (n.c) walk(n.c);
    }
  };
  walk(parse(content));
  return { users, roles };
}

/** Plain text of a content for previews and notifications: markup dropped, emoji as `:emoji:`. */
export function plain(content, emojiName = () => null) {
  const walk = (nodes) =>
    nodes.map((n) => {
      switch (n.t) {
        case 'emoji':
          return `:${emojiName(n.id) ?? 'emoji'}:`;
        case 'shortcode':
          return `:${n.name}:`;
        case 'mention':
          return `@${n.role ? '&' : ''}${n.name}`;
        default:
          return n.c ? walk(n.c) : n.v;
      }
    }).join('');
  return walk(parse(content));
}

/**
 * Whether message `m` mentions `me`: the live `pings` when the server sent them, otherwise the
 * content's `@me` / `@&role` (same rule as the server, PROTOCOL §5.6) and a reply to `me`.
 */
export function mentionsMe(m, me, myRoles = []) {
  if (!me || !m) return false;
  const lower = (x) => String(x).toLowerCase();
  const roles = new Set(myRoles.map(lower));
  if (m.pings) {
    return (m.pings.users ?? []).some((u) => lower(u) === lower(me))
      || (m.pings.roles ?? []).some((r) => roles.has(lower(r)))
      || (m.pings.replies ?? []).some((u) => lower(u) === lower(me));
  }
  if (m.reply_to?.user && lower(m.reply_to.user) === lower(me) && m.ping !== false) return true;
  const found = mentions(m.content ?? '');
  return found.users.some((u) => lower(u) === lower(me)) || found.roles.some((r) => roles.has(lower(r)));
}
