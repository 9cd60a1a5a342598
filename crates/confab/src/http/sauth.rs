//! `GET /sauth/<id>` (PROTOCOL §3.8): shows a pending SAUTH2 login's web token exactly once.
//!
//! Later requests, expired and unknown ids look the same (410). The id is never logged, and the
//! page sets no-store, no-referrer and a CSP that allows nothing but inline style.

use axum::{
    Json,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Peer, client_ip};
use crate::{domain::throttle::whole_seconds, state::AppState};

const GONE: &str = "This login link has already been used or has expired";

fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.trim_start().starts_with("text/html")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}\
         code{{display:block;word-break:break-all;padding:1em;background:#eee;font-size:1.1em}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    )
}

fn private(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

/// `GET /sauth/<id>`.
pub async fn show(
    State(state): State<AppState>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ip = client_ip(&state, peer.ip(), &headers);
    if let Err(wait) = state.throttle.check_ip(ip) {
        return super::too_many_requests(whole_seconds(wait));
    }
    let json = wants_json(&headers);
    match state.web_logins.serve(&id) {
        Some(token) if json => private(Json(json!({"token": token})).into_response()),
        Some(token) => private(
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page(
                    "Your login token",
                    &format!(
                        "<p>Paste this token into your chat client to finish logging in. \
                         It works once, on the connection that asked for it, and this page will not show it again.</p>\
                         <code>{token}</code>"
                    ),
                ),
            )
                .into_response(),
        ),
        None => {
            let _ = state.throttle.charge_ip(ip);
            let r = if json {
                (StatusCode::GONE, Json(json!({"error": GONE, "code": "invalid_web_token"}))).into_response()
            } else {
                (
                    StatusCode::GONE,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    page("Link expired", &format!("<p>{GONE}. Start the login again in your client.</p>")),
                )
                    .into_response()
            };
            private(r)
        }
    }
}
