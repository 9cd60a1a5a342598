// The session's authoritative copy, in IndexedDB: one record, read and written in transactions,
// which every tab of the origin sees in commit order. The refresh (auth.mjs) reads and writes it
// while holding the cross-tab lock, so the tab that takes the lock next reads the refresh token the
// previous holder stored — localStorage gives no such guarantee across tabs.

const STORE = 'session';

/** A vault over `indexedDB` (database `confab`), or null when it cannot be opened (then auth.mjs uses storage). */
export async function indexedDbVault(indexedDB) {
  if (!indexedDB) return null;
  const db = await new Promise((resolve) => {
    const req = indexedDB.open('confab', 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null);
    req.onblocked = () => resolve(null);
  });
  if (!db) return null;
  const run = (mode, op) =>
    new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = op(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  return {
    get: async () => (await run('readonly', (s) => s.get('current'))) ?? null,
    set: (session) => run('readwrite', (s) => s.put(session, 'current')).then(() => {}),
    clear: () => run('readwrite', (s) => s.delete('current')).then(() => {}),
  };
}
