//! Presence and profile (PROTOCOL §6.4, §2.11): `status_set`, `status_get`, `pfp_set`, `pfp_get`.
//!
//! Presence agrees with what `commands::auth` announces when connections open and close: an account
//! whose stored status is `invisible` is never announced, so turning invisible looks to others like
//! going offline and leaving it like coming online. Every live connection of the account gets the
//! new status in its identity, because the last one to close decides whether `user_disconnect` goes out.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::users::{account_changed, find_user, target_user, visible_status};
use crate::{
    cluster::control::Effect,
    domain::urls::http_url_ok,
    error::{Error, Result},
    gateway::Session,
    store::users::{AccountKind, User},
    wire,
};

/// The statuses a user may choose.
const STATUSES: [&str; 5] = ["online", "idle", "dnd", "offline", "invisible"];
/// Longest status text, in characters.
const STATUS_TEXT_MAX: usize = 100;
/// Longest avatar URL, in characters.
const PFP_MAX: usize = 500;

/// The stored account after a change by this connection's user, refreshed on all its connections.
async fn reload_self(s: &Session) -> Result<User> {
    let me = s.me()?;
    let user = s.state.store.user_by_id(&me.user.id).await?.ok_or_else(|| Error::not_found("User not found"))?;
    account_changed(&s.state, &user);
    Ok(user)
}

/// Sends `packet` to the requester (with its `listener`) and to the user's other connections.
fn to_self(s: &Session, frame: &Frame, user_id: &str, packet: &str) {
    s.state.everywhere(Effect::ToUser { user: user_id.to_owned(), packet: packet.to_owned() }, Some(s.conn_id));
    s.send(wire::with_listener(packet, frame.listener()));
}

/// The G S→A `status_get` announcing a visible status; the requester's copy carries `listener`.
fn announce_status(s: &Session, frame: &Frame, username: &str, status: &Value) {
    let packet = wire::packet("status_get", json!({"username": username, "status": status, "global": true}));
    s.state.to_all(packet.clone(), Some(s.conn_id), true);
    s.send(wire::with_listener(&packet, frame.listener()));
}

/// `status_set {status, text?}`: stores the status and announces the transition (PROTOCOL §6.4).
/// A `text` that is not a string counts as no text.
pub async fn status_set(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let invalid = || Error::bad_request("Invalid status. Must be one of: online, idle, dnd, offline, invisible");
    let status = match frame.get("status") {
        None | Some(Value::Null) => return Err(Error::bad_request("Status is required")),
        Some(Value::String(st)) if st.is_empty() => return Err(Error::bad_request("Status is required")),
        Some(Value::String(st)) => STATUSES.iter().find(|known| *known == st).ok_or_else(invalid)?,
        Some(_) => return Err(invalid()),
    };
    let text = frame.str("text").unwrap_or("");
    if text.chars().count() > STATUS_TEXT_MAX {
        return Err(Error::new(ErrorCode::TooLong, "Status text too long (max 100 characters)"));
    }
    let previous = s.state.store.user_set_status(&me.user.id, status, text).await?;
    let previous = previous.ok_or_else(|| Error::not_found("User not found"))?;
    let user = reload_self(s).await?;
    let status_json = json!({"status": status, "text": text});
    let own = wire::packet("status_set", json!({"status": status_json}));
    match (previous == "invisible", *status == "invisible") {
        (false, false) => announce_status(s, frame, &user.username, &status_json),
        (false, true) => {
            let gone = wire::packet("user_disconnect", json!({"username": user.username}));
            s.state.everywhere(Effect::ToAll { packet: gone, but_user: Some(user.id.clone()), droppable: true }, None);
            to_self(s, frame, &user.id, &own);
        }
        (true, false) => {
            let back = wire::packet("user_connect", json!({"user": me.presence()}));
            s.state.everywhere(Effect::ToAll { packet: back, but_user: Some(user.id.clone()), droppable: true }, None);
            announce_status(s, frame, &user.username, &status_json);
        }
        (true, true) => to_self(s, frame, &user.id, &own),
    }
    Ok(())
}

/// `status_get {user}`: the stored status for oneself; for others as they see it (§5.2).
pub async fn status_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let target = target_user(&s.state, frame).await?;
    let status = if target.id == me.user.id {
        json!({"status": target.status, "text": target.status_text})
    } else {
        visible_status(&target, s.state.is_online(&target.id).await?)
    };
    s.reply(frame, "status_get", json!({"username": target.username, "status": status}));
    Ok(())
}

/// `pfp_set {url}`: the avatar of a non-Rotur account (Rotur manages its own).
pub async fn pfp_set(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    if me.user.kind == AccountKind::Rotur.as_str() {
        return Err(Error::forbidden("Profile pictures are managed by Rotur for this account"));
    }
    let Some(url) = frame.str("url").filter(|u| !u.is_empty()) else {
        return Err(Error::bad_request("URL required"));
    };
    if !http_url_ok(url) {
        return Err(Error::bad_request("Invalid URL format"));
    }
    if url.chars().count() > PFP_MAX {
        return Err(Error::new(ErrorCode::TooLong, "URL too long (max 500 characters)"));
    }
    s.state.store.user_set_pfp(&me.user.id, url).await?;
    reload_self(s).await?;
    s.reply(frame, "pfp_set", json!({"val": url}));
    Ok(())
}

/// `pfp_get {username}` → the account's avatar URL or `null`.
pub async fn pfp_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let Some(name) = frame.str("username").filter(|n| !n.trim().is_empty()) else {
        return Err(Error::bad_request("Username required"));
    };
    let user = find_user(&s.state, name).await?.ok_or_else(|| Error::not_found("User not found"))?;
    s.reply(frame, "pfp_get", json!({"val": user.pfp_url, "username": user.username}));
    Ok(())
}
