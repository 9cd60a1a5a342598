//! The HTTP → WebSocket upgrade on `/` and `/ws` (RFC 6455 §4.2; PROTOCOL §1.1, §2.6, §8.1, §8.2).
//!
//! The request is checked and answered here rather than by axum's extractor, so that the socket is
//! built on Confab's own write buffer (`socket`).

use std::{collections::HashMap, net::SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use hyper::upgrade::OnUpgrade;
use serde_json::json;

use crate::{
    peer::{IpSlot, client_ip, origin_allowed, trusted},
    state::AppState,
};

/// A valid WebSocket upgrade request (RFC 6455 §4.2.1) on an HTTP/1.1 connection.
pub struct WsRequest {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// The request is not a WebSocket upgrade; the route serves it as a plain request.
pub struct NotUpgrade;

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, "Not a WebSocket upgrade request").into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WsRequest {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotUpgrade> {
        let headers = &parts.headers;
        let has_token = |name, token: &str| {
            headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
        };
        let upgrade = parts.method == Method::GET
            && has_token(header::CONNECTION, "upgrade")
            && has_token(header::UPGRADE, "websocket")
            && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        let key = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| upgrade).cloned().ok_or(NotUpgrade)?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(NotUpgrade)?;
        Ok(WsRequest { key, on_upgrade })
    }
}

/// Handles `GET /ws`: upgrades WebSocket requests, describes the server otherwise. (`GET /` upgrades
/// the same way but serves the web app to a plain request: `http::web::root`.)
pub async fn handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WsRequest, NotUpgrade>,
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
    ws: WsRequest,
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
    let accept = tungstenite::handshake::derive_accept_key(ws.key.as_bytes());
    tokio::spawn(async move {
        // The client went away before the switch completed: nothing to serve.
        let Ok(upgraded) = ws.on_upgrade.await else { return };
        let socket = super::socket::open(upgraded, frame_max).await;
        super::session::run(state, socket, ip, slot, origin_ok, token).await;
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade"),
            (header::UPGRADE, "websocket"),
            (header::SEC_WEBSOCKET_ACCEPT, accept.as_str()),
        ],
    )
        .into_response()
}
