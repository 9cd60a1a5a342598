//! Authentication over the socket (PROTOCOL §2.2–2.11): `register`, `login`, `auth` with a JWT,
//! `?token=` on the upgrade. Joining the hub once authenticated is `connection`'s.

use confab_proto::{ErrorCode, Frame, close};
use serde_json::json;

use super::connection::complete;
use crate::{accounts::TokenLogin, error::Error, gateway::Session, hub::CloseOrder, store::users::User, wire};

/// Handles any frame other than `ping` before authentication.
pub async fn unauthenticated(s: &mut Session, frame: &Frame) -> crate::error::Result<()> {
    let state = s.state.clone();
    let ip = s.ip;
    let rotur = state.config.auth_mode != crate::config::AuthMode::Local;
    if matches!(frame.cmd.as_str(), "auth" | "login" | "register" | "botauth") {
        // A new auth frame cancels a pending SAUTH2 login on this connection (PROTOCOL §2.2).
        state.web_logins.cancel(s.conn_id);
    }
    if frame.cmd == "botauth" {
        if let Err(e) = super::bots::botauth(s, frame).await {
            s.auth_error(frame, &e);
        }
        return Ok(());
    }
    if frame.cmd == "tokenauth" {
        if let Err(e) = super::sauth::redeem(s, frame).await {
            s.auth_error(frame, &e);
        }
        return Ok(());
    }
    if let ("auth", Some(username), Some(token)) = (frame.cmd.as_str(), frame.str("username"), frame.str("token")) {
        if let Err(e) = super::sauth::start(s, frame, username, token).await {
            s.auth_error(frame, &e);
        }
        return Ok(());
    }
    if frame.cmd == "auth" && frame.get("token").is_none() && rotur {
        return rotur_auth(s, frame).await;
    }
    // The account, its roles if they were read with it, its session family, and whether it is new.
    type Outcome = (User, Option<Vec<String>>, Option<String>, bool);
    let outcome: Result<Outcome, Error> = match frame.cmd.as_str() {
        "register" => {
            let (username, password, invite) = (frame.str("username"), frame.str("password"), frame.str("invite"));
            state.register(ip, username, password, invite).await.map(|u| (u, None, None, true))
        }
        "login" => state.login(ip, frame.str("username"), frame.str("password")).await.map(|u| (u, None, None, false)),
        "auth" => {
            let token = frame.str("token");
            let username = frame.str("username");
            match (token, username) {
                (Some(token), None) => {
                    state.token_login(ip, token).await.map(|l| (l.user, Some(l.role_ids), Some(l.session_id), false))
                }
                _ => Err(Error::new(
                    ErrorCode::RoturDisabled,
                    "Rotur authentication is disabled. Use login or register commands.",
                )),
            }
        }
        _ => {
            let _ = state.throttle.charge_ip(ip);
            Err(Error::new(ErrorCode::Unauthenticated, "Authentication required"))
        }
    };
    match outcome {
        Ok((user, role_ids, sid, created)) => {
            if let Err(e) = complete(s, frame.listener(), user, role_ids, sid, created).await {
                s.auth_error(frame, &e);
            }
        }
        Err(e) => s.auth_error(frame, &e),
    }
    Ok(())
}

/// `auth` with a Rotur validator (PROTOCOL §2.4). The connection's key is consumed by the first
/// validation Rotur answers, whatever the answer; an unavailable service does not consume it.
async fn rotur_auth(s: &mut Session, frame: &Frame) -> crate::error::Result<()> {
    let invalid = Error::new(ErrorCode::InvalidValidator, "Invalid authentication");
    let validator = frame.str("validator").filter(|v| v.chars().count() <= 256 && v.contains(','));
    let (Some(validator), false) = (validator, s.validator_key_used) else {
        let e = s.state.auth_failed(s.ip, "rotur", invalid);
        s.auth_error(frame, &e);
        return Ok(());
    };
    let state = s.state.clone();
    match state.rotur_login(s.ip, &s.validator_key, validator).await {
        Ok(login) => {
            s.validator_key_used = true;
            let (user_id, old_name) = (login.user.id.clone(), login.old_name.clone());
            match complete(s, frame.listener(), login.user, None, None, login.created).await {
                Ok(()) => {
                    if let (Some(old), Some(user)) = (old_name, state.store.user_by_id(&user_id).await?) {
                        let packet = wire::packet(
                            "user_updated",
                            json!({"user_id": user.id, "username": user.username, "nickname": user.nickname, "old_username": old}),
                        );
                        state.to_all(packet, None, false);
                    }
                }
                Err(e) => s.auth_error(frame, &e),
            }
        }
        Err(e) => {
            if !(e.is_failure() || matches!(e.code(), ErrorCode::AuthUnavailable | ErrorCode::AuthRateLimited)) {
                s.validator_key_used = true;
            }
            s.auth_error(frame, &e);
        }
    }
    Ok(())
}

/// Verifies `?token=` before the handshake; an `Err` is the close to send instead (PROTOCOL §2.6).
pub async fn upgrade_token(s: &Session, token: &str) -> Result<TokenLogin, CloseOrder> {
    let policy = |reason: &str| CloseOrder::new(close::POLICY, reason, None);
    if token.is_empty() {
        return Err(policy("Missing authentication token"));
    }
    let state = &s.state;
    match state.token_login(s.ip, token).await {
        Ok(login) => {
            if state.hub.user_connections(&login.user.id) >= state.config.security.max_connections_per_user {
                return Err(policy("Too many connections"));
            }
            Ok(login)
        }
        Err(e) => Err(match e.code() {
            ErrorCode::Banned => CloseOrder::new(close::BANNED, e.text(), None),
            ErrorCode::InvalidTokenPayload => policy("Invalid token payload"),
            ErrorCode::AuthRateLimited => policy("Too many authentication attempts"),
            ErrorCode::Internal | ErrorCode::Unavailable => CloseOrder::new(1011, e.text(), None),
            _ => policy("Invalid or expired token"),
        }),
    }
}
