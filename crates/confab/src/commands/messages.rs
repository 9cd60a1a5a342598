//! `message_new` (PROTOCOL §6.1, §7.3, §7.4): validation in protocol order, mentions, and the
//! durable, idempotent append.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::{
    target::{self, Target},
    threads,
};
use crate::{
    domain::{embeds, mentions},
    error::{Error, Result},
    gateway::Session,
    state::Directory,
    store::{
        threads::ThreadRow,
        writer::{Appended, NewMessage},
    },
    wire,
};

/// Longest nonce accepted (PROTOCOL §7.4).
const NONCE_MAX: usize = 64;

/// `message_new`: validate in the order of PROTOCOL §6.1, append through the group-commit writer,
/// and publish only after the commit.
pub async fn new(s: &mut Session, frame: &Frame) -> Result<()> {
    if super::timeout::refuse_if_timed_out(s, frame, "messages") {
        return Ok(());
    }
    let me = s.me()?.clone();
    let state = s.state.clone();
    let has_target = frame.get("channel").is_some() || frame.get("thread_id").is_some();
    let content = match frame.get("content") {
        None => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(_) => return Err(Error::bad_request("Missing fields: content or attachments")),
    };
    let attachments = frame.get("attachments");
    let has_attachments = attachments.is_some_and(|a| a.as_array().is_none_or(|a| !a.is_empty()));
    let has_embeds = frame.get("embeds").is_some_and(|e| e.as_array().is_none_or(|e| !e.is_empty()));
    let mut missing = Vec::new();
    if !has_target {
        missing.push("channel or thread_id");
    }
    if content.is_none() && !has_attachments && !has_embeds {
        missing.push("content or attachments");
    }
    if !missing.is_empty() {
        return Err(Error::bad_request(format!("Missing fields: {}", missing.join(", "))));
    }
    let content = content.unwrap_or("");
    if content.trim().is_empty() && !has_attachments && !has_embeds {
        return Err(Error::bad_request("Message content or attachments cannot be empty"));
    }
    let embeds = embeds::validate(frame.get("embeds")).map_err(Error::bad_request)?;
    let max = state.config.limits.post_content;
    if content.chars().count() > max {
        return Err(Error::new(ErrorCode::TooLong, format!("Message too long. Maximum length is {max} characters")));
    }
    let nonce = match frame.get("nonce") {
        None => None,
        Some(Value::String(n)) if (1..=NONCE_MAX).contains(&n.chars().count()) => Some(n.clone()),
        Some(_) => {
            return Err(Error::bad_request("Nonce must be a string of 1-64 characters"));
        }
    };
    let dir = state.directory();
    let target = send_target(s, frame, &dir).await?;
    let channel = target.channel;
    if let Some(thread) = &target.thread {
        if thread.locked && !me.actor.has_in(&channel.perms, "manage_threads") {
            return Err(Error::new(ErrorCode::ThreadLocked, "This thread is locked"));
        }
        if thread.archived {
            // A new message brings an archived thread back (PROTOCOL §6.0).
            threads::set_state(s, frame, &target, ThreadRow { archived: false, ..thread.clone() }).await?;
        }
    }
    let ping = frame.get("ping").and_then(Value::as_bool);
    let reply_to = match frame.get("reply_to") {
        None => None,
        Some(v) => {
            let id = v.as_str().or_else(|| v.get("id").and_then(Value::as_str)).unwrap_or("");
            let original = state.store.message_in(&channel.row.id, target.key(), id).await?;
            let original =
                original.ok_or_else(|| Error::not_found("The message you're trying to reply to was not found"))?;
            Some((original.id, original.author))
        }
    };
    if has_attachments {
        return Err(Error::new(ErrorCode::Disabled, "Attachments are disabled"));
    }

    let (users, roles) = mentions(&state, content).await?;
    let replies: Vec<String> = match (&reply_to, ping) {
        (Some((_, author)), p) if p != Some(false) => vec![author.clone()],
        _ => Vec::new(),
    };
    let message = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id: channel.row.id.clone(),
        channel_name: channel.row.name.clone(),
        thread_id: target.thread.as_ref().map(|t| t.id.clone()),
        user_id: Some(me.user.id.clone()),
        author_name: me.user.username.clone(),
        content: content.to_owned(),
        created_at: crate::store::now(),
        reply_to,
        ping,
        pings: json!({"users": users, "roles": roles, "replies": replies}),
        extra: embeds.map(|e| json!({"embeds": e})),
        nonce,
        nonce_window_s: state.config.limits.nonce_window_s as f64,
    };

    // Publishing happens inside the writer, right after the commit and in seq order.
    let on_commit = target::publisher(s, frame.listener(), &channel.row.id);
    match state.store.writer().append(message, on_commit).await {
        Ok(Appended::New { .. }) => Ok(()),
        Ok(Appended::Duplicate { packet }) => {
            let again = wire::with_fields(&packet, &[("duplicate", json!(true))]);
            s.send(wire::with_listener(&again, frame.listener()));
            Ok(())
        }
        Ok(Appended::NonceConflict) => {
            Err(Error::new(ErrorCode::NonceConflict, "Nonce already used for a different message"))
        }
        Ok(Appended::OriginalDeleted) => Err(Error::not_found("Message not found")),
        Ok(Appended::ChannelGone | Appended::Event { .. } | Appended::Unchanged) => {
            Err(Error::not_found("Channel not found"))
        }
        Err(e) => {
            tracing::error!(conn = s.conn_id, "message_new: {e}");
            Err(Error::new(ErrorCode::Internal, "Failed to save message"))
        }
    }
}

/// Where a new message goes: a text channel the user may view and send in, or a thread whose parent
/// they may view and send in. A channel they cannot view gets the `send` error (PROTOCOL §6.1).
async fn send_target<'d>(s: &Session, frame: &Frame, dir: &'d Directory) -> Result<Target<'d>> {
    let me = s.me()?;
    if let Some(id) = frame.get("thread_id") {
        let thread = match id.as_str() {
            Some(id) => s.state.store.thread(id).await?,
            None => None,
        };
        let thread = thread.ok_or_else(|| Error::not_found("Thread not found"))?;
        let channel = dir.channels.iter().find(|c| c.row.id == thread.channel_id);
        let channel = channel.ok_or_else(|| Error::not_found("Thread not found"))?;
        if !me.actor.channel_allows(&channel.perms, "view") || !me.actor.channel_allows(&channel.perms, "send") {
            return Err(Error::forbidden("You do not have permission to send messages in this thread"));
        }
        return Ok(Target { channel, thread: Some(thread) });
    }
    let channel =
        dir.channel(frame.str("channel").unwrap_or("")).ok_or_else(|| Error::not_found("Channel not found"))?;
    if !me.actor.channel_allows(&channel.perms, "view") || !me.actor.channel_allows(&channel.perms, "send") {
        return Err(Error::forbidden("You do not have permission to send messages in this channel"));
    }
    if channel.row.kind != "text" {
        return Err(Error::bad_request("Cannot send messages in this channel type"));
    }
    Ok(Target { channel, thread: None })
}

/// The accounts (canonical names) and roles mentioned in `content` (PROTOCOL §5.6).
pub async fn mentions(state: &crate::state::AppState, content: &str) -> Result<(Vec<String>, Vec<String>)> {
    let (user_names, role_names) = mentions::candidates(content);
    let mut users: Vec<String> = Vec::new();
    for u in state.store.users_by_names(&user_names.into_iter().take(25).collect::<Vec<_>>()).await? {
        if !users.contains(&u.username) {
            users.push(u.username);
        }
    }
    let dir = state.directory();
    let roles = role_names.iter().filter_map(|r| dir.role(r).map(|r| r.name.clone())).collect();
    Ok((users, roles))
}
