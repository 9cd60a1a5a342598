//! HTTP routes on the WebSocket listener (PROTOCOL §3): account and token endpoints, `/info`,
//! health and metrics, CORS, and the JSON error shape shared by every route.

mod account;
mod auth;
mod body;
mod dev;
pub mod emoji;
mod info;
mod sauth;
mod webhooks;

use std::net::{IpAddr, SocketAddr};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use crate::{error::Error, gateway, state::AppState};

/// The full router: WebSocket upgrade on `/` and `/ws`, and the HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(gateway::upgrade::handler))
        .route("/ws", get(gateway::upgrade::handler))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/token", post(auth::token))
        .route("/info", get(info::info))
        .route("/emojis/{file}", get(emoji::show))
        .route("/healthz", get(info::healthz))
        .route("/readyz", get(info::readyz))
        .route("/metrics", get(info::metrics))
        .route("/sauth/{id}", get(sauth::show))
        .route("/auth/password", post(account::password))
        .route("/webhooks", post(webhooks::post))
        .route("/webhooks/", post(webhooks::post))
        .route("/webhooks/{*rest}", post(webhooks::post))
        .merge(dev::routes(state.config.dev))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(detail) = &self {
            tracing::error!("http: {detail}");
        }
        (self.status(), Json(json!({"error": self.text(), "code": self.code().as_str()}))).into_response()
    }
}

/// A JSON error with an explicit status, for texts that differ from the WebSocket ones.
pub fn json_error(status: StatusCode, text: &str, code: &str) -> Response {
    (status, Json(json!({"error": text, "code": code}))).into_response()
}

pub(crate) async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "Not found", "not_found")
}

async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "bad_request")
}

/// Routes whose responses any origin may read.
const PUBLIC_ROUTES: [&str; 1] = ["/info"];

/// CORS (PROTOCOL §3): `OPTIONS` → 204; `*` on public routes; the Origin reflected when allowed.
async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let public = PUBLIC_ROUTES.contains(&request.uri().path());
    let allowed = gateway::upgrade::origin_allowed(&state, request.headers());
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    if public {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else if let (Some(origin), true) = (origin, allowed) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    response
}

/// 429 with `Retry-After` and the rate-limit text of PROTOCOL §3, for every limited HTTP route.
pub fn too_many_requests(secs: u64) -> Response {
    let mut r = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many requests. Try again in {secs} seconds"),
        "rate_limited",
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The client IP: the peer, or the forwarded address when the peer is a trusted proxy (PROTOCOL §1.1).
pub fn client_ip(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !gateway::upgrade::trusted(state, peer) {
        return peer;
    }
    let forwarded = headers
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()?.split(',').next()));
    forwarded.and_then(|v| v.trim().parse().ok()).unwrap_or(peer)
}

/// The peer address type the router is served with.
pub type Peer = axum::extract::ConnectInfo<SocketAddr>;
