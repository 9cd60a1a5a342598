//! `message_pin` and `message_unpin` (PROTOCOL §6.1): real pinned state, broadcast only on change.

use confab_proto::Frame;
use serde_json::{Value, json};

use super::target::publisher;
use crate::{
    error::{Error, Result},
    gateway::Session,
    store::writer::{Appended, ChannelEvent, Step},
    wire,
};

/// `message_pin`: the official client unpins by sending it with `pinned: false`, so that is an
/// unpin; any other `pinned` (absent, `null`, `true`) pins.
pub async fn message_pin(s: &mut Session, frame: &Frame) -> Result<()> {
    let pinned = frame.get("pinned").and_then(Value::as_bool) != Some(false);
    pin(s, frame, pinned).await
}

/// Sets a message's pinned state to `pinned`.
pub async fn pin(s: &mut Session, frame: &Frame, pinned: bool) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let cmd = if pinned { "message_pin" } else { "message_unpin" };
    let Some(name) = frame.str("channel") else { return Err(Error::bad_request("Channel name not provided")) };
    let Some(id) = frame.str("id") else { return Err(Error::bad_request("Message ID is required")) };
    let dir = state.directory();
    let channel = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    let may_pin = me.actor.channel_allows(&channel.perms, "view")
        && (me.actor.channel_allows(&channel.perms, "pin") || me.actor.has_in(&channel.perms, "manage_messages"));
    if !may_pin || channel.row.kind != "text" {
        return Err(Error::forbidden("You do not have permission to pin messages in this channel"));
    }
    if state.store.message_in(&channel.row.id, "", id).await?.is_none() {
        return Err(Error::not_found("Message not found"));
    }
    let (channel_name, id_owned) = (channel.row.name.clone(), id.to_owned());
    let event = ChannelEvent {
        channel_id: channel.row.id.clone(),
        message_id: Some(id.to_owned()),
        kind: cmd,
        step: Step::SetPinned { message_id: id.to_owned(), pinned },
        render: Box::new(move |seq| {
            wire::packet(
                cmd,
                json!({"id": id_owned, "channel": channel_name, "pinned": pinned, "seq": seq, "global": true}),
            )
        }),
    };
    match state.store.writer().event(event, publisher(s, frame.listener(), &channel.row.id)).await? {
        Appended::Event { .. } => Ok(()),
        Appended::Unchanged => {
            // Already in that state: only the requester hears about it, without `global` and `seq`.
            s.reply(frame, cmd, json!({"id": id, "channel": channel.row.name, "pinned": pinned}));
            Ok(())
        }
        _ => Err(Error::not_found("Message not found")),
    }
}
