//! Channels (PROTOCOL §6.2): `channels_get`, `channel_create`, `channel_update`, `channel_move`,
//! `channel_delete`, and how a change reaches every connection at once.
//!
//! After any change the directory is reloaded, every connection's audience membership is
//! re-resolved (a connection that loses `view` stops receiving that channel's events immediately),
//! and every connection gets a fresh `channels_get` filtered to what it may view.

use std::sync::Arc;

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use crate::{
    cluster::control::Effect,
    domain::{
        names::channel_name_ok,
        permissions::{ChannelPermissions, PermissionsError, default_channel_permissions, parse_channel_permissions},
    },
    error::{Error, Result},
    gateway::Session,
    hub::{Conn, Packet},
    state::{AppState, ChannelEntry},
    store::{audit::Audit, channels::Channel},
    wire,
};

/// Channel types.
const KINDS: [&str; 4] = ["text", "voice", "forum", "separator"];

/// Renders one channel as `channels_get` lists it, with its per-type extras (PROTOCOL §5.5).
pub async fn render(state: &AppState, c: &ChannelEntry) -> Result<Value> {
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
        "voice" => obj["voice_state"] = super::voice::listed(state, &row.id),
        "forum" => {
            obj["threads"] = json!(super::threads::list(state, &row.id).await?);
            obj["seq"] = json!(state.store.channel_seq(&row.id).await?);
        }
        _ => obj["size"] = json!(row.size.unwrap_or(0)),
    }
    Ok(obj)
}

/// `channels_get` → `{"cmd":"channels_get","val":[…]}`.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let dir = s.state.directory();
    let mut list = Vec::new();
    for c in dir.channels.iter().filter(|c| me.actor.channel_allows(&c.perms, "view")) {
        list.push(render(&s.state, c).await?);
    }
    s.reply(frame, "channels_get", json!({"val": list}));
    Ok(())
}

/// Sends each of `conns` a `channels_get` filtered to what it may view; each channel is rendered once.
pub async fn push_lists(state: &AppState, conns: &[Arc<Conn>]) -> Result<()> {
    let dir = state.directory();
    let mut rendered = Vec::with_capacity(dir.channels.len());
    for c in &dir.channels {
        rendered.push((c, render(state, c).await?));
    }
    for conn in conns {
        let identity = conn.identity();
        let list: Vec<&Value> =
            rendered.iter().filter(|(c, _)| identity.actor.channel_allows(&c.perms, "view")).map(|(_, v)| v).collect();
        let packet = wire::packet("channels_get", json!({"val": list}));
        state.hub.deliver(&conn.outbox, &Packet::from(packet), false);
    }
    Ok(())
}

/// After a channel change: [`directory_refresh`] on every node.
pub async fn directory_changed(state: &AppState) -> Result<()> {
    state.everywhere(Effect::Channels, None);
    directory_refresh(state).await
}

/// After a channel or role change: reload, re-resolve this node's audiences, push fresh lists to
/// everyone on it.
pub async fn directory_refresh(state: &AppState) -> Result<()> {
    state.reload_directory().await?;
    let dir = state.directory();
    state.hub.rescope(|identity| dir.viewable(&identity.actor));
    push_lists(state, &state.hub.connections()).await
}

/// After an account's roles or name change: [`user_refresh`] on every node.
pub async fn user_changed(state: &AppState, user_id: &str) -> Result<()> {
    state.everywhere(Effect::User { user: user_id.to_owned() }, None);
    user_refresh(state, user_id).await
}

/// Refreshes the identities and audiences of an account's connections on this node, and pushes
/// them fresh lists (S→U).
pub async fn user_refresh(state: &AppState, user_id: &str) -> Result<()> {
    let Some(user) = state.store.user_by_id(user_id).await? else { return Ok(()) };
    let conns = state.hub.connections_of(user_id);
    for conn in &conns {
        let identity = state.identity(user.clone(), conn.session_id.clone()).await?;
        conn.set_identity(Arc::new(identity));
    }
    let dir = state.directory();
    state.hub.rescope(|identity| dir.viewable(&identity.actor));
    push_lists(state, &conns).await
}

fn require_manage(s: &Session) -> Result<Arc<crate::state::Identity>> {
    let me = s.me()?;
    if !me.actor.has("manage_channels") {
        return Err(Error::missing_permission("manage_channels"));
    }
    Ok(me)
}

fn audit(me: &crate::state::Identity, action: &'static str, channel: &Channel, details: Value) -> Audit {
    Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: Some(channel.id.clone()),
        target_name: Some(channel.name.clone()),
        details,
    }
}

fn permissions(state: &AppState, value: &Value) -> Result<ChannelPermissions> {
    let dir = state.directory();
    parse_channel_permissions(value, |r| dir.role(r).is_some()).map_err(|e| match e {
        PermissionsError::Invalid => Error::bad_request("Invalid permissions object"),
        PermissionsError::UnknownRole(r) => Error::not_found(format!("Role '{r}' does not exist")),
    })
}

fn opt_text(value: Option<&Value>) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 1024 => Ok(Some(s.clone())),
        Some(_) => Err(Error::bad_request("Invalid channel field")),
    }
}

fn size(value: Option<&Value>) -> Result<Option<i64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| Error::bad_request("Invalid channel field")),
    }
}

/// The object a create or update reply carries.
async fn channel_object(state: &AppState, id: &str) -> Result<Value> {
    let dir = state.directory();
    match dir.channels.iter().find(|c| c.row.id == id) {
        Some(c) => render(state, c).await,
        None => Ok(Value::Null),
    }
}

/// `channel_create {name, type, description?, display_name?, permissions?, size?}`.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage(s)?;
    let state = s.state.clone();
    let Some(name) = frame.get("name") else { return Err(Error::bad_request("Channel name is required")) };
    let name =
        name.as_str().filter(|n| channel_name_ok(n)).ok_or_else(|| Error::bad_request("Invalid channel name"))?;
    let Some(kind) = frame.get("type") else {
        return Err(Error::bad_request("Channel type is required (text, voice, forum, or separator)"));
    };
    let kind = kind
        .as_str()
        .filter(|k| KINDS.contains(k))
        .ok_or_else(|| Error::bad_request("Invalid channel type, must be text, voice, forum, or separator"))?;
    if state.directory().channels.iter().any(|c| c.row.name.to_lowercase() == name.to_lowercase()) {
        return Err(Error::conflict("Channel already exists"));
    }
    let perms = match frame.get("permissions") {
        Some(p) => permissions(&state, p)?,
        None => default_channel_permissions(),
    };
    let channel = Channel {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        display_name: opt_text(frame.get("display_name"))?,
        description: opt_text(frame.get("description"))?,
        size: if kind == "separator" { size(frame.get("size"))? } else { None },
        permissions: json!(perms).to_string(),
        position: 0,
        seq: 0,
    };
    state
        .store
        .channel_create_audited(&channel, &audit(&me, "channel_create", &channel, json!({"type": kind})))
        .await?;
    state.reload_directory().await?;
    let object = channel_object(&state, &channel.id).await?;
    s.reply(frame, "channel_create", json!({"channel": object, "created": true}));
    directory_changed(&state).await
}

/// `channel_update {current_name, updates:{name?, type?, description?, display_name?, permissions?, size?}}`.
pub async fn update(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage(s)?;
    let state = s.state.clone();
    let Some(current) = frame.str("current_name") else { return Err(Error::bad_request("current_name is required")) };
    let Some(Value::Object(updates)) = frame.get("updates") else {
        return Err(Error::bad_request("updates object is required"));
    };
    let dir = state.directory();
    let entry = dir.channel(current).ok_or_else(|| Error::not_found("Channel not found"))?;
    let mut channel = entry.row.clone();
    for key in updates.keys() {
        if !["name", "type", "description", "display_name", "permissions", "size"].contains(&key.as_str()) {
            return Err(Error::bad_request(format!("Cannot update field: {key}")));
        }
    }
    if let Some(name) = updates.get("name") {
        let name =
            name.as_str().filter(|n| channel_name_ok(n)).ok_or_else(|| Error::bad_request("Invalid channel name"))?;
        let taken =
            dir.channels.iter().any(|c| c.row.id != channel.id && c.row.name.to_lowercase() == name.to_lowercase());
        if taken {
            return Err(Error::conflict("Channel with new name already exists"));
        }
        channel.name = name.to_owned();
    }
    if let Some(kind) = updates.get("type") {
        let kind =
            kind.as_str().filter(|k| KINDS.contains(k)).ok_or_else(|| Error::bad_request("Invalid channel type"))?;
        if kind != channel.kind && state.store.channel_has_messages(&channel.id).await? {
            return Err(Error::new(ErrorCode::Conflict, "Cannot change the type of a channel that has messages"));
        }
        channel.kind = kind.to_owned();
    }
    if updates.contains_key("description") {
        channel.description = opt_text(updates.get("description"))?;
    }
    if updates.contains_key("display_name") {
        channel.display_name = opt_text(updates.get("display_name"))?;
    }
    if let Some(p) = updates.get("permissions") {
        channel.permissions = json!(permissions(&state, p)?).to_string();
    }
    if updates.contains_key("size") {
        channel.size = size(updates.get("size"))?;
    }
    let changed: Vec<&String> = updates.keys().collect();
    state.store.channel_save(&channel, &audit(&me, "channel_update", &channel, json!({"fields": changed}))).await?;
    state.reload_directory().await?;
    let object = channel_object(&state, &channel.id).await?;
    s.reply(frame, "channel_update", json!({"channel": object, "updated": true}));
    directory_changed(&state).await
}

/// `channel_move {name, position}`: a position past the end means last.
pub async fn move_channel(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage(s)?;
    let state = s.state.clone();
    let Some(name) = frame.str("name") else { return Err(Error::bad_request("Channel name is required")) };
    let Some(position) = frame.get("position") else { return Err(Error::bad_request("Position is required")) };
    let position = position
        .as_i64()
        .filter(|p| *p >= 0)
        .ok_or_else(|| Error::bad_request("Position must be a non-negative integer"))?;
    let dir = state.directory();
    let entry = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    let mut order: Vec<String> =
        dir.channels.iter().map(|c| c.row.id.clone()).filter(|id| *id != entry.row.id).collect();
    let at = (position as usize).min(order.len());
    order.insert(at, entry.row.id.clone());
    state.store.channels_reorder(&order, &audit(&me, "channel_move", &entry.row, json!({"position": at}))).await?;
    s.reply(frame, "channel_move", json!({"name": entry.row.name, "position": at, "moved": true}));
    directory_changed(&state).await
}

/// `channel_delete {name}`: exact name first, then case-insensitive.
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage(s)?;
    let state = s.state.clone();
    let Some(name) = frame.str("name") else { return Err(Error::bad_request("Channel name is required")) };
    let dir = state.directory();
    let entry = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    state.store.channel_delete(&entry.row.id, &audit(&me, "channel_delete", &entry.row, json!({}))).await?;
    s.reply(frame, "channel_delete", json!({"name": entry.row.name, "deleted": true}));
    directory_changed(&state).await
}
