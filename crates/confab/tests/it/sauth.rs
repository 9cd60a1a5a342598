//! SAUTH2 one-time web logins (PROTOCOL §2.7, §3.8, §7.7): generic tokens issued by an
//! administrator or the CLI, the link shown once, `tokenauth`, 1UPT, expiry and revocation.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Backend, Client, Closed, TestServer};

async fn issue(admin: &mut Client, user: &str) -> String {
    let r = admin.request(json!({"cmd": "sauth_token_create", "user": user})).await;
    assert_eq!(r["cmd"], "sauth_token_create", "{r}");
    r["token"].as_str().unwrap().to_owned()
}

/// `auth {username, token}` → the link's id.
async fn start(c: &mut Client, user: &str, token: &str) -> Value {
    c.request(json!({"cmd": "auth", "username": user, "token": token})).await
}

fn link_id(authmsg: &Value) -> String {
    authmsg["val"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

async fn page_json(server: &TestServer, id: &str) -> (u16, Value) {
    let r =
        server.http.get(server.url(&format!("/sauth/{id}"))).header("accept", "application/json").send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn web_login_end_to_end() {
    let server = TestServer::spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let token = issue(&mut root, "carol").await;
    assert_eq!(token.len(), 43);

    let mut carol = server.connect().await;
    let msg = start(&mut carol, "CAROL", &token).await;
    assert_eq!(msg["cmd"], "authmsg", "{msg}");
    let prefix = format!("{}/sauth/", server.config.public_url);
    assert!(msg["val"].as_str().unwrap().starts_with(&prefix), "{msg}");
    let id = link_id(&msg);
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));

    let r = server.http.get(server.url(&format!("/sauth/{id}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'; style-src 'unsafe-inline'");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    let web: String = html.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_owned();
    assert_eq!(web.len(), 100);
    assert!(web.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));

    // The page shows nothing useful afterwards.
    let (status, body) = page_json(&server, &id).await;
    assert_eq!(status, 410);
    assert_eq!(
        body,
        json!({"error": "This login link has already been used or has expired", "code": "invalid_web_token"})
    );
    let (status, _) = page_json(&server, "unknownunknownunknownunknown1234").await;
    assert_eq!(status, 410);

    carol.send(json!({"cmd": "tokenauth", "val": web})).await;
    let ready = carol.expect_auth().await;
    assert_eq!(ready["user"]["username"], "carol");
    assert_eq!(ready["user"]["cracked"], true);
    let r = carol.request(json!({"cmd": "message_new", "channel": "general", "content": "via sauth"})).await;
    assert_eq!(r["cmd"], "message_new");
    server.stop().await;
}

#[tokio::test]
async fn wrong_tokens_and_three_strikes() {
    let server = TestServer::spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let token = issue(&mut root, "carol").await;
    let mut c = server.connect().await;
    for (user, tok) in [("carol", "wrong"), ("nobody", token.as_str())] {
        let r = start(&mut c, user, tok).await;
        assert_eq!(r["cmd"], "auth_error");
        assert_eq!(r["val"], "Invalid username or token");
        assert_eq!(r["code"], "invalid_token");
    }
    let r = c.request(json!({"cmd": "tokenauth", "val": "x"})).await;
    assert_eq!(r["val"], "No web login pending");
    assert_eq!(r["code"], "no_pending_login");

    let msg = start(&mut c, "carol", &token).await;
    let (_, page) = page_json(&server, &link_id(&msg)).await;
    let web = page["token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let r = c.request(json!({"cmd": "tokenauth", "token": "not it"})).await;
        assert_eq!(r["val"], "Web token expired or invalid");
        assert_eq!(r["code"], "invalid_web_token");
    }
    // Three strikes cancelled the login: even the right token has nothing to complete now.
    let r = c.request(json!({"cmd": "tokenauth", "val": web})).await;
    assert_eq!(r["val"], "No web login pending");
    server.stop().await;
}

#[tokio::test]
async fn one_user_per_token() {
    let server = TestServer::spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let token = issue(&mut root, "carol").await;
    let mut first = server.connect().await;
    let msg = start(&mut first, "carol", &token).await;
    let mut second = server.connect().await;
    let r = start(&mut second, "carol", &token).await;
    assert_eq!(r["val"], "Token already in use");
    assert_eq!(r["code"], "token_in_use");
    let (_, page) = page_json(&server, &link_id(&msg)).await;
    first.send(json!({"cmd": "tokenauth", "val": page["token"]})).await;
    first.expect_auth().await;
    assert_eq!(start(&mut second, "carol", &token).await["code"], "token_in_use");
    // Closing the session frees the token.
    first.ws.close(None).await.ok();
    assert!(matches!(first.closed().await, Closed::Frame(..) | Closed::Dropped));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = start(&mut second, "carol", &token).await;
        if r["cmd"] == "authmsg" {
            break;
        }
        assert!(Instant::now() < deadline, "the token was never freed: {r}");
    }
    server.stop().await;
}

#[tokio::test]
async fn expiry_and_the_extended_auth_deadline() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| {
        cfg.sauth.ttl_s = 2;
        cfg.security.auth_deadline_s = 1;
    })
    .await;
    let mut root = server.member("root", &["owner"]).await;
    let token = issue(&mut root, "carol").await;
    let mut c = server.connect().await;
    let started = Instant::now();
    let msg = start(&mut c, "carol", &token).await;
    let (_, page) = page_json(&server, &link_id(&msg)).await;
    // Past the 1 s auth deadline the socket stays open while the login is pending…
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(started.elapsed())).await;
    assert_eq!(c.request(json!({"cmd": "ping"})).await["cmd"], "pong");
    // …until the login's own expiry, when the deadline closes it after all.
    assert!(page["token"].is_string());
    assert!(matches!(c.closed().await, Closed::Frame(4001, _)));
    server.stop().await;
}

#[tokio::test]
async fn revocation_closes_sessions_and_the_cli_issues_tokens() {
    let server = TestServer::spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    // A token issued by the CLI on the same database, while the server runs.
    let out = crate::cli::command(&server.config.data_dir)
        .args(["token", "issue", "dave", "--data-dir"])
        .arg(&server.config.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 43);

    let mut dave = server.connect().await;
    let msg = start(&mut dave, "dave", &token).await;
    let (_, page) = page_json(&server, &link_id(&msg)).await;
    dave.send(json!({"cmd": "tokenauth", "val": page["token"]})).await;
    dave.expect_auth().await;

    let bob_like = root.request(json!({"cmd": "sauth_token_revoke", "user": "dave"})).await;
    assert_eq!(
        bob_like,
        json!({"cmd": "sauth_token_revoke", "user": "dave", "revoked": 1, "listener": bob_like["listener"]})
    );
    assert_eq!(dave.recv_cmd("disconnect").await["reason"], "Session revoked");
    assert!(matches!(dave.closed().await, Closed::Frame(4004, _)));
    let mut again = server.connect().await;
    assert_eq!(start(&mut again, "dave", &token).await["val"], "Invalid username or token");

    // Only administrators manage tokens.
    let mut eve = server.register("eve").await;
    let r = eve.request(json!({"cmd": "sauth_token_create", "user": "eve"})).await;
    assert_eq!(r["val"], "Access denied: 'administrator' permission required");
    let r = root.request(json!({"cmd": "sauth_token_create"})).await;
    assert_eq!(r["val"], "User parameter is required");
    let r = root.request(json!({"cmd": "sauth_token_revoke", "user": "ghost"})).await;
    assert_eq!(r["val"], "User not found");
    server.stop().await;
}
