//! The HTTP → WebSocket upgrade on `/` and `/ws` (PROTOCOL §1.1, §2.6, §8.1, §8.2).

use std::{collections::HashMap, net::SocketAddr};

use axum::{
    extract::{ConnectInfo, Query, State, ws::WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{domain::net, http::client_ip, state::AppState};

/// Whether `origin` may open a socket: absent, same host, the public URL's origin, or allowlisted.
pub fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let allowed = &state.config.allowed_origins;
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/') == origin) {
        return true;
    }
    if origin == origin_of(&state.config.public_url) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> &str {
    match url.find("://") {
        Some(i) => match url[i + 3..].find('/') {
            Some(j) => &url[..i + 3 + j],
            None => url,
        },
        None => url,
    }
}

/// Counts one open connection from an IP for as long as it lives.
pub struct IpSlot {
    state: AppState,
    ip: std::net::IpAddr,
}

impl IpSlot {
    /// Takes a slot for `ip`, or `None` when it is at `security.max_connections_per_ip`.
    pub fn take(state: &AppState, ip: std::net::IpAddr) -> Option<IpSlot> {
        let mut n = state.ip_conns.entry(ip).or_insert(0);
        if *n >= state.config.security.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot { state: state.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.state.ip_conns.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
        }
        self.state.ip_conns.remove_if(&self.ip, |_, n| *n == 0);
    }
}

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

/// Whether `ip` is a trusted proxy.
pub fn trusted(state: &AppState, ip: std::net::IpAddr) -> bool {
    net::any_contains(&state.config.security.trusted_proxies, ip)
}
