//! The HTTP → WebSocket upgrade on `/` and `/ws` (PROTOCOL §1.1, §2.6, §8.1, §8.2).

use std::{collections::HashMap, net::SocketAddr};

use axum::{
    extract::{ConnectInfo, Query, State, ws::WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    peer::{IpSlot, client_ip, origin_allowed, trusted},
    state::AppState,
};

/// Handles `GET /ws`: upgrades WebSocket requests, describes the server otherwise. (`GET /` upgrades
/// the same way but serves the web app to a plain request: `http::web::root`.)
pub async fn handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Confab chat server. Connect a WebSocket client (originChats protocol) to this URL.\n",
        )
            .into_response();
    };
    upgrade(state, peer, headers, query, ws)
}

/// Accepts one upgrade request: the per-IP connection slot, the origin check and the socket limits.
pub fn upgrade(
    state: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
    query: HashMap<String, String>,
    ws: WebSocketUpgrade,
) -> Response {
    let ip = client_ip(&state, peer.ip(), &headers);
    // A direct client's connection was counted when it was accepted (`http::listener`); behind a
    // trusted proxy, the client is counted here, by its forwarded address.
    let slot = match trusted(&state, peer.ip()) {
        true => match IpSlot::take(&state, ip) {
            Some(slot) => Some(slot),
            None => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"error": "Too many connections", "code": "too_many_connections"})),
                )
                    .into_response();
            }
        },
        false => None,
    };
    let origin_ok = origin_allowed(&state, &headers);
    let token = query.get("token").cloned();
    let frame_max = state.config.security.frame_max;
    // Both buffers keep the capacity they once grew to for the life of the connection, so they
    // are most of what an idle connection costs: 4 KiB + 8 KiB made 15.9 KiB per idle connection,
    // 1 KiB + 2 KiB makes 10.5 KiB (confab-bench idle). Client frames are small, a bigger one
    // reserves its own length, and a fan-out burst still leaves in writes of about 2 KiB. The
    // write buffer is not capped: a frame larger than a cap fails to write and drops the socket,
    // and every reply the server built must reach a reader that keeps up. What waits there is
    // bounded anyway, by the outbound queue (PROTOCOL §1.6) and the sink's back-pressure.
    ws.read_buffer_size(1024)
        .write_buffer_size(2 * 1024)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(frame_max)
        .max_frame_size(frame_max)
        .on_upgrade(move |socket| super::session::run(state, socket, ip, slot, origin_ok, token))
}
