//! `users_list` and `users_online` (PROTOCOL §6.4, §5.2), and what every command about an account
//! shares: resolving a user target (§6.0), the role hierarchy every command that acts on another
//! account obeys, and updating the account snapshot of its live connections.

use std::{collections::HashMap, sync::Arc};

use confab_proto::Frame;
use serde_json::{Value, json};

use crate::{
    cluster::control::Effect,
    error::{Error, Result},
    gateway::Session,
    members::{Member, Members},
    state::{AppState, Identity},
    store::{roles::Role, users::User},
    wire,
};

/// An account named by a user target (PROTOCOL §6.0): a username, case-insensitively, or an id.
pub async fn find_user(state: &AppState, key: &str) -> Result<Option<User>> {
    match state.store.user_by_name(key).await? {
        Some(user) => Ok(Some(user)),
        None => state.store.user_by_id(key).await,
    }
}

/// The account named by the frame's `user` field: "User parameter is required" when it is missing
/// or blank, "User not found" when nothing matches. (Another type than string was refused before
/// the handler ran: [`super::check_field_types`].)
pub async fn target_user(state: &AppState, frame: &Frame) -> Result<User> {
    let Some(key) = frame.str("user").filter(|k| !k.trim().is_empty()) else {
        return Err(Error::bad_request("User parameter is required"));
    };
    find_user(state, key).await?.ok_or_else(|| Error::not_found("User not found"))
}

/// Verbs an account may never do to itself, whatever its roles (MH, PROTOCOL §6.0).
const NOT_ON_SELF: [&str; 3] = ["ban", "timeout", "delete"];

/// Position of an identity's highest role (0 is the highest); an account without roles ranks
/// below every role.
fn rank(identity: &Identity) -> i64 {
    identity.roles.first().map_or(i64::MAX, |r| r.position)
}

/// The hierarchy (MH, PROTOCOL §6.0) for `verb` done by `me` to `target`, shared by every command
/// that acts on another account: bans, timeouts, deletions, renames and nicknames, role changes,
/// SAUTH2 tokens and bot tokens. Nobody bans, times out or deletes themselves; a non-owner acts
/// neither on an owner nor on anyone whose highest role is at or above their own (their own account
/// included), so no administrator can take over the owner's or a peer's account.
pub(crate) async fn check_hierarchy(state: &AppState, me: &Identity, target: &User, verb: &str) -> Result<()> {
    if target.id == me.user.id && NOT_ON_SELF.contains(&verb) {
        return Err(Error::forbidden(format!("You cannot {verb} yourself")));
    }
    if me.actor.is_owner() {
        return Ok(());
    }
    let them = state.identity(target.clone(), None).await?;
    if them.actor.is_owner() {
        return Err(Error::forbidden(format!("Cannot {verb} the server owner")));
    }
    if rank(&them) <= rank(me) {
        return Err(Error::forbidden("Cannot moderate users at or above your position"));
    }
    Ok(())
}

/// [`refresh_account`] here, and on every other node from the stored row.
pub fn account_changed(state: &AppState, user: &User) {
    refresh_account(state, user);
    state.everywhere(Effect::Account { user: user.id.clone() }, None);
}

/// Gives every live connection of `user` on this node the new account row (status, avatar, timeout) while
/// keeping its roles, so presence on close, the timeout check and later commands see the change.
/// A rename or role change needs `channels::user_changed` instead, which reloads roles too.
pub fn refresh_account(state: &AppState, user: &User) {
    for conn in state.hub.connections_of(&user.id) {
        let current = conn.identity();
        conn.set_identity(Arc::new(Identity { user: user.clone(), ..(*current).clone() }));
    }
}

/// The status others see: the stored one while online and visible, else `offline`.
pub fn visible_status(user: &User, online: bool) -> Value {
    if online && user.status != "invisible" {
        json!({"status": user.status, "text": user.status_text})
    } else {
        json!({"status": "offline", "text": ""})
    }
}

/// `users_list`: every account that is not banned, sorted by name.
pub async fn list(s: &mut Session, frame: &Frame) -> Result<()> {
    let members = members(&s.state).await?;
    let online = s.state.online_users().await?;
    s.send(listing(frame, "users_list", &members.listed(&online)));
    Ok(())
}

/// `users_online`: one entry per account with a live connection, except invisible ones.
pub async fn online(s: &mut Session, frame: &Frame) -> Result<()> {
    let members = members(&s.state).await?;
    let online = s.state.online_users().await?;
    s.send(listing(frame, "users_online", &members.present(&online)));
    Ok(())
}

/// The reply `cmd` with the serialised `users` array, carrying the request's `listener`.
fn listing(frame: &Frame, cmd: &str, users: &str) -> String {
    let packet = format!(r#"{{"cmd":{},"users":{users}}}"#, json!(cmd));
    wire::with_listener(&packet, frame.listener())
}

/// The member list as of now: cached until an account, role or assignment changes.
async fn members(state: &AppState) -> Result<Arc<Members>> {
    // Read before the accounts: a change committed meanwhile moves it on and forces a rebuild.
    let generation = state.store.members_generation();
    state
        .members
        .get(generation, || async {
            let roles = state.roles_by_user().await?;
            Ok(state.store.users_unbanned().await?.iter().map(|u| member(u, &roles)).collect())
        })
        .await
}

/// One account in the forms `users_list` (offline, online) and `users_online` show it.
fn member(u: &User, roles: &HashMap<String, Vec<Role>>) -> Member {
    let r = roles.get(&u.id).map(Vec::as_slice).unwrap_or_default();
    let names: Vec<&String> = r.iter().map(|r| &r.name).collect();
    let listed = |online: bool| {
        json!({
            "id": u.id, "username": u.username, "nickname": u.nickname,
            "roles": names, "color": wire::color_of(r),
            "status": visible_status(u, online), "cracked": u.cracked(),
            "pfp": u.pfp_url, "bot": u.is_bot(),
        })
        .to_string()
        .into_boxed_str()
    };
    let present = (u.status != "invisible").then(|| {
        json!({
            "id": u.id, "username": u.username, "nickname": u.nickname,
            "roles": names, "color": wire::color_of(r),
            "status": visible_status(u, true),
        })
        .to_string()
        .into_boxed_str()
    });
    Member { id: u.id.clone(), listed: [listed(false), listed(true)], present }
}
