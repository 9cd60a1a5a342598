//! Administration on the same database as the server, running or not: the `confab user …`,
//! `token …` and `bot …` CLI, and the bots of the configuration file applied at start.
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
        bots::NewBot,
        users::{AccountKind, NewUser, User},
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
    if names::is_reserved(name, &config.system_username) {
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
                if names::is_reserved(name, &config.system_username) {
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

/// Creates a bot (PROTOCOL §2.8, §7.7) with exactly `role_ids` and a fresh 256-bit token, stored
/// only as its digest. `announced` says whether the caller broadcasts `user_join` now (otherwise the
/// first login does). Returns the bot and its token, which is shown once. Errors: the username
/// texts (bad_request) and "Username already taken" (conflict).
pub async fn bot_create(
    store: &Store,
    config: &Config,
    name: &str,
    role_ids: Vec<String>,
    announced: bool,
    audit: Option<&Audit>,
) -> Result<(User, String)> {
    let name = names::username(name).map_err(|e| Error::bad_request(e.text))?;
    let taken = || Error::conflict("Username already taken");
    if names::is_reserved(name, &config.system_username) {
        return Err(taken());
    }
    let token = random_token();
    let bot = NewBot { username: name, role_ids, token_hash: hash_token(&token), announced };
    let audit = audit.map(|a| Audit { target_name: Some(name.to_owned()), ..a.clone() });
    match store.bot_create(bot, audit.as_ref()).await {
        Ok(user) => Ok((user, token)),
        Err(e) if e.code() == confab_proto::ErrorCode::UsernameTaken => Err(taken()),
        Err(e) => Err(e),
    }
}

/// `confab bot add NAME [--role ROLE]…`: a bot with `roles` (default `auth.default_roles`); its
/// token is returned to be printed once.
pub async fn bot_add(store: &Store, config: &Config, name: &str, roles: &[String]) -> Result<(User, String)> {
    let roles = if roles.is_empty() { config.auth.default_roles.clone() } else { roles.to_vec() };
    let role_ids = role_ids(store, &roles).await?;
    bot_create(store, config, name, role_ids, false, None).await
}

/// Applies the configuration file's `bots[]` at start: a missing bot is created (announced at its
/// first login), an existing one gets the configured token and, when `roles` is set, exactly those
/// roles. A token that was replaced by `bot_token_regenerate` is never brought back: the bot keeps
/// its current token and a warning names it. A name held by an account that is not a bot stops
/// the start.
pub async fn bots_from_config(store: &Store, config: &Config) -> Result<()> {
    for (i, bot) in config.bots.iter().enumerate() {
        let key = |field: &str, why: String| Error::bad_request(format!("key `bots[{i}].{field}`: {why}"));
        let roles = if bot.roles.is_empty() { &config.auth.default_roles } else { &bot.roles };
        let role_ids = role_ids(store, roles).await.map_err(|e| key("roles", e.text().to_owned()))?;
        let Some(user) = store.user_by_name(&bot.name).await? else {
            let new = NewBot { username: &bot.name, role_ids, token_hash: bot.token_hash.clone(), announced: false };
            store.bot_create(new, None).await?;
            tracing::info!(bot = %bot.name, "created the configured bot");
            continue;
        };
        if !user.is_bot() {
            return Err(key("name", format!("`{}` is an account that is not a bot", user.username)));
        }
        if store.bot_token_hash(&user.id).await?.as_deref() != Some(bot.token_hash.as_str()) {
            if store.bot_token_revoked(&user.id, &bot.token_hash).await? {
                tracing::warn!(bot = %user.username, "the configured bot token was replaced by bot_token_regenerate; it stays revoked");
            } else {
                store.bot_token_replace(&user.id, &bot.token_hash, None).await?;
            }
        }
        if !bot.roles.is_empty() {
            store.user_set_roles(&user.id, &role_ids).await?;
        }
    }
    Ok(())
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
