// The signed-in session: the token set from /auth/* (PROTOCOL §3.1), kept in storage so a reload
// keeps the user signed in, and refreshed under a lock so two tabs never spend the same refresh
// token (a spent token presented again revokes the whole session family).
// No DOM here: fetch, storage and the lock manager are passed in, so node --test can drive it.

const KEY = 'confab.session';
const LOCK = 'confab.refresh';
/** Refresh this long before the access token expires, so a socket opened now still gets in. */
const MARGIN_MS = 60_000;

/** A failure the user must act on (bad credentials, session gone); `code` is the server's code. */
export class AuthError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'AuthError';
    this.code = code;
    this.status = status;
  }
}

/** Runs `fn` alone across tabs when the Web Locks API exists; alone in this tab otherwise. */
function exclusive(locks, fn) {
  return locks ? locks.request(LOCK, { mode: 'exclusive' }, fn) : fn();
}

export class Auth {
  /**
   * @param {object} o
   * @param {typeof fetch} o.fetch
   * @param {{getItem(k:string):string|null, setItem(k:string,v:string):void, removeItem(k:string):void}} o.storage
   * @param {{request: Function}|undefined} o.locks  navigator.locks
   * @param {() => number} [o.now]
   * @param {string} [o.base]  origin of the server ('' = this page's)
   */
  constructor({ fetch, storage, locks, now = () => Date.now(), base = '' }) {
    this.fetch = fetch;
    this.storage = storage;
    this.locks = locks;
    this.now = now;
    this.base = base;
    /** One refresh at a time within this tab; the lock orders tabs. */
    this.inflight = null;
  }

  /** The stored session, or null. */
  get session() {
    try {
      const s = JSON.parse(this.storage.getItem(KEY) ?? 'null');
      return s && typeof s.refresh_token === 'string' ? s : null;
    } catch {
      return null;
    }
  }

  get username() {
    return this.session?.user?.username ?? null;
  }

  save(set) {
    const session = {
      user: set.user,
      access_token: set.access_token,
      access_expires: this.now() + (set.expires_in ?? 0) * 1000,
      refresh_token: set.refresh_token,
    };
    this.storage.setItem(KEY, JSON.stringify(session));
    return session;
  }

  clear() {
    this.storage.removeItem(KEY);
  }

  async post(path, body) {
    const r = await this.fetch(this.base + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    return { status: r.status, ok: r.ok, data };
  }

  async credentials(path, username, password) {
    const { ok, status, data } = await this.post(path, { username, password });
    if (!ok) throw new AuthError(data?.error ?? `HTTP ${status}`, data?.code ?? 'http', status);
    return this.save(data);
  }

  register(username, password) {
    return this.credentials('/auth/register', username, password);
  }

  login(username, password) {
    return this.credentials('/auth/login', username, password);
  }

  /**
   * An access token that is good for at least MARGIN_MS, refreshing when needed.
   * `rejected` is a token the server just refused: it is never handed out again.
   */
  async accessToken(rejected = null) {
    const s = this.session;
    if (!s) throw new AuthError('Not signed in', 'signed_out', 0);
    if (fresh(s, this.now(), rejected)) return s.access_token;
    return this.refresh(rejected);
  }

  refresh(rejected = null) {
    this.inflight ??= exclusive(this.locks, async () => {
      // Under the lock: another tab may have rotated the tokens while this one waited, and its
      // new access token is as good as ours would be. Its refresh token is the only live one.
      const s = this.session;
      if (!s) throw new AuthError('Not signed in', 'signed_out', 0);
      if (fresh(s, this.now(), rejected)) return s.access_token;
      const { ok, status, data } = await this.post('/auth/refresh', { refresh_token: s.refresh_token });
      if (ok) return this.save(data).access_token;
      if (status === 401 || status === 403) {
        // Only forget the session if no other tab replaced it meanwhile.
        if (this.session?.refresh_token === s.refresh_token) this.clear();
        throw new AuthError(data?.error ?? 'Session expired', data?.code ?? 'invalid_token', status);
      }
      throw new Error(data?.error ?? `HTTP ${status}`);
    }).finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  /** Revokes the refresh token's family on the server (PROTOCOL §3.1), then forgets it here. */
  async logout() {
    const s = this.session;
    this.clear();
    if (s) await this.post('/auth/logout', { refresh_token: s.refresh_token }).catch(() => {});
  }
}

function fresh(s, now, rejected) {
  return s.access_token !== rejected && s.access_expires - MARGIN_MS > now;
}
