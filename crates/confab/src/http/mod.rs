//! HTTP routes on the WebSocket listener (PROTOCOL §3): account and token endpoints, `/info`,
//! health and metrics, CORS, and the JSON error shape shared by every route.

mod account;
mod attachments;
mod auth;
mod body;
mod dev;
pub mod emoji;
mod info;
pub mod listener;
mod sauth;
mod web;
mod webhooks;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use confab_proto::ErrorCode;
use serde_json::json;

pub use crate::peer::client_ip;
use crate::{domain::net, error::Error, gateway, peer, state::AppState};

/// The full router: WebSocket upgrade on `/` and `/ws`, the web app on `/` and `/static/`, and
/// the HTTP API.
pub fn router(state: AppState) -> Router {
    let site = Arc::new(web::Site::new());
    let app_files = Router::new()
        .route("/static/{*path}", get(web::asset))
        .route("/invite/{code}", get(web::app_page))
        .with_state(site.clone());
    Router::new()
        .route(
            "/",
            get(move |State(state): State<AppState>, ConnectInfo(peer): Peer, headers, Query(query), ws| {
                web::root(site, state, peer, headers, query, ws)
            }),
        )
        .route("/ws", get(gateway::upgrade::handler))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/setup", post(auth::setup))
        .route("/token", post(auth::token))
        .route("/info", get(info::info))
        .route("/emojis/{file}", get(emoji::show))
        .route("/healthz", get(info::healthz))
        .route("/readyz", get(info::readyz))
        .route("/metrics", get(info::metrics))
        .route("/sauth/{id}", get(sauth::show))
        .route("/auth/password", post(account::password))
        .route("/attachments/upload", post(attachments::upload))
        .route("/attachments/{id}", get(attachments::download))
        .route("/attachments/", get(attachments::missing_id))
        .route("/webhooks", post(webhooks::post))
        .route("/webhooks/", post(webhooks::post))
        .route("/webhooks/{*rest}", post(webhooks::post))
        .merge(dev::routes(state.config.dev))
        .merge(app_files)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(state.clone(), known_host))
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
    let path = request.uri().path();
    let public = PUBLIC_ROUTES.contains(&path) || (path.starts_with("/attachments/") && path != "/attachments/upload");
    let allowed = peer::origin_allowed(&state, request.headers());
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

/// Refuses a request whose `Host` is not one this server answers to (PROTOCOL §8.1): a page on
/// another name that resolves to this server (DNS rebinding) must not reach it. Allowed: the
/// host of `public_url`, loopback names and addresses, and `allowed_hosts`.
async fn known_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(net::host_name);
    let known = host.is_some_and(|host| {
        ["localhost", "127.0.0.1", "[::1]"].contains(&host.as_str())
            || host
                == net::host_name(peer::origin_of(&state.config.public_url).split_once("://").map_or("", |(_, a)| a))
            || state.config.allowed_hosts.iter().any(|allowed| net::host_name(allowed) == host)
    });
    if known {
        next.run(request).await
    } else {
        (StatusCode::MISDIRECTED_REQUEST, Json(json!({"error": "Unknown host"}))).into_response()
    }
}

/// The peer address type the router is served with.
pub type Peer = axum::extract::ConnectInfo<SocketAddr>;

/// Maps an error to its HTTP form; auth rate limits become 429 with `Retry-After`.
pub(crate) fn http_error(e: Error) -> Response {
    if e.code() == ErrorCode::AuthRateLimited {
        let secs: String = e.text().chars().filter(char::is_ascii_digit).collect();
        return too_many_requests(secs.parse().unwrap_or(1));
    }
    e.into_response()
}
