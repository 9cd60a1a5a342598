// The signed-in session: the token set from /auth/* (PROTOCOL §3.1), kept so a reload keeps the
// user signed in, and refreshed under a lock so two tabs never spend the same refresh token (a spent
// token presented again revokes the whole session family, signing every tab out).
//
// Two stores: `storage` (localStorage) is a synchronous copy for reads that may be a moment stale —
// who is signed in, whether the access token still looks fresh — and the `vault` is the authority
// the refresh reads and writes under the lock. In Chromium a tab may still read the old refresh
// token from localStorage just after another tab rotated it; IndexedDB (vault.mjs) has no such lag.
// No DOM here: fetch, the stores and the lock manager are passed in, so node --test can drive it.

const KEY = 'confab.session';
const LOCK = 'confab.refresh';
/** Refresh this long before the access token expires (at most half its life), so a socket opened now still gets in. */
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

function parse(text) {
  try {
    const s = JSON.parse(text ?? 'null');
    return s && typeof s.refresh_token === 'string' ? s : null;
  } catch {
    return null;
  }
}

/** A vault over the synchronous storage itself, for where IndexedDB is missing (and for tests). */
export function storageVault(storage) {
  return {
    get: async () => parse(storage.getItem(KEY)),
    set: async (s) => storage.setItem(KEY, JSON.stringify(s)),
    clear: async () => storage.removeItem(KEY),
  };
}

export class Auth {
  /**
   * @param {object} o
   * @param {typeof fetch} o.fetch
   * @param {{getItem(k:string):string|null, setItem(k:string,v:string):void, removeItem(k:string):void}} o.storage
   * @param {{get(): Promise<object|null>, set(s: object): Promise<void>, clear(): Promise<void>}} [o.vault]
   * @param {{request: Function}|undefined} o.locks  navigator.locks
   * @param {() => number} [o.now]
   * @param {string} [o.base]  origin of the server ('' = this page's)
   */
  constructor({ fetch, storage, vault = storageVault(storage), locks, now = () => Date.now(), base = '' }) {
    Object.assign(this, { fetch, storage, vault, locks, now, base });
    /** One refresh at a time within this tab; the lock orders tabs. */
    this.inflight = null;
  }

  /** The session as last seen in the synchronous copy, or null. */
  get session() {
    return parse(this.storage.getItem(KEY));
  }

  get username() {
    return this.session?.user?.username ?? null;
  }

  async save(set) {
    const ttl = (set.expires_in ?? 0) * 1000;
    const session = {
      user: set.user,
      access_token: set.access_token,
      access_expires: this.now() + ttl,
      access_margin: Math.min(MARGIN_MS, ttl / 2),
      refresh_token: set.refresh_token,
    };
    await this.vault.set(session);
    this.storage.setItem(KEY, JSON.stringify(session));
    return session;
  }

  async clear() {
    this.storage.removeItem(KEY);
    await this.vault.clear();
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

  async credentials(path, body) {
    const { ok, status, data } = await this.post(path, body);
    if (!ok) throw new AuthError(data?.error ?? `HTTP ${status}`, data?.code ?? 'http', status);
    return this.save(data);
  }

  /** Creates an account; `invite` is the invite code a server in invite mode requires. */
  register(username, password, invite) {
    return this.credentials('/auth/register', invite ? { username, password, invite } : { username, password });
  }

  login(username, password) {
    return this.credentials('/auth/login', { username, password });
  }

  /** Creates the owner account with the first-run link's token (`POST /auth/setup`). */
  setup(token, username, password) {
    return this.credentials('/auth/setup', { token, username, password });
  }

  /**
   * An access token that is good for a while yet, refreshing when needed. `rejected` is a token the
   * server just refused: it is never handed out again.
   */
  async accessToken(rejected = null) {
    const s = this.session;
    if (!s) throw new AuthError('Not signed in', 'signed_out', 0);
    if (fresh(s, this.now(), rejected)) return s.access_token;
    return this.refresh(rejected);
  }

  refresh(rejected = null) {
    this.inflight ??= exclusive(this.locks, async () => {
      // Under the lock: another tab may have rotated the tokens while this one waited. Its access
      // token is as good as a new one, and its refresh token is the only live one.
      const s = await this.vault.get();
      if (!s) throw new AuthError('Not signed in', 'signed_out', 0);
      if (fresh(s, this.now(), rejected)) {
        this.storage.setItem(KEY, JSON.stringify(s));
        return s.access_token;
      }
      const { ok, status, data } = await this.post('/auth/refresh', { refresh_token: s.refresh_token });
      // Saved before the lock is released, so the next holder reads the rotated token.
      if (ok) return (await this.save(data)).access_token;
      if (status === 401 || status === 403) {
        await this.clear();
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
    const s = (await this.vault.get()) ?? this.session;
    await this.clear();
    if (s) await this.post('/auth/logout', { refresh_token: s.refresh_token }).catch(() => {});
  }
}

function fresh(s, now, rejected) {
  return s.access_token !== rejected && s.access_expires - (s.access_margin ?? MARGIN_MS) > now;
}
