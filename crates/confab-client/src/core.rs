//! The protocol state of a session without its socket: which `seq` each channel has reached, which
//! sends await their acknowledgement, and what to send after a (re)connect.
//!
//! The rules it implements (PROTOCOL §7.1–7.4, docs/protocol-details.md "resume while the channel
//! is busy"):
//! - a channel event (one that carries `seq`) is passed on only if its seq is above the channel's
//!   last one, so an event is never shown twice;
//! - after a reconnect, `resume` asks for everything above each channel's last seq; until `resumed`
//!   arrives, live events of those channels are dropped — the server replays them — so nothing is
//!   missed and the stream stays in seq order;
//! - every `message_new` carries a nonce (also as its `listener`); until the echo or an error answers
//!   it, it stays in the outbox and is sent again, with the same nonce, after each reconnect. The server
//!   answers a repeat with the original message (`duplicate`), so a send is stored at most once.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{ClientError, Event};

/// The commands whose packets carry a channel `seq` (PROTOCOL §7.1).
const SEQ_EVENTS: [&str; 14] = [
    "message_new",
    "message_edit",
    "message_delete",
    "message_react_add",
    "message_react_remove",
    "message_pin",
    "message_unpin",
    "thread_create",
    "thread_update",
    "thread_delete",
    "thread_join",
    "thread_leave",
    "poll_vote_update",
    "poll_end",
];

/// At most this many channels per `resume` frame (PROTOCOL §7.2).
const RESUME_MAX_CHANNELS: usize = 100;

#[derive(Debug, Default, Clone)]
struct Channel {
    last: u64,
    resuming: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    nonce: String,
    frame: Value,
}

/// Seq bookkeeping and the outbox of one session.
#[derive(Debug, Default)]
pub struct Core {
    channels: BTreeMap<String, Channel>,
    outbox: Vec<Pending>,
    online: bool,
}

impl Core {
    /// Nothing tracked, nothing pending, offline.
    pub fn new() -> Core {
        Core::default()
    }

    /// Follow `channel` from `seq` on: the next `resume` asks for what came after it. A lower value
    /// than the one already reached is ignored (that would repeat events).
    pub fn track(&mut self, channel: &str, seq: u64) {
        let c = self.channels.entry(channel.to_owned()).or_default();
        c.last = c.last.max(seq);
    }

    /// The last seq passed on for `channel`.
    pub fn last_seq(&self, channel: &str) -> Option<u64> {
        self.channels.get(channel).map(|c| c.last)
    }

    /// Queues a `message_new` (`fields`: `channel` or `thread_id`, `content`, `reply_to`, …) under
    /// `nonce`, which must be unique among the account's sends of the last ten minutes (PROTOCOL §7.4)
    /// unless it repeats the same send. Returns the frame to send now when online.
    pub fn submit_message(&mut self, mut fields: Value, nonce: &str) -> Option<Value> {
        fields["cmd"] = json!("message_new");
        fields["nonce"] = json!(nonce);
        fields["listener"] = json!(nonce);
        self.outbox.push(Pending { nonce: nonce.to_owned(), frame: fields.clone() });
        self.online.then_some(fields)
    }

    /// Nonces still waiting for the server, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.outbox.iter().map(|p| p.nonce.as_str())
    }

    /// A request that is not worth repeating after a reconnect (reads, typing, edits): the frame to
    /// send now, or `None` when offline (it is dropped; owners refetch on [`Event::Ready`]).
    pub fn request(&self, frame: Value) -> Option<Value> {
        self.online.then_some(frame)
    }

    /// The socket reached `ready`: the frames to send first — `resume` for every tracked channel, then
    /// every unacknowledged send again, in order.
    pub fn on_ready(&mut self) -> Vec<Value> {
        self.online = true;
        let mut frames = Vec::new();
        let tracked: Vec<(String, u64)> = self.channels.iter().map(|(n, c)| (n.clone(), c.last)).collect();
        for chunk in tracked.chunks(RESUME_MAX_CHANNELS) {
            let channels: serde_json::Map<String, Value> = chunk.iter().map(|(n, s)| (n.clone(), json!(s))).collect();
            for (name, _) in chunk {
                if let Some(c) = self.channels.get_mut(name) {
                    c.resuming = true;
                }
            }
            frames.push(json!({"cmd": "resume", "channels": channels, "listener": "resume"}));
        }
        frames.extend(self.outbox.iter().map(|p| p.frame.clone()));
        frames
    }

    /// The socket is gone: a `resume` in flight is void, sends wait for the next socket.
    pub fn on_disconnect(&mut self) {
        self.online = false;
        for c in self.channels.values_mut() {
            c.resuming = false;
        }
    }

    /// Sorts one server packet into what the owner should see.
    pub fn on_packet(&mut self, packet: Value) -> Vec<Event> {
        let cmd = packet["cmd"].as_str().unwrap_or_default();
        match cmd {
            "resumed" => return vec![self.resumed(&packet)],
            "error" | "rate_limit" => {
                if let Some(nonce) = self.take_pending(packet["listener"].as_str()) {
                    let error = if cmd == "rate_limit" {
                        ClientError::Refused { code: "rate_limited".into(), text: "Rate limited".into() }
                    } else {
                        ClientError::from_packet(&packet)
                    };
                    return vec![Event::Failed { nonce, error }];
                }
            }
            "channels_get" => self.learn_channels(&packet),
            _ => {}
        }
        let mut out = Vec::new();
        if cmd == "message_new" {
            let nonce = packet["message"]["nonce"].as_str().or_else(|| packet["listener"].as_str());
            if let Some(nonce) = self.take_pending(nonce) {
                out.push(Event::Acked { nonce, packet: packet.clone() });
            }
        }
        if self.is_new(&packet) {
            out.push(Event::Packet(packet));
        }
        out
    }

    /// Whether a packet is to be passed on: anything without a channel seq, and a channel event whose
    /// seq is above the channel's last (which it then becomes). Live events of a resuming channel wait
    /// for their replay.
    fn is_new(&mut self, packet: &Value) -> bool {
        let Some((channel, seq)) = channel_event(packet) else { return true };
        let c = self.channels.entry(channel.to_owned()).or_default();
        if c.resuming && packet["replay"] != json!(true) {
            return false;
        }
        if seq <= c.last {
            return false;
        }
        c.last = seq;
        true
    }

    fn resumed(&mut self, packet: &Value) -> Event {
        if let Some(channels) = packet["channels"].as_object() {
            for (name, seq) in channels {
                let c = self.channels.entry(name.clone()).or_default();
                c.last = c.last.max(seq.as_u64().unwrap_or(0));
                c.resuming = false;
            }
        }
        let names = |key: &str| -> Vec<String> {
            packet[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        };
        let unknown = names("unknown");
        for name in &unknown {
            self.channels.remove(name);
        }
        Event::Resumed { stale: names("stale"), unknown }
    }

    /// A channel seen for the first time in `channels_get` is followed from its current seq; one
    /// already followed keeps its own (the list's seq may be ahead of live events still on their way).
    fn learn_channels(&mut self, packet: &Value) {
        for channel in packet["val"].as_array().into_iter().flatten() {
            if let (Some(name), Some(seq)) = (channel["name"].as_str(), channel["seq"].as_u64()) {
                self.channels.entry(name.to_owned()).or_insert(Channel { last: seq, resuming: false });
            }
        }
    }

    fn take_pending(&mut self, nonce: Option<&str>) -> Option<String> {
        let nonce = nonce?;
        let i = self.outbox.iter().position(|p| p.nonce == nonce)?;
        Some(self.outbox.remove(i).nonce)
    }
}

/// The channel and seq of a channel event (one of PROTOCOL §7.1's list); `None` for anything else,
/// including replies that carry a channel's current seq (`messages_get`, `channels_get`).
pub fn channel_event(packet: &Value) -> Option<(&str, u64)> {
    let cmd = packet["cmd"].as_str()?;
    if !SEQ_EVENTS.contains(&cmd) {
        return None;
    }
    Some((packet["channel"].as_str()?, packet["seq"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_msg(channel: &str, seq: u64, id: &str) -> Value {
        json!({"cmd":"message_new","channel":channel,"seq":seq,"thread_id":null,"global":true,
               "message":{"id":id,"user":"bob","content":id,"seq":seq}})
    }

    fn replayed(mut v: Value) -> Value {
        v["replay"] = json!(true);
        v
    }

    fn packets(events: Vec<Event>) -> Vec<Value> {
        events.into_iter().filter_map(|e| if let Event::Packet(p) = e { Some(p) } else { None }).collect()
    }

    #[test]
    fn channel_events_pass_once_in_seq_order() {
        let mut core = Core::new();
        core.on_ready();
        assert_eq!(packets(core.on_packet(new_msg("general", 3, "a"))).len(), 1);
        assert_eq!(packets(core.on_packet(new_msg("general", 3, "a"))).len(), 0, "the same seq twice");
        assert_eq!(packets(core.on_packet(new_msg("general", 2, "old"))).len(), 0, "an older seq");
        assert_eq!(packets(core.on_packet(new_msg("dev", 1, "d"))).len(), 1, "channels count separately");
        assert_eq!(core.last_seq("general"), Some(3));
        // Packets without a channel seq always pass: typing, presence, replies.
        assert_eq!(packets(core.on_packet(json!({"cmd":"typing","channel":"general","user":"bob"}))).len(), 1);
        let page = json!({"cmd":"messages_get","channel":"general","seq":9,"messages":[]});
        assert_eq!(packets(core.on_packet(page)).len(), 1);
        assert_eq!(core.last_seq("general"), Some(3), "a read's seq is not an event's");
    }

    #[test]
    fn a_reconnect_resumes_every_tracked_channel_and_ignores_live_events_until_resumed() {
        let mut core = Core::new();
        core.track("general", 4);
        core.track("general", 2);
        let frames = core.on_ready();
        assert_eq!(frames, vec![json!({"cmd":"resume","channels":{"general":4},"listener":"resume"})]);
        // Seq 5 arrives live before the server took the resume: it is dropped and comes as a replay.
        assert!(packets(core.on_packet(new_msg("general", 5, "e"))).is_empty());
        let replay: Vec<Value> = [5, 6].iter().map(|s| replayed(new_msg("general", *s, &s.to_string()))).collect();
        let passed: Vec<Value> = replay.into_iter().flat_map(|p| packets(core.on_packet(p))).collect();
        assert_eq!(passed.iter().map(|p| p["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![5, 6]);
        let resumed = json!({"cmd":"resumed","channels":{"general":7},"stale":[],"unknown":[],"listener":"resume"});
        assert!(matches!(&core.on_packet(resumed)[..], [Event::Resumed { stale, .. }] if stale.is_empty()));
        // 7 was covered by the resume (a message deleted since is not replayed): live 7 is not shown again.
        assert!(packets(core.on_packet(new_msg("general", 7, "x"))).is_empty());
        assert_eq!(packets(core.on_packet(new_msg("general", 8, "h"))).len(), 1);
        core.on_disconnect();
        let frames = core.on_ready();
        assert_eq!(frames[0]["channels"], json!({"general": 8}));
    }

    #[test]
    fn stale_and_unknown_channels_are_reported_and_unknown_ones_dropped() {
        let mut core = Core::new();
        core.track("general", 1);
        core.track("gone", 3);
        core.on_ready();
        let resumed = json!({"cmd":"resumed","channels":{"general":90000},"stale":["general"],"unknown":["gone"]});
        let events = core.on_packet(resumed);
        assert!(matches!(&events[..], [Event::Resumed { stale, unknown }]
            if stale == &["general"] && unknown == &["gone"]));
        assert_eq!(core.last_seq("general"), Some(90000));
        assert_eq!(core.last_seq("gone"), None);
        core.on_disconnect();
        assert_eq!(core.on_ready()[0]["channels"], json!({"general": 90000}));
    }

    #[test]
    fn many_channels_resume_in_frames_of_a_hundred() {
        let mut core = Core::new();
        for i in 0..150 {
            core.track(&format!("c{i}"), 1);
        }
        let frames = core.on_ready();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["channels"].as_object().unwrap().len(), 100);
        assert_eq!(frames[1]["channels"].as_object().unwrap().len(), 50);
    }

    #[test]
    fn the_channel_list_starts_new_channels_at_their_seq_and_keeps_followed_ones() {
        let mut core = Core::new();
        core.track("general", 2);
        let list = json!({"cmd":"channels_get","val":[{"name":"general","type":"text","seq":5},
            {"name":"dev","type":"text","seq":9},{"name":"voice","type":"voice"}]});
        core.on_packet(list);
        assert_eq!(core.last_seq("general"), Some(2));
        assert_eq!(core.last_seq("dev"), Some(9));
        assert_eq!(core.last_seq("voice"), None);
    }

    #[test]
    fn a_send_waits_offline_and_is_resent_with_its_nonce_until_acknowledged() {
        let mut core = Core::new();
        let now = core.submit_message(json!({"channel":"general","content":"hi"}), "p-1");
        assert!(now.is_none(), "offline: queued");
        let frames = core.on_ready();
        assert_eq!(
            frames,
            vec![json!({"cmd":"message_new","channel":"general","content":"hi","nonce":"p-1","listener":"p-1"})]
        );
        // The socket broke before the echo: the same frame goes out again.
        core.on_disconnect();
        assert_eq!(core.on_ready(), frames);
        let mut echo = new_msg("general", 4, "m1");
        echo["message"]["nonce"] = json!("p-1");
        echo["duplicate"] = json!(true);
        let events = core.on_packet(echo);
        assert!(matches!(&events[0], Event::Acked { nonce, .. } if nonce == "p-1"));
        assert_eq!(packets(events).len(), 1, "the message itself is shown once");
        assert_eq!(core.pending().count(), 0);
        core.on_disconnect();
        assert_eq!(core.on_ready(), vec![json!({"cmd":"resume","channels":{"general":4},"listener":"resume"})]);
    }

    #[test]
    fn a_refused_send_fails_once_and_is_not_resent() {
        let mut core = Core::new();
        core.on_ready();
        let now = core.submit_message(json!({"channel":"nope","content":"x"}), "fixed");
        assert_eq!(now.unwrap()["listener"], "fixed");
        let error =
            json!({"cmd":"error","src":"message_new","val":"Channel not found","code":"not_found","listener":"fixed"});
        let events = core.on_packet(error.clone());
        assert!(matches!(&events[..], [Event::Failed { nonce, error: ClientError::Refused { code, .. } }]
            if nonce == "fixed" && code == "not_found"));
        // An error that answers nothing pending is passed on as a packet.
        assert!(matches!(&core.on_packet(error)[..], [Event::Packet(_)]));
        core.on_disconnect();
        assert!(core.on_ready().is_empty());
    }

    #[test]
    fn requests_are_dropped_offline() {
        let mut core = Core::new();
        let typing = json!({"cmd":"typing","channel":"general"});
        assert_eq!(core.request(typing.clone()), None);
        core.on_ready();
        assert_eq!(core.request(typing.clone()), Some(typing));
    }
}
