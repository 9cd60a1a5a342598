//! `POST /attachments/upload` and `GET /attachments/<id>` (PROTOCOL §3.6).
//!
//! An upload is checked in the protocol's order: switched on, body, credentials, fields, file
//! data, type (declared and sniffed), size, channel and permissions, rate; then images are
//! prepared ([`crate::attachments::images`]) and only then is anything written. Downloads are served so that no stored file can run script on this origin: the stored
//! type with `nosniff`, `inline` only for sniffed image, video and audio formats, and a sandboxing
//! CSP on every file.

use axum::{
    body::Body,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::{Peer, bearer, body, client_ip, json_error, too_many_requests};
use crate::{
    attachments::{self, images, sniff},
    auth::rotur::Verdict,
    state::AppState,
    store::{
        attachments::AttachmentRow,
        users::{AccountKind, User},
    },
};

fn disabled() -> Response {
    json_error(StatusCode::SERVICE_UNAVAILABLE, "Attachments are disabled", "disabled")
}

fn unauthorized(text: &str) -> Response {
    json_error(StatusCode::UNAUTHORIZED, text, "unauthenticated")
}

fn bad_request(text: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, text, "bad_request")
}

/// `POST /attachments/upload` → 201 `{attachment, permanent}`.
pub async fn upload(State(state): State<AppState>, ConnectInfo(peer): Peer, headers: HeaderMap, raw: Body) -> Response {
    let cfg = &state.config.attachments;
    if !cfg.enabled {
        return disabled();
    }
    let Ok(_slot) = state.attachments.slots.acquire().await else { return disabled() };
    let limit = usize::try_from(cfg.max_size).unwrap_or(usize::MAX).saturating_mul(4) / 3 + body::LIMIT;
    let too_large = format!("Request body too large (max {limit} bytes)");
    let map = match body::json_object_within(&headers, raw, limit, &too_large).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ip = client_ip(&state, peer.ip(), &headers);
    let user = match uploader(&state, ip, &headers, &map).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let field = |k: &str| map.get(k).and_then(Value::as_str).filter(|v| !v.trim().is_empty());
    let (Some(file), Some(name), Some(mime), Some(channel)) =
        (field("file"), field("name"), field("mime_type"), field("channel"))
    else {
        return bad_request("Missing required fields: file, name, mime_type, channel");
    };
    let Some(name) = attachments::clean_name(name) else { return bad_request("Invalid file name") };
    let encoded = match file.split_once(',') {
        Some((head, data)) if head.starts_with("data:") && head.ends_with(";base64") => data,
        Some(_) => return bad_request("Invalid file data"),
        None => file,
    };
    let bytes = match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
        Ok(b) if !b.is_empty() => b,
        _ => return bad_request("Invalid file data"),
    };
    let mime = sniff::normalize(mime);
    if !mime.contains('/') || !sniff::allowed(&mime, &cfg.allowed_types) || !sniff::matches(&mime, &bytes) {
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "File type not allowed", "bad_request");
    }
    if bytes.len() as u64 > cfg.max_size {
        let text = format!("File too large (max {} bytes)", cfg.max_size);
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, &text, "too_large");
    }
    let expires_in_days = match map.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64().filter(|d| *d > 0.0 && *d <= 365.0) {
            Some(d) => Some(d),
            None => return bad_request("expires_in_days must be a number in (0, 365]"),
        },
    };
    let dir = state.directory();
    let Some(entry) = dir.channel(channel) else {
        return json_error(StatusCode::NOT_FOUND, "Channel does not exist", "not_found");
    };
    let me = match state.identity(user, None).await {
        Ok(me) => me,
        Err(e) => return e.into_response(),
    };
    let may = |p: &str| me.actor.channel_allows(&entry.perms, p);
    let kind_ok = matches!(entry.row.kind.as_str(), "text" | "forum");
    if !kind_ok || !may("view") || !may("send") || !me.actor.has_in(&entry.perms, "attach_files") {
        return json_error(StatusCode::FORBIDDEN, "You don't have permission to send in this channel", "forbidden");
    }
    if state.limiter.enabled()
        && let Err(wait) = state.attachments.take_upload(&me.user.id, cfg.uploads_per_minute)
    {
        return too_many_requests(wait);
    }

    let kind = mime.clone();
    let stored = match tokio::task::spawn_blocking(move || images::prepare(&kind, bytes)).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(_)) => return bad_request("Invalid file data"),
        Err(e) => {
            tracing::error!("preparing an attachment: {e}");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to save attachment", "internal");
        }
    };
    let bytes = stored.bytes;
    let (width, height) = stored.dimensions.map_or((None, None), |(w, h)| (Some(w), Some(h)));
    let now = crate::store::now();
    let days = attachments::expiry_days(bytes.len() as u64, false, cfg.permanent_expiration_days);
    let days = expires_in_days.map_or(days, |d| d.min(days));
    let row = AttachmentRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: me.user.id.clone(),
        channel_id: entry.row.id.clone(),
        name,
        mime_type: mime,
        size: bytes.len() as i64,
        width: width.map(i64::from),
        height: height.map(i64::from),
        permanent: false,
        created_at: now,
        expires_at: Some(now + days * 86_400.0),
        message_id: None,
    };
    // The row first: a failed row write has stored nothing, and a file is never without the row
    // the sweeper finds it by. A failed file write takes the row back; should that fail too, the
    // row is an unused upload whose missing file the sweeper forgets after `unused_ttl_s`.
    if let Err(e) = state.store.attachment_create(&row).await {
        tracing::error!("recording an attachment: {e}");
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to save attachment", "internal");
    }
    if let Err(e) = state.attachments.storage.put(&row.id, bytes.into()).await {
        tracing::error!("storing an attachment: {e}");
        if let Err(e) = state.store.attachment_delete(&row.id).await {
            tracing::warn!("forgetting an attachment that was not stored (the sweeper will): {e}");
        }
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to save attachment", "internal");
    }
    if let Err(e) = attachments::sweeper::keep_newest(&state, &row.user_id, cfg.max_attachments_per_user).await {
        // The new upload is saved; the sweeper's next pass does not know the limit, so say so.
        tracing::warn!("removing uploads beyond the per-user limit: {e}");
    }
    let object = attachments::object(&row, &state.config.public_url);
    (StatusCode::CREATED, axum::Json(json!({"attachment": object, "permanent": row.permanent}))).into_response()
}

/// The account an upload is for, by the credential forms of PROTOCOL §3.6 in order: a bearer
/// access token; a live connection's key with its `ready.validator`; that key with a Rotur
/// validator naming the same account.
async fn uploader(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    map: &Map<String, Value>,
) -> Result<User, Response> {
    if let Some(token) = bearer(headers).filter(|t| !t.is_empty()) {
        return match state.token_login(ip, token).await {
            Ok(login) => Ok(login.user),
            Err(_) => Err(unauthorized("Invalid credentials")),
        };
    }
    let field = |k: &str| map.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let (Some(key), Some(validator)) = (field("validator_key"), field("validator")) else {
        return Err(unauthorized("validator_key and validator are required for authentication"));
    };
    let Some(held) = state.attachments.keys.get(key).map(|k| k.clone()) else {
        return Err(unauthorized("Invalid credentials"));
    };
    let user = match state.store.user_by_id(&held.user_id).await {
        Ok(Some(u)) if !u.banned => u,
        Ok(_) => return Err(unauthorized("User not found")),
        Err(e) => return Err(e.into_response()),
    };
    let session_validator: bool = subtle::ConstantTimeEq::ct_eq(validator.as_bytes(), held.validator.as_bytes()).into();
    if session_validator {
        return Ok(user);
    }
    // Only a Rotur account can prove itself with a Rotur validator; nobody else's is asked about.
    if user.kind != AccountKind::Rotur.as_str() {
        return Err(unauthorized("Invalid credentials"));
    }
    match state.rotur.validate(key, validator).await {
        Verdict::Valid { id, .. } => match state.store.user_by_external_id(&id).await {
            Ok(Some(u)) if u.id == user.id => Ok(user),
            Ok(_) => Err(unauthorized("Invalid credentials")),
            Err(e) => Err(e.into_response()),
        },
        Verdict::Invalid => Err(unauthorized("Invalid credentials")),
        Verdict::Unavailable => {
            Err(json_error(StatusCode::BAD_GATEWAY, "Failed to validate credentials", "auth_unavailable"))
        }
    }
}

/// `GET /attachments/` without an id.
pub async fn missing_id(State(state): State<AppState>) -> Response {
    if !state.config.attachments.enabled {
        return disabled();
    }
    bad_request("Attachment ID required")
}

/// `GET /attachments/<id>`: the file, or a single byte range of it (206).
pub async fn download(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !state.config.attachments.enabled {
        return disabled();
    }
    let gone = || json_error(StatusCode::NOT_FOUND, "Attachment not found or expired", "not_found");
    // Only ids this server could have made are looked up: nothing else reaches the storage.
    let Ok(id) = uuid::Uuid::parse_str(&id).map(|u| u.to_string()) else { return gone() };
    let row = match state.store.attachment(&id).await {
        Ok(Some(row)) if row.expires_at.is_none_or(|t| t > crate::store::now()) => row,
        Ok(_) => return gone(),
        Err(e) => return e.into_response(),
    };
    let total = u64::try_from(row.size).unwrap_or(0);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| byte_range(r, total));
    let (status, part, content_range) = match range {
        None | Some(Range::Ignored) => (StatusCode::OK, None, None),
        Some(Range::Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Some(Range::Part(first, last)) => {
            (StatusCode::PARTIAL_CONTENT, Some((first, last)), Some(format!("bytes {first}-{last}/{total}")))
        }
    };
    // Only the bytes asked for are read from the storage, and they stream through.
    let stream = match state.attachments.storage.get(&row.id, part).await {
        Ok(Some(stream)) => stream,
        Ok(None) => return gone(),
        Err(e) => {
            tracing::error!("reading an attachment: {e}");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to read attachment", "internal");
        }
    };
    let length = part.map_or(total, |(first, last)| last - first + 1);
    let body = Body::from_stream(stream);
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    let disposition = if sniff::inline(&row.mime_type) { "inline" } else { "attachment" };
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(h, header::CONTENT_TYPE, &row.mime_type);
    set(h, header::CONTENT_DISPOSITION, &format!("{disposition}; filename=\"{}\"", ascii_name(&row.name)));
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox");
    set(h, header::CACHE_CONTROL, "public, max-age=3600");
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::CONTENT_LENGTH, &length.to_string());
    if let Some(v) = content_range {
        set(h, header::CONTENT_RANGE, &v);
    }
    response
}

/// A name fit for a quoted header parameter (the full name is in the attachment object).
fn ascii_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect()
}

/// What a `Range` header asks of a file of `total` bytes.
#[derive(Debug, PartialEq)]
enum Range {
    /// Not a single byte range this server serves: the whole file is sent (RFC 9110 §14.2).
    Ignored,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Part(u64, u64),
}

fn byte_range(header: &str, total: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Range::Ignored };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((a, b)) = spec.split_once('-') else { return Range::Ignored };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(total.saturating_sub(1)))),
        (Ok(start), Err(_)) if b.is_empty() => Some((start, total.saturating_sub(1))),
        (Err(_), Ok(suffix)) if a.is_empty() && suffix > 0 => {
            Some((total.saturating_sub(suffix), total.saturating_sub(1)))
        }
        _ => return Range::Ignored,
    };
    match parsed {
        Some((start, end)) if start < total && start <= end => Range::Part(start, end),
        _ => Range::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::{Range, byte_range};

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-1", 10), Range::Part(0, 1));
        assert_eq!(byte_range("bytes=5-", 10), Range::Part(5, 9));
        assert_eq!(byte_range("bytes=-3", 10), Range::Part(7, 9));
        assert_eq!(byte_range("bytes=2-100", 10), Range::Part(2, 9));
        assert_eq!(byte_range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=0-1,3-4", 10), Range::Ignored);
        assert_eq!(byte_range("items=0-1", 10), Range::Ignored);
        assert_eq!(byte_range("bytes=4-2", 10), Range::Ignored);
    }
}
