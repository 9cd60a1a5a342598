//! History reads (PROTOCOL §6.1, §6.3): `messages_get`, `thread_messages`, `message_get`,
//! `messages_around`, `message_replies`, `messages_pinned`, `embeds_list`, `messages_search` — in a
//! channel or a thread.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::{
    budget,
    target::{Target, has_target, resolve},
};
use crate::{
    error::{Error, Result},
    gateway::Session,
    store::messages::MessageRow,
    wire,
};

/// The history objects of `rows`, poll embeds with their current state for the requester, that
/// fit in the reply budget ([`budget::fit`]), and whether any was left out; `from_back` keeps the
/// newest of a list in history order.
async fn render(s: &Session, rows: &[MessageRow], from_back: bool) -> Result<(Vec<Value>, bool)> {
    let mut all: Vec<Value> = rows.iter().map(|r| Value::Object(wire::message(r))).collect();
    super::polls::enrich(&s.state, &s.me()?.user.id, &mut all).await?;
    Ok(budget::fit(all, budget::reply_budget(&s.state), from_back))
}

/// Where a history page starts: skip the newest N, or older than a message id.
enum Start {
    Skip(i64),
    Before(String),
}

/// `messages_get` with originChats paging, in a channel or a thread.
pub async fn messages_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = s.state.clone();
    if !has_target(frame) {
        return Err(Error::bad_request("Channel or thread_id required"));
    }
    let (start, limit) = paging(frame)?;
    let dir = state.directory();
    let target = resolve(s, frame, &dir).await?;
    let (rows, range) = page(s, &target, &start, limit).await?;
    let (id, key) = (&target.channel.row.id, target.key());
    let seq = state.store.channel_seq(id).await?;
    if let Start::Skip(0) = start
        && let Some((last_id, last_seq, _)) = state.store.message_latest(id, key).await?
    {
        super::unreads::mark_read(s, &target, &last_id, last_seq).await?;
    }
    let (messages, truncated) = render(s, &rows, true).await?;
    let mut reply = json!({"channel": target.channel.row.name, "messages": messages, "range": range, "seq": seq});
    if target.thread.is_some() {
        reply["thread_id"] = target.thread_json();
    }
    budget::flag(&mut reply, truncated);
    s.reply(frame, "messages_get", reply);
    Ok(())
}

/// One page of history with its `range` (shared by `messages_get` and `thread_messages`).
async fn page(s: &Session, target: &Target<'_>, start: &Start, limit: i64) -> Result<(Vec<MessageRow>, Value)> {
    let (id, key) = (&target.channel.row.id, target.key());
    let store = &s.state.store;
    Ok(match start {
        Start::Skip(n) => (store.messages_page(id, key, *n, limit).await?, json!({"start": n, "end": n + limit})),
        Start::Before(before) => {
            (store.messages_before(id, key, before, limit).await?, json!({"start": before, "end": null}))
        }
    })
}

/// `start` and `limit` of a history read (PROTOCOL §6.1).
fn paging(frame: &Frame) -> Result<(Start, i64)> {
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
    Ok((start, limit))
}

/// `thread_messages {thread_id, start?, limit?}`: paging as `messages_get`, nothing marked read.
pub async fn thread_messages(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(thread_id) = frame.str("thread_id") else { return Err(Error::bad_request("Thread ID is required")) };
    let (start, limit) = paging(frame)?;
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let (rows, _) = page(s, &target, &start, limit).await?;
    let (messages, truncated) = render(s, &rows, true).await?;
    let mut reply = json!({"thread_id": thread_id, "channel": target.channel.row.name, "messages": messages});
    budget::flag(&mut reply, truncated);
    s.reply(frame, "thread_messages", reply);
    Ok(())
}

/// `message_get`: one message by id.
pub async fn message_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(id) = frame.str("id").filter(|_| has_target(frame)) else {
        return Err(Error::bad_request("Channel/thread and message ID are required"));
    };
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let row = s.state.store.message_in(&target.channel.row.id, target.key(), id).await?;
    let row = row.ok_or_else(|| Error::not_found("Message not found"))?;
    // One message always fits the budget.
    let message = render(s, std::slice::from_ref(&row), false).await?.0.pop().unwrap_or_default();
    let mut reply = json!({"channel": target.channel.row.name, "message": message});
    if target.thread.is_some() {
        reply["thread_id"] = target.thread_json();
    }
    s.reply(frame, "message_get", reply);
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
    let target = resolve(s, frame, &dir).await?;
    let store = &s.state.store;
    let (id, key) = (&target.channel.row.id, target.key());
    let pivot = store.message_in(id, key, around).await?.ok_or_else(|| Error::not_found("Message not found"))?;
    let bounds = frame.get("bounds");
    let mut rows = store.messages_before_seq(id, key, pivot.seq, bound(bounds, "below")).await?;
    let first_seq = rows.first().map_or(pivot.seq, |r| r.seq);
    let start = store.messages_count_before(id, key, first_seq).await?;
    let newer = store.messages_after_seq(id, key, pivot.seq, bound(bounds, "above")).await?;
    rows.push(pivot);
    rows.extend(newer);
    let end = start + rows.len() as i64;
    // Over budget, the oldest go: the client loads older history around the oldest it holds.
    let (messages, truncated) = render(s, &rows, true).await?;
    let start = end - messages.len() as i64;
    let mut reply = json!({"channel": target.channel.row.name, "thread_id": target.thread_json(),
                           "messages": messages, "range": {"start": start, "end": end}});
    budget::flag(&mut reply, truncated);
    s.reply(frame, "messages_around", reply);
    Ok(())
}

/// `message_replies`: replies to one message, oldest first.
pub async fn message_replies(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(id) = frame.str("id").filter(|_| has_target(frame)) else {
        return Err(Error::bad_request("Channel name and message ID are required"));
    };
    let limit = frame.get("limit").and_then(Value::as_i64).unwrap_or(50).clamp(1, 200);
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let rows = s.state.store.messages_replying(&target.channel.row.id, target.key(), id, limit).await?;
    let (replies, truncated) = render(s, &rows, false).await?;
    let mut reply = json!({"channel": target.channel.row.name, "message_id": id, "replies": replies});
    budget::flag(&mut reply, truncated);
    s.reply(frame, "message_replies", reply);
    Ok(())
}

/// `messages_pinned`: pinned messages, newest first.
pub async fn messages_pinned(s: &mut Session, frame: &Frame) -> Result<()> {
    if frame.str("channel").is_none() {
        return Err(Error::bad_request("Channel name not provided"));
    }
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let rows = s.state.store.messages_pinned(&target.channel.row.id, target.key()).await?;
    let (messages, truncated) = render(s, &rows, false).await?;
    let mut reply = json!({"channel": target.channel.row.name, "messages": messages});
    budget::flag(&mut reply, truncated);
    s.reply(frame, "messages_pinned", reply);
    Ok(())
}

/// Longest `messages_search` query, in characters.
const QUERY_MAX: usize = 200;

/// `messages_search {channel, query}`: case-insensitive substring matches, newest first, at most
/// `limits.search_results` of them. The store serves it from a trigram index
/// ([`crate::store::search`]), so it stays fast on channels of millions of messages.
pub async fn messages_search(s: &mut Session, frame: &Frame) -> Result<()> {
    let given = |key| frame.str(key).filter(|v| !v.is_empty());
    let (Some(_), Some(query)) = (given("channel"), given("query")) else {
        return Err(Error::bad_request("Channel name and query are required"));
    };
    if query.chars().count() > QUERY_MAX {
        return Err(Error::new(ErrorCode::TooLong, format!("Query too long (max {QUERY_MAX} characters)")));
    }
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let limit = i64::try_from(s.state.config.limits.search_results).unwrap_or(i64::MAX);
    let rows = s.state.store.messages_search(&target.channel.row.id, target.key(), query, limit).await?;
    let (results, truncated) = render(s, &rows, false).await?;
    let mut reply = json!({"channel": target.channel.row.name, "query": query, "results": results});
    budget::flag(&mut reply, truncated);
    s.reply(frame, "messages_search", reply);
    Ok(())
}

/// `embeds_list`: a message's embeds.
pub async fn embeds_list(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(id) = frame.str("id") else { return Err(Error::bad_request("Message ID is required")) };
    if !has_target(frame) {
        return Err(Error::bad_request("Channel or thread_id is required"));
    }
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let row = s.state.store.message_in(&target.channel.row.id, target.key(), id).await?;
    let row = row.ok_or_else(|| Error::not_found("Message not found"))?;
    let embeds = wire::message(&row).remove("embeds").unwrap_or_else(|| json!([]));
    s.reply(frame, "embeds_list", json!({"id": id, "embeds": embeds}));
    Ok(())
}
