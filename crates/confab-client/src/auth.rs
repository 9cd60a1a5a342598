//! Credentials and the token set (PROTOCOL §3.1): `POST /auth/login`, `POST /auth/refresh`, and when
//! to refresh.
//!
//! Refresh tokens rotate: each refresh spends the presented token, and presenting a spent one revokes
//! the whole family. So a client refreshes from one place (the session) and hands every new set to
//! its owner ([`crate::Event::Tokens`]) to store, never reusing an old one.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::{ClientError, Server};

/// What a session logs in with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Username and password, exchanged for a token set at `POST /auth/login`.
    Password { username: String, password: String },
    /// A stored token: an access token (a JWT, which has dots) is used as it is until it expires;
    /// a refresh token is exchanged at `POST /auth/refresh`.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, .. } => write!(f, "Password({username}, …)"),
            Credentials::Token(_) => write!(f, "Token(…)"),
        }
    }
}

/// A usable access token, and the refresh token that renews it when there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The account name, when the server said it (the token set does; a bare JWT does not).
    pub username: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// When the access token stops working (`None`: unknown, never refreshed early).
    pub expires_at: Option<Instant>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({:?}, refreshable: {})", self.username, self.refresh_token.is_some())
    }
}

impl Tokens {
    /// Reads a token set answer (`{"user":{"username"},"access_token","expires_in","refresh_token"}`).
    pub fn from_set(set: &Value, now: Instant) -> Result<Tokens, ClientError> {
        let access_token = set["access_token"]
            .as_str()
            .ok_or_else(|| ClientError::Invalid(format!("token set without access_token: {set}")))?
            .to_owned();
        Ok(Tokens {
            username: set["user"]["username"].as_str().map(str::to_owned),
            access_token,
            refresh_token: set["refresh_token"].as_str().map(str::to_owned),
            expires_at: set["expires_in"].as_u64().map(|s| now + Duration::from_secs(s)),
        })
    }

    /// A bare access token; its expiry is read from the JWT's `exp` claim (not verified: the server
    /// does that), so the session knows when it can no longer reconnect with it.
    pub fn from_access(token: &str, now: Instant, unix_now: u64) -> Tokens {
        let expires_at = jwt_exp(token).map(|exp| now + Duration::from_secs(exp.saturating_sub(unix_now)));
        Tokens { username: None, access_token: token.to_owned(), refresh_token: None, expires_at }
    }

    /// When to renew: at four fifths of the access token's remaining life, so a reconnect never
    /// presents an expired token. `None` when it cannot be renewed or its expiry is unknown.
    pub fn refresh_at(&self, obtained: Instant) -> Option<Instant> {
        let expires = self.expires_at?;
        self.refresh_token.as_ref()?;
        Some(obtained + expires.saturating_duration_since(obtained) * 4 / 5)
    }

    /// Whether the access token is expired, or will be within `margin`.
    pub fn expired(&self, now: Instant, margin: Duration) -> bool {
        self.expires_at.is_some_and(|at| now + margin >= at)
    }
}

/// The `exp` claim of a JWT, without verifying it.
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

/// Whether a stored token is an access token (a JWT) rather than a refresh token.
pub fn is_access_token(token: &str) -> bool {
    token.split('.').count() == 3
}

/// `POST /auth/login`.
pub async fn login(
    http: &reqwest::Client,
    server: &Server,
    username: &str,
    password: &str,
) -> Result<Tokens, ClientError> {
    post(http, server, "/auth/login", json!({"username": username, "password": password})).await
}

/// `POST /auth/refresh`: the presented refresh token is spent, the answer holds the next one.
pub async fn refresh(http: &reqwest::Client, server: &Server, refresh_token: &str) -> Result<Tokens, ClientError> {
    post(http, server, "/auth/refresh", json!({"refresh_token": refresh_token})).await
}

/// `POST /auth/logout`: revokes the refresh token's family (answered 204 also for unknown tokens).
pub async fn logout(http: &reqwest::Client, server: &Server, refresh_token: &str) -> Result<(), ClientError> {
    let url = format!("{}/auth/logout", server.http);
    let response = http.post(&url).json(&json!({"refresh_token": refresh_token})).send().await;
    let response = response.map_err(|e| unreachable(&server.http, &e))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(());
    }
    Err(http_refusal(status, &response.json().await.unwrap_or(Value::Null)))
}

async fn post(http: &reqwest::Client, server: &Server, path: &str, body: Value) -> Result<Tokens, ClientError> {
    let url = format!("{}{path}", server.http);
    let response = http.post(&url).json(&body).send().await.map_err(|e| unreachable(&server.http, &e))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status == 200 || status == 201 {
        return Tokens::from_set(&body, Instant::now());
    }
    Err(http_refusal(status, &body))
}

/// Sorts an HTTP error answer: 401 and 403 are about the credentials, the rest are refusals.
pub fn http_refusal(status: u16, body: &Value) -> ClientError {
    let text = body["error"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
    let code = body["code"].as_str().unwrap_or("unknown").to_owned();
    match status {
        401 | 403 => ClientError::Credentials(text),
        _ => ClientError::Refused { code, text },
    }
}

/// A transport failure with its causes (a refused certificate is two or three levels down in a
/// `reqwest` error), named without the URL's query (which may hold a token).
pub fn unreachable(base: &str, e: &(dyn std::error::Error + 'static)) -> ClientError {
    // Everything from `?token=` to the end of a message goes, the causes after it stay.
    let redacted = |text: String| match text.find("?token=") {
        Some(i) => format!("{}…", &text[..i]),
        None => text,
    };
    let mut detail = redacted(e.to_string());
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = redacted(c.to_string());
        if !detail.contains(&text) {
            detail = format!("{detail}: {text}");
        }
        cause = c.source();
    }
    ClientError::Unreachable { url: base.to_owned(), detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_set_is_read_and_refreshed_at_four_fifths() {
        let now = Instant::now();
        let set = json!({"user":{"id":"1","username":"alice"},"access_token":"a.b.c","token_type":"bearer",
                         "expires_in":900,"refresh_token":"r","refresh_expires_in":2592000});
        let t = Tokens::from_set(&set, now).unwrap();
        assert_eq!(t.username.as_deref(), Some("alice"));
        assert_eq!(t.refresh_at(now), Some(now + Duration::from_secs(720)));
        assert!(!t.expired(now, Duration::from_secs(60)));
        assert!(t.expired(now + Duration::from_secs(850), Duration::from_secs(60)));
        assert!(Tokens::from_set(&json!({"error":"x"}), now).is_err());
    }

    #[test]
    fn a_bare_access_token_expires_at_its_exp_claim_and_is_never_refreshed() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1100}"#);
        let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        assert!(is_access_token(&jwt));
        assert!(!is_access_token("opaque-refresh-token"));
        let now = Instant::now();
        let t = Tokens::from_access(&jwt, now, 1000);
        assert_eq!(t.expires_at, Some(now + Duration::from_secs(100)));
        assert_eq!(t.refresh_at(now), None);
        assert_eq!(Tokens::from_access("garbage", now, 0).expires_at, None);
    }

    #[test]
    fn http_errors_are_sorted_by_what_the_caller_does() {
        let e = http_refusal(401, &json!({"error":"Invalid username or password","code":"invalid_credentials"}));
        assert_eq!(e, ClientError::Credentials("Invalid username or password".into()));
        assert_eq!(e.exit_code(), 2);
        let e = http_refusal(429, &json!({"error":"Too many requests. Try again in 3 seconds","code":"rate_limited"}));
        assert_eq!(e.exit_code(), 3);
        let cause = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let top = std::io::Error::other(Wrapped("error sending request for url (http://h/ws?token=secret)", cause));
        let e = unreachable("http://h", &top);
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("UnknownIssuer"), "the cause is named: {e}");
        assert_eq!(e.exit_code(), 4);
        assert!(!format!("{:?}", Credentials::Token("secret".into())).contains("secret"));
    }

    /// An error with a cause, as `reqwest` reports a failed TLS handshake.
    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }
}
