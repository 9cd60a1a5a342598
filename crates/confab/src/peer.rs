//! Who is on the other end of a request, as the HTTP routes and the WebSocket upgrade both need to
//! know: the client address behind trusted proxies (PROTOCOL §1.1), the origin policy (§8.2), and
//! the per-address connection count (§8.1).

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

use crate::{domain::net, state::AppState};

/// Whether `ip` is a trusted proxy.
pub fn trusted(state: &AppState, ip: IpAddr) -> bool {
    net::any_contains(&state.config.security.trusted_proxies, ip)
}

/// The client IP: the peer, or the forwarded address when the peer is a trusted proxy (PROTOCOL §1.1).
pub fn client_ip(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !trusted(state, peer) {
        return peer;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = match text("cf-connecting-ip") {
        Some(cf) => cf.trim().parse().ok(),
        None => text("x-forwarded-for")
            .and_then(|chain| net::forwarded_client(chain, &state.config.security.trusted_proxies)),
    };
    forwarded.unwrap_or(peer)
}

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
    ip: IpAddr,
}

impl IpSlot {
    /// Takes a slot for `ip`, or `None` when it is at `security.max_connections_per_ip`.
    pub fn take(state: &AppState, ip: IpAddr) -> Option<IpSlot> {
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
