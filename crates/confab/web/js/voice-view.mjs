// The browser side of voice (voice.mjs holds the state machine): the microphone, the peer
// connections, the voice channels in the channel list with join / leave / mute buttons, and one
// <audio> element per remote participant. State the tests look for is in `data-*` attributes.

import { el } from './dom.mjs';
import { Voice } from './voice.mjs';

/**
 * The microphone; when it is refused (or there is none, or the page is not a secure context) a
 * silent track instead, marked `denied` so the state machine joins muted.
 */
export async function microphone() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    return { stream, denied: false };
  } catch {
    const ctx = new AudioContext();
    const stream = ctx.createMediaStreamDestination().stream;
    return { stream, denied: true, close: () => ctx.close() };
  }
}

/** A `Voice` wired to the browser's media and WebRTC. */
export function browserVoice({ send, onChange }) {
  return new Voice({ send, onChange, microphone, createPeer: (config) => new RTCPeerConnection(config) });
}

/** The voice channels, under the text channels of the channel list. */
class ConfabVoice extends HTMLElement {
  /** @param {Voice} voice */
  render(voice) {
    const s = voice.session;
    const items = voice.channels.map((c) => {
      const here = s !== null && s.channel === c.name;
      const buttons = here
        ? [
          el('button', { class: 'act voice-mute', text: voice.muted ? 'Unmute' : 'Mute', 'aria-pressed': String(voice.muted), onclick: () => voice.setMuted(!voice.muted) }),
          el('button', { class: 'act voice-leave', text: 'Leave', onclick: () => voice.leave() }),
        ]
        : [el('button', { class: 'act voice-join', text: 'Join', onclick: () => voice.join(c.name) })];
      const people = c.participants.map((u) => {
        const peer = voice.peers.get(u.username);
        const self = u.username === voice.me;
        return el('li', {
          class: 'voice-user',
          dataset: { user: u.username, muted: String(u.muted), peer: self ? 'self' : peer?.state ?? 'none', speaking: String(Boolean(peer?.speaking)) },
        }, el('span', { class: 'name', text: u.username }), u.muted ? el('span', { class: 'voice-muted', title: 'Muted', 'aria-label': 'muted', text: '🔇' }) : null);
      });
      return el('section', { class: 'voice-channel', dataset: { channel: c.name, joined: String(here), state: here ? s.state : 'out' } },
        el('div', { class: 'voice-head' }, el('span', { class: 'name', text: `🔊 ${c.display_name || c.name}` }), buttons),
        people.length ? el('ul', { class: 'voice-users', 'aria-label': `In ${c.name}` }, people) : null);
    });
    if (voice.error) items.push(el('p', { class: 'voice-error error', role: 'alert', text: voice.error }));
    this.replaceChildren(...items);
  }
}

/** One <audio> per remote participant, kept across redraws so playback never restarts. */
class ConfabVoiceAudio extends HTMLElement {
  /** @param {Voice} voice */
  render(voice) {
    this.players ??= new Map();
    for (const [username, a] of this.players) {
      const peer = voice.peers.get(username);
      if (!peer?.stream || a.srcObject !== peer.stream) {
        a.srcObject = null;
        a.remove();
        this.players.delete(username);
      }
    }
    for (const [username, peer] of voice.peers) {
      if (!peer.stream || this.players.has(username)) continue;
      const a = el('audio', { autoplay: true, dataset: { user: username } });
      a.srcObject = peer.stream;
      this.players.set(username, a);
      this.append(a);
    }
  }
}

customElements.define('confab-voice', ConfabVoice);
customElements.define('confab-voice-audio', ConfabVoiceAudio);
