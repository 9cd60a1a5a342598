//! Rotur validator logins (PROTOCOL §2.4) against a fake validator service the test runs itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};

/// How the fake service answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Down,
    Slow,
    Garbage,
}

pub(crate) struct Fake {
    mode: Mode,
    /// Rotur id → username.
    users: HashMap<String, String>,
    calls: usize,
}

type Shared = Arc<Mutex<Fake>>;

/// The validator the fake accepts for account `id` and connection key `key`.
pub(crate) fn validator(id: &str, key: &str) -> String {
    let digest = confab::auth::tokens::hash_token(&format!("fake-rotur-secret:{key}"));
    format!("{id},{digest}")
}

async fn validate(State(fake): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (mode, answer) = {
        let mut f = fake.lock().unwrap();
        f.calls += 1;
        let key = q.get("key").cloned().unwrap_or_default();
        let v = q.get("v").cloned().unwrap_or_default();
        let id = v.split(',').next().unwrap_or("").to_owned();
        let answer = match f.users.get(&id) {
            Some(name) if v == validator(&id, &key) => json!({"valid": true, "username": name, "id": id}),
            _ => json!({"valid": false}),
        };
        (f.mode, answer)
    };
    match mode {
        Mode::Normal => Json(answer).into_response(),
        Mode::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(answer).into_response()
        }
        Mode::Garbage => "certainly not json".into_response(),
    }
}

pub(crate) async fn fake_rotur(users: &[(&str, &str)]) -> (String, Shared) {
    let fake = Arc::new(Mutex::new(Fake {
        mode: Mode::Normal,
        users: users.iter().map(|(id, n)| ((*id).to_owned(), (*n).to_owned())).collect(),
        calls: 0,
    }));
    let app = Router::new().route("/validate", get(validate)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake)
}

async fn server(mode: confab::config::AuthMode, rotur_url: &str) -> TestServer {
    let url = rotur_url.to_owned();
    TestServer::spawn_with(Backend::Sqlite, move |cfg| {
        cfg.auth_mode = mode;
        cfg.rotur.base_url = url;
        cfg.rotur.timeout_s = 1;
    })
    .await
}

fn key(c: &Client) -> String {
    c.handshake["val"]["validator_key"].as_str().unwrap().to_owned()
}

async fn rotur_auth(c: &mut Client, v: &str) -> Value {
    c.request(json!({"cmd": "auth", "validator": v})).await
}

#[tokio::test]
async fn rotur_login_creates_then_reuses_the_account() {
    let (url, fake) = fake_rotur(&[("r-1", "Bob")]).await;
    let server = server(confab::config::AuthMode::Rotur, &url).await;
    let mut watcher_conn = server.connect().await;
    let caps = watcher_conn.handshake["val"]["capabilities"].as_array().unwrap().clone();
    assert_eq!(watcher_conn.handshake["val"]["auth_mode"], "rotur");
    assert!(!caps.contains(&json!("login")) && !caps.contains(&json!("register")));

    let mut bob = server.connect().await;
    let v = validator("r-1", &key(&bob));
    bob.send(json!({"cmd": "auth", "validator": v, "listener": "a"})).await;
    assert_eq!(bob.recv().await["cmd"], "auth_success");
    let ready = bob.recv().await;
    assert_eq!(ready["user"]["username"], "Bob");
    assert_eq!(ready["user"]["cracked"], false);
    assert_eq!(bob.recv_cmd("user_join").await["user"]["username"], "Bob");

    // Local logins are refused in rotur mode.
    let r = watcher_conn.request(json!({"cmd": "login", "username": "x", "password": "12345678"})).await;
    assert_eq!(r["code"], "local_auth_disabled");

    // A second login is the same account and announces no join.
    let mut again = server.connect().await;
    let v = validator("r-1", &key(&again));
    again.send(json!({"cmd": "auth", "validator": v})).await;
    let ready2 = again.expect_auth().await;
    assert_eq!(ready2["user"]["id"], ready["user"]["id"]);
    assert_eq!(fake.lock().unwrap().calls, 2);
    server.stop().await;
}

#[tokio::test]
async fn relayed_or_reused_keys_fail() {
    let (url, fake) = fake_rotur(&[("r-1", "Bob")]).await;
    let server = server(confab::config::AuthMode::Rotur, &url).await;
    let other = server.connect().await;
    let mut bob = server.connect().await;
    // A validator made for another connection's key.
    let relayed = validator("r-1", &key(&other));
    let r = rotur_auth(&mut bob, &relayed).await;
    assert_eq!(
        r,
        json!({"cmd": "auth_error", "val": "Invalid authentication", "code": "invalid_validator", "listener": r["listener"]})
    );
    // The key was consumed by that answer: even the right validator fails now.
    let right = validator("r-1", &key(&bob));
    assert_eq!(rotur_auth(&mut bob, &right).await["code"], "invalid_validator");
    // Malformed validators are refused without asking Rotur.
    let calls = fake.lock().unwrap().calls;
    let mut fresh = server.connect().await;
    assert_eq!(rotur_auth(&mut fresh, "no-comma-here").await["val"], "Invalid authentication");
    assert_eq!(rotur_auth(&mut fresh, &format!("a,{}", "x".repeat(300))).await["val"], "Invalid authentication");
    assert_eq!(fake.lock().unwrap().calls, calls);
    // The fresh connection's own key still works.
    let v = validator("r-1", &key(&fresh));
    fresh.send(json!({"cmd": "auth", "validator": v})).await;
    fresh.expect_auth().await;
    server.stop().await;
}

#[tokio::test]
async fn service_down_slow_or_garbled() {
    let (url, fake) = fake_rotur(&[("r-1", "Bob"), ("r-2", "Carol")]).await;
    let server = server(confab::config::AuthMode::Mixed, &url).await;
    let mut alice = server.register("alice").await;

    fake.lock().unwrap().mode = Mode::Down;
    let mut bob = server.connect().await;
    let v = validator("r-1", &key(&bob));
    let r = rotur_auth(&mut bob, &v).await;
    assert_eq!(r["val"], "Authentication service unavailable");
    assert_eq!(r["code"], "auth_unavailable");
    // Unavailable does not consume the key: the same connection succeeds once Rotur is back.
    fake.lock().unwrap().mode = Mode::Normal;
    bob.send(json!({"cmd": "auth", "validator": v})).await;
    bob.expect_auth().await;

    fake.lock().unwrap().mode = Mode::Garbage;
    let mut carol = server.connect().await;
    let v = validator("r-2", &key(&carol));
    let r = rotur_auth(&mut carol, &v).await;
    assert_eq!(r["code"], "invalid_validator");

    // A slow service delays only its own connection.
    fake.lock().unwrap().mode = Mode::Slow;
    let mut slow = server.connect().await;
    slow.send(json!({"cmd": "auth", "validator": validator("r-2", &key(&slow)), "listener": "slow"})).await;
    for i in 0..5 {
        let echo = alice.request(json!({"cmd": "message_new", "channel": "general", "content": format!("m{i}")})).await;
        assert_eq!(echo["cmd"], "message_new");
    }
    let r = slow.recv_cmd("auth_error").await;
    assert_eq!(r["code"], "auth_unavailable");
    assert_eq!(r["listener"], "slow");
    server.stop().await;
}

#[tokio::test]
async fn rotur_names_follow_the_service_and_collide_with_local_names() {
    let (url, fake) = fake_rotur(&[("r-1", "Bob"), ("r-9", "alice")]).await;
    let server = server(confab::config::AuthMode::Mixed, &url).await;
    let mut alice = server.register("alice").await;
    assert_eq!(server.connect().await.handshake["val"]["auth_mode"], "cracked");

    // A Rotur account whose name is a local account's is refused.
    let mut clash = server.connect().await;
    let v = validator("r-9", &key(&clash));
    let r = rotur_auth(&mut clash, &v).await;
    assert_eq!(r["val"], "Username already taken");
    assert_eq!(r["code"], "username_taken");

    let mut bob = server.connect().await;
    bob.send(json!({"cmd": "auth", "validator": validator("r-1", &key(&bob))})).await;
    bob.expect_auth().await;
    drop(bob);
    // Registering Bob's name locally is refused too.
    let mut local = server.connect().await;
    let r = local.request(json!({"cmd": "register", "username": "bob", "password": "correct horse"})).await;
    assert_eq!(r["val"], "Username already taken");
    // Local logins to the Rotur account are refused.
    let r = local.request(json!({"cmd": "login", "username": "Bob", "password": "correct horse"})).await;
    assert_eq!(r["val"], "This account uses Rotur authentication");

    // Rotur now calls the account "Robert": the stored name follows and everyone hears of it.
    fake.lock().unwrap().users.insert("r-1".into(), "Robert".into());
    let mut bob = server.connect().await;
    bob.send(json!({"cmd": "auth", "validator": validator("r-1", &key(&bob))})).await;
    assert_eq!(bob.expect_auth().await["user"]["username"], "Robert");
    let updated = alice.recv_cmd("user_updated").await;
    assert_eq!(updated["username"], "Robert");
    assert_eq!(updated["old_username"], "Bob");
    server.stop().await;
}

/// A Rotur rename is a new name like any other: it cannot take the reserved system username
/// (in any case), and the refused login changes nothing.
async fn rotur_rename_cannot_take_the_system_name(backend: Backend) {
    let (url, fake) = fake_rotur(&[("r-1", "Bob")]).await;
    let server = TestServer::spawn_with(backend, move |cfg| {
        cfg.auth_mode = confab::config::AuthMode::Rotur;
        cfg.rotur.base_url = url;
    })
    .await;
    let mut bob = server.connect().await;
    bob.send(json!({"cmd": "auth", "validator": validator("r-1", &key(&bob))})).await;
    bob.expect_auth().await;
    drop(bob);

    fake.lock().unwrap().users.insert("r-1".into(), "ORIGINCHATS".into());
    let mut again = server.connect().await;
    let v = validator("r-1", &key(&again));
    let r = rotur_auth(&mut again, &v).await;
    assert_eq!((r["cmd"].as_str(), r["code"].as_str()), (Some("auth_error"), Some("username_taken")), "{r}");
    assert_eq!(r["val"], "Username already taken");
    assert!(server.store.user_by_name("originChats").await.unwrap().is_none());
    assert!(server.store.user_by_name("Bob").await.unwrap().is_some());

    fake.lock().unwrap().users.insert("r-1".into(), "Robert".into());
    let mut renamed = server.connect().await;
    renamed.send(json!({"cmd": "auth", "validator": validator("r-1", &key(&renamed))})).await;
    assert_eq!(renamed.expect_auth().await["user"]["username"], "Robert");
    server.stop().await;
}

on_both! { rotur_rename_cannot_take_the_system_name => rotur_rename_cannot_take_the_system_name_sqlite, rotur_rename_cannot_take_the_system_name_postgres; }

#[tokio::test]
async fn local_mode_refuses_validators() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "auth", "validator": "1,abc"})).await;
    assert_eq!(r["val"], "Rotur authentication is disabled. Use login or register commands.");
    assert_eq!(r["code"], "rotur_disabled");
    server.stop().await;
}
