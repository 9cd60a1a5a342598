//! Command handlers, one module per group: authorise → validate → store → publish.
//!
//! Handlers see the [`crate::gateway::Session`] (identity + reply queue), the store and the hub;
//! never a socket or a database driver.

pub mod attachments;
pub mod auth;
pub mod bots;
pub mod budget;
pub mod channels;
pub mod connection;
pub mod edits;
pub mod emoji;
pub mod history;
pub mod invites;
pub mod limits;
pub mod messages;
pub mod moderation;
pub mod pings;
pub mod pins;
pub mod polls;
pub mod presence;
pub mod push;
pub mod reactions;
pub mod remote;
pub mod resume;
pub mod roles;
pub mod sauth;
pub mod server;
pub mod slash;
pub mod slash_builtins;
pub mod target;
pub mod threads;
pub mod timeout;
pub mod typing;
pub mod unreads;
pub mod users;
pub mod voice;
pub mod webhooks;

use serde_json::Value;

use crate::error::{Error, Result};

/// Fields that name something (a channel, thread, message, user, role, emoji …) and are strings in
/// every command that takes them.
const STRING_FIELDS: [&str; 13] = [
    "around",
    "call_id",
    "channel",
    "code",
    "current_name",
    "emoji",
    "id",
    "invoker",
    "message_id",
    "query",
    "role",
    "thread_id",
    "user",
];

/// Refuses a frame whose naming field has another JSON type than string (`null` is absent,
/// PROTOCOL §1.2). Checked once for every command before its handler runs: handlers read these
/// fields with [`Frame::str`](confab_proto::Frame::str), which would take `"channel": []` as no
/// channel at all and answer "Channel not found" (not_found) instead of a `bad_request`.
pub fn check_field_types(frame: &confab_proto::Frame) -> Result<()> {
    match STRING_FIELDS.iter().find(|key| frame.get(key).is_some_and(|v| !v.is_string())) {
        Some(key) => Err(Error::bad_request(format!("Field '{key}' must be a string"))),
        None => Ok(()),
    }
}

/// An optional field that must be a non-empty string when present.
pub fn opt_str<'a>(frame: &'a confab_proto::Frame, key: &str) -> Option<&'a str> {
    frame.str(key).filter(|s| !s.is_empty())
}

/// A field that, when present and not null, must be an integer.
pub fn opt_int(frame: &confab_proto::Frame, key: &str, err: &str) -> Result<Option<i64>> {
    match frame.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| Error::bad_request(err)),
        Some(_) => Err(Error::bad_request(err)),
    }
}
