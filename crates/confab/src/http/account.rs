//! Account-wide revocation [ext] (PROTOCOL §3.1, §8.4, §8.5): logging out of every session
//! (`POST /auth/logout` with `{"all": true}`) and changing the password (`POST /auth/password`).
//!
//! Both act on the account behind a bearer access token, revoke every session family of that
//! account, and close all of its live sockets with 4004 after a `disconnect` packet. The token is
//! verified through [`AppState::token_login`], so a bad one is charged to the caller's IP like any
//! failed login, and a refused request changes nothing.

use std::net::IpAddr;

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{Peer, bearer, body, client_ip, http_error, json_error};
use crate::{
    cluster::control::Who,
    {hub::CloseOrder, state::AppState, store::users::User},
};

/// 401 when a route that needs an access token got none.
fn bearer_required() -> Response {
    json_error(StatusCode::UNAUTHORIZED, "Authorization bearer token required", "unauthenticated")
}

/// The account behind the request's bearer access token (live family, not banned).
async fn authenticated(state: &AppState, ip: IpAddr, headers: &HeaderMap) -> Result<User, Response> {
    let Some(token) = bearer(headers).filter(|t| !t.is_empty()) else {
        return Err(bearer_required());
    };
    state.token_login(ip, token).await.map(|login| login.user).map_err(http_error)
}

/// Closes every live socket of the account with 4004 (PROTOCOL §8.5).
fn close_account(state: &AppState, user_id: &str) {
    state.close(Who::User(user_id.to_owned()), CloseOrder::revoked());
}

/// `POST /auth/logout {"all": true}` with a bearer access token → 204: every session family of
/// the account is revoked and every socket of the account closes with 4004.
pub async fn logout_all(state: &AppState, ip: IpAddr, headers: &HeaderMap) -> Response {
    let user = match authenticated(state, ip, headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = state.store.sessions_revoke_user(&user.id).await {
        return e.into_response();
    }
    close_account(state, &user.id);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /auth/password {"password", "new_password"}` with a bearer access token → 204: the new
/// password is stored, every session family is revoked and every socket closes with 4004. The
/// client logs in again with the new password.
pub async fn password(
    State(state): State<AppState>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    if let Err(e) = state.local_enabled() {
        return e.into_response();
    }
    let ip = client_ip(&state, peer.ip(), &headers);
    let user = match authenticated(&state, ip, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let map = match body::json_object(&headers, raw).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let field = |k: &str| map.get(k).and_then(Value::as_str);
    if let Err(e) = state.change_password(ip, &user, field("password"), field("new_password")).await {
        return http_error(e);
    }
    close_account(&state, &user.id);
    StatusCode::NO_CONTENT.into_response()
}
