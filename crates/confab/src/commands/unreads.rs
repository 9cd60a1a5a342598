//! Unread state (PROTOCOL §6.7): `unreads_ack`, `unreads_get`, `unreads_count`, and the read mark
//! that `messages_get` shares, which tells every connection of the account.
//!
//! Counts come from the store's indexed reads ([`crate::store::read_state`]); this module decides
//! which channels and threads the account may see.

use confab_proto::Frame;
use serde_json::{Map, Value, json};

use super::target::{Target, has_target, resolve};
use crate::{
    cluster::control::Effect,
    error::{Error, Result},
    gateway::Session,
    store::read_state::Unread,
    wire,
};

/// `"channel": <name>` for a channel, `"thread_id": <id>` for a thread: how unread packets name
/// their scope.
fn scope_field(target: &Target<'_>) -> (&'static str, Value) {
    match &target.thread {
        Some(t) => ("thread_id", json!(t.id)),
        None => ("channel", json!(target.channel.row.name)),
    }
}

/// Stores the account's read position at message `id` (with its `seq`) and sends `unreads_update`
/// to every connection of the account (S→U(self)), so its other devices clear the badge too.
pub async fn mark_read(s: &Session, target: &Target<'_>, id: &str, seq: i64) -> Result<()> {
    let me = s.me()?;
    s.state.store.mark_read(&me.user.id, &target.channel.row.id, target.key(), Some(id), seq).await?;
    let (key, value) = scope_field(target);
    let update = wire::packet("unreads_update", json!({"last_read": id, key: value}));
    s.state.everywhere(Effect::ToUser { user: me.user.id.clone(), packet: update }, None);
    Ok(())
}

/// `unreads_ack {channel|thread_id, message_id?}`: marks read up to `message_id`, or the newest
/// message; the position may move backwards (mark as unread). An empty channel changes nothing.
pub async fn unreads_ack(s: &mut Session, frame: &Frame) -> Result<()> {
    if !has_target(frame) {
        return Err(Error::bad_request("Channel or thread_id is required"));
    }
    let state = s.state.clone();
    let dir = state.directory();
    let target = resolve(s, frame, &dir).await?;
    let (id, key) = (&target.channel.row.id, target.key());
    let position = match frame.get("message_id") {
        Some(wanted) => {
            let row = match wanted.as_str() {
                Some(wanted) => state.store.message_in(id, key, wanted).await?,
                None => None,
            };
            let row = row.ok_or_else(|| Error::not_found("Message not found"))?;
            Some((row.id, row.seq))
        }
        None => state.store.message_latest(id, key).await?.map(|(id, seq, _)| (id, seq)),
    };
    let (field, value) = scope_field(&target);
    let last_read = position.as_ref().map(|(id, _)| id.clone());
    s.reply(frame, "unreads_ack", json!({field: value, "last_read": last_read}));
    if let Some((message_id, seq)) = position {
        mark_read(s, &target, &message_id, seq).await?;
    }
    Ok(())
}

/// The wire object of one scope's read state.
fn counts(unread: &Unread) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("last_read".into(), json!(unread.last_read));
    entry.insert("unread_count".into(), json!(unread.unread));
    entry.insert("total_messages".into(), json!(unread.total));
    // [ext] Official clients ignore it; Confab's web app shows it as the mention badge.
    entry.insert("mention_count".into(), json!(unread.mentions));
    entry
}

/// `unreads_get`: every viewable text channel under its name, and every thread of every viewable
/// forum channel under `thread/<id>` with its `parent_channel`.
pub async fn unreads_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let dir = state.directory();
    let roles = me.role_ids();
    let mut all = state.store.unreads(&me.user.id, &roles).await?;
    let mut take = |channel_id: &str, thread_id: &str| {
        all.remove(&(channel_id.to_owned(), thread_id.to_owned())).unwrap_or_default()
    };
    let mut unreads = Map::new();
    for channel in dir.channels.iter().filter(|c| me.actor.channel_allows(&c.perms, "view")) {
        match channel.row.kind.as_str() {
            "text" => {
                unreads.insert(channel.row.name.clone(), Value::Object(counts(&take(&channel.row.id, ""))));
            }
            "forum" => {
                for thread in state.store.threads_in(&channel.row.id).await? {
                    let mut entry = counts(&take(&channel.row.id, &thread.id));
                    entry.insert("parent_channel".into(), json!(channel.row.name));
                    unreads.insert(format!("thread/{}", thread.id), Value::Object(entry));
                }
            }
            _ => {}
        }
    }
    s.reply(frame, "unreads_get", json!({"unreads": unreads}));
    Ok(())
}

/// `unreads_count {channel|thread_id}`: one channel's or thread's read state.
pub async fn unreads_count(s: &mut Session, frame: &Frame) -> Result<()> {
    if !has_target(frame) {
        return Err(Error::bad_request("Channel or thread_id is required"));
    }
    let me = s.me()?;
    let state = s.state.clone();
    let dir = state.directory();
    let target = resolve(s, frame, &dir).await?;
    let roles = me.role_ids();
    let unread = state.store.unread(&me.user.id, &roles, &target.channel.row.id, target.key()).await?;
    let mut reply = counts(&unread);
    let (field, value) = scope_field(&target);
    reply.insert(field.into(), value);
    s.reply(frame, "unreads_count", Value::Object(reply));
    Ok(())
}
