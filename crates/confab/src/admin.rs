//! Administration on the same database as the server, running or not: the `confab user …` CLI.
//!
//! Works through the `Store` like the server does, so the same validation and role rules apply.

use crate::{
    auth::{
        password::Hasher,
        tokens::{hash_token, random_token},
    },
    config::Config,
    domain::names,
    error::{Error, Result},
    store::{
        Store,
        audit::Audit,
        users::{AccountKind, NewUser},
    },
};

/// Resolves role names to ids, failing on the first unknown one.
async fn role_ids(store: &Store, roles: &[String]) -> Result<Vec<String>> {
    let all = store.roles().await?;
    roles
        .iter()
        .map(|name| {
            all.iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
                .map(|r| r.id.clone())
                .ok_or_else(|| Error::not_found(format!("Role '{name}' does not exist")))
        })
        .collect()
}

/// Creates a local account with a password and exactly `roles` (default: `auth.default_roles`).
pub async fn user_add(store: &Store, config: &Config, name: &str, roles: &[String], password: &str) -> Result<String> {
    let name = names::username(name)?;
    if name.eq_ignore_ascii_case(&config.system_username) {
        return Err(Error::new(confab_proto::ErrorCode::UsernameTaken, "Username already taken"));
    }
    names::password_length(password, config.auth.password_min, config.auth.password_max)?;
    let roles = if roles.is_empty() { config.auth.default_roles.clone() } else { roles.to_vec() };
    let role_ids = role_ids(store, &roles).await?;
    let hash = Hasher::new(1, 1)
        .hash(password.to_owned())
        .await
        .map_err(|_| Error::Internal("hashing pool unavailable".into()))?;
    let user = store
        .user_create(NewUser { username: name, kind: AccountKind::Local, password_hash: Some(hash), role_ids })
        .await?;
    Ok(format!("created {} ({}) with roles {}", user.username, user.id, roles.join(", ")))
}

/// Issues a SAUTH2 generic token for `name` (PROTOCOL §2.7, §7.7), creating the local account
/// without a password when it does not exist. Returns the canonical name and the token, which is
/// shown once and stored only as its digest.
pub async fn token_issue(
    store: &Store,
    config: &Config,
    name: &str,
    audit: Option<&Audit>,
) -> Result<(String, String)> {
    let user = match store.user_by_name(name).await? {
        Some(u) => u,
        None => match store.user_by_id(name).await? {
            Some(u) => u,
            None => {
                let name = names::username(name)?;
                if name.eq_ignore_ascii_case(&config.system_username) {
                    return Err(Error::new(confab_proto::ErrorCode::UsernameTaken, "Username already taken"));
                }
                let role_ids = role_ids(store, &config.auth.default_roles).await?;
                store
                    .user_create(NewUser { username: name, kind: AccountKind::Local, password_hash: None, role_ids })
                    .await?
            }
        },
    };
    if user.kind != AccountKind::Local.as_str() {
        return Err(Error::forbidden("Generic tokens are only for local accounts"));
    }
    let token = random_token();
    let audit = audit.map(|a| Audit {
        target_id: Some(user.id.clone()),
        target_name: Some(user.username.clone()),
        ..a.clone()
    });
    store.sauth_token_add(&user.id, &hash_token(&token), audit.as_ref()).await?;
    Ok((user.username, token))
}

/// One line per account: name, id, kind, roles, and whether it is banned.
pub async fn user_list(store: &Store) -> Result<String> {
    let roles = store.roles().await?;
    let assignments = store.all_user_roles().await?;
    let mut out = String::new();
    for u in store.users_all().await? {
        let mine: Vec<&str> = roles
            .iter()
            .filter(|r| assignments.iter().any(|(uid, rid)| *uid == u.id && *rid == r.id))
            .map(|r| r.name.as_str())
            .collect();
        let banned = if u.banned { " banned" } else { "" };
        out.push_str(&format!("{}\t{}\t{}\t{}{banned}\n", u.username, u.id, u.kind, mine.join(",")));
    }
    Ok(out)
}

/// Replaces an account's roles with exactly `roles`.
pub async fn user_set_roles(store: &Store, name: &str, roles: &[String]) -> Result<String> {
    let user = store.user_by_name(name).await?.ok_or_else(|| Error::not_found("User not found"))?;
    let ids = role_ids(store, roles).await?;
    store.user_set_roles(&user.id, &ids).await?;
    Ok(format!("{} now has roles {}", user.username, roles.join(", ")))
}
