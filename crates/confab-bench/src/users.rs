//! The bench's accounts: registered on Confab over HTTP (`POST /auth/register`, PROTOCOL §3.1), or
//! made up for the floor server, which accepts any name and any token.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;

use crate::progress::Progress;

/// Registrations in flight at once: below Confab's hashing queue (`auth.hash_queue`, 64) so none
/// is refused as busy, and enough to keep every hashing worker fed.
const REGISTER_CONCURRENCY: usize = 16;
/// Attempts per account when the server answers busy or rate limited.
const REGISTER_ATTEMPTS: usize = 50;

/// One account and what it takes to connect as it.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    /// An access JWT for `?token=` (15 minutes on Confab; any string on the floor).
    pub token: String,
}

fn name(i: usize) -> String {
    format!("bench{i}")
}

fn password(i: usize) -> String {
    format!("bench-password-{i}")
}

/// Accounts for the floor server: no registration, the token is a placeholder it accepts blindly.
pub fn floor_users(count: usize) -> Vec<User> {
    (0..count).map(|i| User { name: name(i), password: password(i), token: format!("floor-token-{i}") }).collect()
}

#[derive(Deserialize)]
struct TokenSet {
    access_token: String,
}

/// Registers `count` accounts on the Confab at `base` (e.g. `http://127.0.0.1:5613`), concurrently.
pub async fn register(base: &str, count: usize, label: &str) -> Result<Vec<User>> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?;
    let done = Arc::new(AtomicU64::new(0));
    let shown = done.clone();
    let _progress = Progress::start(label.to_owned(), move || {
        format!("registered {}/{count} accounts", shown.load(Ordering::Relaxed))
    });
    stream::iter(0..count)
        .map(|i| {
            let (http, done) = (&http, done.clone());
            async move {
                let user = register_one(http, base, i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(user)
            }
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await
}

async fn register_one(http: &reqwest::Client, base: &str, i: usize) -> Result<User> {
    let (name, password) = (name(i), password(i));
    let body = serde_json::json!({"username": name, "password": password});
    for _ in 0..REGISTER_ATTEMPTS {
        let response =
            http.post(format!("{base}/auth/register")).json(&body).send().await.context("POST /auth/register")?;
        let status = response.status();
        if status.as_u16() == 503 || status.as_u16() == 429 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("registering {name}: HTTP {status}: {text}");
        }
        let set: TokenSet = response.json().await.context("register response")?;
        return Ok(User { name, password, token: set.access_token });
    }
    bail!("registering {name}: server stayed busy")
}
