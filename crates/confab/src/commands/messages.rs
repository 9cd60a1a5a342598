//! Core message commands (PROTOCOL §6.1): `message_new`, `messages_get`, `message_get`.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use crate::{
    domain::{embeds, mentions},
    error::{Error, Result},
    gateway::Session,
    hub::Packet,
    state::{ChannelEntry, Directory},
    store::writer::{Appended, NewMessage},
    wire,
};

/// Longest nonce accepted (PROTOCOL §7.4).
const NONCE_MAX: usize = 64;

/// Resolves `channel | thread_id` for a read, with the context errors (CE) of PROTOCOL §6.0.
fn read_target<'d>(s: &Session, frame: &Frame, dir: &'d Directory) -> Result<&'d ChannelEntry> {
    let me = s.me()?;
    if frame.get("thread_id").is_some() {
        // Threads live in forum channels; none can be found until a thread exists.
        return Err(Error::not_found("Thread not found"));
    }
    let name = frame.str("channel").unwrap_or("");
    let channel = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    if !me.actor.channel_allows(&channel.perms, "view") || channel.row.kind != "text" {
        return Err(Error::forbidden("Access denied to this channel"));
    }
    Ok(channel)
}

/// `message_new`: validate in the order of PROTOCOL §6.1, append through the group-commit writer,
/// and publish only after the commit.
pub async fn new(s: &mut Session, frame: &Frame) -> Result<()> {
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
    if frame.get("thread_id").is_some() {
        return Err(Error::not_found("Thread not found"));
    }
    let dir = state.directory();
    let channel =
        dir.channel(frame.str("channel").unwrap_or("")).ok_or_else(|| Error::not_found("Channel not found"))?;
    if !me.actor.channel_allows(&channel.perms, "view") || !me.actor.channel_allows(&channel.perms, "send") {
        return Err(Error::forbidden("You do not have permission to send messages in this channel"));
    }
    if channel.row.kind != "text" {
        return Err(Error::bad_request("Cannot send messages in this channel type"));
    }
    let ping = frame.get("ping").and_then(Value::as_bool);
    let reply_to = match frame.get("reply_to") {
        None => None,
        Some(v) => {
            let id = v.as_str().or_else(|| v.get("id").and_then(Value::as_str)).unwrap_or("");
            let original = state.store.message_in(&channel.row.id, "", id).await?;
            let original =
                original.ok_or_else(|| Error::not_found("The message you're trying to reply to was not found"))?;
            Some((original.id, original.author))
        }
    };
    if has_attachments {
        return Err(Error::new(ErrorCode::Disabled, "Attachments are disabled"));
    }

    let (user_names, role_names) = mentions::candidates(content);
    let mut pinged_users: Vec<String> = Vec::new();
    for u in state.store.users_by_names(&user_names.iter().take(25).cloned().collect::<Vec<_>>()).await? {
        if !pinged_users.contains(&u.username) {
            pinged_users.push(u.username);
        }
    }
    let pinged_roles: Vec<String> = role_names.iter().filter_map(|r| dir.role(r).map(|r| r.name.clone())).collect();
    let replies: Vec<String> = match (&reply_to, ping) {
        (Some((_, author)), p) if p != Some(false) => vec![author.clone()],
        _ => Vec::new(),
    };
    let message = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id: channel.row.id.clone(),
        channel_name: channel.row.name.clone(),
        thread_id: None,
        user_id: Some(me.user.id.clone()),
        author_name: me.user.username.clone(),
        content: content.to_owned(),
        created_at: crate::store::now(),
        reply_to,
        ping,
        pings: json!({"users": pinged_users, "roles": pinged_roles, "replies": replies}),
        extra: embeds.map(|e| json!({"embeds": e})),
        nonce,
        nonce_window_s: state.config.limits.nonce_window_s as f64,
    };

    // Publishing happens inside the writer, right after the commit and in seq order.
    let publisher = state.clone();
    let channel_id = channel.row.id.clone();
    let conn_id = s.conn_id;
    let outbox = s.outbox.clone();
    let listener = frame.listener().map(str::to_owned);
    let on_commit = Box::new(move |outcome: &Appended| {
        if let Appended::New { packet, seq } = outcome {
            let shared = Packet::from(packet.clone());
            publisher.hub.to_channel(&channel_id, *seq, &shared, Some(conn_id));
            let own = match &listener {
                Some(l) => Packet::from(wire::with_listener(packet, Some(l))),
                None => shared,
            };
            publisher.hub.deliver(&outbox, &own, false);
        }
    });
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
        Ok(Appended::ChannelGone) => Err(Error::not_found("Channel not found")),
        Err(e) => {
            tracing::error!(conn = s.conn_id, "message_new: {e}");
            Err(Error::new(ErrorCode::Internal, "Failed to save message"))
        }
    }
}

/// Where a history page starts: skip the newest N, or older than a message id.
enum Start {
    Skip(i64),
    Before(String),
}

/// `messages_get` with originChats paging (PROTOCOL §6.1).
pub async fn history(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    if frame.get("channel").is_none() && frame.get("thread_id").is_none() {
        return Err(Error::bad_request("Channel or thread_id required"));
    }
    let invalid = || Error::bad_request("Invalid start or limit");
    let start = match frame.get("start") {
        None => Start::Skip(0),
        Some(Value::Number(n)) => Start::Skip(n.as_i64().ok_or_else(invalid)?.max(0)),
        Some(Value::String(id)) => Start::Before(id.clone()),
        Some(_) => return Err(invalid()),
    };
    let limit = match frame.get("limit") {
        None => 100,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(invalid)?.clamp(1, 200),
        Some(_) => return Err(invalid()),
    };
    let dir = state.directory();
    let channel = read_target(s, frame, &dir)?;
    let id = &channel.row.id;
    let (rows, range) = match &start {
        Start::Skip(n) => (state.store.messages_page(id, "", *n, limit).await?, json!({"start": n, "end": n + limit})),
        Start::Before(before) => {
            (state.store.messages_before(id, "", before, limit).await?, json!({"start": before, "end": null}))
        }
    };
    let seq = state.store.channel_seq(id).await?;
    if let Start::Skip(0) = start
        && let Some((last_id, last_seq, _)) = state.store.message_latest(id, "").await?
    {
        state.store.mark_read(&me.user.id, id, "", Some(&last_id), last_seq).await?;
        let update = wire::packet("unreads_update", json!({"last_read": last_id, "channel": channel.row.name}));
        state.hub.to_user(&me.user.id, &update.into());
    }
    let messages: Vec<Value> = rows.iter().map(|r| Value::Object(wire::message(r))).collect();
    s.reply(
        frame,
        "messages_get",
        json!({"channel": channel.row.name, "messages": messages, "range": range, "seq": seq}),
    );
    Ok(())
}

/// `message_get`: one message by id.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    let has_target = frame.get("channel").is_some() || frame.get("thread_id").is_some();
    let Some(id) = frame.str("id").filter(|_| has_target) else {
        return Err(Error::bad_request("Channel/thread and message ID are required"));
    };
    let dir = s.state.directory();
    let channel = read_target(s, frame, &dir)?;
    let row = s.state.store.message_in(&channel.row.id, "", id).await?;
    let row = row.ok_or_else(|| Error::not_found("Message not found"))?;
    s.reply(frame, "message_get", json!({"channel": channel.row.name, "message": wire::message(&row)}));
    Ok(())
}
