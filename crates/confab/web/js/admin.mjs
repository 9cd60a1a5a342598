// The admin side of the app: `Admin` follows the signed-in user's roles and permissions from the
// chat socket's packets, and `<confab-admin>` draws the screens they may use — server profile,
// invites, channels, roles, members, webhooks, bots, audit log — in a modal dialog opened from an
// "Admin" button in the header. A user with no admin permission gets neither the button nor the
// dialog in the page. Every change is one command of PROTOCOL §6 sent with an `admin:` listener
// (admin-model.mjs pairs the answer); the server checks everything again, the app only avoids
// offering what would be refused. All user data goes in as text (dom.mjs).

import { el } from './dom.mjs';
import {
  CHANNEL_KEYS, CHANNEL_TYPES, PERMISSIONS, Requests, canManageRole, describeInvite, permissionsOf, rolesInOrder,
  sectionsFor, splitList,
} from './admin-model.mjs';

const EXPIRY = [['', 'Never'], ['1800', '30 minutes'], ['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days']];
const TIMEOUTS = [['60', '1 minute'], ['600', '10 minutes'], ['3600', '1 hour'], ['86400', '1 day'], ['604800', '1 week']];

function stamp(ts) {
  return new Date(ts * 1000).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

/** The signed-in user's admin rights, kept current from the socket's packets. */
export class Admin {
  /**
   * @param {object} o
   * @param {(frame: object) => boolean} o.send  the chat socket's send
   * @param {() => void} o.onChange  rights changed: redraw the entry point
   * @param {(server: object) => void} o.onServer  a `server_update` arrived
   */
  constructor({ send, onChange, onServer }) {
    this.requests = new Requests(send);
    Object.assign(this, { onChange, onServer });
    this.me = null;
    this.myRoles = [];
    this.roles = {};
    this.caps = new Set();
    this.public = '';
  }

  get perms() {
    return permissionsOf(this.myRoles, this.roles);
  }

  get sections() {
    return sectionsFor(this.perms, this.caps);
  }

  request(frame) {
    return this.requests.request(frame);
  }

  /** Looks at every packet; true when it answered an admin request (the chat need not see it). */
  handle(p) {
    if (this.requests.handle(p)) return true;
    switch (p.cmd) {
      case 'handshake':
        this.caps = new Set(p.val?.capabilities ?? []);
        this.public = p.val?.server?.url ?? '';
        break;
      case 'ready':
        this.me = p.user?.username ?? null;
        this.myRoles = p.user?.roles ?? [];
        // The roles' permissions decide what to offer; the answer is a broadcast-shaped `roles_list`.
        this.request({ cmd: 'roles_list' }).then((r) => this.setRoles(r.roles), () => {});
        break;
      case 'roles_list':
        this.setRoles(p.roles);
        break;
      case 'user_roles_get':
        if (p.user && p.user === this.me) {
          this.myRoles = p.roles ?? [];
          this.onChange();
        }
        break;
      case 'server_update':
        this.onServer({ name: p.name, icon: p.icon, banner: p.banner });
        break;
    }
    return false;
  }

  setRoles(roles) {
    this.roles = roles ?? {};
    this.onChange();
  }

  /** The socket closed: pending requests will get no answer. */
  offline() {
    this.requests.dropAll();
  }

  /**
   * Puts the "Admin" button into the chat's header when some section is allowed, and takes it
   * (and an open panel) out of the page when none is.
   */
  mount(chat) {
    if (!chat?.isConnected) return;
    const bar = chat.querySelector('.bar');
    let button = chat.querySelector('.admin-open');
    let dialog = chat.querySelector('dialog.admin-dialog');
    if (this.sections.length === 0) {
      button?.remove();
      dialog?.remove();
      return;
    }
    if (!dialog) {
      const panel = el('confab-admin');
      dialog = el('dialog', { class: 'admin-dialog', 'aria-label': 'Server administration' }, panel);
      chat.append(dialog);
    }
    if (!button) {
      button = el('button', { class: 'admin-open secondary', 'aria-haspopup': 'dialog', text: 'Admin' });
      button.addEventListener('click', () => {
        dialog.showModal();
        dialog.querySelector('confab-admin').open(this);
      });
      bar?.insertBefore(button, bar.querySelector('.logout'));
    }
    dialog.querySelector('confab-admin').refresh(this);
  }
}

/** The admin panel: a tab list of the allowed sections and the open section. */
class ConfabAdmin extends HTMLElement {
  open(admin, section = null) {
    this.admin = admin;
    const allowed = admin.sections;
    this.current = allowed.find((s) => s.id === (section ?? this.current))?.id ?? allowed[0]?.id;
    this.draw();
  }

  /** Rights changed while the panel exists: drop sections no longer allowed. */
  refresh(admin) {
    this.admin = admin;
    if (!this.isConnected || !this.closest('dialog')?.open) return;
    if (!admin.sections.some((s) => s.id === this.current)) this.open(admin);
    else this.drawTabs();
  }

  draw() {
    this.tabs = el('div', { class: 'admin-tabs', role: 'tablist', 'aria-label': 'Sections' });
    this.status = el('p', { class: 'admin-status', role: 'status', 'aria-live': 'polite' });
    this.body = el('section', { class: 'admin-body', role: 'tabpanel' });
    const close = el('button', { class: 'secondary admin-close', text: 'Close', onclick: () => this.closest('dialog')?.close() });
    this.replaceChildren(
      el('header', { class: 'admin-head' }, el('h2', { text: 'Server administration' }), close),
      el('div', { class: 'admin-layout' }, this.tabs, el('div', { class: 'admin-main' }, this.status, this.body)),
    );
    this.drawTabs();
    this.show(this.current);
  }

  drawTabs() {
    const sections = this.admin.sections;
    this.tabs.replaceChildren(...sections.map((s) => el('button', {
      class: 'admin-tab',
      role: 'tab',
      dataset: { section: s.id },
      'aria-selected': String(s.id === this.current),
      tabindex: s.id === this.current ? '0' : '-1',
      onclick: () => this.show(s.id),
      onkeydown: (ev) => this.tabKey(ev, sections),
    }, s.label)));
  }

  /** Arrow keys move between tabs (the WAI-ARIA tabs pattern); Tab goes on into the section. */
  tabKey(ev, sections) {
    const i = sections.findIndex((s) => s.id === this.current);
    const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[ev.key];
    let next = null;
    if (step) next = sections[(i + step + sections.length) % sections.length];
    else if (ev.key === 'Home') next = sections[0];
    else if (ev.key === 'End') next = sections[sections.length - 1];
    if (!next) return;
    ev.preventDefault();
    this.show(next.id);
    this.tabs.querySelector(`[data-section="${next.id}"]`)?.focus();
  }

  async show(id) {
    this.current = id;
    this.drawTabs();
    this.dataset.section = id;
    this.say('');
    this.body.replaceChildren(el('p', { class: 'note', text: 'Loading…' }));
    try {
      const nodes = await this[`section_${id}`]();
      if (this.current === id) this.body.replaceChildren(...[nodes].flat());
    } catch (e) {
      if (this.current === id) this.body.replaceChildren(el('p', { class: 'error', text: e.message }));
    }
  }

  /** Redraws the open section (after a change). */
  reload() {
    return this.show(this.current);
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle('error', error);
  }

  /** A button that runs `fn` (a request), reports its outcome and redraws the section if asked. */
  action(label, fn, { cls = 'secondary', done = null, reload = true, title = null } = {}) {
    const b = el('button', { type: 'button', class: cls, text: label, title, 'aria-label': title });
    b.addEventListener('click', () => this.run(b, fn, done, reload));
    return b;
  }

  async run(button, fn, done, reload) {
    if (button) button.disabled = true;
    try {
      const r = await fn();
      if (done) this.say(typeof done === 'function' ? done(r) : done);
      if (reload) await this.reload();
      if (done) this.say(typeof done === 'function' ? done(r) : done);
      return r;
    } catch (e) {
      this.say(e.message, true);
      return null;
    } finally {
      if (button) button.disabled = false;
    }
  }

  /** A form whose submit runs `fn(data)`. */
  form(label, fields, fn, done) {
    const f = el('form', { class: 'admin-form', 'aria-label': label }, fields, el('button', { type: 'submit', text: label }));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.run(f.querySelector('button[type=submit]'), () => fn(new FormData(f)), done, true);
    });
    return f;
  }

  /** A "Delete"-like button that asks again in place (no blocking browser dialogs). */
  confirm(label, fn, done) {
    const b = el('button', { type: 'button', class: 'danger', text: label });
    b.addEventListener('click', () => {
      if (b.dataset.armed) return this.run(b, fn, done, true);
      b.dataset.armed = '1';
      b.textContent = `Confirm ${label.toLowerCase()}`;
      setTimeout(() => {
        delete b.dataset.armed;
        b.textContent = label;
      }, 4000);
    });
    return b;
  }

  req(frame) {
    return this.admin.request(frame);
  }

  // --- Sections -------------------------------------------------------------------------------

  async section_server() {
    const info = await this.req({ cmd: 'server_info' });
    return [
      el('h3', { text: 'Server profile' }),
      this.form('Save server', [
        el('label', {}, 'Name', el('input', { name: 'name', value: info.name ?? '', required: true, maxlength: '100' })),
        el('label', {}, 'Icon URL', el('input', { name: 'icon', type: 'url', value: info.icon ?? '', placeholder: 'https://…' })),
      ], (d) => this.req({ cmd: 'server_update', name: String(d.get('name')).trim(), icon: String(d.get('icon')).trim() || null }), 'Server updated'),
      info.icon ? el('img', { class: 'admin-icon', src: info.icon, alt: 'Current icon' }) : null,
    ];
  }

  async section_invites() {
    const { invites } = await this.req({ cmd: 'invite_list' });
    // The link as this admin reaches the server (the configured public_url may name another port).
    const link = (inv) => `${location.origin}/invite/${inv.code}`;
    const create = this.form('Create invite', [
      el('label', {}, 'Expires after', el('select', { name: 'expires_in' }, EXPIRY.map(([v, t]) => el('option', { value: v, text: t })))),
      el('label', {}, 'Max uses', el('input', { name: 'max_uses', type: 'number', min: '1', max: '1000000', placeholder: 'Unlimited' })),
    ], (d) => {
      const frame = { cmd: 'invite_create' };
      if (d.get('expires_in')) frame.expires_in = Number(d.get('expires_in'));
      if (d.get('max_uses')) frame.max_uses = Number(d.get('max_uses'));
      return this.req(frame);
    }, (r) => `Invite created: ${link(r.invite)}`);
    const rows = invites.map((inv) => el('li', { class: 'admin-item', dataset: { code: inv.code, usable: String(inv.usable) } },
      el('input', { class: 'invite-url', readonly: true, value: link(inv), 'aria-label': 'Invite link' }),
      el('span', { class: 'meta', text: `${describeInvite(inv)} · by ${inv.created_by}` }),
      el('div', { class: 'row' },
        this.action('Copy link', () => copy(link(inv)), { done: 'Link copied', reload: false }),
        inv.revoked ? null : this.confirm('Revoke', () => this.req({ cmd: 'invite_revoke', code: inv.code }), 'Invite revoked'))));
    return [
      el('h3', { text: 'Invites' }),
      create,
      rows.length ? el('ul', { class: 'admin-list invites' }, rows) : el('p', { class: 'note', text: 'No invites yet.' }),
    ];
  }

  async section_channels() {
    const [{ val: channels }, { roles }] = await Promise.all([this.req({ cmd: 'channels_get' }), this.req({ cmd: 'roles_list' })]);
    const roleNames = rolesInOrder(roles).map((r) => r.name).join(', ');
    const create = this.form('Create channel', [
      el('label', {}, 'Name', el('input', { name: 'name', required: true, maxlength: '64' })),
      el('label', {}, 'Type', el('select', { name: 'type' }, CHANNEL_TYPES.map((t) => el('option', { value: t, text: t })))),
    ], (d) => this.req({ cmd: 'channel_create', name: String(d.get('name')).trim(), type: String(d.get('type')) }), 'Channel created');
    const rows = channels.map((c, i) => {
      const perms = el('details', { class: 'perm-editor' },
        el('summary', { text: 'Permissions by role' }),
        el('p', { class: 'note', text: `Role names separated by commas; !role denies. Roles: ${roleNames}` }),
        this.form('Save permissions', CHANNEL_KEYS.map((k) =>
          el('label', {}, k, el('input', { name: k, value: (c.permissions?.[k] ?? []).join(', ') }))),
        (d) => {
          const permissions = { ...(c.permissions ?? {}) };
          for (const k of CHANNEL_KEYS) permissions[k] = splitList(d.get(k));
          return this.req({ cmd: 'channel_update', current_name: c.name, updates: { permissions } });
        }, `Permissions of ${c.name} saved`));
      const rename = this.form('Rename', [
        el('label', { class: 'inline' }, 'Name', el('input', { name: 'name', value: c.name, required: true, maxlength: '64' })),
      ], (d) => this.req({ cmd: 'channel_update', current_name: c.name, updates: { name: String(d.get('name')).trim() } }), 'Channel renamed');
      return el('li', { class: 'admin-item', dataset: { channel: c.name } },
        el('div', { class: 'row spread' },
          el('strong', { text: `${c.type === 'voice' ? '🔊' : c.type === 'forum' ? '🗂' : '#'} ${c.name}` }),
          el('span', { class: 'meta', text: c.type }),
          el('div', { class: 'row' },
            i > 0 ? this.action('↑', () => this.req({ cmd: 'channel_move', name: c.name, position: i - 1 }), { title: `Move ${c.name} up` }) : null,
            i < channels.length - 1 ? this.action('↓', () => this.req({ cmd: 'channel_move', name: c.name, position: i + 1 }), { title: `Move ${c.name} down` }) : null,
            this.confirm('Delete', () => this.req({ cmd: 'channel_delete', name: c.name }), 'Channel deleted'))),
        rename, perms);
    });
    return [el('h3', { text: 'Channels' }), create, el('ul', { class: 'admin-list channels-admin' }, rows)];
  }

  async section_roles() {
    const { roles } = await this.req({ cmd: 'roles_list' });
    const { myRoles } = this.admin;
    const ordered = rolesInOrder(roles);
    const create = this.form('Create role', [
      el('label', {}, 'Name', el('input', { name: 'name', required: true, maxlength: '32', pattern: '[A-Za-z0-9_\\-]+' })),
      el('label', {}, 'Colour', el('input', { name: 'color', type: 'color', value: '#5c7cfa' })),
    ], (d) => this.req({ cmd: 'role_create', name: String(d.get('name')).trim(), color: String(d.get('color')).toUpperCase() }), 'Role created');
    const move = (i, by) => {
      const names = ordered.map((r) => r.name);
      [names[i], names[i + by]] = [names[i + by], names[i]];
      return this.req({ cmd: 'role_reorder', roles: names });
    };
    const rows = ordered.map((r, i) => {
      const manageable = canManageRole(myRoles, roles, r);
      const head = el('div', { class: 'row spread' },
        el('strong', { class: 'role-name', text: r.name, style: null }),
        el('span', { class: 'swatch', title: r.color ?? 'no colour', dataset: { color: r.color ?? '' } }),
        el('span', { class: 'meta', text: `position ${r.position}` }),
        manageable ? el('div', { class: 'row' },
          i > 1 && canManageRole(myRoles, roles, ordered[i - 1]) ? this.action('↑', () => move(i, -1), { title: `Move ${r.name} up` }) : null,
          i < ordered.length - 1 ? this.action('↓', () => move(i, 1), { title: `Move ${r.name} down` }) : null,
          ['owner', 'admin', 'user'].includes(r.name) ? null : this.confirm('Delete', () => this.req({ cmd: 'role_delete', name: r.name }), 'Role deleted')) : null);
      paint(head.querySelector('.swatch'), r.color);
      if (!manageable) return el('li', { class: 'admin-item', dataset: { role: r.name } }, head, el('p', { class: 'meta', text: r.permissions.join(', ') || 'no permissions' }));
      const boxes = PERMISSIONS.map((p) => el('label', { class: 'check' },
        el('input', { type: 'checkbox', name: 'perm', value: p, checked: r.permissions.includes(p) }), p));
      const edit = this.form('Save role', [
        el('label', {}, 'Colour', el('input', { name: 'color', type: 'color', value: r.color ?? '#000000' })),
        el('label', {}, 'Description', el('input', { name: 'description', value: r.description ?? '', maxlength: '200' })),
        el('fieldset', { class: 'perms' }, el('legend', { text: 'Permissions' }), boxes),
      ], (d) => this.req({
        cmd: 'role_update', id: r.id, name: r.name, color: String(d.get('color')).toUpperCase(),
        description: String(d.get('description')), permissions: d.getAll('perm').map(String),
      }), `Role ${r.name} saved`);
      return el('li', { class: 'admin-item', dataset: { role: r.name } }, head, el('details', {}, el('summary', { text: 'Edit' }), edit));
    });
    return [el('h3', { text: 'Roles' }), create, el('ul', { class: 'admin-list' }, rows)];
  }

  async section_members() {
    const perms = this.admin.perms;
    const [{ users }, banned, { roles }] = await Promise.all([
      this.req({ cmd: 'users_list' }),
      perms.has('manage_users') ? this.req({ cmd: 'users_banned_list' }) : Promise.resolve({ users: [] }),
      this.req({ cmd: 'roles_list' }),
    ]);
    const roleNames = rolesInOrder(roles).map((r) => r.name);
    const rows = users.filter((u) => !u.bot).map((u) => {
      const self = u.username === this.admin.me;
      const controls = [];
      if (perms.has('manage_roles')) {
        controls.push(this.form('Set roles', [
          el('label', { class: 'inline' }, 'Roles', el('input', { name: 'roles', value: u.roles.join(', '), list: 'admin-role-names' })),
        ], (d) => this.req({ cmd: 'user_roles_set', user: u.username, roles: splitList(d.get('roles')) }), `Roles of ${u.username} saved`));
      }
      if (perms.has('manage_users') && !self) {
        controls.push(this.form('Time out', [
          el('label', { class: 'inline' }, 'For', el('select', { name: 'timeout' }, TIMEOUTS.map(([v, t]) => el('option', { value: v, text: t })))),
        ], (d) => this.req({ cmd: 'user_timeout', user: u.username, timeout: Number(d.get('timeout')) }), `${u.username} timed out`));
        controls.push(el('div', { class: 'row' },
          this.confirm('Ban', () => this.req({ cmd: 'user_ban', user: u.username }), `${u.username} banned`),
          // Kicking removes the account (the server's `user_delete`, administrators only); in
          // invite mode the person needs a new invite to come back.
          perms.has('administrator') ? this.confirm('Kick', () => this.req({ cmd: 'user_delete', user: u.username }), `${u.username} removed`) : null));
      }
      return el('li', { class: 'admin-item', dataset: { user: u.username } },
        el('div', { class: 'row spread' }, el('strong', { text: u.username }), el('span', { class: 'meta', text: u.roles.join(', ') })),
        controls);
    });
    const bannedList = banned.users.map((name) => el('li', { class: 'admin-item', dataset: { banned: name } },
      el('div', { class: 'row spread' }, el('span', { text: name }),
        this.action('Unban', () => this.req({ cmd: 'user_unban', user: name }), { done: `${name} unbanned` }))));
    return [
      el('h3', { text: 'Members' }),
      el('datalist', { id: 'admin-role-names' }, roleNames.map((n) => el('option', { value: n }))),
      el('ul', { class: 'admin-list' }, rows),
      perms.has('manage_users') ? el('h3', { text: 'Banned' }) : null,
      perms.has('manage_users') ? (bannedList.length ? el('ul', { class: 'admin-list' }, bannedList) : el('p', { class: 'note', text: 'Nobody is banned.' })) : null,
    ];
  }

  async section_webhooks() {
    const [{ webhooks }, { val: channels }] = await Promise.all([this.req({ cmd: 'webhook_list' }), this.req({ cmd: 'channels_get' })]);
    const texts = channels.filter((c) => c.type === 'text');
    const create = this.form('Create webhook', [
      el('label', {}, 'Channel', el('select', { name: 'channel' }, texts.map((c) => el('option', { value: c.name, text: `#${c.name}` })))),
      el('label', {}, 'Name', el('input', { name: 'name', required: true, maxlength: '80' })),
    ], (d) => this.req({ cmd: 'webhook_create', channel: String(d.get('channel')), name: String(d.get('name')).trim() }),
    (r) => `Webhook created. Post to ${location.origin}/webhooks?token=${r.webhook.token} — the token is shown only now.`);
    const rows = webhooks.map((w) => el('li', { class: 'admin-item', dataset: { webhook: w.id } },
      el('div', { class: 'row spread' }, el('strong', { text: w.name }), el('span', { class: 'meta', text: `#${w.channel} · by ${w.created_by}` }),
        this.confirm('Delete', () => this.req({ cmd: 'webhook_delete', id: w.id }), 'Webhook deleted'))));
    return [el('h3', { text: 'Webhooks' }), create, rows.length ? el('ul', { class: 'admin-list' }, rows) : el('p', { class: 'note', text: 'No webhooks yet.' })];
  }

  async section_bots() {
    const { users } = await this.req({ cmd: 'users_list' });
    const bots = users.filter((u) => u.bot);
    const create = this.form('Create bot', [
      el('label', {}, 'Bot name', el('input', { name: 'name', required: true, maxlength: '32', pattern: '[A-Za-z0-9_\\-]+' })),
    ], (d) => this.req({ cmd: 'bot_create', botusername: String(d.get('name')).trim() }),
    (r) => `Bot ${r.bot.username} created. Token (shown only now): ${r.bottoken}`);
    const rows = bots.map((b) => el('li', { class: 'admin-item', dataset: { bot: b.username } },
      el('div', { class: 'row spread' }, el('strong', { text: b.username }),
        el('div', { class: 'row' },
          this.action('New token', () => this.req({ cmd: 'bot_token_regenerate', botusername: b.username }),
            { done: (r) => `New token for ${r.botusername} (shown only now): ${r.bottoken}`, reload: false }),
          this.confirm('Delete', () => this.req({ cmd: 'bot_delete', botusername: b.username }), 'Bot deleted')))));
    return [el('h3', { text: 'Bots' }), create, rows.length ? el('ul', { class: 'admin-list' }, rows) : el('p', { class: 'note', text: 'No bots yet.' })];
  }

  async section_audit() {
    const { entries, total } = await this.req({ cmd: 'modlog_get', limit: 50 });
    const rows = entries.map((e) => el('tr', {},
      el('td', { text: stamp(e.timestamp) }),
      el('td', { text: e.actor_name ?? '' }),
      el('td', { text: e.action }),
      el('td', { text: e.target_name ?? '' })));
    return [
      el('h3', { text: `Audit log (${entries.length} of ${total})` }),
      el('div', { class: 'table-wrap' }, el('table', { class: 'audit' },
        el('thead', {}, el('tr', {}, ['When', 'Who', 'Action', 'Target'].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, rows))),
    ];
  }
}

/** Shows a role's colour on its swatch; a colour is data, so it is checked before it becomes style. */
function paint(node, color) {
  if (node && /^#[0-9A-Fa-f]{6}$/.test(color ?? '')) node.style.background = color;
}

/** Copies `text`; the Clipboard API needs a secure context, so plain HTTP falls back to a selection. */
async function copy(text) {
  if (navigator.clipboard && globalThis.isSecureContext) return navigator.clipboard.writeText(text);
  const area = el('textarea', { class: 'copy-buffer', readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('Copy failed: select the link and copy it');
}

customElements.define('confab-admin', ConfabAdmin);
