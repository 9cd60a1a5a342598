//! Command handlers, one module per group: authorise → validate → store → publish.
//!
//! Handlers see the [`crate::gateway::Session`] (identity + reply queue), the store and the hub;
//! never a socket or a database driver.

pub mod auth;
pub mod bots;
pub mod channels;
pub mod edits;
pub mod emoji;
pub mod history;
pub mod limits;
pub mod messages;
pub mod moderation;
pub mod pings;
pub mod pins;
pub mod polls;
pub mod presence;
pub mod reactions;
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
