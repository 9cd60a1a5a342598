// Voice channels: who is in which voice channel (`voice_state` of `channels_get`, then the live
// `voice_user_joined` / `_left` / `_updated`), this tab's own membership, and one WebRTC peer
// connection per other participant, signalled through the server's `voice_signal` relay
// (docs/voice.md). No DOM: the microphone and the RTCPeerConnection constructor are passed in
// (voice-view.mjs passes the browser's), so `node --test` drives the state machine with fakes.

/** A random peer id (hex), new for every join so signals meant for an earlier one can be told apart. */
export function randomPeerId() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Whether the side with peer id `mine` sends the offer to the side with `theirs`. Both sides work
 * the same answer out from the two ids alone, whichever way they learnt of each other (the joiner
 * from its `voice_join` reply, the others from `voice_user_joined`, both at once when two join
 * together), so exactly one offer is made and two never cross.
 */
export function offers(mine, theirs) {
  return mine < theirs;
}

/**
 * Audio level (0..1, the root mean square over the last sampling period) above which a
 * participant shows as speaking.
 */
export const SPEAKING_LEVEL = 0.02;
/** How often the speaking marks are refreshed while in a channel. */
const SPEAKING_EVERY_MS = 400;

/**
 * The audio energy `pc` has received so far and over how many seconds of samples (summed over
 * its inbound audio streams), as WebRTC's statistics count them.
 */
async function receivedEnergy(pc) {
  let energy = 0;
  let seconds = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      energy += s.totalAudioEnergy ?? 0;
      seconds += s.totalSamplesDuration ?? 0;
    }
  });
  return { energy, seconds };
}

const same = (a, b) => typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();

export class Voice {
  /**
   * @param {object} o
   * @param {(frame: object) => boolean} o.send  false when the socket cannot take it now
   * @param {() => Promise<{stream: MediaStream, denied: boolean, close?: () => void}>} o.microphone
   *   the local audio; `denied` when it is a silent stand-in (no permission or no device)
   * @param {(config: {iceServers: object[]}) => RTCPeerConnection} o.createPeer
   * @param {() => void} [o.onChange]
   * @param {() => string} [o.peerId]
   * @param {{setInterval: Function, clearInterval: Function}} [o.timers]
   */
  constructor({ send, microphone, createPeer, onChange = () => {}, peerId = randomPeerId, timers = globalThis }) {
    Object.assign(this, { send, microphone, createPeer, onChange, peerId, timers });
    this.ticker = null;
    this.sampling = false;
    this.me = null;
    /** Voice channels in display order: `{name, display_name, participants: [{username, muted}]}`. */
    this.channels = [];
    /**
     * This tab's membership, or null: `{channel, peerId, state, iceServers, early}`; state is
     * 'media' (waiting for the microphone), 'joining' (voice_join sent), 'offline' (to send when
     * the socket is back) or 'joined'. `early` holds participants announced before the reply.
     */
    this.session = null;
    /** The microphone (or silence) while in a channel. */
    this.local = null;
    this.muted = false;
    /** username → `{username, peerId, pc, offerer, remoteSet, queued, chain, state, stream, speaking, closed}`. */
    this.peers = new Map();
    /** The last voice error the server answered with, for the view. */
    this.error = null;
  }

  /** Takes the packets about voice; true when the packet was only for voice (the chat skips it). */
  handle(p) {
    switch (p.cmd) {
      case 'ready':
        this.me = p.user?.username ?? null;
        this.reconnected();
        return false;
      case 'channels_get':
        this.setChannels(Array.isArray(p.val) ? p.val : []);
        return false;
      case 'voice_join':
        this.joined(p);
        return true;
      case 'voice_leave':
        // Our own leave's reply needs nothing; without a listener it says another tab took over.
        if (!p.listener && this.session && same(p.channel, this.session.channel)) {
          this.error = 'Joined from another tab or device';
          this.teardown();
        }
        return true;
      case 'voice_mute':
      case 'voice_unmute':
        return true;
      case 'voice_user_joined':
        this.userJoined(p);
        return true;
      case 'voice_user_left':
        this.userLeft(p);
        return true;
      case 'voice_user_updated':
        this.upsert(p.channel, p.user);
        this.onChange();
        return true;
      case 'voice_signal':
        if (p.from) this.signalled(p);
        return true;
      case 'error':
      case 'rate_limit':
        if (!p.listener?.startsWith('voice:')) return false;
        this.failed(p);
        return true;
      default:
        return false;
    }
  }

  channel(name) {
    return this.channels.find((c) => same(c.name, name)) ?? null;
  }

  setChannels(list) {
    this.channels = list
      .filter((c) => c && c.type === 'voice')
      .map((c) => ({
        name: c.name,
        display_name: c.display_name ?? null,
        participants: (Array.isArray(c.voice_state) ? c.voice_state : []).map((u) => ({ username: u.username, muted: Boolean(u.muted) })),
      }));
    // The channel was deleted or hidden from us: the server has ended the membership.
    if (this.session && !this.channel(this.session.channel)) this.teardown();
    this.onChange();
  }

  /** Adds or updates `user` in the participant list of `channelName`. */
  upsert(channelName, user) {
    const c = this.channel(channelName);
    if (!c || !user?.username) return;
    const entry = { username: user.username, muted: Boolean(user.muted) };
    const i = c.participants.findIndex((u) => u.username === user.username);
    if (i >= 0) c.participants[i] = entry;
    else c.participants.push(entry);
    c.participants.sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
  }

  drop(channelName, username) {
    const c = this.channel(channelName);
    if (c) c.participants = c.participants.filter((u) => u.username !== username);
  }

  /** Joins `name`: the microphone first (a silent track, muted, when it is refused), then `voice_join`. */
  async join(name) {
    if (this.session && same(this.session.channel, name)) return;
    // Joining another channel moves the membership on the server; here the old peers just go.
    if (this.session) this.teardown({ keepMedia: true });
    this.error = null;
    const session = { channel: name, peerId: null, state: 'media', iceServers: [], early: new Map() };
    this.session = session;
    this.onChange();
    if (!this.local) {
      try {
        this.local = await this.microphone();
      } catch (e) {
        if (this.session === session) this.session = null;
        this.error = `No audio: ${e?.message ?? e}`;
        return this.onChange();
      }
      if (this.session !== session) return this.releaseMedia(); // left while waiting
      if (this.local.denied) this.muted = true;
      this.applyMute();
    }
    this.sendJoin();
  }

  sendJoin() {
    const s = this.session;
    s.peerId = this.peerId();
    s.early.clear();
    const sent = this.send({ cmd: 'voice_join', channel: s.channel, peer_id: s.peerId, listener: 'voice:join' });
    s.state = sent ? 'joining' : 'offline';
    this.onChange();
  }

  /**
   * After every (re)connect. The server ended the membership with the old socket, so the peers
   * are gone on the other side: close them and join again under a new peer id.
   */
  reconnected() {
    const s = this.session;
    if (!s || s.state === 'media') return;
    this.closePeers();
    this.sendJoin();
  }

  /** The `voice_join` reply: the others in the channel, and the ICE servers to reach them with. */
  joined(p) {
    const s = this.session;
    if (!s || s.state !== 'joining' || !same(p.channel, s.channel)) return;
    s.channel = p.channel;
    s.state = 'joined';
    s.iceServers = Array.isArray(p.ice_servers) ? p.ice_servers : [];
    this.upsert(s.channel, { username: this.me, muted: this.muted });
    // The server has us unmuted after a join; a muted tab (or one without a microphone) says so again.
    if (this.muted) this.send({ cmd: 'voice_mute', channel: s.channel, listener: 'voice:mute' });
    const others = new Map(s.early);
    for (const u of Array.isArray(p.participants) ? p.participants : []) {
      if (u?.username && u.username !== this.me) {
        this.upsert(s.channel, u);
        if (u.peer_id) others.set(u.username, u.peer_id);
      }
    }
    s.early.clear();
    for (const [username, peerId] of others) this.connect(username, peerId);
    this.ticker ??= this.timers.setInterval(() => this.tickSpeaking(), SPEAKING_EVERY_MS);
    this.onChange();
  }

  /** One sampling tick; a tick that finds the previous one still reading the stats is skipped. */
  async tickSpeaking() {
    if (this.sampling) return;
    this.sampling = true;
    try {
      if (await this.sampleSpeaking()) this.onChange();
    } finally {
      this.sampling = false;
    }
  }

  /**
   * Marks the peers whose received audio since the last sample was louder than SPEAKING_LEVEL;
   * true when a mark changed. The level is the energy WebRTC accumulated over the period, not
   * the level of the newest packet: a short sound between two samples still counts, and a
   * sampling period that beats with a periodic sound cannot miss it every time.
   */
  async sampleSpeaking() {
    let changed = false;
    for (const peer of [...this.peers.values()]) {
      const now = await receivedEnergy(peer.pc);
      const was = peer.energy ?? now;
      peer.energy = now;
      const seconds = now.seconds - was.seconds;
      const level = seconds > 0 ? Math.sqrt(Math.max(0, now.energy - was.energy) / seconds) : 0;
      const speaking = level > SPEAKING_LEVEL;
      if (speaking !== peer.speaking) {
        peer.speaking = speaking;
        changed = true;
      }
    }
    return changed;
  }

  userJoined(p) {
    const u = p.user;
    this.upsert(p.channel, u);
    const s = this.session;
    if (s && same(p.channel, s.channel) && u?.peer_id && u.username !== this.me) {
      if (s.state === 'joined') this.connect(u.username, u.peer_id);
      else if (s.state === 'joining') s.early.set(u.username, u.peer_id);
    }
    this.onChange();
  }

  userLeft(p) {
    this.drop(p.channel, p.username);
    const s = this.session;
    if (s && same(p.channel, s.channel) && p.username !== this.me) {
      s.early.delete(p.username);
      this.closePeer(p.username);
    }
    this.onChange();
  }

  /** The peer connection to `username` (under `peerId`), made now unless it exists already. */
  connect(username, peerId) {
    const old = this.peers.get(username);
    if (old?.peerId === peerId) return old;
    if (old) this.closePeer(username);
    const s = this.session;
    const pc = this.createPeer({ iceServers: s.iceServers });
    const peer = {
      username, peerId, pc, offerer: offers(s.peerId, peerId), remoteSet: false, queued: [],
      chain: Promise.resolve(), state: 'new', stream: null, speaking: false, energy: null, closed: false,
    };
    this.peers.set(username, peer);
    const stream = this.local.stream;
    for (const t of stream.getTracks()) pc.addTrack(t, stream);
    pc.onicecandidate = (e) => {
      if (e.candidate) this.signal(peer, { type: 'candidate', candidate: e.candidate.toJSON?.() ?? e.candidate });
    };
    pc.ontrack = (e) => {
      if (peer.closed) return;
      peer.stream = e.streams?.[0] ?? null;
      peer.track = e.track;
      this.onChange();
    };
    pc.onconnectionstatechange = () => {
      if (peer.closed) return;
      peer.state = pc.connectionState;
      this.onChange();
    };
    if (peer.offerer) {
      this.step(peer, async () => {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        this.signal(peer, { type: 'offer', sdp: offer.sdp });
      });
    }
    this.onChange();
    return peer;
  }

  /** Runs `fn` after the peer's earlier steps: SDP and ICE steps must not overlap. */
  step(peer, fn) {
    peer.chain = peer.chain
      .then(() => (peer.closed ? undefined : fn()))
      .catch((e) => {
        if (peer.closed) return;
        peer.state = 'failed';
        this.error = `Voice connection to ${peer.username} failed: ${e?.message ?? e}`;
        this.onChange();
      });
    return peer.chain;
  }

  /** Sends `data` to `peer`, addressed to its current peer id so a later session of it ignores it. */
  signal(peer, data) {
    if (peer.closed) return;
    this.send({ cmd: 'voice_signal', to: peer.username, data: { ...data, to_peer: peer.peerId }, listener: 'voice:signal' });
  }

  /** A relayed offer, answer or ICE candidate. */
  signalled(p) {
    const s = this.session;
    const d = p.data;
    if (s?.state !== 'joined' || !d || typeof d !== 'object' || d.to_peer !== s.peerId) return;
    let peer = this.peers.get(p.from);
    if (!peer || peer.peerId !== p.from_peer_id) {
      // An offer can come before its sender's voice_user_joined; anything else is for a connection gone.
      if (d.type !== 'offer' || typeof p.from_peer_id !== 'string') return;
      peer = this.connect(p.from, p.from_peer_id);
    }
    const { pc } = peer;
    switch (d.type) {
      case 'offer':
        if (peer.offerer) return;
        this.step(peer, async () => {
          await pc.setRemoteDescription({ type: 'offer', sdp: d.sdp });
          await this.remoteSet(peer);
          const answer = await pc.createAnswer();
          await pc.setLocalDescription(answer);
          this.signal(peer, { type: 'answer', sdp: answer.sdp });
        });
        return;
      case 'answer':
        if (!peer.offerer) return;
        this.step(peer, async () => {
          await pc.setRemoteDescription({ type: 'answer', sdp: d.sdp });
          await this.remoteSet(peer);
        });
        return;
      case 'candidate':
        if (!d.candidate) return;
        if (peer.remoteSet) this.step(peer, () => pc.addIceCandidate(d.candidate));
        else peer.queued.push(d.candidate);
        return;
    }
  }

  /** The remote description is in: the candidates that came before it can be added now. */
  async remoteSet(peer) {
    peer.remoteSet = true;
    for (const c of peer.queued.splice(0)) await peer.pc.addIceCandidate(c);
  }

  closePeer(username) {
    const peer = this.peers.get(username);
    if (!peer) return;
    peer.closed = true;
    this.peers.delete(username);
    peer.pc.close();
  }

  closePeers() {
    for (const username of [...this.peers.keys()]) this.closePeer(username);
  }

  releaseMedia() {
    for (const t of this.local?.stream.getTracks() ?? []) t.stop();
    this.local?.close?.();
    this.local = null;
    this.muted = false;
  }

  /** Ends this tab's part locally: peers closed, and (unless moving) the microphone released. */
  teardown({ keepMedia = false } = {}) {
    const s = this.session;
    this.closePeers();
    this.session = null;
    if (this.ticker !== null) this.timers.clearInterval(this.ticker);
    this.ticker = null;
    if (s && this.me) this.drop(s.channel, this.me);
    if (!keepMedia) this.releaseMedia();
    this.onChange();
  }

  leave() {
    const s = this.session;
    if (!s) return;
    if (s.state === 'joining' || s.state === 'joined') this.send({ cmd: 'voice_leave', channel: s.channel, listener: 'voice:leave' });
    this.error = null;
    this.teardown();
  }

  /** Mutes or unmutes the microphone; without one (denied) it stays muted. */
  setMuted(muted) {
    if (!muted && this.local?.denied) {
      this.error = 'No microphone: allow it in the browser and join again';
      return this.onChange();
    }
    this.muted = muted;
    this.applyMute();
    const s = this.session;
    if (s?.state === 'joined') {
      this.send({ cmd: muted ? 'voice_mute' : 'voice_unmute', channel: s.channel, listener: 'voice:mute' });
      this.upsert(s.channel, { username: this.me, muted });
    }
    this.onChange();
  }

  applyMute() {
    for (const t of this.local?.stream.getAudioTracks() ?? []) t.enabled = !this.muted;
  }

  failed(p) {
    const what = p.listener;
    // A signal's recipient left meanwhile (its voice_user_left follows); a leave's membership was gone.
    if (what === 'voice:signal' || what === 'voice:leave') return;
    this.error = p.cmd === 'rate_limit' ? 'Rate limited; try again' : p.val ?? 'Voice error';
    if (what === 'voice:join') this.teardown();
    else this.onChange();
  }

  /** Everything off, for a sign-out. */
  stop() {
    this.teardown();
  }
}
