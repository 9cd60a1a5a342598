//! Invites [ext] (docs/protocol-details.md, "Registration modes and invites"): `invite_create`,
//! `invite_list` and `invite_revoke`, all for `manage_server`, the permission that already governs
//! who the server lets in through its other doors (webhooks, emoji, the server's own profile).
//!
//! A code is 22 letters and digits drawn from the OS random source (~131 bits): unguessable, and
//! short enough for a link someone pastes into a message.

use confab_proto::Frame;
use serde_json::{Value, json};

use super::{opt_int, webhooks::require_manage_server};
use crate::{
    auth::tokens::{ALNUM, random_string},
    error::{Error, Result},
    gateway::Session,
    state::Identity,
    store::{
        audit::Audit,
        invites::{InviteRow, NewInvite},
    },
};

/// Characters in an invite code.
pub const CODE_LEN: usize = 22;
/// The most uses one invite may allow.
pub const MAX_USES: i64 = 1_000_000;
/// The longest lifetime one invite may have, in seconds (a year).
pub const MAX_EXPIRES_IN: i64 = 365 * 86_400;

/// The invite object of the replies: the code, the link to share, and its counts.
fn invite_json(s: &Session, row: &InviteRow) -> Value {
    json!({
        "code": row.code,
        "url": format!("{}/invite/{}", s.state.config.public_url, row.code),
        "created_by": row.created_by,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "max_uses": row.max_uses,
        "uses": row.uses,
        "revoked": row.revoked,
        "usable": row.usable(crate::store::now()),
    })
}

/// The audit entry (category `server_management`) naming the invite as the target. The code is
/// not a secret once shared, but the log keeps only its first characters all the same.
fn audit(me: &Identity, action: &'static str, code: &str, details: Value) -> Audit {
    Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: None,
        target_name: Some(format!("{}…", code.chars().take(6).collect::<String>())),
        details,
    }
}

/// An optional positive integer field no larger than `max`; `null` is absent.
fn bounded(frame: &Frame, key: &str, max: i64) -> Result<Option<i64>> {
    let err = format!("{key} must be an integer between 1 and {max}");
    match opt_int(frame, key, &err)? {
        Some(n) if !(1..=max).contains(&n) => Err(Error::bad_request(err)),
        n => Ok(n),
    }
}

/// `invite_create {max_uses?, expires_in?}` → `{"invite":{…}}`. `expires_in` is in seconds.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_server(s)?;
    let max_uses = bounded(frame, "max_uses", MAX_USES)?;
    let expires_in = bounded(frame, "expires_in", MAX_EXPIRES_IN)?;
    let code = random_string(CODE_LEN, ALNUM);
    let expires_at = expires_in.map(|secs| crate::store::now() + secs as f64);
    let new = NewInvite {
        code: &code,
        created_by: Some(&me.user.id),
        created_by_name: &me.user.username,
        expires_at,
        max_uses,
    };
    let entry = audit(&me, "invite_create", &code, json!({"max_uses": max_uses, "expires_at": expires_at}));
    s.state.store.invite_create(&new, &entry).await?;
    let row = s.state.store.invite(&code).await?.ok_or_else(|| Error::Internal("created invite vanished".into()))?;
    s.reply(frame, "invite_create", json!({"invite": invite_json(s, &row)}));
    Ok(())
}

/// `invite_list` → `{"invites":[…]}`, newest first, revoked and used-up ones included.
pub async fn list(s: &mut Session, frame: &Frame) -> Result<()> {
    require_manage_server(s)?;
    let rows = s.state.store.invites().await?;
    let list: Vec<Value> = rows.iter().map(|r| invite_json(s, r)).collect();
    s.reply(frame, "invite_list", json!({"invites": list}));
    Ok(())
}

/// `invite_revoke {code}` → `{"code","revoked":true}`; the invite registers nobody from this commit on.
pub async fn revoke(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_server(s)?;
    let code =
        frame.str("code").filter(|c| !c.is_empty()).ok_or_else(|| Error::bad_request("Invite code is required"))?;
    let entry = audit(&me, "invite_revoke", code, json!({}));
    if !s.state.store.invite_revoke(code, &entry).await? {
        return Err(Error::not_found("Invite not found"));
    }
    s.reply(frame, "invite_revoke", json!({"code": code, "revoked": true}));
    Ok(())
}
