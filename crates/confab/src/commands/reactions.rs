//! `message_react_add` and `message_react_remove` (PROTOCOL §6.1).

use confab_proto::Frame;
use serde_json::json;

use super::target::{check_thread_writable, publisher, resolve};
use crate::{
    error::{Error, Result},
    gateway::Session,
    store::writer::{Appended, ChannelEvent, Step},
    wire,
};

/// Most distinct emoji on one message.
const MAX_DISTINCT: i64 = 20;

/// Adds (`add = true`) or removes one reaction of the requester.
pub async fn react(s: &mut Session, frame: &Frame, add: bool) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let (Some(id), Some(emoji)) = (frame.str("id"), frame.str("emoji")) else {
        return Err(Error::bad_request("Message ID and emoji are required"));
    };
    let len = emoji.chars().count();
    if !(1..=200).contains(&len) || emoji.chars().any(char::is_control) {
        return Err(Error::bad_request("Invalid emoji"));
    }
    let dir = state.directory();
    let target = resolve(s, frame, &dir).await?;
    check_thread_writable(s, &target)?;
    let channel = target.channel;
    let allowed =
        me.actor.channel_allows(&channel.perms, "react") && (!add || me.actor.has_in(&channel.perms, "add_reactions"));
    if !allowed {
        let what = if add { "add reactions to" } else { "remove reactions from" };
        return Err(Error::forbidden(format!("You do not have permission to {what} this message")));
    }
    if state.store.message_in(&channel.row.id, target.key(), id).await?.is_none() {
        return Err(Error::not_found("Message not found"));
    }
    if add {
        let (distinct, mine) = state.store.reaction_state(id, emoji, &me.user.id).await?;
        if mine {
            return Err(Error::conflict("Failed to add reaction"));
        }
        if distinct >= MAX_DISTINCT && !state.store.message_has_emoji(id, emoji).await? {
            return Err(Error::conflict("Too many reactions on this message"));
        }
    }
    let cmd = if add { "message_react_add" } else { "message_react_remove" };
    let step = if add {
        Step::ReactAdd {
            message_id: id.to_owned(),
            emoji: emoji.to_owned(),
            user_id: me.user.id.clone(),
            at: crate::store::now(),
        }
    } else {
        Step::ReactRemove { message_id: id.to_owned(), emoji: emoji.to_owned(), user_id: me.user.id.clone() }
    };
    let (channel_name, id_owned, emoji_owned, from) =
        (channel.row.name.clone(), id.to_owned(), emoji.to_owned(), me.user.username.clone());
    let thread_id = target.thread_json();
    let event = ChannelEvent {
        channel_id: channel.row.id.clone(),
        message_id: Some(id.to_owned()),
        kind: cmd,
        step,
        render: Box::new(move |seq| {
            wire::packet(
                cmd,
                json!({"id": id_owned, "emoji": emoji_owned, "channel": channel_name, "thread_id": thread_id,
                       "from": from, "seq": seq, "global": true}),
            )
        }),
    };
    match state.store.writer().event(event, publisher(s, frame.listener(), &channel.row.id)).await? {
        Appended::Event { .. } => Ok(()),
        Appended::ChannelGone => Err(Error::not_found("Channel not found")),
        _ if add => Err(Error::conflict("Failed to add reaction")),
        _ => Err(Error::not_found("Failed to remove reaction")),
    }
}
