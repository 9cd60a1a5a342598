//! `channels_get` (PROTOCOL §6.2): the channels this user may view, in display order, with extras.

use confab_proto::Frame;
use serde_json::{Value, json};

use crate::{error::Result, gateway::Session, state::ChannelEntry};

/// Renders one channel as `channels_get` lists it, with its per-type extras (PROTOCOL §5.5).
pub async fn render(state: &crate::state::AppState, c: &ChannelEntry) -> Result<Value> {
    let row = &c.row;
    let mut obj = json!({"type": row.kind, "name": row.name, "permissions": c.perms});
    if let Some(d) = &row.display_name {
        obj["display_name"] = json!(d);
    }
    if let Some(d) = &row.description {
        obj["description"] = json!(d);
    }
    match row.kind.as_str() {
        "text" => {
            let latest = state.store.message_latest(&row.id, "").await?;
            obj["last_message"] = latest.as_ref().map_or(Value::Null, |l| json!(l.2));
            obj["last_message_id"] = latest.as_ref().map_or(Value::Null, |l| json!(l.0));
            obj["seq"] = json!(state.store.channel_seq(&row.id).await?);
        }
        "voice" => obj["voice_state"] = json!([]),
        "forum" => {
            obj["threads"] = json!([]);
            obj["seq"] = json!(state.store.channel_seq(&row.id).await?);
        }
        _ => obj["size"] = json!(row.size.unwrap_or(0)),
    }
    Ok(obj)
}

/// `channels_get` → `{"cmd":"channels_get","val":[…]}`.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let dir = s.state.directory();
    let mut list = Vec::new();
    for c in dir.channels.iter().filter(|c| me.actor.channel_allows(&c.perms, "view")) {
        list.push(render(&s.state, c).await?);
    }
    s.reply(frame, "channels_get", json!({"val": list}));
    Ok(())
}
