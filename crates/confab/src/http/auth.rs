//! Account and token endpoints (PROTOCOL §3.1, §3.2): register, login, refresh, logout, `/token`.

use axum::{
    Json,
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use confab_proto::ErrorCode;
use serde_json::{Map, Value, json};

use super::{Peer, bearer, body, client_ip, http_error, json_error};
use crate::{
    auth::tokens::{hash_token, random_token},
    cluster::control::Who,
    error::Error,
    hub::CloseOrder,
    state::AppState,
    store::{sessions::Rotation, users::User},
    wire,
};

fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// Closes every socket of a revoked session family with 4004 (PROTOCOL §8.5).
pub fn close_family(state: &AppState, session_id: &str) {
    state.close(Who::Session(session_id.to_owned()), CloseOrder::revoked());
}

/// `POST /auth/register` `{"username","password","invite"?}` → 201 token set; `user_join` to every
/// connection. `invite` [ext] is required in `invite` mode.
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let map = match body::json_object(&headers, raw).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ip = client_ip(&state, peer.ip(), &headers);
    let user = match state.register(ip, field(&map, "username"), field(&map, "password"), field(&map, "invite")).await {
        Ok(u) => u,
        Err(e) => return http_error(e),
    };
    created(&state, user).await
}

/// 201 with the new account's token set; `user_join` to every connection.
async fn created(state: &AppState, user: User) -> Response {
    let set = match state.token_set(&user, "password").await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Ok(identity) = state.identity(user, None).await {
        let join = wire::packet("user_join", json!({"user": identity.presence()}));
        state.to_all(join, None, false);
    }
    (StatusCode::CREATED, Json(set)).into_response()
}

/// `POST /auth/setup` `{"token","username","password"}` [ext]: the first-run link creates the owner.
pub async fn setup(State(state): State<AppState>, ConnectInfo(peer): Peer, headers: HeaderMap, raw: Body) -> Response {
    let map = match body::json_object(&headers, raw).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ip = client_ip(&state, peer.ip(), &headers);
    let token = field(&map, "token").unwrap_or_default();
    match state.create_owner(ip, token, field(&map, "username"), field(&map, "password")).await {
        Ok(user) => created(&state, user).await,
        Err(e) => http_error(e),
    }
}

/// `POST /auth/login` → 200 token set.
pub async fn login(State(state): State<AppState>, ConnectInfo(peer): Peer, headers: HeaderMap, raw: Body) -> Response {
    let map = match body::json_object(&headers, raw).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ip = client_ip(&state, peer.ip(), &headers);
    match state.login(ip, field(&map, "username"), field(&map, "password")).await {
        Ok(user) => match state.token_set(&user, "password").await {
            Ok(set) => Json(set).into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) if matches!(e.code(), ErrorCode::InvalidCredentials | ErrorCode::MissingCredentials) => {
            json_error(StatusCode::UNAUTHORIZED, "Invalid username or password", "invalid_credentials")
        }
        Err(e) => http_error(e),
    }
}

/// `POST /auth/refresh` → rotates the refresh token; a spent token revokes its whole family.
pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let map = match body::json_object(&headers, raw).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ip = client_ip(&state, peer.ip(), &headers);
    if let Err(e) = state.local_enabled().and_then(|()| state.auth_gate(ip)) {
        return http_error(e);
    }
    let invalid = |state: &AppState| {
        let e = Error::new(ErrorCode::InvalidToken, "Invalid or expired refresh token");
        state.auth_failed(ip, "refresh", e).into_response()
    };
    let Some(token) = field(&map, "refresh_token").filter(|t| !t.is_empty()) else {
        return invalid(&state);
    };
    let next = random_token();
    let expires = crate::store::now() + state.config.auth.refresh_ttl_s as f64;
    match state.store.refresh_rotate(&hash_token(token), &hash_token(&next), expires).await {
        Ok(Rotation::Rotated { session_id, user_id }) => match state.store.user_by_id(&user_id).await {
            Ok(Some(user)) if !user.banned => {
                let access = state.jwt.issue(&user.id, &session_id, crate::store::now());
                Json(state.token_set_json(&user, &access, &next)).into_response()
            }
            Ok(_) => invalid(&state),
            Err(e) => e.into_response(),
        },
        Ok(Rotation::Reused { session_id, .. }) => {
            tracing::warn!(session = %session_id, "refresh token reuse: family revoked");
            close_family(&state, &session_id);
            let e = Error::new(ErrorCode::RefreshReuse, "Refresh token reuse detected");
            state.auth_failed(ip, "refresh", e).into_response()
        }
        Ok(Rotation::Invalid) => invalid(&state),
        Err(e) => e.into_response(),
    }
}

/// `POST /auth/logout` with a refresh token or a bearer access token → 204, revoking the family.
/// With `{"all": true}` and a bearer access token it revokes every family of the account [ext].
pub async fn logout(State(state): State<AppState>, ConnectInfo(peer): Peer, headers: HeaderMap, raw: Body) -> Response {
    if let Err(e) = state.local_enabled() {
        return e.into_response();
    }
    let map = match body::optional_json_object(&headers, raw).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if map.get("all") == Some(&Value::Bool(true)) {
        return super::account::logout_all(&state, client_ip(&state, peer.ip(), &headers), &headers).await;
    }
    let bearer = bearer(&headers);
    let session = if let Some(token) = field(&map, "refresh_token") {
        state.store.session_of_refresh(&hash_token(token)).await
    } else if let Some(token) = bearer {
        Ok(state.jwt.verify(token, crate::store::now()).ok().map(|id| id.session_id))
    } else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "refresh_token or an Authorization bearer token is required",
            "bad_request",
        );
    };
    match session {
        Ok(Some(sid)) => {
            if let Err(e) = state.store.session_revoke(&sid).await {
                return e.into_response();
            }
            close_family(&state, &sid);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /token`: the OAuth2 password grant (form-encoded), access token only.
pub async fn token(State(state): State<AppState>, ConnectInfo(peer): Peer, headers: HeaderMap, raw: Body) -> Response {
    let form = match body::form(&headers, raw).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if get("grant_type").is_some_and(|g| g != "password") {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    let (Some(username), Some(password)) = (get("username"), get("password")) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_request"}))).into_response();
    };
    let ip = client_ip(&state, peer.ip(), &headers);
    match state.login(ip, Some(username), Some(password)).await {
        Ok(user) => match state.start_session(&user, "token").await {
            Ok((_, access)) => {
                Json(json!({"access_token": access, "token_type": "bearer", "expires_in": state.jwt.ttl_s()}))
                    .into_response()
            }
            Err(e) => e.into_response(),
        },
        Err(e) if e.is_failure() || matches!(e.code(), ErrorCode::AuthRateLimited | ErrorCode::Busy) => http_error(e),
        Err(_) => {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"detail": "Incorrect username or password", "error": "invalid_grant"})),
            )
                .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}
