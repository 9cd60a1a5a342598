//! History reads (PROTOCOL §6.1): `messages_get`, `message_get`, `messages_around`,
//! `message_replies`, `messages_pinned`, `embeds_list`.

use confab_proto::Frame;
use serde_json::{Value, json};

use super::target::{has_target, text_channel};
use crate::{
    error::{Error, Result},
    gateway::Session,
    store::messages::MessageRow,
    wire,
};

fn render(rows: &[MessageRow]) -> Vec<Value> {
    rows.iter().map(|r| Value::Object(wire::message(r))).collect()
}

/// Where a history page starts: skip the newest N, or older than a message id.
enum Start {
    Skip(i64),
    Before(String),
}

/// `messages_get` with originChats paging.
pub async fn messages_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    if !has_target(frame) {
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
    let channel = text_channel(s, frame, &dir)?;
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
    s.reply(
        frame,
        "messages_get",
        json!({"channel": channel.row.name, "messages": render(&rows), "range": range, "seq": seq}),
    );
    Ok(())
}

/// `message_get`: one message by id.
pub async fn message_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(id) = frame.str("id").filter(|_| has_target(frame)) else {
        return Err(Error::bad_request("Channel/thread and message ID are required"));
    };
    let dir = s.state.directory();
    let channel = text_channel(s, frame, &dir)?;
    let row = s.state.store.message_in(&channel.row.id, "", id).await?;
    let row = row.ok_or_else(|| Error::not_found("Message not found"))?;
    s.reply(frame, "message_get", json!({"channel": channel.row.name, "message": wire::message(&row)}));
    Ok(())
}

/// A `bounds` value: default 50, clamped to 0–200.
fn bound(bounds: Option<&Value>, key: &str) -> i64 {
    bounds.and_then(|b| b.get(key)).and_then(Value::as_i64).unwrap_or(50).clamp(0, 200)
}

/// `messages_around`: the message, `below` older ones and `above` newer ones (history order).
pub async fn messages_around(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(around) = frame.str("around") else {
        return Err(Error::bad_request("around (message ID) is required"));
    };
    let dir = s.state.directory();
    let channel = text_channel(s, frame, &dir)?;
    let store = &s.state.store;
    let id = &channel.row.id;
    let pivot = store.message_in(id, "", around).await?.ok_or_else(|| Error::not_found("Message not found"))?;
    let bounds = frame.get("bounds");
    let mut rows = store.messages_before_seq(id, "", pivot.seq, bound(bounds, "below")).await?;
    let first_seq = rows.first().map_or(pivot.seq, |r| r.seq);
    let start = store.messages_count_before(id, "", first_seq).await?;
    let newer = store.messages_after_seq(id, "", pivot.seq, bound(bounds, "above")).await?;
    rows.push(pivot);
    rows.extend(newer);
    let end = start + rows.len() as i64;
    s.reply(
        frame,
        "messages_around",
        json!({"channel": channel.row.name, "thread_id": null, "messages": render(&rows), "range": {"start": start, "end": end}}),
    );
    Ok(())
}

/// `message_replies`: replies to one message, oldest first.
pub async fn message_replies(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(id) = frame.str("id").filter(|_| has_target(frame)) else {
        return Err(Error::bad_request("Channel name and message ID are required"));
    };
    let limit = frame.get("limit").and_then(Value::as_i64).unwrap_or(50).clamp(1, 200);
    let dir = s.state.directory();
    let channel = text_channel(s, frame, &dir)?;
    let rows = s.state.store.messages_replying(&channel.row.id, "", id, limit).await?;
    s.reply(frame, "message_replies", json!({"channel": channel.row.name, "message_id": id, "replies": render(&rows)}));
    Ok(())
}

/// `messages_pinned`: pinned messages, newest first.
pub async fn messages_pinned(s: &mut Session, frame: &Frame) -> Result<()> {
    if frame.str("channel").is_none() {
        return Err(Error::bad_request("Channel name not provided"));
    }
    let dir = s.state.directory();
    let channel = text_channel(s, frame, &dir)?;
    let rows = s.state.store.messages_pinned(&channel.row.id, "").await?;
    s.reply(frame, "messages_pinned", json!({"channel": channel.row.name, "messages": render(&rows)}));
    Ok(())
}

/// `embeds_list`: a message's embeds.
pub async fn embeds_list(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(id) = frame.str("id") else { return Err(Error::bad_request("Message ID is required")) };
    if !has_target(frame) {
        return Err(Error::bad_request("Channel or thread_id is required"));
    }
    let dir = s.state.directory();
    let channel = text_channel(s, frame, &dir)?;
    let row = s.state.store.message_in(&channel.row.id, "", id).await?;
    let row = row.ok_or_else(|| Error::not_found("Message not found"))?;
    let embeds = wire::message(&row).remove("embeds").unwrap_or_else(|| json!([]));
    s.reply(frame, "embeds_list", json!({"id": id, "embeds": embeds}));
    Ok(())
}
