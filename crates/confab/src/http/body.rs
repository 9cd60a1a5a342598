//! Request bodies: JSON and form parsing with the exact errors of PROTOCOL §3 (415, 413, 400).

use axum::{
    body::Body,
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Map, Value};

use super::json_error;

/// Default body limit of the JSON API.
pub const LIMIT: usize = 64 * 1024;

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn bytes(body: Body) -> Result<axum::body::Bytes, Response> {
    bytes_within(body, LIMIT, &format!("Request body too large (max {LIMIT} bytes)")).await
}

/// The whole body, or 413 with `too_large` as soon as it grows past `limit` bytes.
async fn bytes_within(body: Body, limit: usize, too_large: &str) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| json_error(StatusCode::PAYLOAD_TOO_LARGE, too_large, "too_large"))
}

/// A JSON object body; non-object JSON counts as invalid.
pub async fn json_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, Response> {
    json_object_within(headers, body, LIMIT, &format!("Request body too large (max {LIMIT} bytes)")).await
}

/// Like [`json_object`], for routes with their own body limit and 413 text (webhooks, §3.5).
pub async fn json_object_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    too_large: &str,
) -> Result<Map<String, Value>, Response> {
    if !content_type(headers).starts_with("application/json") {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
            "bad_request",
        ));
    }
    let raw = bytes_within(body, limit, too_large).await?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(json_error(StatusCode::BAD_REQUEST, "Invalid JSON body", "bad_request")),
    }
}

/// Like [`json_object`], but an empty body with no Content-Type is an empty object (for logout).
pub async fn optional_json_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, Response> {
    if content_type(headers).is_empty() {
        let raw = bytes(body).await?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
            "bad_request",
        ));
    }
    json_object(headers, body).await
}

/// An `application/x-www-form-urlencoded` body as key/value pairs (first value wins).
pub async fn form(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, Response> {
    if !content_type(headers).starts_with("application/x-www-form-urlencoded") {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-www-form-urlencoded",
            "bad_request",
        ));
    }
    let raw = bytes(body).await?;
    Ok(pairs(&String::from_utf8_lossy(&raw)))
}

/// `key=value&…` (a form body or a query string) as decoded pairs, in order.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The first value of `key` in a raw query string.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    pairs(query?).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Decodes `+` and `%XX` escapes; malformed escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && s.is_char_boundary(i + 1) && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_form_escapes() {
        assert_eq!(percent_decode("a+b%21"), "a b!");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn query_params() {
        use super::query_param;
        assert_eq!(query_param(Some("a=1&token=x%2By&token=z"), "token").as_deref(), Some("x+y"));
        assert_eq!(query_param(Some("a=1"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
    }
}
