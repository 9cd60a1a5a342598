//! What the writer is given and what it answers: messages and channel events to commit, their
//! outcomes, and the live `message_new` packet, built on the caller's task so that the writer only
//! splices the seq in.

use serde_json::{Value, json};

use crate::{
    auth::tokens::hash_joined,
    store::{messages::MessageRow, polls::Tally},
};

/// A message to append to a channel (or thread).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub channel_id: String,
    pub channel_name: String,
    /// `None` for a message directly in the channel.
    pub thread_id: Option<String>,
    pub user_id: Option<String>,
    pub author_name: String,
    pub content: String,
    pub created_at: f64,
    /// Replied-to message id and its author's name.
    pub reply_to: Option<(String, String)>,
    pub ping: Option<bool>,
    /// `{"users","roles","replies"}` for the live packet.
    pub pings: Value,
    /// The same pings by id, stored for `pings_get`.
    pub pinged: Pinged,
    /// Embeds, attachments, interaction, webhook: stored as JSON.
    pub extra: Option<Value>,
    pub nonce: Option<String>,
    pub nonce_window_s: f64,
}

/// Who a message pings, by id (PROTOCOL §5.6), as stored in `mentions` for `pings_get`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pinged {
    /// Mentioned accounts.
    pub users: Vec<String>,
    /// Mentioned roles.
    pub roles: Vec<String>,
    /// The replied-to author, when `ping` is not false.
    pub reply: Option<String>,
}

impl Pinged {
    /// `(target_kind, target_id)` rows; the kinds are those `pings_get` asks for.
    pub(super) fn rows(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let users = self.users.iter().map(|u| ("user", u.as_str()));
        let roles = self.roles.iter().map(|r| ("role", r.as_str()));
        users.chain(roles).chain(self.reply.iter().map(|a| ("reply", a.as_str())))
    }
}

/// What an append did once committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Stored with `seq`; `packet` is the serialised broadcast (no `listener`).
    New { seq: i64, packet: String },
    /// The nonce was used before for the same message: the original packet, nothing stored.
    Duplicate { packet: String },
    /// The nonce was used for a different target or content.
    NonceConflict,
    /// The nonce's original message has been deleted since.
    OriginalDeleted,
    /// The channel was deleted before the change committed.
    ChannelGone,
    /// A channel event was committed with `seq`; `packet` is its broadcast.
    Event { seq: i64, packet: String },
    /// A channel event's change matched nothing (already in that state, or already gone): no seq.
    Unchanged,
}

/// A state change other than a new message, scoped to one channel.
pub struct ChannelEvent {
    pub channel_id: String,
    /// The message the event is about, so `resume` can leave out events of deleted messages.
    pub message_id: Option<String>,
    /// Event kind as logged (the packet's `cmd`).
    pub kind: &'static str,
    pub step: Step,
    /// Renders the broadcast once the seq is known.
    pub render: Box<dyn Fn(i64) -> String + Send + Sync>,
}

/// The row change of a [`ChannelEvent`]; it must touch a row, or the event is [`Appended::Unchanged`].
#[derive(Debug, Clone)]
pub enum Step {
    /// New content; `mentions` (users and roles; `reply` is ignored, it cannot change) replace the
    /// message's stored mentions.
    Edit {
        message_id: String,
        content: String,
        extra: Option<String>,
        mentions: Pinged,
    },
    Delete {
        message_id: String,
    },
    ReactAdd {
        message_id: String,
        emoji: String,
        user_id: String,
        at: f64,
    },
    ReactRemove {
        message_id: String,
        emoji: String,
        user_id: String,
    },
    SetPinned {
        message_id: String,
        pinned: bool,
    },
    ThreadCreate {
        thread_id: String,
        name: String,
        user_id: String,
        user_name: String,
        at: f64,
    },
    /// Sets the thread's name and flags; touches a row only if something differs.
    ThreadUpdate {
        thread_id: String,
        name: String,
        locked: bool,
        archived: bool,
    },
    /// Deletes the thread and its messages.
    ThreadDelete {
        thread_id: String,
    },
    ThreadJoin {
        thread_id: String,
        user_id: String,
        at: f64,
    },
    ThreadLeave {
        thread_id: String,
        user_id: String,
    },
    /// Sets the voter's choices to exactly `option_ids` while the poll is open, unexpired at `at`
    /// and its message exists; `tally` receives the poll's votes afterwards.
    PollVote {
        poll_id: String,
        user_id: String,
        option_ids: Vec<String>,
        at: f64,
        tally: Tally,
    },
    /// Ends an open poll whose message exists; `tally` receives its final votes.
    PollEnd {
        poll_id: String,
        at: f64,
        tally: Tally,
    },
}

/// One queued change.
pub enum Change {
    Append(Box<Append>),
    Event(Box<ChannelEvent>),
}

/// A queued message with what can be worked out before it is stored — the parts of its live packet
/// that do not depend on the seq, and its nonce fingerprint — done by the caller's task: the
/// writer, through which every message passes one after another, only splices the seq in
/// (building the packet took it as long as everything else it did for a message, outside the
/// database).
pub struct Append {
    message: NewMessage,
    /// `{"cmd":"message_new","channel":…,"thread_id":…,"global":true,"seq":`
    head: String,
    /// The live message object without `seq`.
    body: String,
    /// [`content_hash`] of a message with an author and a nonce.
    pub(super) hash: Option<String>,
}

impl Append {
    pub(super) fn new(message: NewMessage) -> Append {
        let head = format!(
            "{{\"cmd\":\"message_new\",\"channel\":{},\"thread_id\":{},\"global\":true,\"seq\":",
            json!(message.channel_name),
            json!(message.thread_id)
        );
        let body = Value::Object(live_message(&message)).to_string();
        let hash = message.user_id.as_ref().and(message.nonce.as_ref()).map(|_| content_hash(&message));
        Append { message, head, body, hash }
    }

    /// The live `message_new` packet once stored with `seq`.
    pub(super) fn packet(&self, seq: i64) -> String {
        // `body` is a non-empty object: `seq` goes in front of its first member.
        let members = self.body.strip_prefix('{').unwrap_or(&self.body);
        format!("{}{seq},\"message\":{{\"seq\":{seq},{members}}}", self.head)
    }
}

impl std::ops::Deref for Append {
    type Target = NewMessage;

    fn deref(&self) -> &NewMessage {
        &self.message
    }
}

/// A message's nonce fingerprint: target and content, so a repeat can be told from a conflict.
fn content_hash(m: &NewMessage) -> String {
    hash_joined(&[&m.channel_id, m.thread_id.as_deref().unwrap_or(""), &m.content])
}

/// The `message_new` packet of a message that is shown once and never stored (an ephemeral
/// slash-command answer, PROTOCOL §6.8): the live shape without `seq` and without `global`, marked
/// `"ephemeral": true` [ext].
pub fn render_unstored(m: &NewMessage) -> String {
    let message = live_message(m);
    crate::wire::packet(
        "message_new",
        json!({"message": message, "channel": m.channel_name, "thread_id": m.thread_id, "ephemeral": true}),
    )
}

/// The message object of a live `message_new` without its `seq`: the history shape plus `pings`
/// and the nonce.
fn live_message(m: &NewMessage) -> serde_json::Map<String, Value> {
    let row = MessageRow {
        id: m.id.clone(),
        channel_id: m.channel_id.clone(),
        thread_id: m.thread_id.clone().unwrap_or_default(),
        user_id: m.user_id.clone(),
        author: m.author_name.clone(),
        content: m.content.clone(),
        created_at: m.created_at,
        seq: 0,
        edited: false,
        pinned: false,
        reply_to: m.reply_to.as_ref().map(|r| r.0.clone()),
        reply_user: m.reply_to.as_ref().map(|r| r.1.clone()),
        ping: m.ping,
        extra: m.extra.as_ref().map(Value::to_string),
        reactions: Vec::new(),
    };
    let mut message = crate::wire::message(&row);
    message.remove("seq");
    message.insert("pings".into(), m.pings.clone());
    if let Some(nonce) = &m.nonce {
        message.insert("nonce".into(), json!(nonce));
    }
    message
}

/// The appends that start at `from`, up to the next channel event.
pub(super) fn appends_from<'a>(batch: &[&'a Change], from: usize) -> Vec<&'a Append> {
    batch[from..]
        .iter()
        .map_while(|c| match c {
            Change::Append(m) => Some(&**m),
            Change::Event(_) => None,
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A message whose text needs escaping everywhere it can.
    pub(in crate::store::writer) fn message(
        thread_id: Option<&str>,
        nonce: Option<&str>,
        extra: Option<Value>,
    ) -> NewMessage {
        NewMessage {
            id: "m1".into(),
            channel_id: "c1".into(),
            channel_name: "gen\"eral".into(),
            thread_id: thread_id.map(str::to_owned),
            user_id: Some("u1".into()),
            author_name: "ann".into(),
            content: "say \"seq\":1 {}\\".into(),
            created_at: 1_700_000_000.25,
            reply_to: Some(("m0".into(), "bob".into())),
            ping: Some(false),
            pings: json!({"users": ["bob"], "roles": [], "replies": []}),
            pinged: Pinged::default(),
            extra,
            nonce: nonce.map(str::to_owned),
            nonce_window_s: 600.0,
        }
    }

    /// The spliced packet is the live shape: the message object with its seq, and around it the
    /// channel, thread, seq and `global` (PROTOCOL §7.3), whatever the text needs escaped.
    #[test]
    fn spliced_packet_has_the_live_shape() {
        let embeds = json!({"embeds": [{"title": "t", "seq": 5}]});
        for m in [message(None, None, None), message(Some("t\"1"), Some("n1"), Some(embeds))] {
            let packet: Value = serde_json::from_str(&Append::new(m.clone()).packet(42)).unwrap();
            let mut object = live_message(&m);
            object.insert("seq".into(), json!(42));
            let expected = json!({
                "cmd": "message_new",
                "message": object,
                "channel": m.channel_name,
                "thread_id": m.thread_id,
                "seq": 42,
                "global": true,
            });
            assert_eq!(packet, expected);
            assert_eq!(packet["message"]["content"], m.content);
            assert_eq!(packet["message"]["nonce"], m.nonce.map_or(Value::Null, Value::from));
        }
    }
}
