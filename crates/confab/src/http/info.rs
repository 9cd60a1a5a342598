//! `/info`, `/healthz`, `/readyz` and `/metrics` (PROTOCOL §3.3, §3.4).

use std::{
    collections::HashSet,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{Peer, not_found};
use crate::{auth::tokens::constant_time_eq, domain::net, state::AppState};

/// How long an `/info` answer is reused (PROTOCOL §3.3).
const INFO_MAX_AGE: Duration = Duration::from_secs(1);

/// `GET /info`: public server description and counters. Anyone may ask, as often as they like,
/// so the answer is computed at most once a second and reused meanwhile: one count of the
/// accounts table and a pass over the live connections, never a query per online user.
pub async fn info(State(state): State<AppState>) -> Response {
    let mut cache = state.info_cache.lock().await;
    if let Some((at, answer)) = cache.as_ref()
        && at.elapsed() < INFO_MAX_AGE
    {
        return Json(answer.clone()).into_response();
    }
    match compute_info(&state).await {
        Ok(answer) => {
            *cache = Some((Instant::now(), answer.clone()));
            Json(answer).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The `/info` body as of now. `online_users` comes from the identities of the live connections,
/// which carry each account's current status.
async fn compute_info(state: &AppState) -> Result<Value, crate::error::Error> {
    let server = state.server_info().await?;
    let visible: HashSet<String> = state
        .hub
        .connections()
        .iter()
        .map(|c| c.identity())
        .filter(|id| id.user.status != "invisible")
        .map(|id| id.user.id.clone())
        .collect();
    let dir = state.directory();
    let connected = state.sessions.len();
    Ok(json!({
        "server": {"name": server["name"], "icon": server["icon"], "banner": server["banner"], "owner": server["owner"]},
        // [ext] Which sign-up form a client should offer: `open`, `invite` or `closed`.
        "registration": state.config.auth.registration_mode().as_str(),
        "stats": {
            "total_users": state.store.user_count().await?,
            "connected_users": connected,
            "online_users": visible.len(),
            "total_channels": dir.channels.len(),
            "total_roles": dir.roles.len(),
        }
    }))
}

/// `GET /healthz`: the process is serving.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: the database answers and the server is not draining. In cluster mode the body
/// also says whether the broker delivers (`cluster.broker`: `up` / `down`): a node without its
/// broker still serves everything, from the database, so it stays ready.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let not_ready =
        |reason: &str| (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "reason": reason})));
    if state.draining.load(Ordering::Acquire) {
        return not_ready("draining").into_response();
    }
    if !state.store.ping().await {
        return not_ready("database").into_response();
    }
    let mut body = json!({"status": "ready"});
    if let Some(cluster) = &state.cluster {
        let broker = if cluster.broker_up() { "up" } else { "down" };
        body["cluster"] = json!({"node": cluster.node_id(), "broker": broker});
    }
    if state.config.dev {
        body["warning"] = json!("development mode (--dev): do not use in production");
    }
    Json(body).into_response()
}

/// `GET /metrics`: for allowed networks or the metrics bearer token; 404 to everyone else.
pub async fn metrics(State(state): State<AppState>, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    let cfg = &state.config.metrics;
    let by_network = net::any_contains(&cfg.allow, peer.ip());
    let by_token = !cfg.token.is_empty() && super::bearer(&headers).is_some_and(|t| constant_time_eq(t, &cfg.token));
    if !(by_network || by_token) {
        return not_found().await;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
