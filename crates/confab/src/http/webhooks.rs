//! `POST /webhooks?token=…` (PROTOCOL §3.5): a webhook's token admits one message into its
//! channel, as plain JSON or as a GitHub event.
//!
//! The checks run in the protocol's order, and the token is checked before the body is read, so
//! nobody without a token can make the server buffer 10 MiB. A wrong token costs the caller's IP
//! an `auth` token like any failed login. Each webhook has its own `messages` bucket.

use axum::{
    body::Body,
    extract::{ConnectInfo, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use confab_proto::ErrorCode;
use serde_json::{Map, Value};

use super::{Peer, bearer, body, client_ip, http_error, json_error, too_many_requests};
use crate::{
    auth::tokens::hash_token,
    commands::webhooks::{self, Post},
    domain::{embeds, github, throttle::whole_seconds},
    error::Error,
    state::AppState,
};

/// Body limit of this route.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The first non-empty of `content`, `text` and `message`.
fn plain_content(map: &Map<String, Value>) -> Option<&str> {
    ["content", "text", "message"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
}

/// `POST /webhooks` and `POST /webhooks/<anything>` → 204 once the message is committed and sent.
pub async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): Peer,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let ip = client_ip(&state, peer.ip(), &headers);
    let token = body::query_param(query.as_deref(), "token")
        .filter(|t| !t.is_empty())
        .or_else(|| bearer(&headers).filter(|t| !t.is_empty()).map(str::to_owned));
    let Some(token) = token else {
        return json_error(StatusCode::UNAUTHORIZED, "Webhook token required", "unauthenticated");
    };
    if let Err(e) = state.auth_gate(ip) {
        return http_error(e);
    }
    let hook = match state.store.webhook_by_token(&hash_token(&token)).await {
        Ok(Some(hook)) => hook,
        Ok(None) => {
            let e = state.auth_failed(ip, "webhook", Error::new(ErrorCode::InvalidToken, "Invalid webhook token"));
            return e.into_response();
        }
        Err(e) => return e.into_response(),
    };
    let map = match body::json_object_within(&headers, raw, BODY_LIMIT, "Request body too large (max 10MB)").await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let text_channel = state.directory().channels.iter().any(|c| c.row.id == hook.channel_id && c.row.kind == "text");
    if !text_channel {
        return Error::not_found("Channel not found").into_response();
    }

    let max = state.config.limits.post_content;
    let github_event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).filter(|_| github::applies(&map));
    let content = match github_event {
        Some(event) => github::format(event, &map, max),
        None => plain_content(&map).unwrap_or("").to_owned(),
    };
    let embeds_field = map.get("embeds").filter(|e| !e.is_null());
    let has_embeds = embeds_field.is_some_and(|e| e.as_array().is_none_or(|list| !list.is_empty()));
    if content.is_empty() && !has_embeds {
        return json_error(StatusCode::BAD_REQUEST, "No content provided", "bad_request");
    }
    let embeds = match embeds::validate(embeds_field) {
        Ok(e) => e,
        Err(text) => return json_error(StatusCode::BAD_REQUEST, &text, "bad_request"),
    };
    if content.chars().count() > max {
        let text = format!("Message too long. Maximum length is {max} characters");
        return json_error(StatusCode::BAD_REQUEST, &text, "too_long");
    }
    let name = match map.get("username").and_then(Value::as_str).filter(|n| !n.trim().is_empty()) {
        None => hook.name.clone(),
        Some(n) => match webhooks::check_name(Some(n), "Webhook name is required") {
            Ok(n) => n,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.text(), "bad_request"),
        },
    };
    let avatar = match map.get("avatar_url").and_then(Value::as_str).filter(|a| !a.is_empty()) {
        None => hook.avatar.clone(),
        Some(url) => match webhooks::check_avatar(url) {
            Ok(()) => Some(url.to_owned()),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.text(), "bad_request"),
        },
    };
    // Checked last, like `message_new`: a refused post costs nothing.
    if let Err(refusal) = state.limiter.take(&format!("webhook:{}", hook.id), "messages", 1.0) {
        state.metrics.inc("confab_rate_limited_total", "class=\"messages\"".into());
        return too_many_requests(whole_seconds(refusal.wait));
    }
    match webhooks::post(&state, &hook, Post { content, embeds, name, avatar }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
