//! What every channel-scoped command shares: resolving `channel | thread_id` with the context
//! errors of PROTOCOL §6.0, and publishing a committed channel event (PROTOCOL §1.4).

use confab_proto::Frame;

use crate::{
    error::{Error, Result},
    gateway::Session,
    hub::Packet,
    state::{AppState, ChannelEntry, Directory},
    store::writer::{Appended, OnCommit},
    wire,
};

/// Resolves the target of a channel-scoped command: the channel, which the user must be able to
/// view and which must be a text channel. A `thread_id` names a thread (forum channels only); none
/// can be found until threads exist, so it answers "Thread not found".
pub fn text_channel<'d>(s: &Session, frame: &Frame, dir: &'d Directory) -> Result<&'d ChannelEntry> {
    let me = s.me()?;
    if frame.get("thread_id").is_some() {
        return Err(Error::not_found("Thread not found"));
    }
    let name = frame.str("channel").unwrap_or("");
    let channel = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    if !me.actor.channel_allows(&channel.perms, "view") || channel.row.kind != "text" {
        return Err(Error::forbidden("Access denied to this channel"));
    }
    Ok(channel)
}

/// Whether the frame names a target at all (`channel` or `thread_id`).
pub fn has_target(frame: &Frame) -> bool {
    frame.get("channel").is_some() || frame.get("thread_id").is_some()
}

/// The writer callback that publishes a committed event: a copy without `listener` to every
/// viewer of the channel except the requester, and the reply (with `listener`) to the requester.
/// It runs inside the writer, so events reach every connection in seq order.
pub fn publisher(s: &Session, frame: &Frame, channel_id: &str) -> OnCommit {
    let state: AppState = s.state.clone();
    let channel_id = channel_id.to_owned();
    let conn_id = s.conn_id;
    let outbox = s.outbox.clone();
    let listener = frame.listener().map(str::to_owned);
    Box::new(move |outcome: &Appended| {
        let (Appended::New { packet, seq } | Appended::Event { packet, seq }) = outcome else { return };
        let shared = Packet::from(packet.clone());
        state.hub.to_channel(&channel_id, *seq, &shared, Some(conn_id));
        let own = match &listener {
            Some(l) => Packet::from(wire::with_listener(packet, Some(l))),
            None => shared,
        };
        state.hub.deliver(&outbox, &own, false);
    })
}
