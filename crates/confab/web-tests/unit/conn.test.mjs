// The socket lifecycle (web/js/conn.mjs) with a fake WebSocket and fake timers: token on the URL,
// online only after `ready`, backoff, the close-code policy of PROTOCOL §1.7.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Connection, backoff, closePolicy } from '../../web/js/conn.mjs';

function harness({ tokens = ['t1', 't2', 't3'], fail = null } = {}) {
  const sockets = [];
  const timers = [];
  const states = [];
  const packets = [];
  const asked = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }
    send(s) {
      this.sent.push(JSON.parse(s));
    }
    close(code) {
      this.closed = code;
    }
    receive(p) {
      this.onmessage({ data: JSON.stringify(p) });
    }
    drop(code, reason = '') {
      this.onclose({ code, reason });
    }
  }
  const conn = new Connection({
    url: 'ws://h/ws',
    WebSocket: FakeSocket,
    token: async (rejected) => {
      asked.push(rejected);
      if (fail) throw fail;
      return tokens.shift();
    },
    onPacket: (p) => packets.push(p),
    onState: (s, d) => states.push(d ? `${s}:${d}` : s),
    timers: { setTimeout: (f, ms) => timers.push({ f, ms }) && timers.length, clearTimeout: () => {} },
    random: () => 1,
  });
  return { conn, sockets, timers, states, packets, asked };
}

const tick = () => new Promise((r) => setImmediate(r));

test('backoff doubles from 500 ms with jitter and stops growing at 30 s', () => {
  assert.deepEqual([0, 1, 2, 3].map((n) => backoff(n, () => 1)), [500, 1000, 2000, 4000]);
  assert.equal(backoff(0, () => 0), 250);
  assert.equal(backoff(20, () => 1), 30_000);
});

test('close codes: resumable ones retry, a refused token re-authenticates, the rest stop', () => {
  for (const code of [1000, 1001, 1006, 4000, 4009]) assert.equal(closePolicy(code), 'retry', String(code));
  assert.equal(closePolicy(1008, 'Invalid or expired token'), 'reauth');
  assert.equal(closePolicy(1008, 'Too many connections'), 'stop');
  assert.equal(closePolicy(4003), 'stop');
  assert.equal(closePolicy(4004), 'stop');
});

test('opens with the token on the URL and is online only after ready', async () => {
  const h = harness();
  await h.conn.start();
  assert.equal(h.sockets[0].url, 'ws://h/ws?token=t1');
  assert.equal(h.conn.send({ cmd: 'x' }), false, 'nothing goes out before ready');
  h.sockets[0].receive({ cmd: 'handshake' });
  h.sockets[0].receive({ cmd: 'ready', user: {} });
  assert.deepEqual(h.states, ['connecting', 'online']);
  assert.equal(h.conn.send({ cmd: 'x' }), true);
  assert.deepEqual(h.sockets[0].sent, [{ cmd: 'x' }]);
  assert.deepEqual(h.packets.map((p) => p.cmd), ['handshake', 'ready']);
});

test('a lost socket reconnects after a backoff that resets once online', async () => {
  const h = harness({ tokens: ['a', 'b', 'c', 'd'] });
  await h.conn.start();
  h.sockets[0].drop(1006);
  assert.deepEqual(h.timers.map((t) => t.ms), [500]);
  h.timers[0].f();
  await tick();
  h.sockets[1].drop(1006);
  assert.deepEqual(h.timers.map((t) => t.ms), [500, 1000]);
  h.timers[1].f();
  await tick();
  h.sockets[2].receive({ cmd: 'ready' });
  h.sockets[2].drop(1001);
  assert.equal(h.timers[2].ms, 500);
  assert.equal(h.states.at(-1), 'offline');
});

test('a refused token is reported so a fresh one is fetched', async () => {
  const h = harness();
  await h.conn.start();
  h.sockets[0].drop(1008, 'Invalid or expired token');
  h.timers[0].f();
  await tick();
  assert.deepEqual(h.asked, [null, 't1']);
  assert.equal(h.sockets[1].url, 'ws://h/ws?token=t2');
});

test('revocation and sign-in failures stop for good', async () => {
  const h = harness();
  await h.conn.start();
  h.sockets[0].drop(4004, 'Session revoked');
  assert.deepEqual(h.timers, []);
  assert.equal(h.states.at(-1), 'stopped:Session revoked');
  const err = Object.assign(new Error('Invalid or expired refresh token'), { name: 'AuthError' });
  const g = harness({ fail: err });
  await g.conn.start();
  assert.equal(g.states.at(-1), 'stopped:Invalid or expired refresh token');
  assert.equal(g.sockets.length, 0);
});

test('a network failure while fetching a token retries', async () => {
  const h = harness({ fail: new TypeError('fetch failed') });
  await h.conn.start();
  assert.equal(h.timers.length, 1);
  assert.equal(h.states.at(-1), 'offline');
});

test('stop() closes without reconnecting and without reporting', async () => {
  const h = harness();
  await h.conn.start();
  h.conn.stop();
  assert.equal(h.sockets[0].closed, 1000);
  assert.deepEqual(h.timers, []);
  assert.deepEqual(h.states, ['connecting']);
});
