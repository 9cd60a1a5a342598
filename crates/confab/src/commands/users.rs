//! `users_list` and `users_online` (PROTOCOL §6.4, §5.2).

use std::collections::HashSet;

use confab_proto::Frame;
use serde_json::{Value, json};

use crate::{error::Result, gateway::Session, store::users::User, wire};

/// The status others see: the stored one while online and visible, else `offline`.
fn visible_status(user: &User, online: bool) -> Value {
    if online && user.status != "invisible" {
        json!({"status": user.status, "text": user.status_text})
    } else {
        json!({"status": "offline", "text": ""})
    }
}

/// `users_list`: every account that is not banned, sorted by name.
pub async fn list(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = &s.state;
    let online: HashSet<String> = state.hub.online_users().into_iter().collect();
    let roles = state.roles_by_user().await?;
    let users: Vec<Value> = state
        .store
        .users_unbanned()
        .await?
        .iter()
        .map(|u| {
            let r = roles.get(&u.id).map(Vec::as_slice).unwrap_or_default();
            json!({
                "id": u.id, "username": u.username, "nickname": u.nickname,
                "roles": r.iter().map(|r| &r.name).collect::<Vec<_>>(), "color": wire::color_of(r),
                "status": visible_status(u, online.contains(&u.id)), "cracked": u.cracked(),
                "pfp": u.pfp_url, "bot": u.is_bot(),
            })
        })
        .collect();
    s.reply(frame, "users_list", json!({"users": users}));
    Ok(())
}

/// `users_online`: one entry per account with a live connection, except invisible ones.
pub async fn online(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = &s.state;
    let roles = state.roles_by_user().await?;
    let mut users = Vec::new();
    for id in state.hub.online_users() {
        let Some(u) = state.store.user_by_id(&id).await? else {
            continue;
        };
        if u.status == "invisible" {
            continue;
        }
        let r = roles.get(&u.id).map(Vec::as_slice).unwrap_or_default();
        users.push(json!({
            "id": u.id, "username": u.username, "nickname": u.nickname,
            "roles": r.iter().map(|r| &r.name).collect::<Vec<_>>(), "color": wire::color_of(r),
            "status": visible_status(&u, true),
        }));
    }
    users.sort_by_key(|u| u["username"].as_str().unwrap_or("").to_ascii_lowercase());
    s.reply(frame, "users_online", json!({"users": users}));
    Ok(())
}
