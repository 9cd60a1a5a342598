//! Rendering stored state into the JSON shapes of PROTOCOL §5, in one place.
//!
//! Both live broadcasts and history reads build message objects here, so a field never differs
//! between what a client saw live and what it finds after a reload.

pub use confab_proto::with_listener;
use serde_json::{Map, Value, json};

use crate::store::messages::MessageRow;

/// The keys of a message's `extra` JSON that are copied onto the wire object as they are.
const EXTRA_KEYS: [&str; 5] = ["embeds", "attachments", "interaction", "webhook", "poll_id"];

/// A message object as history reads show it (no `pings`, no `nonce`).
pub fn message(row: &MessageRow) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(row.id));
    m.insert("user".into(), json!(row.author));
    m.insert("content".into(), json!(row.content));
    m.insert("timestamp".into(), json!(row.created_at));
    m.insert("type".into(), json!("message"));
    m.insert("pinned".into(), json!(row.pinned));
    m.insert("interaction".into(), Value::Null);
    m.insert("seq".into(), json!(row.seq));
    if let Some(reply) = &row.reply_to {
        m.insert("reply_to".into(), json!({"id": reply, "user": row.reply_user.as_deref().unwrap_or("")}));
    }
    if let Some(ping) = row.ping {
        m.insert("ping".into(), json!(ping));
    }
    if row.edited {
        m.insert("edited".into(), json!(true));
    }
    if !row.reactions.is_empty() {
        let mut reactions: Map<String, Value> = Map::new();
        for (emoji, user) in &row.reactions {
            match reactions.entry(emoji.clone()).or_insert_with(|| json!([])) {
                Value::Array(users) => users.push(json!(user)),
                other => *other = json!([user]),
            }
        }
        m.insert("reactions".into(), Value::Object(reactions));
    }
    if let Some(Value::Object(extra)) = row.extra.as_deref().and_then(|e| serde_json::from_str(e).ok()) {
        for key in EXTRA_KEYS {
            if let Some(v) = extra.get(key) {
                m.insert(key.into(), v.clone());
            }
        }
    }
    m
}

/// A packet with `cmd` plus the given fields, serialised once.
pub fn packet(cmd: &str, fields: Value) -> String {
    let mut map = Map::new();
    map.insert("cmd".into(), json!(cmd));
    if let Value::Object(f) = fields {
        map.extend(f);
    }
    Value::Object(map).to_string()
}

/// Adds top-level fields to a serialised packet (e.g. `replay`, `duplicate`).
pub fn with_fields(packet: &str, fields: &[(&str, Value)]) -> String {
    match serde_json::from_str::<Value>(packet) {
        Ok(Value::Object(mut map)) => {
            for (k, v) in fields {
                map.insert((*k).to_owned(), v.clone());
            }
            Value::Object(map).to_string()
        }
        _ => packet.to_owned(),
    }
}

/// A role colour for presence packets: the highest-positioned role with a colour (PROTOCOL §2.11).
pub fn color_of(roles: &[crate::store::roles::Role]) -> Value {
    roles.iter().find_map(|r| r.color.clone()).map_or(Value::Null, Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_is_appended_to_serialised_packets() {
        let p = packet("pong", json!({"val": "pong"}));
        let with = with_listener(&p, Some("a\"b"));
        let v: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(v["listener"], "a\"b");
        assert_eq!(v["val"], "pong");
        assert_eq!(with_listener(&p, None), p);
        let empty = with_listener("{}", Some("x"));
        assert_eq!(serde_json::from_str::<Value>(&empty).unwrap()["listener"], "x");
    }
}
