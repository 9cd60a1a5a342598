// The voice state machine (web/js/voice.mjs) against scripted server packets and fake media and
// peer connections: who offers, the relay's addressing, candidates that come early, participants
// leaving and joining again, a reconnecting socket, a refused microphone, a move to another tab.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { offers, SPEAKING_LEVEL, Voice } from '../../web/js/voice.mjs';

/** A fake RTCPeerConnection that records what was done to it. */
class FakePeer {
  constructor(config) {
    this.config = config;
    this.log = [];
    this.tracks = [];
    this.closed = false;
    this.connectionState = 'new';
  }
  addTrack(t) {
    this.tracks.push(t);
  }
  async createOffer() {
    return { type: 'offer', sdp: `offer-sdp-${this.config.n}` };
  }
  async createAnswer() {
    return { type: 'answer', sdp: `answer-sdp-${this.config.n}` };
  }
  async setLocalDescription(d) {
    this.log.push(`local:${d.type}`);
  }
  async setRemoteDescription(d) {
    this.log.push(`remote:${d.type}:${d.sdp}`);
  }
  async addIceCandidate(c) {
    this.log.push(`candidate:${c.candidate}`);
  }
  close() {
    this.closed = true;
  }
}

function fakeStream() {
  const track = { kind: 'audio', enabled: true, stopped: false, stop() { this.stopped = true; } };
  return { track, getTracks: () => [track], getAudioTracks: () => [track] };
}

/** A Voice as `me` whose frames land in `sent`; peer ids come from `ids` in order. */
function setup({ me = 'bob', ids = ['m1', 'm2', 'm3'], denied = false } = {}) {
  const sent = [];
  const pcs = [];
  const media = fakeStream();
  const h = { sent, pcs, media, online: true, changes: 0, intervals: new Map() };
  let timer = 0;
  h.voice = new Voice({
    timers: {
      setInterval: (f) => {
        h.intervals.set(++timer, f);
        return timer;
      },
      clearInterval: (id) => h.intervals.delete(id),
    },
    send: (f) => {
      if (!h.online) return false;
      sent.push(f);
      return true;
    },
    microphone: async () => ({ stream: media, denied }),
    createPeer: (config) => {
      const pc = new FakePeer({ ...config, n: pcs.length });
      pcs.push(pc);
      return pc;
    },
    peerId: () => ids.shift(),
    onChange: () => h.changes++,
  });
  h.take = () => sent.splice(0);
  h.signals = () => sent.filter((f) => f.cmd === 'voice_signal');
  h.voice.handle({ cmd: 'ready', user: { username: me } });
  h.voice.handle({
    cmd: 'channels_get',
    val: [
      { name: 'general', type: 'text' },
      { name: 'lounge', type: 'voice', voice_state: [{ username: 'alice', muted: false }] },
    ],
  });
  return h;
}

/** Lets the peers' promise chains run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

function names(voice, channel = 'lounge') {
  return voice.channel(channel).participants.map((u) => `${u.username}${u.muted ? ' (muted)' : ''}`);
}

test('the offerer is decided by the two peer ids alone, the same on both sides', () => {
  assert.equal(offers('a', 'b'), true);
  assert.equal(offers('b', 'a'), false);
  for (const [x, y] of [['m1', 'z9'], ['zz', 'aa'], ['p-1', 'p-10']]) assert.notEqual(offers(x, y), offers(y, x));
});

test('voice channels and their participants come from channels_get; text channels are left to the chat', () => {
  const { voice } = setup();
  assert.deepEqual(voice.channels.map((c) => c.name), ['lounge']);
  assert.deepEqual(names(voice), ['alice']);
  assert.equal(voice.handle({ cmd: 'channels_get', val: [] }), false, 'the chat sees channels_get too');
  assert.equal(voice.handle({ cmd: 'message_new', channel: 'general' }), false);
  assert.equal(voice.handle({ cmd: 'voice_user_joined', channel: 'lounge', user: { username: 'x' } }), true);
});

test('joining: voice_join with a fresh peer id, then an offer to each participant whose id sorts after ours', async () => {
  const h = setup({ ids: ['m1'] });
  await h.voice.join('lounge');
  assert.deepEqual(h.take(), [{ cmd: 'voice_join', channel: 'lounge', peer_id: 'm1', listener: 'voice:join' }]);
  assert.equal(h.voice.session.state, 'joining');
  h.voice.handle({
    cmd: 'voice_join', channel: 'lounge', listener: 'voice:join',
    participants: [{ username: 'alice', peer_id: 'z-alice', muted: false }],
    ice_servers: [{ urls: ['stun:example.test'] }],
  });
  assert.deepEqual(names(h.voice), ['alice', 'bob']);
  assert.equal(h.pcs.length, 1);
  assert.deepEqual(h.pcs[0].config.iceServers, [{ urls: ['stun:example.test'] }], 'the server\'s ICE servers are used');
  assert.deepEqual(h.pcs[0].tracks, [h.media.track], 'the microphone goes to the peer');
  await settle();
  assert.deepEqual(h.take(), [
    { cmd: 'voice_signal', to: 'alice', data: { type: 'offer', sdp: 'offer-sdp-0', to_peer: 'z-alice' }, listener: 'voice:signal' },
  ]);
  // Alice's candidate can come before her answer: it waits for the remote description.
  h.voice.handle({ cmd: 'voice_signal', channel: 'lounge', from: 'alice', from_peer_id: 'z-alice', data: { type: 'candidate', candidate: { candidate: 'c1' }, to_peer: 'm1' } });
  h.voice.handle({ cmd: 'voice_signal', channel: 'lounge', from: 'alice', from_peer_id: 'z-alice', data: { type: 'answer', sdp: 'A', to_peer: 'm1' } });
  h.voice.handle({ cmd: 'voice_signal', channel: 'lounge', from: 'alice', from_peer_id: 'z-alice', data: { type: 'candidate', candidate: { candidate: 'c2' }, to_peer: 'm1' } });
  await settle();
  assert.deepEqual(h.pcs[0].log, ['local:offer', 'remote:answer:A', 'candidate:c1', 'candidate:c2']);
  // ICE candidates found here go to alice, addressed to her peer id.
  h.pcs[0].onicecandidate({ candidate: { toJSON: () => ({ candidate: 'mine' }) } });
  h.pcs[0].onicecandidate({ candidate: null });
  assert.deepEqual(h.take(), [
    { cmd: 'voice_signal', to: 'alice', data: { type: 'candidate', candidate: { candidate: 'mine' }, to_peer: 'z-alice' }, listener: 'voice:signal' },
  ]);
  // The remote track becomes the peer's stream, for an <audio> element.
  const stream = { id: 's' };
  h.pcs[0].ontrack({ streams: [stream], track: {} });
  assert.equal(h.voice.peers.get('alice').stream, stream);
});

test('the side whose id sorts last answers an offer and sends nothing first', async () => {
  const h = setup({ ids: ['z-bob'] });
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [], ice_servers: [] });
  h.take();
  h.voice.handle({ cmd: 'voice_user_joined', channel: 'lounge', user: { username: 'carol', peer_id: 'a-carol', muted: false } });
  assert.deepEqual(names(h.voice), ['alice', 'bob', 'carol']);
  await settle();
  assert.deepEqual(h.signals(), [], 'carol offers, not us');
  h.voice.handle({ cmd: 'voice_signal', channel: 'lounge', from: 'carol', from_peer_id: 'a-carol', data: { type: 'offer', sdp: 'O', to_peer: 'z-bob' } });
  await settle();
  assert.deepEqual(h.pcs[0].log, ['remote:offer:O', 'local:answer']);
  assert.deepEqual(h.take(), [
    { cmd: 'voice_signal', to: 'carol', data: { type: 'answer', sdp: 'answer-sdp-0', to_peer: 'a-carol' }, listener: 'voice:signal' },
  ]);
});

test('signals for an earlier session, or from one gone, are dropped', async () => {
  const h = setup({ ids: ['z-bob'] });
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'a1' }], ice_servers: [] });
  h.voice.handle({ cmd: 'voice_signal', from: 'alice', from_peer_id: 'a1', data: { type: 'offer', sdp: 'old', to_peer: 'an-old-id-of-bob' } });
  h.voice.handle({ cmd: 'voice_signal', from: 'alice', from_peer_id: 'a0', data: { type: 'candidate', candidate: { candidate: 'x' }, to_peer: 'z-bob' } });
  await settle();
  assert.deepEqual(h.pcs[0].log, []);
  assert.equal(h.pcs.length, 1);
});

test('a participant leaving closes its connection; joining again starts a new one', async () => {
  const h = setup({ ids: ['m1'] });
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'x1' }], ice_servers: [] });
  await settle();
  h.voice.handle({ cmd: 'voice_user_left', channel: 'lounge', username: 'alice' });
  assert.equal(h.pcs[0].closed, true);
  assert.equal(h.voice.peers.size, 0);
  assert.deepEqual(names(h.voice), ['bob']);
  h.take();
  h.voice.handle({ cmd: 'voice_user_joined', channel: 'lounge', user: { username: 'alice', peer_id: 'x2', muted: true } });
  assert.deepEqual(names(h.voice), ['alice (muted)', 'bob']);
  assert.equal(h.pcs.length, 2);
  await settle();
  assert.deepEqual(h.signals().map((f) => f.data.to_peer), ['x2']);
  h.voice.handle({ cmd: 'voice_user_updated', channel: 'lounge', user: { username: 'alice', muted: false } });
  assert.deepEqual(names(h.voice), ['alice', 'bob']);
});

test('after a reconnect the tab joins again under a new peer id and rebuilds its connections', async () => {
  const h = setup({ ids: ['m1', 'm2'] });
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'x1' }], ice_servers: [] });
  await settle();
  h.take();
  h.voice.handle({ cmd: 'ready', user: { username: 'bob' } });
  assert.equal(h.pcs[0].closed, true, 'the other side dropped it when our socket closed');
  assert.deepEqual(h.take(), [{ cmd: 'voice_join', channel: 'lounge', peer_id: 'm2', listener: 'voice:join' }]);
  // Alice learns of the new membership and, her id sorting after ours, waits for our offer.
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'x1' }], ice_servers: [] });
  await settle();
  assert.equal(h.pcs.length, 2);
  assert.deepEqual(h.signals().map((f) => [f.data.type, f.data.to_peer]), [['offer', 'x1']]);
});

test('a join made offline is sent when the socket is back', async () => {
  const h = setup({ ids: ['m1', 'm2'] });
  h.online = false;
  await h.voice.join('lounge');
  assert.equal(h.voice.session.state, 'offline');
  h.online = true;
  h.voice.handle({ cmd: 'ready', user: { username: 'bob' } });
  assert.deepEqual(h.take().map((f) => f.cmd), ['voice_join']);
  assert.equal(h.voice.session.state, 'joining');
});

test('a refused microphone joins muted with a silent track and says so to the server', async () => {
  const h = setup({ denied: true });
  await h.voice.join('lounge');
  assert.equal(h.voice.muted, true);
  assert.equal(h.media.track.enabled, false);
  h.take();
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [], ice_servers: [] });
  assert.deepEqual(h.take(), [{ cmd: 'voice_mute', channel: 'lounge', listener: 'voice:mute' }]);
  assert.deepEqual(names(h.voice), ['alice', 'bob (muted)']);
  h.voice.setMuted(false);
  assert.equal(h.voice.muted, true, 'nothing to unmute');
  assert.match(h.voice.error, /No microphone/);
});

test('mute and unmute switch the track and tell the server; leave releases everything', async () => {
  const h = setup();
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'x1' }], ice_servers: [] });
  h.take();
  h.voice.setMuted(true);
  assert.equal(h.media.track.enabled, false);
  h.voice.setMuted(false);
  assert.equal(h.media.track.enabled, true);
  assert.deepEqual(h.take().map((f) => f.cmd), ['voice_mute', 'voice_unmute']);
  h.voice.leave();
  assert.deepEqual(h.take(), [{ cmd: 'voice_leave', channel: 'lounge', listener: 'voice:leave' }]);
  assert.equal(h.media.track.stopped, true);
  assert.equal(h.pcs[0].closed, true);
  assert.equal(h.voice.session, null);
  assert.deepEqual(names(h.voice), ['alice']);
  assert.equal(h.voice.handle({ cmd: 'voice_leave', channel: 'lounge', listener: 'voice:leave' }), true);
});

test('joined from another tab: the pushed voice_leave ends this tab\'s part', async () => {
  const h = setup();
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'x1' }], ice_servers: [] });
  h.voice.handle({ cmd: 'voice_user_left', channel: 'lounge', username: 'bob' });
  h.voice.handle({ cmd: 'voice_leave', channel: 'lounge' });
  assert.equal(h.voice.session, null);
  assert.equal(h.pcs[0].closed, true);
  assert.equal(h.media.track.stopped, true);
  assert.match(h.voice.error, /another tab/);
});

test('a refused join shows the error and leaves nothing running; signal errors are quiet', async () => {
  const h = setup();
  await h.voice.join('lounge');
  assert.equal(h.voice.handle({ cmd: 'error', listener: 'voice:join', val: 'You do not have permission to access this voice channel' }), true);
  assert.equal(h.voice.session, null);
  assert.equal(h.media.track.stopped, true);
  assert.equal(h.voice.error, 'You do not have permission to access this voice channel');
  h.voice.error = null;
  assert.equal(h.voice.handle({ cmd: 'error', listener: 'voice:signal', val: 'Recipient is not in your voice channel' }), true);
  assert.equal(h.voice.error, null);
  assert.equal(h.voice.handle({ cmd: 'error', listener: 'send:n1', val: 'x' }), false, 'the chat\'s errors stay the chat\'s');
});

test('participants announced before our reply are connected once it comes', async () => {
  const h = setup({ ids: ['m1'] });
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_user_joined', channel: 'lounge', user: { username: 'carol', peer_id: 'y1', muted: false } });
  assert.equal(h.pcs.length, 0, 'no ICE servers yet');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'carol', peer_id: 'y1' }], ice_servers: [] });
  assert.equal(h.pcs.length, 1, 'one connection, not two');
  assert.deepEqual([...h.voice.peers.keys()], ['carol']);
});

test('a deleted voice channel ends the membership', async () => {
  const h = setup();
  await h.voice.join('lounge');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [], ice_servers: [] });
  h.voice.handle({ cmd: 'channels_get', val: [{ name: 'general', type: 'text' }] });
  assert.equal(h.voice.session, null);
  assert.equal(h.media.track.stopped, true);
});

test('speaking marks follow the received audio level while in the channel, and stop with it', async () => {
  const h = setup();
  await h.voice.join('lounge');
  assert.equal(h.intervals.size, 0, 'nothing to sample before the join is answered');
  h.voice.handle({ cmd: 'voice_join', channel: 'lounge', participants: [{ username: 'alice', peer_id: 'x1' }], ice_servers: [] });
  assert.equal(h.intervals.size, 1);
  // WebRTC's running totals: energy is the sum of level² × seconds.
  const totals = { totalAudioEnergy: 0, totalSamplesDuration: 0 };
  const hear = (level, seconds) => {
    totals.totalAudioEnergy += level * level * seconds;
    totals.totalSamplesDuration += seconds;
  };
  h.pcs[0].getStats = async () => new Map([['in', { type: 'inbound-rtp', kind: 'audio', ...totals }]]);
  const [tick] = h.intervals.values();
  const before = h.changes;
  await tick();
  hear(0, 0.4);
  await tick();
  assert.equal(h.voice.peers.get('alice').speaking, false);
  assert.equal(h.changes, before, 'nothing changed, nothing redrawn');
  // A short loud sound between two samples (a tenth of the period) still marks the period.
  hear(SPEAKING_LEVEL * 10, 0.04);
  hear(0, 0.36);
  await tick();
  assert.equal(h.voice.peers.get('alice').speaking, true);
  assert.equal(h.changes, before + 1);
  hear(SPEAKING_LEVEL / 2, 0.4);
  await tick();
  assert.equal(h.voice.peers.get('alice').speaking, false, 'quiet again');
  assert.equal(h.changes, before + 2);
  h.voice.leave();
  assert.equal(h.intervals.size, 0, 'the sampling stops with the membership');
});
