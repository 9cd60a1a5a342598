// The WebSocket to the server: opens it with the access token on the URL (PROTOCOL §2.6),
// reconnects with jittered exponential backoff after a resumable close (§1.7), and stops for good
// when the server says the session is over. No DOM: the WebSocket class and timers are passed in.

/** Closes after which reconnecting cannot help without new credentials (PROTOCOL §1.7). */
const FATAL = new Set([4003, 4004]);
const BASE_MS = 500;
const MAX_MS = 30_000;

/** Delay before reconnect attempt `n` (0-based): doubling from BASE_MS, capped, with jitter. */
export function backoff(n, random = Math.random) {
  const ceiling = Math.min(MAX_MS, BASE_MS * 2 ** n);
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** What to do after a close: 'retry' (backoff), 'reauth' (new token, then retry) or 'stop'. */
export function closePolicy(code, reason = '') {
  if (FATAL.has(code)) return 'stop';
  if (code === 1008) return /token/i.test(reason) ? 'reauth' : 'stop';
  return 'retry';
}

export class Connection {
  /**
   * @param {object} o
   * @param {string} o.url  ws(s)://host/ws
   * @param {typeof WebSocket} o.WebSocket
   * @param {(rejected?: string|null) => Promise<string>} o.token  an access token
   * @param {(packet: object) => void} o.onPacket
   * @param {(state: string, detail?: string) => void} o.onState
   *   'connecting' | 'online' | 'offline' (will retry) | 'stopped' (needs the user)
   * @param {{setTimeout: Function, clearTimeout: Function}} [o.timers]
   * @param {() => number} [o.random]
   */
  constructor({ url, WebSocket, token, onPacket, onState, timers = globalThis, random = Math.random }) {
    Object.assign(this, { url, WebSocket, token, onPacket, onState, timers, random });
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.ready = false;
    this.lastToken = null;
    this.rejected = null;
  }

  /** Opens the socket (again). */
  async start() {
    if (this.stopped) return;
    this.onState('connecting');
    let token;
    try {
      token = await this.token(this.rejected);
    } catch (e) {
      if (e?.name === 'AuthError') return this.end(e.message);
      return this.later();
    }
    if (this.stopped) return;
    this.lastToken = token;
    const ws = new this.WebSocket(`${this.url}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    this.ready = false;
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      let packet;
      try {
        packet = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (packet?.cmd === 'ready') {
        this.ready = true;
        this.attempt = 0;
        this.rejected = null;
        this.onState('online');
      }
      this.onPacket(packet);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.ready = false;
      if (this.stopped) return;
      const policy = closePolicy(ev.code, ev.reason);
      if (policy === 'stop') return this.end(ev.reason || `closed (${ev.code})`);
      if (policy === 'reauth') this.rejected = this.lastToken;
      this.later();
    };
  }

  later() {
    this.onState('offline');
    const delay = backoff(this.attempt++, this.random);
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.start();
    }, delay);
  }

  /** Sends a frame if the socket is authenticated; false when it is not (the caller keeps it). */
  send(frame) {
    if (!this.ready || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Closes the connection for good at the app's request (logout); reports nothing. */
  stop() {
    this.stopped = true;
    if (this.timer) this.timers.clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    ws?.close(1000);
  }

  /** The server or the session ended it (revoked, banned, refresh refused): 'stopped' with why. */
  end(detail) {
    this.stop();
    this.onState('stopped', detail);
  }
}
