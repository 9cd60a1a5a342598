//! `message_edit` and `message_delete` (PROTOCOL §6.1): committed with a seq, logged for resume,
//! broadcast after the commit.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Map, Value, json};

use super::target::{check_thread_writable, has_target, publisher, resolve};
use crate::{
    domain::embeds,
    error::{Error, Result},
    gateway::Session,
    store::{
        messages::MessageRow,
        writer::{Appended, ChannelEvent, Step},
    },
    wire,
};

/// The outcome of a channel event for its requester: errors for the cases that changed nothing.
fn settle(outcome: Appended, not_found: &str) -> Result<()> {
    match outcome {
        Appended::Event { .. } => Ok(()),
        Appended::ChannelGone => Err(Error::not_found("Channel not found")),
        _ => Err(Error::not_found(not_found)),
    }
}

/// `message_edit`: only the author, with `edit_own`; embeds, when given, replace the old ones.
pub async fn message_edit(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let content = frame.str("content").filter(|c| !c.trim().is_empty());
    let (Some(id), Some(content), true) = (frame.str("id"), content, has_target(frame)) else {
        return Err(Error::bad_request("Invalid message edit format"));
    };
    let new_embeds = embeds::validate(frame.get("embeds")).map_err(Error::bad_request)?;
    let max = state.config.limits.post_content;
    if content.chars().count() > max {
        return Err(Error::new(ErrorCode::TooLong, format!("Message too long. Maximum length is {max} characters")));
    }
    let dir = state.directory();
    let target = resolve(s, frame, &dir).await?;
    check_thread_writable(s, &target)?;
    let channel = target.channel;
    let not_editable = "Message not found or cannot be edited";
    let row = state
        .store
        .message_in(&channel.row.id, target.key(), id)
        .await?
        .ok_or_else(|| Error::not_found(not_editable))?;
    let Some(author) = &row.user_id else { return Err(Error::not_found(not_editable)) };
    if *author != me.user.id {
        return Err(Error::forbidden("You do not have permission to edit this message"));
    }
    if !me.actor.channel_allows(&channel.perms, "edit_own") {
        let noun = target.noun();
        return Err(Error::forbidden(format!("You do not have permission to edit your own message in this {noun}")));
    }
    super::messages::check_role_mentions(&state, &me.actor, &channel.perms, content)?;
    let mentioned = super::messages::mentions(&state, content).await?;

    let mut extra: Map<String, Value> =
        row.extra.as_deref().and_then(|e| serde_json::from_str(e).ok()).unwrap_or_default();
    if let Some(e) = new_embeds {
        extra.insert("embeds".into(), json!(e));
    }
    let extra_text = (!extra.is_empty()).then(|| Value::Object(extra.clone()).to_string());
    let edited = MessageRow { content: content.to_owned(), edited: true, extra: extra_text.clone(), ..row };
    let mut message = wire::message(&edited);
    if !mentioned.is_empty() {
        let (users, roles) = (mentioned.user_names(), mentioned.role_names());
        message.insert("pings".into(), json!({"users": users, "roles": roles, "replies": []}));
    }
    let (channel_name, id_owned, content_owned) = (channel.row.name.clone(), id.to_owned(), content.to_owned());
    let thread_id = target.thread_json();
    let event = ChannelEvent {
        channel_id: channel.row.id.clone(),
        message_id: Some(id.to_owned()),
        kind: "message_edit",
        step: Step::Edit {
            message_id: id.to_owned(),
            content: content.to_owned(),
            extra: extra_text,
            mentions: mentioned.ids(),
        },
        render: Box::new(move |seq| {
            wire::packet(
                "message_edit",
                json!({"id": id_owned, "content": content_owned, "message": message, "channel": channel_name,
                       "thread_id": thread_id, "seq": seq, "global": true}),
            )
        }),
    };
    let outcome = state.store.writer().event(event, publisher(s, frame.listener(), &channel.row.id)).await?;
    settle(outcome, not_editable)
}

/// `message_delete`: the author with `delete_own`, anyone else with the channel `delete` list or
/// `manage_messages`.
pub async fn message_delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let (Some(id), true) = (frame.str("id"), has_target(frame)) else {
        return Err(Error::bad_request("Invalid message delete format"));
    };
    let dir = state.directory();
    let target = resolve(s, frame, &dir).await?;
    let channel = target.channel;
    let gone = "Message not found or cannot be deleted";
    let row = state.store.message_in(&channel.row.id, target.key(), id).await?.ok_or_else(|| Error::not_found(gone))?;
    if row.user_id.as_deref() == Some(me.user.id.as_str()) {
        if !me.actor.channel_allows(&channel.perms, "delete_own") {
            let noun = target.noun();
            return Err(Error::forbidden(format!(
                "You do not have permission to delete your own message in this {noun}"
            )));
        }
    } else if !(me.actor.channel_allows(&channel.perms, "delete") || me.actor.has_in(&channel.perms, "manage_messages"))
    {
        return Err(Error::forbidden("You do not have permission to delete this message"));
    }
    let (channel_name, id_owned, thread_id) = (channel.row.name.clone(), id.to_owned(), target.thread_json());
    let event = ChannelEvent {
        channel_id: channel.row.id.clone(),
        message_id: Some(id.to_owned()),
        kind: "message_delete",
        step: Step::Delete { message_id: id.to_owned() },
        render: Box::new(move |seq| {
            wire::packet(
                "message_delete",
                json!({"id": id_owned, "channel": channel_name, "thread_id": thread_id, "seq": seq, "global": true}),
            )
        }),
    };
    let outcome = state.store.writer().event(event, publisher(s, frame.listener(), &channel.row.id)).await?;
    settle(outcome, gone)
}
