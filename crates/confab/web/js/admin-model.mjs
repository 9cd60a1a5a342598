// What the admin screens need to know and decide, without the DOM: which permissions the signed-in
// user holds (PROTOCOL §5.3, §5.4), which screens to offer them (what they may not do is not
// offered), the invite code in the address the app was opened at, how an invite reads, and the
// request/answer pairing of admin commands over the chat socket (`listener`, PROTOCOL §1.3).
// `node --test` drives it directly.

/** The 20 server permissions (PROTOCOL §2.1), in wire order. */
export const PERMISSIONS = [
  'administrator', 'manage_server', 'view_audit_log', 'manage_roles', 'manage_channels', 'manage_threads',
  'manage_users', 'manage_messages', 'read_message_history', 'send_messages', 'embed_links', 'attach_files',
  'add_reactions', 'external_emojis', 'connect', 'speak', 'stream', 'use_voice_activity', 'mention_everyone',
  'use_slash_commands',
];

/** Channel permission keys (PROTOCOL §5.5), each a list of role names where `!role` denies. */
export const CHANNEL_KEYS = ['view', 'send', 'delete', 'delete_own', 'edit_own', 'react', 'pin', 'create_thread'];

/** Channel types an administrator can create from the app. */
export const CHANNEL_TYPES = ['text', 'voice', 'forum'];

/** Listener prefix of the admin screens' requests; main.mjs routes their answers here, not to the chat. */
export const LISTENER = 'admin:';

/**
 * The admin screens, in the order the panel lists them, each with the test that decides whether
 * the user is offered it. `p` is a permission set from `permissionsOf`, `caps` the handshake's
 * capabilities (a feature the server has switched off is not offered either).
 */
export const SECTIONS = [
  { id: 'server', label: 'Server', allowed: (p) => p.has('manage_server') },
  { id: 'invites', label: 'Invites', allowed: (p, caps) => p.has('manage_server') && caps.has('invite_create') },
  { id: 'channels', label: 'Channels', allowed: (p) => p.has('manage_channels') },
  { id: 'roles', label: 'Roles', allowed: (p) => p.has('manage_roles') },
  { id: 'members', label: 'Members', allowed: (p) => p.has('manage_users') || p.has('manage_roles') },
  { id: 'webhooks', label: 'Webhooks', allowed: (p) => p.has('manage_server') },
  { id: 'bots', label: 'Bots', allowed: (p, caps) => p.has('administrator') && caps.has('bot_create') },
  { id: 'audit', label: 'Audit log', allowed: (p) => p.has('view_audit_log') || p.has('manage_users') },
];

/**
 * The effective server permissions of a user holding `roleNames`, given `roles_list`'s map. The
 * `owner` role and `administrator` imply every permission (PROTOCOL §5.4).
 * @returns {Set<string>}
 */
export function permissionsOf(roleNames, roles) {
  const held = new Set();
  for (const name of roleNames ?? []) {
    if (name === 'owner') return new Set(PERMISSIONS);
    for (const p of roles?.[name]?.permissions ?? []) held.add(p);
  }
  return held.has('administrator') ? new Set(PERMISSIONS) : held;
}

/** The sections `perms` allows, in panel order. */
export function sectionsFor(perms, caps = new Set()) {
  return SECTIONS.filter((s) => s.allowed(perms, caps));
}

/**
 * Whether a user holding `myRoles` may manage `role` (PROTOCOL §5.3 `can_manage_role`): owners
 * every role; others with `manage_roles` only roles strictly below their highest, never owner/admin.
 */
export function canManageRole(myRoles, roles, role) {
  if (myRoles.includes('owner')) return true;
  if (!permissionsOf(myRoles, roles).has('manage_roles') || role.name === 'owner' || role.name === 'admin') return false;
  const mine = myRoles.map((r) => roles[r]?.position).filter((p) => typeof p === 'number');
  return mine.length > 0 && role.position > Math.min(...mine);
}

/**
 * The invite code of the address the app was opened at: `/invite/CODE` or `?invite=CODE`, or null.
 * @param {{pathname: string, search: string}} loc
 */
export function inviteCode(loc) {
  const path = /^\/invite\/([A-Za-z0-9_-]{1,64})\/?$/.exec(loc.pathname ?? '');
  if (path) return path[1];
  const q = new URLSearchParams(loc.search ?? '').get('invite');
  return q && /^[A-Za-z0-9_-]{1,64}$/.test(q) ? q : null;
}

/** Roles sorted highest first (position 0 first). */
export function rolesInOrder(roles) {
  return Object.entries(roles ?? {})
    .map(([name, r]) => ({ ...r, name: r.name ?? name }))
    .sort((a, b) => a.position - b.position);
}

/** `"general, !muted"` → `['general', '!muted']`; empty entries dropped. */
export function splitList(text) {
  return String(text).split(',').map((s) => s.trim()).filter(Boolean);
}

/** How long until `ts` (Unix seconds) from `now` (ms), in words: "in 3 h", "expired". */
export function until(ts, now = Date.now()) {
  const s = ts - now / 1000;
  if (s <= 0) return 'expired';
  // Rounded to the nearest unit, so a day-long invite made a moment ago reads "in 1 d", not "in 24 h".
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `in ${Math.max(1, minutes)} min`;
  const hours = Math.round(s / 3600);
  return hours < 24 ? `in ${hours} h` : `in ${Math.round(s / 86_400)} d`;
}

/** One line about an invite's state: uses, expiry, revoked. */
export function describeInvite(inv, now = Date.now()) {
  const uses = inv.max_uses == null ? `${inv.uses} uses` : `${inv.uses}/${inv.max_uses} uses`;
  if (inv.revoked) return `${uses} · revoked`;
  if (inv.max_uses != null && inv.uses >= inv.max_uses) return `${uses} · used up`;
  if (inv.expires_at != null) {
    const left = until(inv.expires_at, now);
    return left === 'expired' ? `${uses} · expired` : `${uses} · expires ${left}`;
  }
  return `${uses} · never expires`;
}

/** A server refusal of an admin request, with the server's text and stable code. */
export class AdminError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'AdminError';
    this.code = code;
  }
}

/**
 * Pairs admin requests with their answers by `listener`. `send(frame)` is the chat socket's (false
 * while offline); `handle(packet)` returns true for packets that answer one of ours.
 */
export class Requests {
  constructor(send) {
    this.send = send;
    this.n = 0;
    this.waiting = new Map();
  }

  /** Sends `frame`; resolves with the answer, rejects with an AdminError on `error`/`rate_limit`. */
  request(frame) {
    const listener = `${LISTENER}${++this.n}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, listener })) {
        reject(new AdminError('Not connected; try again in a moment', 'offline'));
        return;
      }
      this.waiting.set(listener, { resolve, reject });
    });
  }

  handle(p) {
    const w = typeof p?.listener === 'string' && p.listener.startsWith(LISTENER) ? this.waiting.get(p.listener) : null;
    if (!w) return typeof p?.listener === 'string' && p.listener.startsWith(LISTENER);
    this.waiting.delete(p.listener);
    if (p.cmd === 'error' || p.cmd === 'auth_error') w.reject(new AdminError(p.val ?? 'Error', p.code));
    else if (p.cmd === 'rate_limit') w.reject(new AdminError(p.reason ?? 'Rate limited', 'rate_limited'));
    else w.resolve(p);
    return true;
  }

  /** The socket went away: what was asked will not be answered on it. */
  dropAll() {
    for (const w of this.waiting.values()) w.reject(new AdminError('Connection lost; try again', 'offline'));
    this.waiting.clear();
  }
}
