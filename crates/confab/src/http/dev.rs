//! `GET /test-token` (seed 002, PROTOCOL §8.3): the long-lived test token, routed only when the
//! server runs with `--dev`. Without `--dev` the route does not exist (404 like any unknown path).
//!
//! The token is an ordinary signed `at+jwt` access token for the local account `user` (created
//! with password `password` if missing, so the seed's `/token` examples work too), with a far
//! `exp` and its own session family, so logout revokes it. The verifier accepts its lifetime only
//! because `--dev` widened the key set's cap (`keys::load`).

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    accounts::busy,
    auth::jwt::DEV_TOKEN_TTL_S,
    error::{Error, Result},
    state::AppState,
    store::users::{AccountKind, User},
};

/// The development account of seed 002 and its password.
pub const DEV_USER: &str = "user";
const DEV_PASSWORD: &str = "password";
/// Setting that remembers the test token's family, so repeated requests share one family.
const DEV_SESSION_KEY: &str = "dev.test_session";

/// `GET /test-token` → `{"test_token": <JWT>, "note": …}`.
pub async fn test_token(State(state): State<AppState>) -> Response {
    match issue(&state).await {
        Ok(token) => Json(json!({
            "test_token": token,
            "note": format!(
                "This token is for testing only (the server runs with --dev). It is valid for the '{DEV_USER}' \
                 account for ten years or until it is logged out."
            ),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn issue(state: &AppState) -> Result<String> {
    state.local_enabled()?;
    let user = dev_account(state).await?;
    let now = crate::store::now();
    let live = match state.store.setting(DEV_SESSION_KEY).await? {
        Some(sid) if state.store.session_user(&sid).await?.as_deref() == Some(user.id.as_str()) => Some(sid),
        _ => None,
    };
    let sid = match live {
        Some(sid) => sid,
        None => {
            let sid = state.store.session_create(&user.id, "dev", now + DEV_TOKEN_TTL_S as f64).await?;
            state.store.set_setting(DEV_SESSION_KEY, &sid).await?;
            sid
        }
    };
    Ok(state.jwt.issue_for(&user.id, &sid, now, DEV_TOKEN_TTL_S))
}

/// The local account `user`, created with password `password` (hashed as usual) when missing.
async fn dev_account(state: &AppState) -> Result<User> {
    if let Some(user) = state.store.user_by_name(DEV_USER).await? {
        if user.kind != AccountKind::Local.as_str() {
            return Err(Error::conflict("Username already taken"));
        }
        return Ok(user);
    }
    let hash = state.hasher.hash(DEV_PASSWORD.to_owned()).await.map_err(busy)?;
    match state.create_account(DEV_USER, AccountKind::Local, Some(hash)).await {
        Ok(user) => Ok(user),
        // A concurrent request created it first.
        Err(e) => state.store.user_by_name(DEV_USER).await?.ok_or(e),
    }
}

/// The routes that exist only with `--dev`; an empty router otherwise, so the paths answer 404.
pub fn routes(dev: bool) -> axum::Router<AppState> {
    let router = axum::Router::new();
    if dev { router.route("/test-token", axum::routing::get(test_token)) } else { router }
}
