//! SAUTH2 one-time web logins (PROTOCOL §2.7, §7.7): `auth {username, token}` → `authmsg` link →
//! the page shows a web token once → `tokenauth` on the same socket. Plus the administrator
//! commands that issue and revoke generic tokens.

use confab_proto::{ErrorCode, Frame};
use serde_json::json;

use crate::{
    accounts,
    auth::{
        sauth::{InUse, Redeem},
        tokens::hash_token,
    },
    cluster::control::Who,
    domain::names,
    error::{Error, Result},
    gateway::Session,
    hub::CloseOrder,
    store::{audit::Audit, users::AccountKind},
};

fn invalid() -> Error {
    Error::new(ErrorCode::InvalidToken, "Invalid username or token")
}

/// `auth {username, token}`: checks the generic token and answers with the one-time link.
pub async fn start(s: &mut Session, frame: &Frame, username: &str, token: &str) -> Result<()> {
    let state = s.state.clone();
    state.local_enabled()?;
    state.auth_gate(s.ip)?;
    let key = names::fold(username);
    state.throttle.charge_name(&key).map_err(|wait| state.auth_limited(wait))?;
    let token_hash = hash_token(token);
    let user = match state.store.user_by_name(&key).await? {
        Some(u)
            if u.kind == AccountKind::Local.as_str() && state.store.sauth_token_valid(&u.id, &token_hash).await? =>
        {
            u
        }
        _ => {
            state.throttle.fail_name(&key);
            return Err(state.auth_failed(s.ip, "sauth", invalid()));
        }
    };
    if user.banned {
        state.throttle.settle_name(&key);
        return Err(state.auth_failed(s.ip, "sauth", accounts::banned()));
    }
    let id = state.web_logins.start(s.conn_id, &user.id, &token_hash).map_err(|InUse| {
        state.throttle.settle_name(&key);
        Error::new(ErrorCode::TokenInUse, "Token already in use")
    })?;
    state.throttle.succeed_name(&key);
    s.reply(frame, "authmsg", json!({"val": format!("{}/sauth/{id}", state.config.public_url)}));
    Ok(())
}

/// `tokenauth {val | token}`: the web token from the page, on the connection that got `authmsg`.
pub async fn redeem(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = s.state.clone();
    state.local_enabled()?;
    state.auth_gate(s.ip)?;
    let web_token = frame.str("val").or_else(|| frame.str("token")).unwrap_or("");
    match state.web_logins.redeem(s.conn_id, web_token) {
        Redeem::NoPending => Err(Error::new(ErrorCode::NoPendingLogin, "No web login pending")),
        Redeem::Invalid => Err(state.auth_failed(
            s.ip,
            "sauth",
            Error::new(ErrorCode::InvalidWebToken, "Web token expired or invalid"),
        )),
        Redeem::Ok { user_id, token_hash } => {
            let user = state.store.user_by_id(&user_id).await?;
            let still_valid = state.store.sauth_token_valid(&user_id, &token_hash).await?;
            let Some(user) = user.filter(|_| still_valid) else {
                return Err(Error::new(ErrorCode::InvalidWebToken, "Web token expired or invalid"));
            };
            state.metrics.inc("confab_auth_attempts_total", "method=\"sauth\",outcome=\"success\"".into());
            super::connection::complete(
                s,
                frame.listener(),
                user,
                None,
                Some(crate::identity::sauth_session(&token_hash)),
                false,
            )
            .await
        }
    }
}

fn require_admin(s: &Session) -> Result<std::sync::Arc<crate::state::Identity>> {
    let me = s.me()?;
    if !me.actor.is_admin() {
        return Err(Error::missing_permission("administrator"));
    }
    Ok(me)
}

/// `sauth_token_create {user}` (administrator; the hierarchy of an existing account) → the token, once.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_admin(s)?;
    let Some(name) = frame.str("user").filter(|n| !n.trim().is_empty()) else {
        return Err(Error::bad_request("User parameter is required"));
    };
    // A generic token logs its holder in as the account: issuing one is acting on that account.
    if let Some(target) = super::users::find_user(&s.state, name).await? {
        super::users::check_hierarchy(&s.state, &me, &target, "issue tokens for").await?;
    }
    let audit = Audit {
        action: "sauth_token_create",
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: None,
        target_name: None,
        details: json!({}),
    };
    let state = &s.state;
    let (username, token) = crate::admin::token_issue(&state.store, &state.config, name, Some(&audit)).await?;
    s.reply(frame, "sauth_token_create", json!({"user": username, "token": token}));
    Ok(())
}

/// `sauth_token_revoke {user}` (administrator; hierarchy): every generic token of the user stops working and
/// the sessions opened with them close with 4004.
pub async fn revoke(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_admin(s)?;
    let state = s.state.clone();
    let user = super::users::target_user(&state, frame).await?;
    super::users::check_hierarchy(&state, &me, &user, "revoke tokens of").await?;
    let audit = Audit {
        action: "sauth_token_revoke",
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: Some(user.id.clone()),
        target_name: Some(user.username.clone()),
        details: json!({}),
    };
    let revoked = state.store.sauth_tokens_revoke(&user.id, &audit).await?;
    state.web_logins.forget_user(&user.id);
    state.close(Who::SauthOf(user.id.clone()), CloseOrder::revoked());
    s.reply(frame, "sauth_token_revoke", json!({"user": user.username, "revoked": revoked}));
    Ok(())
}
