//! Webhooks (PROTOCOL §5.8, §6.9): the `manage_server` commands that create, read, change and
//! delete them, and [`post`], which stores and broadcasts a message sent to `POST /webhooks`
//! (§3.5) exactly like a live `message_new`.
//!
//! A webhook's token is shown once (create and regenerate replies) and stored only as its SHA-256
//! digest; regenerating replaces the digest in one commit, so the old token is dead at once.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::target;
use crate::{
    auth::tokens::{hash_token, random_token},
    domain::urls::http_url_ok,
    error::{Error, Result},
    gateway::Session,
    state::{AppState, Identity},
    store::{
        audit::Audit,
        webhooks::{NewWebhook, WebhookRow},
        writer::{Appended, NewMessage, Pinged},
    },
};

/// Longest webhook name, in characters.
pub const NAME_MAX: usize = 80;
/// Longest avatar URL, in characters (as for other stored links).
pub const AVATAR_MAX: usize = 500;

/// The webhook object of PROTOCOL §5.8; `token` only in the create and regenerate replies.
fn webhook_json(row: &WebhookRow, token: Option<&str>) -> Value {
    let mut v = json!({
        "id": row.id,
        "channel": row.channel_name,
        "name": row.name,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "avatar": row.avatar,
    });
    if let Some(token) = token {
        v["token"] = json!(token);
    }
    v
}

/// Every webhook command needs `manage_server` (Δ originChats lets anyone list them, tokens too),
/// and so does every invite command.
pub(crate) fn require_manage_server(s: &Session) -> Result<std::sync::Arc<Identity>> {
    let me = s.me()?;
    if !me.actor.has("manage_server") {
        return Err(Error::missing_permission("manage_server"));
    }
    Ok(me)
}

/// A webhook name: 1–80 characters after trimming, returned trimmed. `None` is "no name given".
pub fn check_name(name: Option<&str>, missing: &str) -> Result<String> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).ok_or_else(|| Error::bad_request(missing))?;
    if name.chars().count() > NAME_MAX {
        return Err(Error::bad_request(format!("Webhook name too long (max {NAME_MAX} characters)")));
    }
    Ok(name.to_owned())
}

/// An avatar link as stored: an http(s) URL of at most 500 characters.
pub fn check_avatar(url: &str) -> Result<()> {
    if url.chars().count() > AVATAR_MAX || !http_url_ok(url) {
        return Err(Error::bad_request("Invalid URL format"));
    }
    Ok(())
}

/// The audit entry (category `server_management`) naming the webhook as the target.
fn audit(me: &Identity, action: &'static str, id: &str, name: &str, details: Value) -> Audit {
    Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: Some(id.to_owned()),
        target_name: Some(name.to_owned()),
        details,
    }
}

/// The `id` field, then the webhook it names.
async fn find(s: &Session, frame: &Frame) -> Result<WebhookRow> {
    let id = frame.str("id").filter(|i| !i.is_empty()).ok_or_else(|| Error::bad_request("Webhook ID is required"))?;
    s.state.store.webhook(id).await?.ok_or_else(|| Error::not_found("Webhook not found"))
}

/// `webhook_create {channel, name}` (`manage_server` and `view` on the channel) → the webhook with
/// its token, shown this once.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_server(s)?;
    let channel =
        frame.str("channel").filter(|c| !c.is_empty()).ok_or_else(|| Error::bad_request("Channel is required"))?;
    let name = check_name(frame.str("name"), "Webhook name is required")?;
    let dir = s.state.directory();
    let channel = dir.channel(channel).ok_or_else(|| Error::not_found("Channel not found"))?;
    // A webhook posts into the channel and names it in every listing: `manage_server` alone must
    // not reach a channel its holder cannot see (CE, PROTOCOL §6.0).
    if !me.actor.channel_allows(&channel.perms, "view") {
        return Err(Error::forbidden("Access denied to this channel"));
    }
    if channel.row.kind != "text" {
        return Err(Error::bad_request("Webhooks can only be created for text channels"));
    }
    let token = random_token();
    let id = uuid::Uuid::now_v7().to_string();
    let new = NewWebhook {
        id: &id,
        channel_id: &channel.row.id,
        name: &name,
        token_hash: &hash_token(&token),
        created_by: &me.user.id,
        created_by_name: &me.user.username,
    };
    let entry = audit(&me, "webhook_create", &id, &name, json!({"channel": channel.row.name}));
    let failed = |e: Error| {
        tracing::error!(conn = s.conn_id, "webhook_create: {e}");
        Error::new(ErrorCode::Internal, "Failed to create webhook")
    };
    s.state.store.webhook_create(&new, &entry).await.map_err(failed)?;
    let row = s.state.store.webhook(&id).await?.ok_or_else(|| Error::not_found("Webhook not found"))?;
    s.reply(frame, "webhook_create", json!({"webhook": webhook_json(&row, Some(&token))}));
    Ok(())
}

/// `webhook_get {id}` → the webhook, without its token.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    require_manage_server(s)?;
    let row = find(s, frame).await?;
    s.reply(frame, "webhook_get", json!({"webhook": webhook_json(&row, None)}));
    Ok(())
}

/// `webhook_list {channel?}` → every webhook, or those of one channel, without tokens.
pub async fn list(s: &mut Session, frame: &Frame) -> Result<()> {
    require_manage_server(s)?;
    let channel_id = match frame.str("channel").filter(|c| !c.is_empty()) {
        None => None,
        Some(name) => {
            let dir = s.state.directory();
            Some(dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?.row.id.clone())
        }
    };
    let rows = s.state.store.webhooks(channel_id.as_deref()).await?;
    let list: Vec<Value> = rows.iter().map(|r| webhook_json(r, None)).collect();
    s.reply(frame, "webhook_list", json!({"webhooks": list}));
    Ok(())
}

/// `webhook_update {id, name?, avatar?: url | null}`; `null` (or `""`) clears the avatar.
pub async fn update(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_server(s)?;
    let row = find(s, frame).await?;
    let name = frame.get("name");
    // `null` is meaningful for the avatar (it clears it), so it is read without the null filter.
    let avatar = frame.body.get("avatar");
    if name.is_none() && avatar.is_none() {
        return Err(Error::bad_request("No updates provided"));
    }
    let new_name = match name {
        None => row.name.clone(),
        Some(v) => check_name(v.as_str(), "Webhook name must be a non-empty string")?,
    };
    let new_avatar = match avatar {
        None => row.avatar.clone(),
        Some(Value::Null) => None,
        Some(Value::String(url)) if url.is_empty() => None,
        Some(Value::String(url)) => {
            check_avatar(url)?;
            Some(url.clone())
        }
        Some(_) => return Err(Error::bad_request("Invalid URL format")),
    };
    let mut details = serde_json::Map::new();
    if name.is_some() {
        details.insert("name".into(), json!(new_name));
    }
    if avatar.is_some() {
        details.insert("avatar".into(), json!(new_avatar));
    }
    let entry = audit(&me, "webhook_update", &row.id, &row.name, Value::Object(details));
    if !s.state.store.webhook_update(&row.id, &new_name, new_avatar.as_deref(), &entry).await? {
        return Err(Error::not_found("Webhook not found"));
    }
    let row = s.state.store.webhook(&row.id).await?.ok_or_else(|| Error::not_found("Webhook not found"))?;
    s.reply(frame, "webhook_update", json!({"webhook": webhook_json(&row, None)}));
    Ok(())
}

/// `webhook_delete {id}` → `{"id","deleted":true}`.
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_server(s)?;
    let row = find(s, frame).await?;
    let entry = audit(&me, "webhook_delete", &row.id, &row.name, json!({"channel": row.channel_name}));
    if !s.state.store.webhook_delete(&row.id, &entry).await? {
        return Err(Error::not_found("Webhook not found"));
    }
    s.reply(frame, "webhook_delete", json!({"id": row.id, "deleted": true}));
    Ok(())
}

/// `webhook_regenerate {id}` → the webhook with a new token; the old one is refused from this
/// commit on.
pub async fn regenerate(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_server(s)?;
    let row = find(s, frame).await?;
    let token = random_token();
    let entry = audit(&me, "webhook_regenerate", &row.id, &row.name, json!({}));
    if !s.state.store.webhook_set_token(&row.id, &hash_token(&token), &entry).await? {
        return Err(Error::not_found("Webhook not found"));
    }
    s.reply(frame, "webhook_regenerate", json!({"webhook": webhook_json(&row, Some(&token))}));
    Ok(())
}

/// A validated webhook post (PROTOCOL §3.5).
#[derive(Debug, Clone)]
pub struct Post {
    pub content: String,
    pub embeds: Option<Vec<Value>>,
    /// Display name: the body's `username`, else the webhook's name.
    pub name: String,
    /// Display avatar: the body's `avatar_url`, else the webhook's avatar.
    pub avatar: Option<String>,
}

/// Stores `post` in the webhook's channel through the group-commit writer and, once committed,
/// broadcasts the `message_new` to every viewer of the channel. The author is the system
/// username and the message carries `webhook: {id, name, avatar}`.
pub async fn post(state: &AppState, hook: &WebhookRow, post: Post) -> Result<()> {
    super::messages::refuse_nul(&post.content)?;
    let mentioned = super::messages::mentions(state, &post.content).await?;
    let mut extra = json!({"webhook": {"id": hook.id, "name": post.name, "avatar": post.avatar}});
    if let Some(embeds) = post.embeds.filter(|e| !e.is_empty()) {
        extra["embeds"] = json!(embeds);
    }
    let message = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id: hook.channel_id.clone(),
        channel_name: hook.channel_name.clone(),
        thread_id: None,
        user_id: None,
        author_name: state.config.system_username.clone(),
        content: post.content,
        created_at: crate::store::now(),
        reply_to: None,
        ping: None,
        pings: json!({"users": mentioned.user_names(), "roles": mentioned.role_names(), "replies": []}),
        pinged: Pinged { reply: None, ..mentioned.ids() },
        extra: Some(extra),
        nonce: None,
        nonce_window_s: 0.0,
    };
    let push = state.push.job(&message);
    let on_commit = target::broadcaster(state, &hook.channel_id);
    match state.store.writer().append(message, on_commit).await {
        Ok(Appended::New { .. }) => {
            if let Some(job) = push {
                state.push.enqueue(job, &state.metrics);
            }
            Ok(())
        }
        Ok(_) => Err(Error::not_found("Channel not found")),
        Err(e) => {
            tracing::error!(webhook = %hook.id, "webhook post: {e}");
            Err(super::messages::not_saved(e))
        }
    }
}
