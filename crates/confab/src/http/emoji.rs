//! `GET /emojis/<id>` and `GET /emojis/<id>.<ext>` (PROTOCOL §3.7): a custom emoji's image,
//! looked up by id in the database (no path is taken from the request).

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;

use crate::state::AppState;

/// The image with its stored type, `nosniff` and a day of caching; 404 `Emoji not found` (plain
/// text) for an unknown id or a wrong extension.
pub async fn show(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let (id, ext) = match file.split_once('.') {
        Some((id, ext)) => (id, Some(ext)),
        None => (file.as_str(), None),
    };
    let id = id.parse::<i64>().ok().filter(|_| id.bytes().all(|b| b.is_ascii_digit()));
    let image = match id {
        Some(id) => match state.store.emoji_image(id).await {
            Ok(image) => image,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let image = image.filter(|i| ext.is_none_or(|e| e.eq_ignore_ascii_case(&i.ext) || (e == "jpeg" && i.ext == "jpg")));
    let Some(image) = image else { return (StatusCode::NOT_FOUND, "Emoji not found").into_response() };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&image.base64) else {
        return crate::error::Error::Internal(format!("emoji {file}: stored image is not base64")).into_response();
    };
    let mime = match image.ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        _ => "image/jpeg",
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}
