//! What every channel-scoped command shares: resolving `channel | thread_id` with the context
//! errors and thread-state rules of PROTOCOL §6.0, and publishing a committed channel event
//! (PROTOCOL §1.4).

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use crate::{
    cluster::sequencer::Item,
    error::{Error, Result},
    gateway::Session,
    hub::{Packet, Wakes},
    state::{AppState, ChannelEntry, Directory},
    store::{
        threads::ThreadRow,
        writer::{Appended, OnCommit},
    },
    wire,
};

/// What a channel-scoped command acts on: a text channel, or a thread of a forum channel.
pub struct Target<'d> {
    /// The channel, or the thread's parent forum channel.
    pub channel: &'d ChannelEntry,
    pub thread: Option<ThreadRow>,
}

impl Target<'_> {
    /// The `thread_id` column value: `""` for the channel itself.
    pub fn key(&self) -> &str {
        self.thread.as_ref().map_or("", |t| t.id.as_str())
    }

    /// `thread_id` as the wire shows it.
    pub fn thread_json(&self) -> Value {
        self.thread.as_ref().map_or(Value::Null, |t| json!(t.id))
    }

    /// "… in this channel" or "… in this thread", for permission texts.
    pub fn noun(&self) -> &'static str {
        if self.thread.is_some() { "thread" } else { "channel" }
    }
}

/// Resolves `channel | thread_id` with the context errors of PROTOCOL §6.0: a thread is used when
/// `thread_id` is present (its parent must be viewable); otherwise the channel must be viewable
/// and a text channel.
pub async fn resolve<'d>(s: &Session, frame: &Frame, dir: &'d Directory) -> Result<Target<'d>> {
    let me = s.me()?;
    if let Some(id) = frame.get("thread_id") {
        let thread = match id.as_str() {
            Some(id) => s.state.store.thread(id).await?,
            None => None,
        };
        let thread = thread.ok_or_else(|| Error::not_found("Thread not found"))?;
        let channel = dir.channels.iter().find(|c| c.row.id == thread.channel_id);
        let channel = channel.ok_or_else(|| Error::not_found("Thread not found"))?;
        if !me.actor.channel_allows(&channel.perms, "view") {
            return Err(Error::forbidden("You do not have permission to view this thread"));
        }
        return Ok(Target { channel, thread: Some(thread) });
    }
    let name = frame.str("channel").unwrap_or("");
    let channel = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    if !me.actor.channel_allows(&channel.perms, "view") || channel.row.kind != "text" {
        return Err(Error::forbidden("Access denied to this channel"));
    }
    Ok(Target { channel, thread: None })
}

/// Thread state for writes other than new messages (PROTOCOL §6.0): locked threads refuse writes
/// unless the user has `manage_threads`; archived threads refuse them.
pub fn check_thread_writable(s: &Session, target: &Target<'_>) -> Result<()> {
    let Some(thread) = &target.thread else { return Ok(()) };
    if thread.locked && !s.me()?.actor.has_in(&target.channel.perms, "manage_threads") {
        return Err(Error::new(ErrorCode::ThreadLocked, "This thread is locked"));
    }
    if thread.archived {
        return Err(Error::new(ErrorCode::ThreadArchived, "This thread is archived"));
    }
    Ok(())
}

/// Whether the frame names a target at all (`channel` or `thread_id`).
pub fn has_target(frame: &Frame) -> bool {
    frame.get("channel").is_some() || frame.get("thread_id").is_some()
}

/// The writer callback that publishes a committed event: a copy without `listener` to every
/// viewer of the channel except the requester, and the reply (with `listener`) to the requester.
/// It runs inside the writer, so events reach every connection in seq order.
pub fn publisher(s: &Session, listener: Option<&str>, channel_id: &str) -> OnCommit {
    let state: AppState = s.state.clone();
    let channel_id = channel_id.to_owned();
    let conn_id = s.conn_id;
    let outbox = s.outbox.clone();
    let listener = listener.map(str::to_owned);
    Box::new(move |outcome: &Appended, wakes: &mut Wakes| {
        let (Appended::New { packet, seq } | Appended::Event { packet, seq }) = outcome else { return };
        let shared = Packet::from(packet.clone());
        let own = match &listener {
            Some(l) => Packet::from(wire::with_listener(packet, Some(l))),
            None => shared.clone(),
        };
        match &state.cluster {
            None => {
                state.hub.deliver_later(&outbox, &own, wakes);
                state.hub.to_channel(&channel_id, *seq, &shared, Some(conn_id), wakes);
            }
            Some(cluster) => {
                let item = Item { packet: Some(shared), except: Some(conn_id), own: Some((outbox.clone(), own)) };
                cluster.committed(&state, &channel_id, *seq, packet, item, wakes);
            }
        }
    })
}

/// The writer callback for a committed event that no connection asked for (a webhook post): a
/// copy to every viewer of the channel, in seq order like [`publisher`].
pub fn broadcaster(state: &AppState, channel_id: &str) -> OnCommit {
    let state = state.clone();
    let channel_id = channel_id.to_owned();
    Box::new(move |outcome: &Appended, wakes: &mut Wakes| {
        let (Appended::New { packet, seq } | Appended::Event { packet, seq }) = outcome else { return };
        let shared = Packet::from(packet.clone());
        match &state.cluster {
            None => state.hub.to_channel(&channel_id, *seq, &shared, None, wakes),
            Some(cluster) => cluster.committed(&state, &channel_id, *seq, packet, Item::shared(Some(shared)), wakes),
        }
    })
}
