//! Account-wide revocation [ext] and the development token (PROTOCOL §3.1, §8.3–§8.5): logging
//! out of every session and changing the password close all of the account's sockets with 4004
//! and kill its access and refresh tokens; `GET /test-token` exists only with `--dev`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::support::{Backend, Client, Closed, TestServer};

const PASSWORD: &str = "correct horse";
const NEW_PASSWORD: &str = "battery staple";

/// `POST /auth/login` that must succeed; returns the token set.
async fn http_login(server: &TestServer, name: &str, password: &str) -> Value {
    let (status, body) = server.post_json("/auth/login", json!({"username": name, "password": password})).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn access(set: &Value) -> &str {
    set["access_token"].as_str().unwrap()
}

/// `POST path` with a bearer token and a JSON body; returns status and body.
async fn post_bearer(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = server.http.post(server.url(path)).bearer_auth(token).json(&body).send().await.expect("http");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A socket authenticated with `auth {token}`.
async fn token_socket(server: &TestServer, token: &str) -> Client {
    let mut c = server.connect().await;
    c.send(json!({"cmd": "auth", "token": token})).await;
    c.expect_auth().await;
    c
}

/// A socket authenticated with `?token=` on the upgrade URL.
async fn upgrade_socket(server: &TestServer, token: &str) -> Client {
    let mut c = Client::open(&server.ws_url(&format!("/ws?token={token}")), &[]).await.expect("upgrade");
    c.handshake = c.recv_cmd("handshake").await;
    c.expect_auth().await;
    c
}

/// Reads until the `disconnect` packet, then expects close 4004.
async fn expect_revoked(c: &mut Client) {
    let d = c.recv_cmd("disconnect").await;
    assert_eq!(d, json!({"cmd": "disconnect", "reason": "Session revoked"}));
    match c.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 4004),
        Closed::Dropped => panic!("expected close 4004, the connection was dropped"),
    }
}

/// `auth {token}` must fail with "Invalid or expired token".
async fn expect_token_dead(server: &TestServer, token: &str) {
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "auth", "token": token})).await;
    assert_eq!(r["cmd"], "auth_error", "{r}");
    assert_eq!((r["val"].as_str(), r["code"].as_str()), (Some("Invalid or expired token"), Some("invalid_token")));
}

async fn expect_refresh_dead(server: &TestServer, set: &Value) {
    let (status, body) = server.post_json("/auth/refresh", json!({"refresh_token": set["refresh_token"]})).await;
    assert_eq!(status, 401, "{body}");
}

async fn ping(c: &mut Client) {
    let pong = c.request(json!({"cmd": "ping"})).await;
    assert_eq!(pong["cmd"], "pong", "{pong}");
}

/// Alice with three live sockets (two token families and a password login over the socket) and
/// Bob with one.
struct Scene {
    sets: [Value; 2],
    sockets: [Client; 3],
    bob: Client,
}

async fn scene(server: &TestServer) -> Scene {
    server.http_register("Alice").await;
    let one = http_login(server, "alice", PASSWORD).await;
    let two = http_login(server, "alice", PASSWORD).await;
    let a = token_socket(server, access(&one)).await;
    let b = upgrade_socket(server, access(&two)).await;
    let c = server.login("alice", PASSWORD).await;
    let bob = server.register("bob").await;
    Scene { sets: [one, two], sockets: [a, b, c], bob }
}

// ---------------------------------------------------------------------------------------------
// logout of all sessions

async fn logout_all_closes_every_socket(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let Scene { sets, mut sockets, mut bob } = scene(&server).await;

    let (status, body) = post_bearer(&server, "/auth/logout", access(&sets[0]), json!({"all": true})).await;
    assert_eq!(status, 204, "{body}");
    for s in &mut sockets {
        expect_revoked(s).await;
    }
    for set in &sets {
        expect_token_dead(&server, access(set)).await;
        expect_refresh_dead(&server, set).await;
    }
    // Other accounts are untouched; the password still works and starts a new session.
    ping(&mut bob).await;
    let fresh = http_login(&server, "alice", PASSWORD).await;
    let mut again = token_socket(&server, access(&fresh)).await;
    ping(&mut again).await;
    server.stop().await;
}

on_both! { logout_all_closes_every_socket => logout_all_closes_every_socket_sqlite, logout_all_closes_every_socket_postgres; }

#[tokio::test]
async fn logout_all_needs_a_live_access_token() {
    let server = TestServer::spawn().await;
    server.http_register("Alice").await;
    let set = http_login(&server, "alice", PASSWORD).await;
    let mut live = token_socket(&server, access(&set)).await;

    // A refresh token alone is not enough for `all`.
    let (status, body) =
        server.post_json("/auth/logout", json!({"all": true, "refresh_token": set["refresh_token"]})).await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "Authorization bearer token required", "code": "unauthenticated"}))
    );
    let (status, body) = post_bearer(&server, "/auth/logout", "not.a.jwt", json!({"all": true})).await;
    assert_eq!((status, body), (401, json!({"error": "Invalid or expired token", "code": "invalid_token"})));
    // `all: false` is the ordinary logout of one family.
    ping(&mut live).await;
    let (status, _) = post_bearer(&server, "/auth/logout", access(&set), json!({"all": false})).await;
    assert_eq!(status, 204);
    expect_revoked(&mut live).await;
    // A revoked token cannot log the account out of everything.
    let other = http_login(&server, "alice", PASSWORD).await;
    let mut other_live = token_socket(&server, access(&other)).await;
    let (status, body) = post_bearer(&server, "/auth/logout", access(&set), json!({"all": true})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_token")));
    ping(&mut other_live).await;
}

// ---------------------------------------------------------------------------------------------
// password change

async fn password_change_revokes_everything(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let Scene { sets, mut sockets, mut bob } = scene(&server).await;

    let (status, body) = post_bearer(
        &server,
        "/auth/password",
        access(&sets[1]),
        json!({"password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    for s in &mut sockets {
        expect_revoked(s).await;
    }
    for set in &sets {
        expect_token_dead(&server, access(set)).await;
        expect_refresh_dead(&server, set).await;
    }
    ping(&mut bob).await;
    // The old password is dead, the new one works over HTTP and the socket.
    let (status, _) = server.post_json("/auth/login", json!({"username": "alice", "password": PASSWORD})).await;
    assert_eq!(status, 401);
    http_login(&server, "alice", NEW_PASSWORD).await;
    let mut c = server.login("Alice", NEW_PASSWORD).await;
    ping(&mut c).await;
    server.stop().await;
}

on_both! { password_change_revokes_everything => password_change_revokes_everything_sqlite, password_change_revokes_everything_postgres; }

#[tokio::test]
async fn password_change_errors_change_nothing() {
    let server = TestServer::spawn().await;
    server.http_register("Alice").await;
    let set = http_login(&server, "alice", PASSWORD).await;
    let token = access(&set);
    let mut live = token_socket(&server, token).await;
    let path = "/auth/password";
    let good = json!({"password": PASSWORD, "new_password": NEW_PASSWORD});

    let (status, body) = server.post_json(path, good.clone()).await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "Authorization bearer token required", "code": "unauthenticated"}))
    );
    let (status, body) = post_bearer(&server, path, "not.a.jwt", good.clone()).await;
    assert_eq!((status, body), (401, json!({"error": "Invalid or expired token", "code": "invalid_token"})));
    let r = server
        .http
        .post(server.url(path))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let (status, body) = post_bearer(&server, path, token, json!({"password": PASSWORD})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "password and new_password are required", "code": "missing_credentials"}))
    );
    let (status, body) =
        post_bearer(&server, path, token, json!({"password": PASSWORD, "new_password": "short"})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Password must be 8-128 characters", "code": "invalid_password"}))
    );
    let (status, body) =
        post_bearer(&server, path, token, json!({"password": "wrong password", "new_password": NEW_PASSWORD})).await;
    assert_eq!((status, body), (401, json!({"error": "Invalid password", "code": "invalid_credentials"})));

    // Nothing changed: the socket is open, the token and the old password still work.
    ping(&mut live).await;
    token_socket(&server, token).await;
    http_login(&server, "alice", PASSWORD).await;

    // Wrong current passwords count towards the username lock (five within 15 minutes; the
    // successful login above reset the count).
    for _ in 0..5 {
        let (status, _) =
            post_bearer(&server, path, token, json!({"password": "wrong password", "new_password": NEW_PASSWORD}))
                .await;
        assert_eq!(status, 401);
    }
    let r = server.http.post(server.url(path)).bearer_auth(token).json(&good).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429, "locked even with the right password");
    assert!(r.headers().get("retry-after").is_some());
    let (status, _) = server.post_json("/auth/login", json!({"username": "alice", "password": PASSWORD})).await;
    assert_eq!(status, 429, "the lock is the login lock");
    ping(&mut live).await;
}

// ---------------------------------------------------------------------------------------------
// the development token

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn test_token_exists_only_with_dev() {
    let server = TestServer::spawn().await;
    let r = server.http.get(server.url("/test-token")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "Not found", "code": "not_found"}));
    let ready: Value = server.http.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"status": "ready"}));
    assert!(server.store.user_by_name("user").await.unwrap().is_none(), "no dev account without --dev");
}

#[tokio::test]
async fn test_token_with_dev() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.dev = true).await;
    let ready: Value = server.http.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert!(ready["warning"].as_str().unwrap().contains("--dev"), "{ready}");

    let body: Value = server.http.get(server.url("/test-token")).send().await.unwrap().json().await.unwrap();
    let token = body["test_token"].as_str().unwrap().to_owned();
    assert!(body["note"].as_str().unwrap().contains("testing only"), "{body}");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(decode(parts[0])["typ"], "at+jwt");
    let claims = decode(parts[1]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(claims["exp"].as_i64().unwrap() > now + 5 * 365 * 86_400, "far expiry: {claims}");
    let user = server.store.user_by_name("user").await.unwrap().expect("the dev account exists");
    assert_eq!(claims["sub"], user.id.as_str());

    // The token works on the upgrade URL and over the socket.
    let mut live = upgrade_socket(&server, &token).await;
    ping(&mut live).await;
    // The seed's `/token` example works: the account has password "password".
    let r = server
        .http
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=user&password=password")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Asking again reuses the account and the session family.
    let again: Value = server.http.get(server.url("/test-token")).send().await.unwrap().json().await.unwrap();
    let again = again["test_token"].as_str().unwrap().to_owned();
    assert_eq!(decode(again.split('.').nth(1).unwrap())["sid"], claims["sid"]);

    // It is revocable like any session: logout closes the socket and kills both tokens.
    let r = server.http.post(server.url("/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    expect_revoked(&mut live).await;
    expect_token_dead(&server, &token).await;
    expect_token_dead(&server, &again).await;
    // A new request starts a new family.
    let fresh: Value = server.http.get(server.url("/test-token")).send().await.unwrap().json().await.unwrap();
    let fresh = fresh["test_token"].as_str().unwrap().to_owned();
    assert_ne!(decode(fresh.split('.').nth(1).unwrap())["sid"], claims["sid"]);
    let mut c = token_socket(&server, &fresh).await;
    ping(&mut c).await;
}
