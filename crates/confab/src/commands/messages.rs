//! `message_new` (PROTOCOL §6.1, §7.3, §7.4): validation in protocol order, mentions, and the
//! durable, idempotent append that every posted message shares (slash-command output too).

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::{
    target::{self, Target},
    threads,
};
use crate::{
    domain::{embeds, mentions},
    error::{Error, Result},
    gateway::Session,
    state::{AppState, Directory, Identity},
    store::{
        messages::MessageRow,
        threads::ThreadRow,
        writer::{Appended, NewMessage, Pinged},
    },
    wire,
};

/// Longest nonce accepted (PROTOCOL §7.4).
const NONCE_MAX: usize = 64;

/// `message_new`: validate in the order of PROTOCOL §6.1, append through the group-commit writer,
/// and publish only after the commit.
pub async fn new(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let has_target = frame.get("channel").is_some() || frame.get("thread_id").is_some();
    let content = match frame.get("content") {
        None => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(_) => return Err(Error::bad_request("Missing fields: content or attachments")),
    };
    let attachments = frame.get("attachments");
    let has_attachments = attachments.is_some_and(|a| a.as_array().is_none_or(|a| !a.is_empty()));
    let has_embeds = frame.get("embeds").is_some_and(|e| e.as_array().is_none_or(|e| !e.is_empty()));
    let mut missing = Vec::new();
    if !has_target {
        missing.push("channel or thread_id");
    }
    // `""` counts as missing, as in originChats; whitespace-only content is "empty" below.
    if content.is_none_or(str::is_empty) && !has_attachments && !has_embeds {
        missing.push("content or attachments");
    }
    if !missing.is_empty() {
        return Err(Error::bad_request(format!("Missing fields: {}", missing.join(", "))));
    }
    let content = content.unwrap_or("");
    if content.trim().is_empty() && !has_attachments && !has_embeds {
        return Err(Error::bad_request("Message content or attachments cannot be empty"));
    }
    let embeds = embeds::validate(frame.get("embeds")).map_err(Error::bad_request)?;
    let max = state.config.limits.post_content;
    if content.chars().count() > max {
        return Err(Error::new(ErrorCode::TooLong, format!("Message too long. Maximum length is {max} characters")));
    }
    refuse_nul(content)?;
    let nonce = match frame.get("nonce") {
        None => None,
        Some(Value::String(n)) if (1..=NONCE_MAX).contains(&n.chars().count()) && !n.contains('\0') => Some(n.clone()),
        Some(_) => {
            return Err(Error::bad_request("Nonce must be a string of 1-64 characters"));
        }
    };
    // Timeouts and the `messages` class come after validation (PROTOCOL §6.1 check order), so an
    // invalid message costs nothing.
    if s.limited(frame, "messages", 1.0) {
        return Ok(());
    }
    let dir = state.directory();
    let target = send_target(s, frame, &dir).await?;
    let channel = target.channel;
    if let Some(thread) = &target.thread {
        if thread.locked && !me.actor.has_in(&channel.perms, "manage_threads") {
            return Err(Error::new(ErrorCode::ThreadLocked, "This thread is locked"));
        }
        if thread.archived {
            // A new message brings an archived thread back (PROTOCOL §6.0).
            threads::set_state(s, frame, &target, ThreadRow { archived: false, ..thread.clone() }).await?;
        }
    }
    check_role_mentions(&state, &me.actor, &channel.perms, content)?;
    let ping = frame.get("ping").and_then(Value::as_bool);
    let reply_to = match frame.get("reply_to") {
        None => None,
        Some(v) => {
            let id = v.as_str().or_else(|| v.get("id").and_then(Value::as_str)).unwrap_or("");
            let original = state.store.message_in(&channel.row.id, target.key(), id).await?;
            let original =
                original.ok_or_else(|| Error::not_found("The message you're trying to reply to was not found"))?;
            Some(original)
        }
    };
    let mut extra = embeds.map(|e| json!({"embeds": e}));
    let attachments = match super::attachments::for_message(&state, &me, channel, attachments, nonce.is_some()).await? {
        Some((objects, ids)) => {
            extra.get_or_insert_with(|| json!({}))["attachments"] = json!(objects);
            ids
        }
        None => Vec::new(),
    };
    let draft = Draft {
        user_id: Some(me.user.id.clone()),
        author_name: me.user.username.clone(),
        content: content.to_owned(),
        reply_to,
        ping,
        extra,
        nonce,
        attachments,
    };
    post(s, frame, &target, draft).await
}

/// A validated message before it is stored: what `message_new`, slash-command output and
/// `slash_response` share. Mentions and pings are derived from it by [`prepare`].
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// `None` for server-generated messages (shown as the system username).
    pub user_id: Option<String>,
    pub author_name: String,
    pub content: String,
    pub reply_to: Option<MessageRow>,
    pub ping: Option<bool>,
    /// Embeds, interaction …: stored as JSON (PROTOCOL §5.6).
    pub extra: Option<Value>,
    pub nonce: Option<String>,
    /// Uploads the message shows, marked as used once it is stored.
    pub attachments: Vec<String>,
}

/// The stored form of `draft` in `target`: a fresh id, the mentions it makes (PROTOCOL §5.6) and
/// the pings of its live packet.
pub async fn prepare(state: &AppState, target: &Target<'_>, draft: Draft) -> Result<NewMessage> {
    refuse_nul(&draft.content)?;
    let mentioned = mentions(state, &draft.content).await?;
    let reply_ping = draft.reply_to.as_ref().filter(|_| draft.ping != Some(false));
    let replies: Vec<&str> = reply_ping.map(|r| r.author.as_str()).into_iter().collect();
    Ok(NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id: target.channel.row.id.clone(),
        channel_name: target.channel.row.name.clone(),
        thread_id: target.thread.as_ref().map(|t| t.id.clone()),
        user_id: draft.user_id,
        author_name: draft.author_name,
        reply_to: draft.reply_to.as_ref().map(|r| (r.id.clone(), r.author.clone())),
        ping: draft.ping,
        pings: json!({"users": mentioned.user_names(), "roles": mentioned.role_names(), "replies": replies}),
        pinged: Pinged { reply: reply_ping.and_then(|r| r.user_id.clone()), ..mentioned.ids() },
        content: draft.content,
        created_at: crate::store::now(),
        extra: draft.extra,
        nonce: draft.nonce,
        nonce_window_s: state.config.limits.nonce_window_s as f64,
    })
}

/// Stores `draft` in `target` through the group-commit writer, which publishes it right after the
/// commit and in seq order: the reply (with `listener`) to this connection, a copy to every other
/// viewer of the channel (PROTOCOL §1.4, §7.3, §7.4).
pub async fn post(s: &Session, frame: &Frame, target: &Target<'_>, draft: Draft) -> Result<()> {
    let state = s.state.clone();
    let attachments = draft.attachments.clone();
    let message = prepare(&state, target, draft).await?;
    let message_id = message.id.clone();
    let push = state.push.job(&message);
    let on_commit = target::publisher(s, frame.listener(), &target.channel.row.id);
    let appended = state.store.writer().append(message, on_commit).await;
    if let (Ok(Appended::New { .. }), Some(job)) = (&appended, push) {
        state.push.enqueue(job, &state.metrics);
    }
    match appended {
        Ok(Appended::New { .. }) if attachments.is_empty() => Ok(()),
        Ok(Appended::New { .. }) => {
            // After the commit, so the sweeper never sees a use by a message that does not exist yet.
            state.store.attachments_link(&attachments, &s.me()?.user.id, &message_id).await?;
            Ok(())
        }
        Ok(Appended::Duplicate { packet }) => {
            // An idempotent repeat uses no rate-limit tokens (PROTOCOL §7.4).
            state.limiter.refund_message(&s.me()?.user.id);
            let again = wire::with_fields(&packet, &[("duplicate", json!(true))]);
            s.send(wire::with_listener(&again, frame.listener()));
            Ok(())
        }
        Ok(Appended::NonceConflict) => {
            Err(Error::new(ErrorCode::NonceConflict, "Nonce already used for a different message"))
        }
        Ok(Appended::OriginalDeleted) => Err(Error::not_found("Message not found")),
        Ok(Appended::ChannelGone | Appended::Event { .. } | Appended::Unchanged) => {
            Err(Error::not_found("Channel not found"))
        }
        Err(e) => {
            tracing::error!(conn = s.conn_id, cmd = %frame.cmd, "storing a message: {e}");
            Err(not_saved(e))
        }
    }
}

/// What the sender of a message that was not stored is told: that the database is out of reach
/// (send it again with its nonce), or only that it failed (PROTOCOL §7.3).
pub fn not_saved(e: Error) -> Error {
    match e {
        Error::Unavailable(_) => e,
        _ => Error::new(ErrorCode::Internal, "Failed to save message"),
    }
}

/// Refuses content holding U+0000: PostgreSQL cannot store it in text at all, and SQLite's JSON
/// functions, through which the writer passes a batch's rows, would cut the text at it. No chat
/// client sends it; a clear error beats a message stored differently from what was acknowledged.
pub fn refuse_nul(content: &str) -> Result<()> {
    if content.contains('\0') {
        return Err(Error::bad_request("Message content cannot contain NUL characters"));
    }
    Ok(())
}

/// Where a new message goes: a text channel the user may view and send in, or a thread whose parent
/// they may view and send in. A channel they cannot view gets the `send` error (PROTOCOL §6.1).
pub async fn send_target<'d>(s: &Session, frame: &Frame, dir: &'d Directory) -> Result<Target<'d>> {
    let me = s.me()?;
    if let Some(id) = frame.get("thread_id") {
        let thread = match id.as_str() {
            Some(id) => s.state.store.thread(id).await?,
            None => None,
        };
        let thread = thread.ok_or_else(|| Error::not_found("Thread not found"))?;
        let channel = dir.channels.iter().find(|c| c.row.id == thread.channel_id);
        let channel = channel.ok_or_else(|| Error::not_found("Thread not found"))?;
        if !me.actor.channel_allows(&channel.perms, "view") || !me.actor.channel_allows(&channel.perms, "send") {
            return Err(Error::forbidden("You do not have permission to send messages in this thread"));
        }
        return Ok(Target { channel, thread: Some(thread) });
    }
    channel_send_target(&me, dir, frame.str("channel").unwrap_or(""))
}

/// The text channel `name` when `me` may view and send in it; a channel they cannot view gets the
/// `send` error (PROTOCOL §6.1). Shared with slash commands, which post only in channels.
pub fn channel_send_target<'d>(me: &Identity, dir: &'d Directory, name: &str) -> Result<Target<'d>> {
    let channel = dir.channel(name).ok_or_else(|| Error::not_found("Channel not found"))?;
    if !me.actor.channel_allows(&channel.perms, "view") || !me.actor.channel_allows(&channel.perms, "send") {
        return Err(Error::forbidden("You do not have permission to send messages in this channel"));
    }
    if channel.row.kind != "text" {
        return Err(Error::bad_request("Cannot send messages in this channel type"));
    }
    Ok(Target { channel, thread: None })
}

/// The existing accounts and roles a message mentions (PROTOCOL §5.6), as `(id, canonical name)`
/// pairs: names for the live `pings`, ids for the `pings_get` index.
#[derive(Debug, Clone, Default)]
pub struct Mentions {
    pub users: Vec<(String, String)>,
    pub roles: Vec<(String, String)>,
}

impl Mentions {
    pub fn user_names(&self) -> Vec<&str> {
        self.users.iter().map(|(_, name)| name.as_str()).collect()
    }

    pub fn role_names(&self) -> Vec<&str> {
        self.roles.iter().map(|(_, name)| name.as_str()).collect()
    }

    /// The ids, without a reply ping.
    pub fn ids(&self) -> Pinged {
        Pinged {
            users: self.users.iter().map(|(id, _)| id.clone()).collect(),
            roles: self.roles.iter().map(|(id, _)| id.clone()).collect(),
            reply: None,
        }
    }

    /// Whether anyone or any role is mentioned.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.roles.is_empty()
    }
}

/// Refuses `@&role` mentions of roles in `mentions.restricted_roles` from users without
/// `mention_everyone` in this channel (PROTOCOL §5.6).
pub fn check_role_mentions(
    state: &AppState,
    actor: &crate::domain::permissions::Actor,
    perms: &crate::domain::permissions::ChannelPermissions,
    content: &str,
) -> Result<()> {
    let restricted = &state.config.mentions.restricted_roles;
    if restricted.is_empty() || actor.has_in(perms, "mention_everyone") {
        return Ok(());
    }
    let (_, roles) = mentions::candidates(content);
    let dir = state.directory();
    for role in roles.iter().filter_map(|r| dir.role(r)) {
        if restricted.iter().any(|r| r.eq_ignore_ascii_case(&role.name)) {
            return Err(Error::forbidden(format!("You do not have permission to mention the '@&{}' role", role.name)));
        }
    }
    Ok(())
}

/// The accounts and roles mentioned in `content` (PROTOCOL §5.6).
pub async fn mentions(state: &AppState, content: &str) -> Result<Mentions> {
    let (user_names, role_names) = mentions::candidates(content);
    let mut found = Mentions::default();
    for u in state.store.users_by_names(&user_names.into_iter().take(25).collect::<Vec<_>>()).await? {
        if !found.users.iter().any(|(id, _)| *id == u.id) {
            found.users.push((u.id, u.username));
        }
    }
    let dir = state.directory();
    for role in role_names.iter().filter_map(|r| dir.role(r)) {
        if !found.roles.iter().any(|(id, _)| *id == role.id) {
            found.roles.push((role.id.clone(), role.name.clone()));
        }
    }
    Ok(found)
}
