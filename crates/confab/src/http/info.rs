//! `/info`, `/healthz`, `/readyz` and `/metrics` (PROTOCOL §3.3, §3.4).

use std::sync::atomic::Ordering;

use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Peer, not_found};
use crate::{auth::tokens::constant_time_eq, domain::net, state::AppState};

/// `GET /info`: public server description and counters.
pub async fn info(State(state): State<AppState>) -> Response {
    let result = async {
        let server = state.server_info().await?;
        let mut online = 0;
        for id in state.hub.online_users() {
            if state.store.user_by_id(&id).await?.is_some_and(|u| u.status != "invisible") {
                online += 1;
            }
        }
        let dir = state.directory();
        let connected: usize = state.ip_conns.iter().map(|e| *e.value()).sum();
        Ok::<_, crate::error::Error>(json!({
            "server": {"name": server["name"], "icon": server["icon"], "banner": server["banner"], "owner": server["owner"]},
            "stats": {
                "total_users": state.store.user_count().await?,
                "connected_users": connected,
                "online_users": online,
                "total_channels": dir.channels.len(),
                "total_roles": dir.roles.len(),
            }
        }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /healthz`: the process is serving.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: the database answers and the server is not draining.
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
