// Shared by the browser tests: a fresh `confab serve` per test (port 0, temporary data folder),
// Debian's Chromium driven by playwright-core (never a downloaded browser), and helpers to sign up
// and read the page. CONFAB_BIN names the server binary (default: the cargo target dir's debug
// build); SCREENSHOTS names the folder screenshots go to (default: web-tests/screenshots).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../../..');
export const BIN = process.env.CONFAB_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'confab');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOTS = process.env.SCREENSHOTS ?? resolve(here, '../screenshots');

/** The environment a server under test gets: this process's, without its `CONFAB_*` variables
 * (`CONFAB_BIN` here, `CONFAB_TEST_POSTGRES_URL` in CI), which Confab would read as configuration
 * and refuse as unknown keys, plus the test's own `env`. */
function serverEnv(env) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONFAB_')));
  return { ...base, ...env };
}

for (const [what, path] of [['confab binary (cargo build -p confab, or set CONFAB_BIN)', BIN], ['chromium (apt-get install chromium, or set CHROMIUM)', CHROMIUM]]) {
  if (!existsSync(path)) throw new Error(`missing ${what}: ${path}`);
}

/** Starts `confab serve` on `listen` with `dir` as its data folder; resolves once it listens. */
function serve(dir, listen, env) {
  const child = spawn(BIN, ['serve', '--listen', listen, '--data-dir', dir], {
    env: serverEnv({ NO_COLOR: '1', RUST_LOG: 'info', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  return new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error(`confab did not start:\n${log}`)), 20_000);
    const onData = (chunk) => {
      log += chunk;
      const m = /confab serving.*?addr=(\S+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) {
        clearTimeout(timer);
        resolveAddr({ child, addr: m[1], log: () => log });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`confab exited with ${code}:\n${log}`)));
  });
}

/**
 * A running server with its own data folder; `stop()` then `start()`, or `restart()`, keep the port
 * and the data. `env` adds
 * configuration (`CONFAB_SECTION__KEY`).
 */
export async function startServer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'confab-e2e-'));
  let proc = await serve(dir, '127.0.0.1:0', env);
  const server = {
    get url() {
      return `http://${proc.addr}`;
    },
    /** Everything the running process printed so far. */
    output() {
      return proc.log();
    },
    async stop() {
      const exited = new Promise((r) => proc.child.once('exit', r));
      proc.child.kill('SIGTERM');
      await exited;
    },
    /** Starts the stopped server again, on the same port and data folder. */
    async start() {
      proc = await serve(dir, proc.addr, env);
    },
    async restart() {
      await server.stop();
      await server.start();
    },
    /** Runs `confab <args> --data-dir <its folder>` (the admin CLI works while the server runs). */
    cli(args, input = '') {
      return new Promise((resolve, reject) => {
        const child = spawn(BIN, [...args, '--data-dir', dir], { env: serverEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`confab ${args.join(' ')}: ${code}\n${out}`))));
        child.stdin.end(input);
      });
    },
    async close() {
      if (proc.child.exitCode === null) await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** Runs `body` with a fresh server (configured by `env`), closed afterwards whatever happens. */
export async function withServer(body, env) {
  const server = await startServer(env);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

/** Chromium with the harness's flags plus a test's own `args` (e.g. fake media devices). */
export async function launch({ args = [] } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...args],
  });
}

/**
 * A page of a new browser context (its own storage, so its own user). Page errors, console errors
 * and dialogs are collected in `page.problems` so a test can assert that none happened.
 */
export async function newPage(browser, viewport = { width: 1280, height: 800 }, options = {}) {
  const context = await browser.newContext({ viewport, ...options });
  return watch(await context.newPage());
}

/** Collects the page's errors and dialogs in `page.problems`. */
export function watch(page) {
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    page.problems.push(`dialog: ${d.message()}`);
    d.dismiss();
  });
  return page;
}

/** Opens the app and creates the account `name` through its form; waits until the socket is online. */
export async function signUp(page, server, name, password = 'correct horse') {
  await page.goto(server.url + '/');
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', password);
  await page.click('button[value=register]');
  await online(page);
}

export async function online(page) {
  await page.waitForSelector('.conn[data-conn=online]');
  await page.waitForSelector('confab-timeline[data-loaded=true]');
}

/** Types `text` into the composer and presses Enter. */
export async function send(page, text) {
  await page.fill('.composer textarea', text);
  await page.press('.composer textarea', 'Enter');
}

/** The system user's first message in #general on a fresh server (`store::bootstrap::WELCOME`). */
export const WELCOME = 'Welcome! This is the start of #general.';

/** The contents of the confirmed messages on screen, oldest first, without the welcome message. */
export function contents(page) {
  return page.$$eval('li.msg[data-msg-id] .content', (ns, welcome) =>
    ns.map((n) => n.textContent).filter((t) => t !== welcome), WELCOME);
}

/** Waits until the confirmed messages on screen, without the welcome message, are exactly
 * `expected` (in order). */
export async function expectContents(page, expected, timeout = 10_000) {
  await page.waitForFunction(
    ([want, welcome]) => {
      const got = [...document.querySelectorAll('li.msg[data-msg-id] .content')]
        .map((n) => n.textContent)
        .filter((t) => t !== welcome);
      return JSON.stringify(got) === JSON.stringify(want);
    },
    [expected, WELCOME],
    { timeout },
  ).catch(async (e) => {
    throw new Error(`${e.message}\nexpected ${JSON.stringify(expected)}\ngot      ${JSON.stringify(await contents(page))}`);
  });
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/**
 * Another user without the app: a page on the server's origin holding a raw WebSocket, for
 * scripted messages. `rpc(frame)` resolves with the server's direct answer.
 */
export async function rawUser(browser, server, name, { login = false } = {}) {
  const page = await newPage(browser);
  await page.goto(server.url + '/healthz');
  await page.evaluate(async ([name, path]) => {
    const r = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: name, password: 'correct horse' }),
    });
    const set = await r.json();
    if (!r.ok) throw new Error(JSON.stringify(set));
    const ws = new WebSocket(`ws://${location.host}/ws?token=${set.access_token}`);
    const waiting = new Map();
    let n = 0;
    window.rpc = (frame) =>
      new Promise((resolve) => {
        const listener = `t${++n}`;
        waiting.set(listener, resolve);
        ws.send(JSON.stringify({ ...frame, listener }));
      });
    await new Promise((resolve, reject) => {
      ws.onmessage = (ev) => {
        const p = JSON.parse(ev.data);
        if (p.cmd === 'ready') resolve();
        const done = p.listener && waiting.get(p.listener);
        if (done) {
          waiting.delete(p.listener);
          done(p);
        }
      };
      ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
    });
  }, [name, login ? '/auth/login' : '/auth/register']);
  const rpc = (frame) => page.evaluate((f) => window.rpc(f), frame);
  return {
    page,
    rpc,
    async post(content, channel = 'general') {
      const p = await rpc({ cmd: 'message_new', channel, content });
      if (p.cmd !== 'message_new') throw new Error(JSON.stringify(p));
      return p.message;
    },
  };
}

/**
 * Routes the page's socket through the test so it can be cut like a lost network: `cut()` closes
 * both sides (code 4000, resumable), `hold = true` refuses reconnects until set back, and
 * `cutAfter(pred)` cuts right after forwarding the first page frame matching `pred` (so its answer
 * is lost). `sent` holds every frame the page sent.
 */
export async function cuttable(page) {
  const ctl = { hold: false, sent: [], links: [], cutAfter: null };
  ctl.cut = () => {
    for (const { page: p, server } of ctl.links.splice(0)) {
      p.close({ code: 4000, reason: 'test: cut' }).catch(() => {});
      server.close({ code: 1000 }).catch(() => {});
    }
  };
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    if (ctl.hold) {
      ws.close({ code: 4000, reason: 'test: held' }).catch(() => {});
      return;
    }
    const server = ws.connectToServer();
    const link = { page: ws, server };
    ctl.links.push(link);
    ws.onMessage((m) => {
      let frame = null;
      try {
        frame = JSON.parse(String(m));
      } catch {}
      ctl.sent.push(frame);
      server.send(m);
      if (ctl.cutAfter?.(frame)) {
        ctl.cutAfter = null;
        ctl.cut();
      }
    });
  });
  return ctl;
}
