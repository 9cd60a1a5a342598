//! Moderation and the audit log (PROTOCOL §6.0 MH, §6.4, §6.9): `user_update`, `user_ban`,
//! `user_unban`, `user_timeout`, `users_banned_list`, `user_leave`, `user_delete`, `modlog_get`
//! and `modlog_summary`.
//!
//! Each change is committed together with its audit entry, then published. A ban or a deletion
//! also closes the target's live sockets with 4003 after a `disconnect` packet (§2.12, §8.5); a
//! ban revokes its session families in the same transaction, so no token of it works afterwards.

use confab_proto::{Frame, close};
use serde_json::{Map, Value, json};

use super::{
    channels,
    users::{account_changed, check_hierarchy, find_user, target_user},
};
use crate::{
    cluster::control::{Effect, Who},
    domain::names,
    error::{Error, Result},
    gateway::Session,
    hub::CloseOrder,
    state::{AppState, Identity},
    store::{
        audit::{Audit, AuditFilter, AuditRow},
        users::User,
    },
    wire,
};

/// Longest `user_timeout` or `/mute`, in seconds (28 days).
const TIMEOUT_MAX: u64 = 2_419_200;
/// Longest nickname, in characters (`user_update`, `/nick`).
const NICKNAME_MAX: usize = 20;

/// `Access denied: '<perm>' permission required` unless the actor holds `perm`.
pub(crate) fn require(me: &Identity, perm: &str) -> Result<()> {
    if me.actor.has(perm) { Ok(()) } else { Err(Error::missing_permission(perm)) }
}

/// The audit entry for `action` by `me` on `target`.
fn audit(me: &Identity, action: &'static str, target: &User, details: Value) -> Audit {
    Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: Some(target.id.clone()),
        target_name: Some(target.username.clone()),
        details,
    }
}

/// The new nickname from `user_update`'s `updates.nickname`: `null` or `""` clear it.
fn nickname_update(value: &Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(n) if n.is_empty() => Ok(None),
        Value::String(n) => Ok(Some(n.clone())),
        _ => Err(Error::bad_request("Nickname must be a string or null")),
    }
}

/// The rules of a nickname `owner` is to wear (`user_update`, `/nick`), checked before anything is
/// stored: at most 20 characters, nothing invisible or reordering, and not another account's
/// username nor the system name once both are normalised (NFKC, lower case), so no nickname can
/// pass for someone else. An account may wear its own username.
pub(crate) async fn check_nickname(state: &AppState, owner: &User, nickname: &str) -> Result<()> {
    if nickname.chars().count() > NICKNAME_MAX {
        return Err(Error::new(
            confab_proto::ErrorCode::TooLong,
            format!("Nickname too long (max {NICKNAME_MAX} characters)"),
        ));
    }
    if names::has_hidden(nickname) {
        return Err(Error::bad_request("Nickname contains invalid characters"));
    }
    let taken = || Error::conflict("Nickname cannot be another user's username");
    if names::is_reserved(nickname, &state.config.system_username) {
        return Err(taken());
    }
    // Only a key that is a valid username can name an account.
    let key = names::lookalike_key(nickname);
    if let Ok(name) = names::username(&key)
        && state.store.user_by_name(name).await?.is_some_and(|other| other.id != owner.id)
    {
        return Err(taken());
    }
    Ok(())
}

/// `user_update {user, updates:{username?, nickname?}}` (`manage_users`; MH). The reply's `user`
/// is the old name, which the official client uses to find the account it renamed.
pub async fn user_update(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    require(&me, "manage_users")?;
    let state = s.state.clone();
    let target = target_user(&state, frame).await?;
    let updates: &Map<String, Value> = match frame.get("updates") {
        Some(Value::Object(updates)) if !updates.is_empty() => updates,
        _ => return Err(Error::bad_request("Updates must be an object")),
    };
    if let Some(field) = updates.keys().find(|k| !matches!(k.as_str(), "username" | "nickname")) {
        return Err(Error::bad_request(format!("Cannot update field: {field}")));
    }
    let mut username = target.username.clone();
    if let Some(value) = updates.get("username") {
        let raw = value.as_str().filter(|n| !n.trim().is_empty());
        let raw = raw.ok_or_else(|| Error::bad_request("Username must be a non-empty string"))?;
        let name = names::username(raw).map_err(|e| Error::bad_request(e.text))?;
        let taken = match state.store.user_by_name(name).await? {
            Some(other) => other.id != target.id,
            None => names::is_reserved(name, &state.config.system_username),
        };
        if taken {
            return Err(Error::conflict("Username already taken"));
        }
        name.clone_into(&mut username);
    }
    let nickname = match updates.get("nickname") {
        Some(value) => nickname_update(value)?,
        None => target.nickname.clone(),
    };
    if let Some(n) = nickname.as_deref().filter(|n| Some(*n) != target.nickname.as_deref()) {
        check_nickname(&state, &target, n).await?;
    }
    check_hierarchy(&state, &me, &target, "update").await?;

    let fields: Vec<&String> = updates.keys().collect();
    let details =
        json!({"fields": fields, "old_username": target.username, "username": username, "nickname": nickname});
    let entry = audit(&me, "user_update", &target, details);
    state.store.user_update_profile(&target.id, &username, nickname.as_deref(), &entry).await?;
    // The change is committed; it is announced even if refreshing the live connections fails.
    if let Err(e) = channels::user_changed(&state, &target.id).await {
        tracing::error!(user = %target.id, "refreshing connections after user_update: {e}");
    }
    s.reply(frame, "user_update", json!({"user": target.username, "username": username, "nickname": nickname}));
    let updated =
        json!({"user_id": target.id, "username": username, "nickname": nickname, "old_username": target.username});
    state.to_all(wire::packet("user_updated", updated), None, false);
    if nickname != target.nickname {
        announce_nickname(&state, &target.id, &username, nickname.as_deref());
    }
    Ok(())
}

/// S→A `nickname_update` (or `nickname_remove` when cleared) after an account's nickname changed,
/// by `user_update` or `/nick`.
pub(crate) fn announce_nickname(state: &AppState, user_id: &str, username: &str, nickname: Option<&str>) {
    let packet = match nickname {
        Some(n) => wire::packet("nickname_update", json!({"user": user_id, "username": username, "nickname": n})),
        None => wire::packet("nickname_remove", json!({"user": user_id, "username": username})),
    };
    state.to_all(packet, None, false);
}

/// The ban of `user_ban` and `/ban` (the caller has checked `manage_users`): MH, the flag with its
/// audit entry (its sessions revoked in the same transaction), then the target's sockets closed
/// with 4003 and its pending web logins dropped. `false` when it was banned already.
pub(crate) async fn ban(state: &AppState, me: &Identity, target: &User) -> Result<bool> {
    check_hierarchy(state, me, target, "ban").await?;
    let changed = state.store.user_set_banned(&target.id, true, &audit(me, "user_ban", target, json!({}))).await?;
    let order = CloseOrder::banned();
    state.close(Who::User(target.id.clone()), order);
    state.web_logins.forget_user(&target.id);
    Ok(changed)
}

/// The unban of `user_unban` and `/unban` (the caller has checked `manage_users`; MH, so nobody
/// lifts a ban the owner or a higher role placed on a peer). `false` when the account was not banned.
pub(crate) async fn unban(state: &AppState, me: &Identity, target: &User) -> Result<bool> {
    check_hierarchy(state, me, target, "unban").await?;
    state.store.user_set_banned(&target.id, false, &audit(me, "user_unban", target, json!({}))).await
}

/// `"Timeout cannot exceed 2419200 seconds"` above the longest timeout (`user_timeout`, `/mute`).
pub(crate) fn check_timeout_max(seconds: u64) -> Result<()> {
    if seconds > TIMEOUT_MAX {
        return Err(Error::bad_request(format!("Timeout cannot exceed {TIMEOUT_MAX} seconds")));
    }
    Ok(())
}

/// The timeout of `user_timeout` and `/mute` (the caller has checked `manage_users` and the
/// length): MH, the timeout with its audit entry, then every connection of the target learns how
/// long it lasts (PROTOCOL §4.6).
pub(crate) async fn timeout(state: &AppState, me: &Identity, target: &User, seconds: u64) -> Result<()> {
    check_hierarchy(state, me, target, "timeout").await?;
    let until = crate::store::now() + seconds as f64;
    let entry = audit(me, "user_timeout", target, json!({"seconds": seconds, "until": until}));
    set_timeout(state, target, until, &entry).await?;
    let notice = wire::packet("rate_limit", json!({"reason": "User timeout set", "length": seconds * 1000}));
    state.everywhere(Effect::ToUser { user: target.id.clone(), packet: notice }, None);
    Ok(())
}

/// Ends a timeout now (`/unmute`), with the checks of a timeout; audited as a `user_timeout` of 0 s.
pub(crate) async fn clear_timeout(state: &AppState, me: &Identity, target: &User) -> Result<()> {
    check_hierarchy(state, me, target, "timeout").await?;
    let now = crate::store::now();
    let entry = audit(me, "user_timeout", target, json!({"seconds": 0, "until": now}));
    set_timeout(state, target, now, &entry).await
}

/// Stores a timeout end and gives the target's live connections the new account row, so their
/// timeout check sees it at once.
async fn set_timeout(state: &AppState, target: &User, until: f64, entry: &Audit) -> Result<()> {
    state.store.user_set_timeout(&target.id, until, entry).await?;
    if let Some(user) = state.store.user_by_id(&target.id).await? {
        account_changed(state, &user);
    }
    Ok(())
}

/// `user_ban {user}` (`manage_users`; MH): flags the account, revokes its sessions and closes its
/// sockets with 4003. `banned` is `false` when it was banned already.
pub async fn user_ban(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    require(&me, "manage_users")?;
    let state = s.state.clone();
    let target = target_user(&state, frame).await?;
    let changed = ban(&state, &me, &target).await?;
    s.reply(frame, "user_ban", json!({"user": target.username, "banned": changed}));
    Ok(())
}

/// `user_unban {user}` (`manage_users`). `unbanned` is `false` when it was not banned.
pub async fn user_unban(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    require(&me, "manage_users")?;
    let state = s.state.clone();
    let target = target_user(&state, frame).await?;
    let changed = unban(&state, &me, &target).await?;
    s.reply(frame, "user_unban", json!({"user": target.username, "unbanned": changed}));
    Ok(())
}

/// `user_timeout {user, timeout}` (`manage_users`; MH): stores the timeout and tells every
/// connection of the target how long it lasts (PROTOCOL §4.6).
pub async fn user_timeout(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    require(&me, "manage_users")?;
    let state = s.state.clone();
    let seconds = match frame.get("timeout") {
        Some(Value::Number(n)) => n.as_u64().filter(|t| *t > 0),
        _ => None,
    };
    let seconds = seconds.ok_or_else(|| Error::bad_request("Timeout must be a positive integer"))?;
    check_timeout_max(seconds)?;
    let target = target_user(&state, frame).await?;
    timeout(&state, &me, &target, seconds).await?;
    s.reply(frame, "user_timeout", json!({"user": target.username, "timeout": seconds}));
    Ok(())
}

/// `users_banned_list` (`manage_users`) → the banned usernames, sorted.
pub async fn users_banned_list(s: &mut Session, frame: &Frame) -> Result<()> {
    require(&*s.me()?, "manage_users")?;
    let users: Vec<String> = s.state.store.users_banned().await?.into_iter().map(|u| u.username).collect();
    s.reply(frame, "users_banned_list", json!({"users": users}));
    Ok(())
}

/// `user_leave`: the account deletes itself, unless it is banned (the row keeps the ban), then all
/// of its connections close with 1000.
pub async fn user_leave(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let current = state.store.user_by_id(&me.user.id).await?;
    let username = current.as_ref().map_or_else(|| me.user.username.clone(), |u| u.username.clone());
    if current.is_some_and(|u| !u.banned) {
        state.store.user_delete(&me.user.id, None).await?;
    }
    state.to_all(wire::packet("user_leave", json!({"username": username})), None, false);
    s.reply(frame, "user_leave", json!({"user": username, "val": "User left server"}));
    let order = CloseOrder::new(close::NORMAL, "User left server", None);
    state.close(Who::User(me.user.id.clone()), order);
    Ok(())
}

/// `user_delete {user}` (`administrator`; MH): deletes the account, closes its sockets with 4003
/// and announces `user_leave` to everyone else.
pub async fn user_delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    require(&me, "administrator")?;
    let state = s.state.clone();
    let target = target_user(&state, frame).await?;
    delete_account(&state, &me, &target, "user_delete", || Error::not_found("User not found")).await?;
    s.reply(frame, "user_delete", json!({"user": target.username, "deleted": true}));
    announce_leave(&state, &target);
    Ok(())
}

/// The deletion of `user_delete` and `bot_delete` (the caller has checked `administrator`): MH,
/// the account removed with its `action` audit entry, its sockets closed with 4003 after
/// `"Account deleted"`. `gone` is the error when the account vanished meanwhile. The caller replies,
/// then calls [`announce_leave`].
pub(crate) async fn delete_account(
    state: &AppState,
    me: &Identity,
    target: &User,
    action: &'static str,
    gone: impl FnOnce() -> Error,
) -> Result<()> {
    check_hierarchy(state, me, target, "delete").await?;
    let entry = audit(me, action, target, json!({}));
    if !state.store.user_delete(&target.id, Some(&entry)).await? {
        return Err(gone());
    }
    let order = CloseOrder::new(close::BANNED, "Account deleted", Some("Account deleted"));
    state.close(Who::User(target.id.clone()), order);
    state.web_logins.forget_user(&target.id);
    Ok(())
}

/// S→A except the deleted account's own connections: `user_leave`.
pub(crate) fn announce_leave(state: &AppState, target: &User) {
    let leave = wire::packet("user_leave", json!({"username": target.username}));
    state.everywhere(Effect::ToAll { packet: leave, but_user: Some(target.id.clone()), droppable: false }, None);
}

/// Reading the audit log needs `view_audit_log` or `manage_users`.
fn require_audit_access(me: &Identity) -> Result<()> {
    if me.actor.has("view_audit_log") || me.actor.has("manage_users") {
        Ok(())
    } else {
        Err(Error::forbidden("Access denied: 'view_audit_log' or 'manage_users' permission required"))
    }
}

/// An optional integer field of `modlog_get`: `null` or absent gives `default`.
fn int_or(frame: &Frame, key: &str, default: i64, ok: impl Fn(i64) -> bool, err: &str) -> Result<i64> {
    match frame.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_i64().filter(|n| ok(*n)).ok_or_else(|| Error::bad_request(err)),
    }
}

/// `actor` / `target` filters: a current account's id when the value names one (so entries made
/// under an older name are found too), otherwise the value itself (a departed account's name or id).
async fn party(state: &AppState, frame: &Frame, key: &str) -> Result<Option<String>> {
    let Some(value) = frame.str(key).filter(|v| !v.is_empty()) else { return Ok(None) };
    Ok(Some(find_user(state, value).await?.map_or_else(|| value.to_owned(), |u| u.id)))
}

/// An audit entry as the wire shows it (PROTOCOL §5.8).
fn entry_json(row: AuditRow) -> Value {
    let details = serde_json::from_str(&row.details).unwrap_or(Value::String(row.details));
    json!({
        "id": row.id, "action": row.action, "category": row.category, "actor_id": row.actor_id,
        "actor_name": row.actor_name, "target_id": row.target_id, "target_name": row.target_name,
        "details": details, "timestamp": row.created_at,
    })
}

/// `modlog_get {limit?, offset?, after?, category?, actor?, target?, action?}` → entries, newest first.
pub async fn modlog_get(s: &mut Session, frame: &Frame) -> Result<()> {
    require_audit_access(&*s.me()?)?;
    let state = s.state.clone();
    let limit = int_or(frame, "limit", 100, |n| (1..=200).contains(&n), "Limit must be between 1 and 200")?;
    let offset = int_or(frame, "offset", 0, |n| n >= 0, "Offset must be a non-negative integer")?;
    let after = match frame.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(t)) => Some(
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| Error::bad_request("After must be a valid Unix timestamp"))?,
        ),
        Some(_) => return Err(Error::bad_request("After must be a valid Unix timestamp")),
    };
    let filter = AuditFilter {
        after,
        category: frame.str("category").map(str::to_owned),
        action: frame.str("action").map(str::to_owned),
        actor: party(&state, frame, "actor").await?,
        target: party(&state, frame, "target").await?,
    };
    let (rows, total) = state.store.audit_list(&filter, limit, offset).await?;
    let entries: Vec<Value> = rows.into_iter().map(entry_json).collect();
    s.reply(frame, "modlog_get", json!({"entries": entries, "total": total, "offset": offset, "limit": limit}));
    Ok(())
}

/// `modlog_summary` → counts per `<category>.<action>` and per category.
pub async fn modlog_summary(s: &mut Session, frame: &Frame) -> Result<()> {
    require_audit_access(&*s.me()?)?;
    let mut actions = Map::new();
    let mut categories: Map<String, Value> = Map::new();
    let mut total = 0;
    for (category, action, n) in s.state.store.audit_summary().await? {
        actions.insert(format!("{category}.{action}"), json!(n));
        let sum = categories.get(&category).and_then(Value::as_i64).unwrap_or(0) + n;
        categories.insert(category, json!(sum));
        total += n;
    }
    s.reply(frame, "modlog_summary", json!({"action_counts": actions, "category_totals": categories, "total": total}));
    Ok(())
}
