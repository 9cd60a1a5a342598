//! The Rotur validator service (PROTOCOL §2.4): asks `GET <base>/validate?key=K&v=V` whether a
//! validator proves an identity for this connection's key.
//!
//! The call is asynchronous with a timeout, so one slow validation delays only its own connection.
//! The answer is classified strictly: only a 200 with `"valid": true` and a non-empty `id` is a yes;
//! a timeout, a network failure or a 5xx means the service is unavailable; anything else is a no.

use std::time::Duration;

use serde_json::Value;

/// What Rotur said about a validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid validator for this key: the Rotur account id and its current username.
    Valid { id: String, username: String },
    /// Rotur answered, and the answer is not a yes.
    Invalid,
    /// Rotur could not be asked (timeout, network, 5xx): the key is not consumed.
    Unavailable,
}

/// Client for one Rotur service.
#[derive(Clone)]
pub struct Rotur {
    http: reqwest::Client,
    base_url: String,
}

impl Rotur {
    /// A client for `base_url` whose calls give up after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Rotur {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Rotur { http, base_url: base_url.to_owned() }
    }

    /// Validates `validator` against `key`.
    pub async fn validate(&self, key: &str, validator: &str) -> Verdict {
        let url = format!("{}/validate", self.base_url);
        let response = match self.http.get(&url).query(&[("key", key), ("v", validator)]).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %without_url(&e), "rotur validation failed");
                return Verdict::Unavailable;
            }
        };
        let status = response.status();
        if status.is_server_error() {
            return Verdict::Unavailable;
        }
        if !status.is_success() || status.as_u16() != 200 {
            return Verdict::Invalid;
        }
        let Ok(body) = response.json::<Value>().await else { return Verdict::Invalid };
        let id = match body.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        if body.get("valid") != Some(&Value::Bool(true)) || id.is_empty() {
            return Verdict::Invalid;
        }
        let username = body.get("username").and_then(Value::as_str).unwrap_or("").trim().to_owned();
        Verdict::Valid { id, username }
    }
}

/// An HTTP error without its URL, which carries the validator and key (PROTOCOL §8.7).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    kind.to_owned()
}
