//! `pings_get` (PROTOCOL §6.1): the messages that mention the account or one of its roles, or reply
//! to it, in channels it can view, newest first. Read from the store's mention index
//! ([`crate::store::pings`]), never from a scan of the messages.

use confab_proto::Frame;
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    gateway::Session,
    wire,
};

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: i64 = 50;
/// Largest page.
const MAX_LIMIT: i64 = 100;

/// `pings_get {limit?, offset?}` → `{"messages","offset","limit","total"}`; each message carries
/// `channel`, and `thread_id` when it is in a thread.
pub async fn pings_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let limit = match frame.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .as_i64()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| Error::bad_request("Limit must be a number between 1 and 100"))?,
    };
    let offset = match frame.get("offset") {
        None => 0,
        Some(v) => {
            v.as_i64().filter(|o| *o >= 0).ok_or_else(|| Error::bad_request("Offset must be a non-negative number"))?
        }
    };
    let me = s.me()?;
    let dir = s.state.directory();
    let channels = dir.viewable(&me.actor);
    let roles = me.role_ids();
    let (rows, total) = s.state.store.pings_page(&me.user.id, &roles, &channels, limit, offset).await?;
    let messages: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut message = wire::message(row);
            let channel = dir.channels.iter().find(|c| c.row.id == row.channel_id);
            message.insert("channel".into(), json!(channel.map(|c| c.row.name.as_str())));
            if !row.thread_id.is_empty() {
                message.insert("thread_id".into(), json!(row.thread_id));
            }
            Value::Object(message)
        })
        .collect();
    // Over budget, `limit` is the number given, so `offset + limit` is still the next page.
    let (messages, truncated) = super::budget::fit(messages, super::budget::reply_budget(&s.state), false);
    let limit = if truncated { messages.len() as i64 } else { limit };
    let mut reply = json!({"messages": messages, "offset": offset, "limit": limit, "total": total});
    super::budget::flag(&mut reply, truncated);
    s.reply(frame, "pings_get", reply);
    Ok(())
}
