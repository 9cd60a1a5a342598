//! Bots (PROTOCOL §2.8, §7.7): `botauth` with a bot token, and the administrator commands that
//! create bots, replace their tokens and delete them.
//!
//! A bot is an ordinary account of kind `bot` that can only log in with its token: it has no
//! password, so `login`, JWTs and SAUTH2 never admit it. Tokens are stored as SHA-256 digests and
//! compared in constant time; failures are throttled per IP and per bot name like every login.

use std::sync::Arc;

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::{
    moderation::{announce_leave, delete_account, require},
    users::check_hierarchy,
};
use crate::{
    accounts,
    auth::tokens::{hash_token, random_token},
    cluster::control::Who,
    domain::{names, roles::can_manage_role},
    error::{Error, Result},
    gateway::Session,
    hub::CloseOrder,
    state::{AppState, Identity},
    store::{audit::Audit, users::User},
    wire,
};

fn invalid() -> Error {
    Error::new(ErrorCode::InvalidBotCredentials, "Invalid bot credentials")
}

/// `"Bot authentication is disabled"`: an `auth_error` (bots_disabled) for `botauth`, an `error`
/// (disabled) for the administrator commands.
fn disabled(code: ErrorCode) -> Error {
    Error::new(code, "Bot authentication is disabled")
}

/// `botauth {botusername, bottoken}` before authentication. An unknown bot and a wrong token get
/// the same answer; both count against the IP bucket and the name's lock (PROTOCOL §8.3).
pub async fn botauth(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = s.state.clone();
    if !state.config.bots_enabled {
        return Err(disabled(ErrorCode::BotsDisabled));
    }
    state.auth_gate(s.ip)?;
    let (Some(name), Some(token)) = (frame.str("botusername"), frame.str("bottoken")) else {
        return Err(state.auth_failed(s.ip, "bot", invalid()));
    };
    let key = names::fold(name);
    state.throttle.charge_name(&key).map_err(|wait| state.auth_limited(wait))?;
    let token_hash = hash_token(token);
    let bot = match state.store.user_by_name(&key).await? {
        Some(user) if user.is_bot() && state.bot_token_live(&user.id, &token_hash).await? => user,
        _ => {
            state.throttle.fail_name(&key);
            tracing::info!(conn = s.conn_id, code = "invalid_bot_credentials", "bot login refused");
            return Err(state.auth_failed(s.ip, "bot", invalid()));
        }
    };
    if bot.banned {
        state.throttle.settle_name(&key);
        return Err(state.auth_failed(s.ip, "bot", accounts::banned()));
    }
    state.throttle.succeed_name(&key);
    state.metrics.inc("confab_auth_attempts_total", "method=\"bot\",outcome=\"success\"".into());
    tracing::info!(user = %bot.id, conn = s.conn_id, "bot authenticated");
    // A bot from the configuration file or the CLI is announced by its first login (PROTOCOL §2.11).
    let first = state.store.bot_mark_announced(&bot.id).await?;
    // No session family: a bot's only credential is its token, and revoking it closes every
    // connection of the bot (in `regenerate`). The connection carries the token's hash, so that the
    // re-read after registration (a regeneration committed while this login was in flight) and a
    // node that rereads it (`connection::standing`) can tell a replaced token.
    let tag = crate::identity::bot_session(&token_hash);
    super::connection::complete(s, frame.listener(), bot, None, Some(tag), first).await
}

/// The administrator behind a §7.7 bot command, once bots are known to be enabled.
fn admin(s: &Session) -> Result<Arc<Identity>> {
    let me = s.me()?;
    require(&me, "administrator")?;
    if !s.state.config.bots_enabled {
        return Err(disabled(ErrorCode::Disabled));
    }
    Ok(me)
}

/// The `botusername` field: "User parameter is required" when missing or blank.
fn bot_name(frame: &Frame) -> Result<&str> {
    frame
        .str("botusername")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| Error::bad_request("User parameter is required"))
}

/// The bot named by `botusername`: "Bot not found" unless it names a bot account.
async fn target_bot(state: &AppState, frame: &Frame) -> Result<User> {
    let bot = super::users::find_user(state, bot_name(frame)?).await?;
    bot.filter(User::is_bot).ok_or_else(|| Error::not_found("Bot not found"))
}

fn audit(me: &Identity, action: &'static str, bot: Option<&User>) -> Audit {
    Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: bot.map(|b| b.id.clone()),
        target_name: bot.map(|b| b.username.clone()),
        details: json!({}),
    }
}

/// The role ids for `bot_create`'s `roles` (default `auth.default_roles`). Giving a role is
/// managing it, so the hierarchy of `user_roles_set` applies (PROTOCOL §5.3).
fn requested_roles(state: &AppState, me: &Identity, frame: &Frame) -> Result<Vec<String>> {
    let dir = state.directory();
    let names: Vec<&str> = match frame.get("roles") {
        None | Some(Value::Null) => {
            return Ok(state
                .config
                .auth
                .default_roles
                .iter()
                .filter_map(|r| dir.role(r))
                .map(|r| r.id.clone())
                .collect());
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| Error::bad_request("Roles must be a list of role names"))?,
        Some(_) => return Err(Error::bad_request("Roles must be a list of role names")),
    };
    let top = me.roles.first().map(|r| r.position);
    let mut ids: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let role = dir.role(name).ok_or_else(|| Error::not_found(format!("Role '{name}' does not exist")))?;
        can_manage_role(&me.actor, top, &role.name, role.position).map_err(Error::forbidden)?;
        if !ids.contains(&role.id) {
            ids.push(role.id.clone());
        }
    }
    Ok(ids)
}

/// `bot_create {botusername, roles?}` (administrator) → the bot and its token, once; S→A `user_join`.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = admin(s)?;
    let state = s.state.clone();
    let name = bot_name(frame)?;
    let role_ids = requested_roles(&state, &me, frame)?;
    let entry = audit(&me, "bot_create", None);
    let (bot, token) =
        crate::admin::bot_create(&state.store, &state.config, name, role_ids, true, Some(&entry)).await?;
    s.reply(frame, "bot_create", json!({"bot": {"id": bot.id, "username": bot.username}, "bottoken": token}));
    let identity = state.identity(bot, None).await?;
    let join = wire::packet("user_join", json!({"user": identity.presence()}));
    state.to_all(join, None, false);
    Ok(())
}

/// `bot_token_regenerate {botusername}` (administrator; hierarchy) → a new token, once. The old one never
/// works again and the bot's live connections close with 4004 (PROTOCOL §8.5).
pub async fn regenerate(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = admin(s)?;
    let state = s.state.clone();
    let bot = target_bot(&state, frame).await?;
    // A new token is a login as the bot, with whatever roles it holds.
    check_hierarchy(&state, &me, &bot, "regenerate tokens of").await?;
    let token = random_token();
    state
        .store
        .bot_token_replace(&bot.id, &hash_token(&token), Some(&audit(&me, "bot_token_regenerate", Some(&bot))))
        .await?;
    state.close(Who::User(bot.id.clone()), CloseOrder::revoked());
    s.reply(frame, "bot_token_regenerate", json!({"botusername": bot.username, "bottoken": token}));
    Ok(())
}

/// `bot_delete {botusername}` (administrator): as `user_delete` — MH, the account removed, its
/// connections closed with 4003, S→A `user_leave`.
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = admin(s)?;
    let state = s.state.clone();
    let bot = target_bot(&state, frame).await?;
    delete_account(&state, &me, &bot, "bot_delete", || Error::not_found("Bot not found")).await?;
    s.reply(frame, "bot_delete", json!({"botusername": bot.username, "deleted": true}));
    announce_leave(&state, &bot);
    Ok(())
}
