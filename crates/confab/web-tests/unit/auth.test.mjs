// The session store (web/js/auth.mjs): tokens survive a reload, refresh rotates under a lock, and
// two tabs that want a fresh token at the same moment spend the refresh token only once.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Auth, AuthError, storageVault } from '../../web/js/auth.mjs';

/** A fake server holding one live refresh token; reusing a spent one is an error, as on Confab. */
function fakeServer() {
  const s = { live: 'r0', spent: new Set(), calls: [], n: 0 };
  s.fetch = async (url, init) => {
    const path = new URL(url, 'http://x').pathname;
    const body = JSON.parse(init.body);
    s.calls.push(path);
    await new Promise((r) => setTimeout(r, 5));
    const set = () => {
      s.live = `r${++s.n}`;
      return { user: { id: 'u', username: 'alice' }, access_token: `a${s.n}`, expires_in: 900, refresh_token: s.live };
    };
    if (path === '/auth/login') {
      if (body.password !== 'pw') return reply(401, { error: 'Invalid username or password', code: 'invalid_credentials' });
      return reply(200, set());
    }
    if (path === '/auth/refresh') {
      if (body.refresh_token !== s.live) return reply(401, { error: 'Refresh token reuse detected', code: 'refresh_reuse' });
      s.spent.add(body.refresh_token);
      return reply(200, set());
    }
    if (path === '/auth/logout') {
      s.revoked = body.refresh_token;
      return reply(204, null);
    }
    return reply(404, {});
  };
  return s;
}

function reply(status, body) {
  return { status, ok: status >= 200 && status < 300, json: async () => body };
}

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v), removeItem: (k) => m.delete(k) };
}

/** navigator.locks for tabs of one origin: one holder at a time per name. */
function sharedLocks() {
  let tail = Promise.resolve();
  return {
    request(name, opts, fn) {
      const run = tail.then(() => fn());
      tail = run.catch(() => {});
      return run;
    },
  };
}

test('login stores the token set; a new Auth over the same storage (a reload) is still signed in', async () => {
  const server = fakeServer();
  const storage = memoryStorage();
  const a = new Auth({ fetch: server.fetch, storage, locks: undefined });
  await a.login('alice', 'pw');
  const reloaded = new Auth({ fetch: server.fetch, storage, locks: undefined });
  assert.equal(reloaded.username, 'alice');
  assert.equal(await reloaded.accessToken(), 'a1');
  assert.deepEqual(server.calls, ['/auth/login'], 'a fresh token needs no refresh');
});

test('bad credentials reject with the server’s text', async () => {
  const a = new Auth({ fetch: fakeServer().fetch, storage: memoryStorage() });
  await assert.rejects(a.login('alice', 'nope'), (e) => e instanceof AuthError && e.message === 'Invalid username or password');
});

test('an expiring access token is refreshed and the refresh token rotated', async () => {
  const server = fakeServer();
  let now = 0;
  const a = new Auth({ fetch: server.fetch, storage: memoryStorage(), now: () => now });
  await a.login('alice', 'pw');
  now += 850_000; // inside the last minute
  assert.equal(await a.accessToken(), 'a2');
  assert.equal(a.session.refresh_token, 'r2');
});

test('two tabs refreshing at once: one refresh, both get the new token, nobody is signed out', async () => {
  const server = fakeServer();
  const storage = memoryStorage();
  const locks = sharedLocks();
  let now = 0;
  const tab1 = new Auth({ fetch: server.fetch, storage, locks, now: () => now });
  const tab2 = new Auth({ fetch: server.fetch, storage, locks, now: () => now });
  await tab1.login('alice', 'pw');
  now += 900_000;
  const [t1, t2] = await Promise.all([tab1.accessToken(), tab2.accessToken()]);
  assert.equal(t1, 'a2');
  assert.equal(t2, 'a2');
  assert.deepEqual(server.calls.filter((c) => c === '/auth/refresh'), ['/auth/refresh']);
  assert.equal(tab2.username, 'alice');
});

test('a tab whose localStorage lags behind still reads the rotated token from the vault under the lock', async () => {
  const server = fakeServer();
  const locks = sharedLocks();
  const vault = storageVault(memoryStorage());
  let now = 0;
  const storage1 = memoryStorage();
  const tab1 = new Auth({ fetch: server.fetch, storage: storage1, vault, locks, now: () => now });
  await tab1.login('alice', 'pw');
  // Tab 2's copy of localStorage never sees tab 1's later writes.
  const storage2 = memoryStorage();
  storage2.setItem('confab.session', storage1.getItem('confab.session'));
  const tab2 = new Auth({ fetch: server.fetch, storage: storage2, vault, locks, now: () => now });
  const refused = tab1.session.access_token;
  const [t1, t2] = await Promise.all([tab1.accessToken(refused), tab2.accessToken(refused)]);
  assert.equal(t1, 'a2');
  assert.equal(t2, 'a2');
  assert.deepEqual(server.calls.filter((c) => c === '/auth/refresh'), ['/auth/refresh']);
  assert.equal(tab2.session.refresh_token, 'r2', 'the lagging copy is brought up to date');
});

test('without the lock the same race spends a token twice (what the lock prevents)', async () => {
  const server = fakeServer();
  const storage = memoryStorage();
  let now = 0;
  const tab1 = new Auth({ fetch: server.fetch, storage, now: () => now });
  const tab2 = new Auth({ fetch: server.fetch, storage, now: () => now });
  await tab1.login('alice', 'pw');
  now += 900_000;
  const results = await Promise.allSettled([tab1.accessToken(), tab2.accessToken()]);
  assert.ok(results.some((r) => r.status === 'rejected'));
});

test('a token the server refused is never handed out again', async () => {
  const server = fakeServer();
  const a = new Auth({ fetch: server.fetch, storage: memoryStorage() });
  await a.login('alice', 'pw');
  assert.equal(await a.accessToken('a1'), 'a2');
});

test('a refused refresh signs out; logout revokes the refresh token on the server', async () => {
  const server = fakeServer();
  let now = 0;
  const a = new Auth({ fetch: server.fetch, storage: memoryStorage(), now: () => now });
  await a.login('alice', 'pw');
  server.live = 'elsewhere';
  now += 900_000;
  await assert.rejects(a.accessToken(), (e) => e.name === 'AuthError' && e.code === 'refresh_reuse');
  assert.equal(a.session, null);
  await a.login('alice', 'pw');
  const token = a.session.refresh_token;
  await a.logout();
  assert.equal(server.revoked, token);
  assert.equal(a.session, null);
});
