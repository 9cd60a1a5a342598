//! Authentication over the socket and the HTTP API (PROTOCOL §2, §3, §8): register and login,
//! JWT access tokens (`auth` and `?token=`), refresh rotation and revocation, `/token`, imported
//! bcrypt hashes, login throttling, the hashing pool under a flood, and the common HTTP answers.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use confab::{
    auth::jwt::sign_raw,
    store::users::{AccountKind, NewUser},
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};

use crate::support::{Backend, Client, Closed, TestServer, WAIT};

/// A signing secret that is not hex, so the server uses its bytes as they are (`keys::load`).
const SECRET: &str = "confab-integration-test-secret-not-hex!";

/// The bcrypt hash of "secret" (FastAPI documentation fixture).
const BCRYPT_SECRET: &str = "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW";

const PASSWORD: &str = "correct horse";

// ---------------------------------------------------------------------------------------------
// helpers

/// Sends `frame` and asserts the answer is exactly `auth_error` with `val` and `code`.
async fn expect_auth_error(c: &mut Client, frame: Value, val: &str, code: &str) {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "auth_error", "{frame} -> {r}");
    assert_eq!(r["val"], val, "{frame} -> {r}");
    assert_eq!(r["code"], code, "{frame} -> {r}");
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["cmd", "code", "listener", "val"], "{r}");
}

/// Sends an auth frame and asserts `auth_success` then `ready` (both carrying the listener).
async fn expect_success(c: &mut Client, frame: Value) -> Value {
    let ok = c.request(frame.clone()).await;
    assert_eq!(ok["cmd"], "auth_success", "{frame} -> {ok}");
    assert_eq!(ok["val"], "Authentication successful");
    let ready = c.recv_cmd("ready").await;
    assert_eq!(ready["listener"], ok["listener"], "{ready}");
    ready
}

/// Asserts an `auth_rate_limited` answer and returns its `<n>` seconds.
async fn expect_rate_limited(c: &mut Client, frame: Value) -> u64 {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "auth_error", "{frame} -> {r}");
    assert_eq!(r["code"], "auth_rate_limited", "{r}");
    retry_seconds(r["val"].as_str().unwrap())
}

/// `<n>` from "Too many authentication attempts. Try again in <n> seconds"; asserts the text.
fn retry_seconds(text: &str) -> u64 {
    let n = text
        .strip_prefix("Too many authentication attempts. Try again in ")
        .and_then(|rest| rest.strip_suffix(" seconds"))
        .unwrap_or_else(|| panic!("unexpected rate-limit text: {text}"));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("<n> is not a whole number: {text}"));
    assert!(n >= 1, "{text}");
    n
}

fn login(name: &str, password: &str) -> Value {
    json!({"cmd": "login", "username": name, "password": password})
}

fn register(name: &str, password: &str) -> Value {
    json!({"cmd": "register", "username": name, "password": password})
}

/// The next WebSocket message of any kind (control frames other than Close are skipped).
async fn next_message(c: &mut Client) -> Option<Message> {
    loop {
        let m = tokio::time::timeout(WAIT, c.ws.next()).await.expect("timed out waiting for a message");
        match m {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            _ => return None,
        }
    }
}

/// Opens `path` and asserts that the very first thing the server sends is a close frame.
async fn expect_refused_upgrade(server: &TestServer, path: &str) -> (u16, String) {
    let mut c = Client::open(&server.ws_url(path), &[]).await.expect("upgrade");
    match next_message(&mut c).await {
        Some(Message::Close(Some(CloseFrame { code, reason }))) => (code.into(), reason.to_string()),
        other => panic!("{path}: expected a close frame before anything else, got {other:?}"),
    }
}

/// Opens `path` (carrying `?token=`) and expects handshake, auth_success, ready.
async fn expect_token_upgrade(server: &TestServer, path: &str) -> (Client, Value) {
    let mut c = Client::open(&server.ws_url(path), &[]).await.expect("upgrade");
    let handshake = c.recv().await;
    assert_eq!(handshake["cmd"], "handshake", "{handshake}");
    c.handshake = handshake;
    let ok = c.recv().await;
    assert_eq!(ok["cmd"], "auth_success", "{ok}");
    assert_eq!(ok["val"], "Authentication successful");
    let ready = c.recv_cmd("ready").await;
    (c, ready)
}

/// `POST path` with a raw body and an optional Content-Type.
async fn post_raw(server: &TestServer, path: &str, content_type: Option<&str>, body: String) -> reqwest::Response {
    let mut req = server.http.post(server.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("http")
}

/// `POST /token` with a form body.
async fn post_form(server: &TestServer, body: &str) -> reqwest::Response {
    post_raw(server, "/token", Some("application/x-www-form-urlencoded"), body.to_owned()).await
}

async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /auth/login` that must succeed; returns the token set.
async fn http_login(server: &TestServer, name: &str, password: &str) -> Value {
    let (status, body) = server.post_json("/auth/login", json!({"username": name, "password": password})).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The claims of a JWT, without checking anything.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A server signing with [`SECRET`]; the per-IP auth bucket is off so many failures can be listed.
async fn spawn_jwt_server() -> TestServer {
    TestServer::spawn_with(Backend::Sqlite, |cfg| {
        cfg.auth.jwt_secret = SECRET.to_owned();
        cfg.rate_limits.enabled = false;
    })
    .await
}

fn is_base64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the token set of PROTOCOL §3.1.
fn assert_token_set(set: &Value, username: &str) {
    assert_eq!(set["user"]["username"], username, "{set}");
    let id = set["user"]["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7, "{set}");
    assert_eq!(set["token_type"], "bearer");
    assert_eq!(set["expires_in"], 900);
    assert_eq!(set["refresh_expires_in"], 2_592_000);
    let access = set["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "{access}");
    assert_eq!(claims_of(access)["sub"], id);
    let refresh = set["refresh_token"].as_str().unwrap();
    assert_eq!(refresh.len(), 43, "{refresh}");
    assert!(is_base64url(refresh), "{refresh}");
    let mut keys: Vec<&str> = set.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["access_token", "expires_in", "refresh_expires_in", "refresh_token", "token_type", "user"]);
}

/// Reads until the server's `disconnect` packet, then the close; returns the close.
async fn expect_revoked(c: &mut Client) {
    let d = c.recv_cmd("disconnect").await;
    assert_eq!(d, json!({"cmd": "disconnect", "reason": "Session revoked"}));
    match c.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 4004),
        Closed::Dropped => panic!("expected close 4004, the connection was dropped"),
    }
}

/// Skips packets until a presence event `cmd` about `username` arrives (the client's own events
/// from its login may still be queued before it).
async fn recv_presence(c: &mut Client, cmd: &str, username: &str) -> Value {
    loop {
        let p = c.recv_cmd(cmd).await;
        if p["user"]["username"] == username {
            return p;
        }
    }
}

async fn ping(c: &mut Client) {
    let pong = c.request(json!({"cmd": "ping"})).await;
    assert_eq!(pong["cmd"], "pong", "{pong}");
    assert_eq!(pong["val"], "pong");
}

// ---------------------------------------------------------------------------------------------
// WebSocket register and login

#[tokio::test]
async fn ws_register_success_shape_and_presence() {
    let server = TestServer::spawn().await;
    let mut bob = server.register("Bob").await;
    let mut alice = server.connect().await;
    let ready = expect_success(&mut alice, register("Alice", PASSWORD)).await;
    let user = &ready["user"];
    let id = user["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7, "{ready}");
    assert_eq!(user["username"], "Alice");
    assert_eq!(user["nickname"], Value::Null);
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["status"], json!({"status": "online", "text": ""}));
    assert_eq!(user["pfp_url"], Value::Null);
    assert_eq!(user["cracked"], true);
    assert_eq!(user["bot"], false);
    let validator = ready["validator"].as_str().unwrap();
    assert_eq!(validator.len(), 43, "{validator}");
    assert!(is_base64url(validator), "{validator}");
    assert!(!ready.to_string().contains("$argon2"), "ready leaks a hash: {ready}");

    let presence = json!({"username": "Alice", "roles": ["user"], "color": null});
    // The new connection is part of the audience of both events, after `ready`.
    let join = recv_presence(&mut alice, "user_join", "Alice").await;
    assert_eq!(join["user"], presence, "{join}");
    let connect = recv_presence(&mut alice, "user_connect", "Alice").await;
    assert_eq!(connect["user"], presence, "{connect}");
    // Another user sees both, without the requester's listener.
    let join = recv_presence(&mut bob, "user_join", "Alice").await;
    assert_eq!(join, json!({"cmd": "user_join", "user": presence}));
    let connect = recv_presence(&mut bob, "user_connect", "Alice").await;
    assert_eq!(connect, json!({"cmd": "user_connect", "user": presence}));

    // The stored account: Argon2id hash, case of the name kept.
    let stored = server.store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.username, "Alice");
    assert!(stored.password_hash.unwrap().starts_with("$argon2id$"));
}

#[tokio::test]
async fn ws_login_success_case_insensitive_and_presence() {
    let server = TestServer::spawn().await;
    let set = server.http_register("Alice").await;
    let mut bob = server.register("Bob").await;
    let mut alice = server.connect().await;
    let ready = expect_success(&mut alice, login("ALICE", PASSWORD)).await;
    assert_eq!(ready["user"]["username"], "Alice", "the case given at registration is kept");
    assert_eq!(ready["user"]["id"], set["user"]["id"]);
    assert_eq!(ready["user"]["roles"], json!(["user"]));
    assert_eq!(ready["user"]["cracked"], true);
    assert_eq!(ready["user"]["bot"], false);
    assert_eq!(ready["validator"].as_str().unwrap().len(), 43);
    // A login announces a connection but no new account: `user_join` would come before `user_connect`.
    loop {
        let p = bob.recv().await;
        if p["cmd"] == "user_connect" && p["user"]["username"] == "Alice" {
            assert_eq!(p["user"], json!({"username": "Alice", "roles": ["user"], "color": null}));
            break;
        }
        assert!(!(p["cmd"] == "user_join" && p["user"]["username"] == "Alice"), "login sent user_join: {p}");
    }
    // A second connection of the same account does not announce it again; the first stays usable.
    let mut again = server.login("alice", PASSWORD).await;
    ping(&mut again).await;
    // Any presence event of that login was queued to Bob before the login's `ready`, so before this pong.
    bob.send(json!({"cmd": "ping", "listener": "after-second-login"})).await;
    loop {
        let p = bob.recv().await;
        if p["listener"] == "after-second-login" {
            assert_eq!(p["cmd"], "pong");
            break;
        }
        assert!(p["user"]["username"] != "Alice", "second connection announced again: {p}");
    }
}

#[tokio::test]
async fn ws_register_errors_in_protocol_order() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = false).await;
    let _carol = server.register("Carol").await;
    let mut c = server.connect().await;
    let missing = "Username and password required";
    expect_auth_error(&mut c, json!({"cmd": "register"}), missing, "missing_credentials").await;
    expect_auth_error(&mut c, json!({"cmd": "register", "username": "dave"}), missing, "missing_credentials").await;
    expect_auth_error(&mut c, json!({"cmd": "register", "password": PASSWORD}), missing, "missing_credentials").await;
    // Fields are checked before lengths: a one-letter name without password is "missing".
    expect_auth_error(&mut c, json!({"cmd": "register", "username": "a"}), missing, "missing_credentials").await;
    // An empty string counts as missing, as in originChats.
    expect_auth_error(&mut c, register("", PASSWORD), missing, "missing_credentials").await;
    expect_auth_error(&mut c, register("dave", ""), missing, "missing_credentials").await;
    expect_auth_error(&mut c, register("", ""), missing, "missing_credentials").await;

    let ulen = "Username must be 2-32 characters";
    expect_auth_error(&mut c, register("a", PASSWORD), ulen, "invalid_username").await;
    expect_auth_error(&mut c, register(&"a".repeat(33), PASSWORD), ulen, "invalid_username").await;
    expect_auth_error(&mut c, register("  a  ", PASSWORD), ulen, "invalid_username").await;
    // Username length comes before password length.
    expect_auth_error(&mut c, register("a", "short"), ulen, "invalid_username").await;

    let plen = "Password must be 8-128 characters";
    expect_auth_error(&mut c, register("dave", "short12"), plen, "invalid_password").await;
    expect_auth_error(&mut c, register("dave", &"p".repeat(129)), plen, "invalid_password").await;
    // Characters, not bytes: seven two-byte characters are too short.
    expect_auth_error(&mut c, register("dave", &"é".repeat(7)), plen, "invalid_password").await;
    // Password length comes before username characters.
    expect_auth_error(&mut c, register("bad name!", "short"), plen, "invalid_password").await;

    let chars = "Username can only contain letters, numbers, hyphens, and underscores";
    expect_auth_error(&mut c, register("bad name!", PASSWORD), chars, "invalid_username").await;
    expect_auth_error(&mut c, register("dave.smith", PASSWORD), chars, "invalid_username").await;
    expect_auth_error(&mut c, register("dävé", PASSWORD), chars, "invalid_username").await;

    let taken = "Username already taken";
    expect_auth_error(&mut c, register("Carol", PASSWORD), taken, "username_taken").await;
    expect_auth_error(&mut c, register("cAROL", PASSWORD), taken, "username_taken").await;
    expect_auth_error(&mut c, register(" carol ", PASSWORD), taken, "username_taken").await;
    expect_auth_error(&mut c, register("originChats", PASSWORD), taken, "username_taken").await;
    expect_auth_error(&mut c, register("ORIGINCHATS", PASSWORD), taken, "username_taken").await;
    assert!(server.store.user_by_name("originchats").await.unwrap().is_none());

    // Every failure left the connection open and unauthenticated: a retry works.
    let ready = expect_success(&mut c, register("Dave", PASSWORD)).await;
    assert_eq!(ready["user"]["username"], "Dave");
}

#[tokio::test]
async fn ws_register_boundaries_are_accepted() {
    let server = TestServer::spawn().await;
    let cases = [
        ("ab".to_owned(), "12345678".to_owned(), "ab"),
        ("x".repeat(32), "p".repeat(128), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        // 128 characters of two bytes each: the limit counts characters.
        ("Multi_byte-1".to_owned(), "é".repeat(128), "Multi_byte-1"),
        // Surrounding whitespace is trimmed from the name.
        ("  spaced  ".to_owned(), "  spaces kept  ".to_owned(), "spaced"),
    ];
    for (name, password, shown) in cases {
        let mut c = server.connect().await;
        let ready = expect_success(&mut c, register(&name, &password)).await;
        assert_eq!(ready["user"]["username"], shown);
        // The password is used exactly as given (never trimmed).
        let mut again = server.connect().await;
        expect_success(&mut again, login(shown, &password)).await;
    }
    let mut c = server.connect().await;
    expect_auth_error(&mut c, login("spaced", "spaces kept"), "Invalid password", "invalid_credentials").await;
}

#[tokio::test]
async fn ws_registration_disabled() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.auth.allow_registration = false).await;
    let mut c = server.connect().await;
    let text = "Registration is disabled";
    expect_auth_error(&mut c, register("Alice", PASSWORD), text, "registration_disabled").await;
    // Checked first, before the fields.
    expect_auth_error(&mut c, json!({"cmd": "register"}), text, "registration_disabled").await;
    let (status, body) = server.post_json("/auth/register", json!({"username": "Alice", "password": PASSWORD})).await;
    assert_eq!(status, 403);
    assert_eq!(body, json!({"error": text, "code": "registration_disabled"}));
    assert!(server.store.user_by_name("alice").await.unwrap().is_none());
    // Existing accounts can still log in.
    let roles = server.store.roles().await.unwrap();
    let user_role = roles.iter().find(|r| r.name == "user").unwrap().id.clone();
    server
        .store
        .user_create(NewUser {
            username: "Legacy",
            kind: AccountKind::Local,
            password_hash: Some(BCRYPT_SECRET.to_owned()),
            role_ids: vec![user_role],
        })
        .await
        .unwrap();
    let ready = expect_success(&mut c, login("legacy", "secret")).await;
    assert_eq!(ready["user"]["username"], "Legacy");
}

#[tokio::test]
async fn ws_login_errors() {
    let server = TestServer::spawn().await;
    server.http_register("Alice").await;
    server
        .store
        .user_create(NewUser { username: "RoturBob", kind: AccountKind::Rotur, password_hash: None, role_ids: vec![] })
        .await
        .unwrap();
    let mut c = server.connect().await;
    let missing = "Username and password required";
    expect_auth_error(&mut c, json!({"cmd": "login"}), missing, "missing_credentials").await;
    expect_auth_error(&mut c, json!({"cmd": "login", "username": "Alice"}), missing, "missing_credentials").await;
    expect_auth_error(&mut c, json!({"cmd": "login", "password": PASSWORD}), missing, "missing_credentials").await;
    expect_auth_error(&mut c, login("", PASSWORD), missing, "missing_credentials").await;
    expect_auth_error(&mut c, login("Alice", ""), missing, "missing_credentials").await;
    // Unknown user and wrong password look the same.
    expect_auth_error(&mut c, login("nobody", PASSWORD), "Invalid password", "invalid_credentials").await;
    expect_auth_error(&mut c, login("Alice", "wrong password"), "Invalid password", "invalid_credentials").await;
    expect_auth_error(&mut c, login("Alice", "correct horse "), "Invalid password", "invalid_credentials").await;
    expect_auth_error(
        &mut c,
        login("roturbob", PASSWORD),
        "This account uses Rotur authentication",
        "wrong_auth_method",
    )
    .await;
    // The connection stayed open: a retry works.
    let ready = expect_success(&mut c, login("alice", PASSWORD)).await;
    assert_eq!(ready["user"]["username"], "Alice");
}

#[tokio::test]
async fn ws_commands_before_and_after_auth() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    let required = "Authentication required";
    expect_auth_error(&mut c, json!({"cmd": "channels_get"}), required, "unauthenticated").await;
    expect_auth_error(
        &mut c,
        json!({"cmd": "message_new", "channel": "general", "content": "x"}),
        required,
        "unauthenticated",
    )
    .await;
    expect_auth_error(&mut c, json!({"cmd": "no_such_command"}), required, "unauthenticated").await;
    // `ping` is allowed before auth.
    ping(&mut c).await;
    expect_success(&mut c, register("Alice", PASSWORD)).await;
    for cmd in ["login", "register", "auth"] {
        let r = c.request(json!({"cmd": cmd, "username": "Alice", "password": PASSWORD, "token": "x"})).await;
        assert_eq!(r["cmd"], "error", "{r}");
        assert_eq!(r["src"], cmd);
        assert_eq!(r["val"], format!("Unknown command: {cmd}"));
        assert_eq!(r["code"], "already_authenticated");
    }
    // Still authenticated afterwards.
    let channels = c.request(json!({"cmd": "channels_get"})).await;
    assert_eq!(channels["cmd"], "channels_get", "{channels}");
}

#[tokio::test]
async fn ws_login_over_the_connection_limit() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.security.max_connections_per_user = 2).await;
    let _first = server.register("Alice").await;
    let _second = server.login("Alice", PASSWORD).await;
    let mut third = server.connect().await;
    expect_auth_error(&mut third, login("Alice", PASSWORD), "Too many connections", "too_many_connections").await;
    match third.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 1008),
        Closed::Dropped => panic!("expected close 1008"),
    }
    let access = http_login(&server, "Alice", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let (code, reason) = expect_refused_upgrade(&server, &format!("/ws?token={access}")).await;
    assert_eq!((code, reason.as_str()), (1008, "Too many connections"));
}

#[tokio::test]
async fn local_accounts_disabled_in_rotur_mode() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.auth_mode = confab::config::AuthMode::Rotur).await;
    let text = "Local accounts are disabled on this server";
    let mut c = server.connect().await;
    expect_auth_error(&mut c, register("Alice", PASSWORD), text, "local_auth_disabled").await;
    expect_auth_error(&mut c, login("Alice", PASSWORD), text, "local_auth_disabled").await;
    expect_auth_error(&mut c, json!({"cmd": "auth", "token": "a.b.c"}), text, "local_auth_disabled").await;
    let refused = json!({"error": text, "code": "local_auth_disabled"});
    let cases = [
        ("/auth/register", json!({"username": "Alice", "password": PASSWORD})),
        ("/auth/login", json!({"username": "Alice", "password": PASSWORD})),
        ("/auth/refresh", json!({"refresh_token": "some-refresh-token"})),
        ("/auth/logout", json!({"refresh_token": "some-refresh-token"})),
    ];
    for (path, body) in cases {
        let (status, answer) = server.post_json(path, body).await;
        assert_eq!((status, &answer), (403, &refused), "{path}");
    }
    assert!(server.store.user_by_name("alice").await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// JWT access tokens

#[tokio::test]
async fn ws_auth_with_access_token() {
    let server = TestServer::spawn().await;
    let set = server.http_register("Alice").await;
    let mut observer = server.register("Bob").await;
    let mut c = server.connect().await;
    let ready = expect_success(&mut c, json!({"cmd": "auth", "token": set["access_token"]})).await;
    assert_eq!(ready["user"]["username"], "Alice");
    assert_eq!(ready["user"]["id"], set["user"]["id"]);
    assert_eq!(ready["user"]["cracked"], true);
    assert_eq!(ready["validator"].as_str().unwrap().len(), 43);
    let connect = recv_presence(&mut observer, "user_connect", "Alice").await;
    assert_eq!(connect["user"], json!({"username": "Alice", "roles": ["user"], "color": null}));
    // A token from /auth/login works as well.
    let set = http_login(&server, "alice", PASSWORD).await;
    let mut c2 = server.connect().await;
    let ready = expect_success(&mut c2, json!({"cmd": "auth", "token": set["access_token"]})).await;
    assert_eq!(ready["user"]["username"], "Alice");
}

#[tokio::test]
async fn ws_auth_refuses_bad_tokens_and_stays_open() {
    let server = spawn_jwt_server().await;
    let set = server.http_register("Alice").await;
    let bob = server.http_register("Bob").await;
    let access = set["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    let (iss, aud) = (server.config.auth.jwt_issuer.clone(), server.config.auth.jwt_audience.clone());
    assert_eq!(claims["iss"], iss);
    assert_eq!(claims["aud"], aud);
    let sid = claims["sid"].as_str().unwrap().to_owned();
    let sub = claims["sub"].as_str().unwrap().to_owned();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let t = now();
    let base = json!({"iss": iss, "aud": aud, "sub": sub, "sid": sid, "iat": t, "exp": t + 900, "jti": "j1"});
    let with = |changes: Value| {
        let mut c = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let sign = |header: &Value, claims: &Value| sign_raw(header, claims, SECRET.as_bytes());

    let mut c = server.connect().await;
    let auth = |token: &str| json!({"cmd": "auth", "token": token});
    let invalid = "Invalid or expired token";
    let payload = "Invalid token payload";

    // Tampered signature (a character in the middle, not the padding bits at the end).
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let flip = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2].replace_range(0..1, flip);
    expect_auth_error(&mut c, auth(&parts.join(".")), invalid, "invalid_token").await;
    // Claims swapped for another account's, signature kept.
    let forged_claims = URL_SAFE_NO_PAD.encode(with(json!({"sub": bob["user"]["id"]})).to_string());
    let swapped =
        format!("{}.{forged_claims}.{}", access.split('.').next().unwrap(), access.split('.').nth(2).unwrap());
    expect_auth_error(&mut c, auth(&swapped), invalid, "invalid_token").await;
    // Signed with another key.
    let other_key = sign_raw(&header, &base, b"some-other-secret-that-is-long-enough!!");
    expect_auth_error(&mut c, auth(&other_key), invalid, "invalid_token").await;
    // alg none, and another algorithm name over a valid HS256 MAC.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(base.to_string())
    );
    expect_auth_error(&mut c, auth(&none), invalid, "invalid_token").await;
    let hs512 = sign(&json!({"alg": "HS512", "typ": "at+jwt", "kid": "k1"}), &base);
    expect_auth_error(&mut c, auth(&hs512), invalid, "invalid_token").await;
    // Wrong or missing `typ`, unknown `kid`.
    expect_auth_error(
        &mut c,
        auth(&sign(&json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}), &base)),
        invalid,
        "invalid_token",
    )
    .await;
    expect_auth_error(&mut c, auth(&sign(&json!({"alg": "HS256", "kid": "k1"}), &base)), invalid, "invalid_token")
        .await;
    expect_auth_error(
        &mut c,
        auth(&sign(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "nope"}), &base)),
        invalid,
        "invalid_token",
    )
    .await;
    // Wrong issuer or audience.
    expect_auth_error(
        &mut c,
        auth(&sign(&header, &with(json!({"iss": "https://evil.example"})))),
        invalid,
        "invalid_token",
    )
    .await;
    expect_auth_error(
        &mut c,
        auth(&sign(&header, &with(json!({"aud": "https://evil.example"})))),
        invalid,
        "invalid_token",
    )
    .await;
    // Expired beyond the 60 s skew, and not yet valid.
    let expired = with(json!({"iat": t - 2000, "exp": t - 600}));
    expect_auth_error(&mut c, auth(&sign(&header, &expired)), invalid, "invalid_token").await;
    expect_auth_error(&mut c, auth(&sign(&header, &with(json!({"nbf": t + 3600})))), invalid, "invalid_token").await;
    // A session id that names no live family.
    let unknown_sid = with(json!({"sid": uuid::Uuid::now_v7().to_string()}));
    expect_auth_error(&mut c, auth(&sign(&header, &unknown_sid)), invalid, "invalid_token").await;
    // Not a JWT at all: the refresh token, and garbage.
    expect_auth_error(&mut c, auth(set["refresh_token"].as_str().unwrap()), invalid, "invalid_token").await;
    expect_auth_error(&mut c, auth("not.a.jwt"), invalid, "invalid_token").await;

    // Good signature, bad payload.
    expect_auth_error(&mut c, auth(&sign(&header, &with(json!({"sid": null})))), payload, "invalid_token_payload")
        .await;
    expect_auth_error(&mut c, auth(&sign(&header, &with(json!({"sub": null})))), payload, "invalid_token_payload")
        .await;
    expect_auth_error(&mut c, auth(&sign(&header, &with(json!({"sub": "alice"})))), payload, "invalid_token_payload")
        .await;
    let ghost = with(json!({"sub": uuid::Uuid::now_v7().to_string()}));
    expect_auth_error(&mut c, auth(&sign(&header, &ghost)), payload, "invalid_token_payload").await;

    // The forging itself is right: the untouched claims re-signed are accepted, on the same socket.
    let ready = expect_success(&mut c, auth(&sign(&header, &base))).await;
    assert_eq!(ready["user"]["username"], "Alice");
    // And the original token on a fresh connection.
    let mut c2 = server.connect().await;
    expect_success(&mut c2, auth(access)).await;
}

/// A token login reads the account's roles in the same query as the account and its session
/// family: several roles, and none, come out right on both backends, by `auth` and by `?token=`,
/// and they are what the connection is judged by.
async fn token_logins_carry_the_accounts_roles(backend: Backend) {
    let server = TestServer::spawn_with(backend, |cfg| {
        cfg.auth.jwt_secret = SECRET.to_owned();
        cfg.rate_limits.enabled = false;
    })
    .await;
    let set = server.http_register("Alice").await;
    let access = set["access_token"].as_str().unwrap().to_owned();
    let roles = |ready: &Value| {
        let mut names: Vec<String> =
            ready["user"]["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
        names.sort();
        names
    };
    for (held, may_list_audit) in [(vec!["admin", "moderator"], true), (vec![], false)] {
        server.set_roles("Alice", &held).await;
        let mut by_frame = server.connect().await;
        let ready = expect_success(&mut by_frame, json!({"cmd": "auth", "token": access})).await;
        let (mut by_query, ready_upgraded) = expect_token_upgrade(&server, &format!("/ws?token={access}")).await;
        for (c, ready) in [(&mut by_frame, ready), (&mut by_query, ready_upgraded)] {
            assert_eq!(roles(&ready), held, "{ready}");
            let audit = c.request(json!({"cmd": "modlog_get"})).await;
            assert_eq!(audit["cmd"] == "modlog_get", may_list_audit, "{held:?}: {audit}");
        }
    }
}

on_both! { token_logins_carry_the_accounts_roles => token_logins_carry_the_accounts_roles_sqlite, token_logins_carry_the_accounts_roles_postgres; }

#[tokio::test]
async fn upgrade_with_token_query() {
    let server = spawn_jwt_server().await;
    let set = server.http_register("Alice").await;
    let access = set["access_token"].as_str().unwrap().to_owned();
    let mut observer = server.register("Bob").await;

    for path in ["/ws", "/"] {
        let (mut c, ready) = expect_token_upgrade(&server, &format!("{path}?token={access}")).await;
        assert_eq!(c.handshake["val"]["version"], "1.1.0");
        assert_eq!(ready["user"]["username"], "Alice");
        assert_eq!(ready["user"]["id"], set["user"]["id"]);
        assert_eq!(ready["validator"].as_str().unwrap().len(), 43);
        // Authenticated: a post-auth command is served.
        let channels = c.request(json!({"cmd": "channels_get"})).await;
        assert_eq!(channels["cmd"], "channels_get", "{channels}");
        let again = c.request(json!({"cmd": "auth", "token": access})).await;
        assert_eq!(again["code"], "already_authenticated");
    }
    let connect = recv_presence(&mut observer, "user_connect", "Alice").await;
    assert_eq!(connect["cmd"], "user_connect");

    for path in ["/ws?token=", "/?token="] {
        let (code, reason) = expect_refused_upgrade(&server, path).await;
        assert_eq!((code, reason.as_str()), (1008, "Missing authentication token"), "{path}");
    }
    let mut tampered = access.clone();
    tampered.push('x');
    for path in [format!("/ws?token={tampered}"), "/?token=garbage".to_owned()] {
        let (code, reason) = expect_refused_upgrade(&server, &path).await;
        assert_eq!((code, reason.as_str()), (1008, "Invalid or expired token"), "{path}");
    }
    let claims = claims_of(&access);
    let mut no_sid = claims.clone();
    no_sid.as_object_mut().unwrap().remove("sid");
    let token = sign_raw(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}), &no_sid, SECRET.as_bytes());
    let (code, reason) = expect_refused_upgrade(&server, &format!("/ws?token={token}")).await;
    assert_eq!((code, reason.as_str()), (1008, "Invalid token payload"));
    let mut ghost = claims.clone();
    ghost["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let token = sign_raw(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}), &ghost, SECRET.as_bytes());
    let (code, reason) = expect_refused_upgrade(&server, &format!("/?token={token}")).await;
    assert_eq!((code, reason.as_str()), (1008, "Invalid token payload"));
    // Other query parameters are ignored.
    let (_c, ready) = expect_token_upgrade(&server, &format!("/?session_id=abc&token={access}")).await;
    assert_eq!(ready["user"]["username"], "Alice");
}

// ---------------------------------------------------------------------------------------------
// HTTP accounts and tokens

#[tokio::test]
async fn http_register_token_set_and_errors() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = false).await;
    let mut observer = server.register("Observer").await;
    let (status, set) = server.post_json("/auth/register", json!({"username": "Dave", "password": PASSWORD})).await;
    assert_eq!(status, 201, "{set}");
    assert_token_set(&set, "Dave");
    let join = recv_presence(&mut observer, "user_join", "Dave").await;
    assert_eq!(join, json!({"cmd": "user_join", "user": {"username": "Dave", "roles": ["user"], "color": null}}));
    // The access token works on the socket.
    let mut c = server.connect().await;
    expect_success(&mut c, json!({"cmd": "auth", "token": set["access_token"]})).await;

    let cases = [
        (json!({}), 400, "Username and password required", "missing_credentials"),
        (json!({"username": "Eve"}), 400, "Username and password required", "missing_credentials"),
        (json!({"username": "", "password": PASSWORD}), 400, "Username and password required", "missing_credentials"),
        (json!({"username": "Eve", "password": ""}), 400, "Username and password required", "missing_credentials"),
        (json!({"username": "E", "password": PASSWORD}), 400, "Username must be 2-32 characters", "invalid_username"),
        (json!({"username": "Eve", "password": "short"}), 400, "Password must be 8-128 characters", "invalid_password"),
        (
            json!({"username": "E v e", "password": PASSWORD}),
            400,
            "Username can only contain letters, numbers, hyphens, and underscores",
            "invalid_username",
        ),
        (json!({"username": "dAVE", "password": PASSWORD}), 409, "Username already taken", "username_taken"),
        (json!({"username": "originchats", "password": PASSWORD}), 409, "Username already taken", "username_taken"),
    ];
    for (body, want_status, text, code) in cases {
        let (status, answer) = server.post_json("/auth/register", body.clone()).await;
        assert_eq!(status, want_status, "{body} -> {answer}");
        assert_eq!(answer, json!({"error": text, "code": code}), "{body}");
    }
}

#[tokio::test]
async fn http_login_token_set_and_errors() {
    let server = TestServer::spawn().await;
    let reg = server.http_register("Alice").await;
    let (status, set) = server.post_json("/auth/login", json!({"username": "ALICE", "password": PASSWORD})).await;
    assert_eq!(status, 200, "{set}");
    assert_token_set(&set, "Alice");
    assert_eq!(set["user"]["id"], reg["user"]["id"]);
    // Each login starts its own session family.
    assert_ne!(
        claims_of(set["access_token"].as_str().unwrap())["sid"],
        claims_of(reg["access_token"].as_str().unwrap())["sid"]
    );
    assert_ne!(set["refresh_token"], reg["refresh_token"]);

    let refused = json!({"error": "Invalid username or password", "code": "invalid_credentials"});
    for body in [
        json!({"username": "Alice", "password": "wrong password"}),
        json!({"username": "nobody", "password": PASSWORD}),
    ] {
        let (status, answer) = server.post_json("/auth/login", body.clone()).await;
        assert_eq!(status, 401, "{body} -> {answer}");
        assert_eq!(answer, refused, "{body}");
    }
}

async fn http_refresh_rotates(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let first = server.http_register("Alice").await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = server.post_json("/auth/refresh", json!({"refresh_token": r1})).await;
    assert_eq!(status, 200, "{second}");
    assert_token_set(&second, "Alice");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    assert_ne!(first["access_token"], second["access_token"]);
    // Same family.
    let sid = |set: &Value| claims_of(set["access_token"].as_str().unwrap())["sid"].clone();
    assert_eq!(sid(&first), sid(&second));
    // Both access tokens of the live family work.
    for set in [&first, &second] {
        let mut c = server.connect().await;
        expect_success(&mut c, json!({"cmd": "auth", "token": set["access_token"]})).await;
    }
    // The new refresh token rotates again.
    let (status, third) = server.post_json("/auth/refresh", json!({"refresh_token": r2})).await;
    assert_eq!(status, 200, "{third}");
    assert_ne!(third["refresh_token"], second["refresh_token"]);

    let invalid = json!({"error": "Invalid or expired refresh token", "code": "invalid_token"});
    for body in [json!({"refresh_token": "not-a-token"}), json!({"refresh_token": first["access_token"]})] {
        let (status, answer) = server.post_json("/auth/refresh", body.clone()).await;
        assert_eq!(status, 401, "{body} -> {answer}");
        assert_eq!(answer, invalid);
    }
}

on_both! { http_refresh_rotates => http_refresh_rotates_sqlite, http_refresh_rotates_postgres; }

async fn http_refresh_reuse_revokes_the_family(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    server.http_register("Alice").await;
    let set = http_login(&server, "Alice", PASSWORD).await;
    let (a1, r1) = (set["access_token"].as_str().unwrap(), set["refresh_token"].as_str().unwrap());
    // Two sockets of the family (via `auth` and via `?token=`), one password socket, one other family.
    let mut by_auth = server.connect().await;
    expect_success(&mut by_auth, json!({"cmd": "auth", "token": a1})).await;
    let (mut by_query, _) = expect_token_upgrade(&server, &format!("/ws?token={a1}")).await;
    let mut by_password = server.login("Alice", PASSWORD).await;
    let other = http_login(&server, "Alice", PASSWORD).await;
    let mut other_family = server.connect().await;
    expect_success(&mut other_family, json!({"cmd": "auth", "token": other["access_token"]})).await;

    let (status, rotated) = server.post_json("/auth/refresh", json!({"refresh_token": r1})).await;
    assert_eq!(status, 200, "{rotated}");
    let (a2, r2) = (rotated["access_token"].as_str().unwrap(), rotated["refresh_token"].as_str().unwrap());

    // Presenting the spent token again.
    let (status, answer) = server.post_json("/auth/refresh", json!({"refresh_token": r1})).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer, json!({"error": "Refresh token reuse detected", "code": "refresh_reuse"}));
    expect_revoked(&mut by_auth).await;
    expect_revoked(&mut by_query).await;

    // The family's tokens stop working: both access tokens and the newest refresh token.
    for token in [a1, a2] {
        let mut c = server.connect().await;
        expect_auth_error(&mut c, json!({"cmd": "auth", "token": token}), "Invalid or expired token", "invalid_token")
            .await;
    }
    let (status, answer) = server.post_json("/auth/refresh", json!({"refresh_token": r2})).await;
    assert_eq!(status, 401, "{answer}");
    // Connections outside the family are untouched.
    ping(&mut by_password).await;
    ping(&mut other_family).await;
    let mut c = server.connect().await;
    expect_success(&mut c, json!({"cmd": "auth", "token": other["access_token"]})).await;
}

on_both! { http_refresh_reuse_revokes_the_family => http_refresh_reuse_revokes_the_family_sqlite, http_refresh_reuse_revokes_the_family_postgres; }

async fn http_logout_with_refresh_token(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    server.http_register("Alice").await;
    let set = http_login(&server, "Alice", PASSWORD).await;
    let access = set["access_token"].as_str().unwrap();
    let (mut live, _) = expect_token_upgrade(&server, &format!("/?token={access}")).await;
    let other = http_login(&server, "Alice", PASSWORD).await;
    let mut other_live = server.connect().await;
    expect_success(&mut other_live, json!({"cmd": "auth", "token": other["access_token"]})).await;

    let r = post_raw(
        &server,
        "/auth/logout",
        Some("application/json"),
        json!({"refresh_token": set["refresh_token"]}).to_string(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    expect_revoked(&mut live).await;
    let mut c = server.connect().await;
    expect_auth_error(&mut c, json!({"cmd": "auth", "token": access}), "Invalid or expired token", "invalid_token")
        .await;
    let (status, _) = server.post_json("/auth/refresh", json!({"refresh_token": set["refresh_token"]})).await;
    assert_eq!(status, 401);
    // The other session is unaffected.
    ping(&mut other_live).await;
    let (status, _) = server.post_json("/auth/refresh", json!({"refresh_token": other["refresh_token"]})).await;
    assert_eq!(status, 200);
}

on_both! { http_logout_with_refresh_token => http_logout_with_refresh_token_sqlite, http_logout_with_refresh_token_postgres; }

#[tokio::test]
async fn http_logout_with_bearer_and_edge_cases() {
    let server = TestServer::spawn().await;
    server.http_register("Alice").await;
    let set = http_login(&server, "Alice", PASSWORD).await;
    let access = set["access_token"].as_str().unwrap();
    let mut live = server.connect().await;
    expect_success(&mut live, json!({"cmd": "auth", "token": access})).await;

    let r = server.http.post(server.url("/auth/logout")).bearer_auth(access).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    expect_revoked(&mut live).await;
    let (status, _) = server.post_json("/auth/refresh", json!({"refresh_token": set["refresh_token"]})).await;
    assert_eq!(status, 401, "logout by bearer revokes the family's refresh tokens too");
    let mut c = server.connect().await;
    expect_auth_error(&mut c, json!({"cmd": "auth", "token": access}), "Invalid or expired token", "invalid_token")
        .await;

    // Neither credential: 400.
    let r = server.http.post(server.url("/auth/logout")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (status, body) = server.post_json("/auth/logout", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "bad_request");
    // Unknown tokens: 204.
    let (status, _) = server.post_json("/auth/logout", json!({"refresh_token": "unknown-token"})).await;
    assert_eq!(status, 204);
    let r = server.http.post(server.url("/auth/logout")).bearer_auth("not.a.jwt").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

#[tokio::test]
async fn http_token_password_grant() {
    let server = TestServer::spawn().await;
    server.http_register("Alice").await;
    let r = post_form(&server, "grant_type=password&username=alice&password=correct+horse&scope=ignored").await;
    let (status, body) = status_json(r).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(body, json!({"access_token": access, "token_type": "bearer", "expires_in": 900}));
    let (_c, ready) = expect_token_upgrade(&server, &format!("/ws?token={access}")).await;
    assert_eq!(ready["user"]["username"], "Alice");
    // grant_type is optional; percent escapes are decoded.
    let (status, body) = status_json(post_form(&server, "username=Alice&password=correct%20horse").await).await;
    assert_eq!(status, 200, "{body}");

    for form in ["username=alice&password=wrong+password", "username=nobody&password=correct+horse"] {
        let r = post_form(&server, form).await;
        assert_eq!(r.status().as_u16(), 401, "{form}");
        assert_eq!(r.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "{form}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"detail": "Incorrect username or password", "error": "invalid_grant"}));
    }
    let (status, body) =
        status_json(post_form(&server, "grant_type=client_credentials&username=alice&password=correct+horse").await)
            .await;
    assert_eq!((status, body), (400, json!({"error": "unsupported_grant_type"})));
    let (status, body) = status_json(post_form(&server, "grant_type=password&username=alice").await).await;
    assert_eq!((status, body), (400, json!({"error": "invalid_request"})));
    let r = post_raw(
        &server,
        "/token",
        Some("application/json"),
        json!({"username": "alice", "password": PASSWORD}).to_string(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 415);
}

async fn imported_bcrypt_hash_is_verified_then_rehashed(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let roles = server.store.roles().await.unwrap();
    let user_role = roles.iter().find(|r| r.name == "user").unwrap().id.clone();
    let created = server
        .store
        .user_create(NewUser {
            username: "Legacy",
            kind: AccountKind::Local,
            password_hash: Some(BCRYPT_SECRET.to_owned()),
            role_ids: vec![user_role],
        })
        .await
        .unwrap();
    let mut c = server.connect().await;
    expect_auth_error(&mut c, login("legacy", "password"), "Invalid password", "invalid_credentials").await;
    let unchanged = server.store.user_by_name("legacy").await.unwrap().unwrap();
    assert_eq!(unchanged.password_hash.as_deref(), Some(BCRYPT_SECRET), "a failed login must not rehash");
    let ready = expect_success(&mut c, login("legacy", "secret")).await;
    assert_eq!(ready["user"]["id"], created.id.as_str());
    assert_eq!(ready["user"]["roles"], json!(["user"]));
    let stored = server.store.user_by_name("legacy").await.unwrap().unwrap();
    let hash = stored.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The new hash verifies the same password, over HTTP too.
    let set = http_login(&server, "Legacy", "secret").await;
    assert_eq!(set["user"]["id"], created.id.as_str());
    let (status, _) = server.post_json("/auth/login", json!({"username": "Legacy", "password": "password"})).await;
    assert_eq!(status, 401);
}

on_both! { imported_bcrypt_hash_is_verified_then_rehashed => imported_bcrypt_hash_is_verified_then_rehashed_sqlite, imported_bcrypt_hash_is_verified_then_rehashed_postgres; }

// ---------------------------------------------------------------------------------------------
// Throttling and the hashing pool

#[tokio::test]
async fn username_locks_after_five_failures() {
    let server = TestServer::spawn().await;
    server.http_register("Victim").await;
    server.http_register("Bystander").await;
    let mut c = server.connect().await;
    for _ in 0..5 {
        expect_auth_error(&mut c, login("victim", "wrong password"), "Invalid password", "invalid_credentials").await;
    }
    // Locked: even the right password is refused, whatever the case of the name.
    let n = expect_rate_limited(&mut c, login("Victim", PASSWORD)).await;
    assert!(n <= 15 * 60, "{n}");
    expect_rate_limited(&mut c, login("VICTIM", PASSWORD)).await;
    let mut fresh = server.connect().await;
    expect_rate_limited(&mut fresh, login("victim", PASSWORD)).await;
    let r = post_raw(
        &server,
        "/auth/login",
        Some("application/json"),
        json!({"username": "victim", "password": PASSWORD}).to_string(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Each refusal is counted, the HTTP one included; the five wrong passwords were failures.
    assert_eq!(server.metric("confab_rate_limited_total{class=\"auth\"}").await, 4.0);
    // Other accounts are not locked, and the connection is still usable.
    let ready = expect_success(&mut c, login("bystander", PASSWORD)).await;
    assert_eq!(ready["user"]["username"], "Bystander");
}

#[tokio::test]
async fn ip_bucket_refuses_after_ten_failures() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = true).await;
    server.http_register("Alice").await;
    let mut c = server.connect().await;
    // Ten attempts from one address are answered normally (the bucket starts full); the
    // registration of Alice was the first.
    for i in 0..9 {
        expect_auth_error(
            &mut c,
            register(&format!("x{i}!"), PASSWORD),
            "Username can only contain letters, numbers, hyphens, and underscores",
            "invalid_username",
        )
        .await;
    }
    // The bucket refills one token per 6 s, so allow a few more failures before it must be empty.
    let mut refused = None;
    for i in 0..5 {
        let r = c.request(register(&format!("y{i}!"), PASSWORD)).await;
        assert_eq!(r["cmd"], "auth_error", "{r}");
        if r["code"] == "auth_rate_limited" {
            refused = Some(retry_seconds(r["val"].as_str().unwrap()));
            break;
        }
        assert_eq!(r["code"], "invalid_username", "{r}");
    }
    let n = refused.expect("the per-IP bucket never refused");
    assert!(n <= 6, "one token comes back every 6 s: {n}");
    // While empty, every attempt from this address is refused, even with the right password.
    expect_rate_limited(&mut c, login("alice", PASSWORD)).await;
    let mut other_socket = server.connect().await;
    expect_rate_limited(&mut other_socket, login("alice", PASSWORD)).await;
    // Over HTTP: 429 with Retry-After and the HTTP text.
    let r = post_raw(
        &server,
        "/auth/login",
        Some("application/json"),
        json!({"username": "alice", "password": PASSWORD}).to_string(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": format!("Too many requests. Try again in {retry} seconds"), "code": "rate_limited"})
    );
    let r = post_form(&server, "username=alice&password=correct+horse").await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn rate_limits_disabled_keeps_only_the_username_lock() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = false).await;
    server.http_register("Victim").await;
    let mut c = server.connect().await;
    // Far more failures than the bucket's capacity, none refused.
    for i in 0..20 {
        expect_auth_error(
            &mut c,
            register(&format!("x{i}!"), PASSWORD),
            "Username can only contain letters, numbers, hyphens, and underscores",
            "invalid_username",
        )
        .await;
    }
    for i in 0..12 {
        let (status, body) =
            server.post_json("/auth/login", json!({"username": format!("nobody{i}"), "password": PASSWORD})).await;
        assert_eq!(status, 401, "{body}");
    }
    // The per-username lock still applies.
    for _ in 0..5 {
        expect_auth_error(&mut c, login("Victim", "wrong password"), "Invalid password", "invalid_credentials").await;
    }
    expect_rate_limited(&mut c, login("Victim", PASSWORD)).await;
    let (status, body) = server.post_json("/auth/login", json!({"username": "victim", "password": PASSWORD})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn login_flood_gets_busy_and_sockets_keep_working() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| {
        cfg.auth.hash_workers = 1;
        cfg.auth.hash_queue = 2;
        cfg.rate_limits.enabled = false;
        // A hundred requests at once from one address are a hundred connections.
        cfg.security.max_connections_per_ip = 200;
    })
    .await;
    server.http_register("Flood").await;
    let mut pinger = server.register("Pinger").await;

    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let http = server.http.clone();
        let url = server.url("/auth/login");
        flood.spawn(async move {
            let r = http.post(url).json(&json!({"username": "flood", "password": PASSWORD})).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    // The event loop keeps serving sockets while the pool is saturated.
    for _ in 0..20 {
        ping(&mut pinger).await;
    }
    let (mut ok, mut busy) = (0, 0);
    while let Some(result) = flood.join_next().await {
        let (status, body) = result.unwrap();
        match status {
            200 => {
                assert_token_set(&body, "Flood");
                ok += 1;
            }
            503 => {
                assert_eq!(body, json!({"error": "Server busy, try again", "code": "busy"}));
                busy += 1;
            }
            // Five attempts on one name in flight at once are as many as could lock it: the
            // others wait their turn (PROTOCOL §8.3).
            429 => assert_eq!(body["code"], "rate_limited", "{body}"),
            other => panic!("unexpected answer to a login: {other} {body}"),
        }
    }
    assert!(busy > 0, "a queue of 2 behind one worker must refuse some of 100 concurrent logins");
    assert!(ok > 0, "the pool must still complete some logins");
    ping(&mut pinger).await;
}

#[tokio::test]
async fn hash_queue_zero_is_busy() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.auth.hash_queue = 0).await;
    let mut c = server.connect().await;
    expect_auth_error(&mut c, login("anyone", PASSWORD), "Server busy, try again", "busy").await;
    expect_auth_error(&mut c, register("Alice", PASSWORD), "Server busy, try again", "busy").await;
    let (status, body) = server.post_json("/auth/login", json!({"username": "anyone", "password": PASSWORD})).await;
    assert_eq!((status, body), (503, json!({"error": "Server busy, try again", "code": "busy"})));
    // Busy is not a failed attempt: the connection is still open.
    ping(&mut c).await;
}

// ---------------------------------------------------------------------------------------------
// Common HTTP answers, info, health, metrics

#[tokio::test]
async fn http_common_answers() {
    let server = TestServer::spawn().await;
    let r = server.http.get(server.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "Not found", "code": "not_found"}));

    let r = server.http.get(server.url("/auth/login")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "Method not allowed", "code": "bad_request"}));

    let body = json!({"username": "alice", "password": PASSWORD}).to_string();
    for ct in [Some("text/plain"), None] {
        let r = post_raw(&server, "/auth/login", ct, body.clone()).await;
        assert_eq!(r.status().as_u16(), 415, "{ct:?}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Content-Type must be application/json", "code": "bad_request"})
        );
    }
    for path in ["/auth/login", "/auth/register", "/auth/refresh"] {
        let r = post_raw(&server, path, Some("application/json"), "{not json".to_owned()).await;
        assert_eq!(r.status().as_u16(), 400, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "Invalid JSON body", "code": "bad_request"}));
    }
    let big = json!({"username": "alice", "password": "p".repeat(70 * 1024)}).to_string();
    let r = post_raw(&server, "/auth/login", Some("application/json"), big).await;
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Request body too large (max 65536 bytes)", "code": "too_large"})
    );

    for path in ["/auth/login", "/info", "/no/such/route"] {
        let r = server.http.request(reqwest::Method::OPTIONS, server.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204, "{path}");
    }
}

#[tokio::test]
async fn info_health_and_readiness() {
    let server = TestServer::spawn().await;
    let _alice = server.register("Alice").await;
    let r = server.http.get(server.url("/info")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"));
    let info: Value = r.json().await.unwrap();
    let s = &info["server"];
    assert_eq!(s["name"], "Confab");
    assert_eq!(s["owner"], json!({"name": "Admin"}));
    assert!(s["icon"].is_string() && s["banner"].is_string(), "{info}");
    let stats = &info["stats"];
    assert_eq!(stats["total_users"], 1, "{info}");
    assert_eq!(stats["connected_users"], 1, "{info}");
    assert_eq!(stats["online_users"], 1, "{info}");
    assert!(stats["total_channels"].as_u64().unwrap() >= 1, "{info}");
    assert!(stats["total_roles"].as_u64().unwrap() >= 1, "{info}");

    let r = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    // Only the public routes answer `*`; others reflect an Origin only when it is allowed.
    let r = server.http.get(server.url("/healthz")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
    let r = server.http.get(server.url("/info")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"));
    let r = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready"}));
}

#[tokio::test]
async fn metrics_from_loopback() {
    let server = TestServer::spawn().await;
    server.http_register("Alice").await;
    let mut alice = server.login("Alice", PASSWORD).await;
    let before = server.metric("confab_db_queue_seconds_count").await;
    let sent = alice.request(json!({"cmd": "message_new", "channel": "general", "content": "hi"})).await;
    assert_eq!(sent["cmd"], "message_new", "{sent}");
    // Each change's wait for the writer is counted, so the bench can tell it from the commit.
    let after = server.metric("confab_db_queue_seconds_count").await;
    assert!(after >= before + 1.0, "confab_db_queue_seconds_count {before} → {after}");
    let r = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = r.text().await.unwrap();
    assert!(text.contains("confab_connections{state=\"authenticated\"} 1"), "{text}");
    assert!(text.contains("confab_auth_attempts_total{method=\"password\",outcome=\"success\"} 1"), "{text}");
    assert!(text.contains("confab_auth_attempts_total{method=\"register\",outcome=\"success\"} 1"), "{text}");
    assert!(!text.contains("Alice") && !text.contains("alice"), "metrics must not name users: {text}");
}

#[tokio::test]
async fn metrics_closed_to_others_open_with_token() {
    let token = "metrics-scraper-token-0123456789";
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| {
        cfg.metrics.allow = vec![];
        cfg.metrics.token = token.to_owned();
    })
    .await;
    let r = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "Not found", "code": "not_found"}));
    let r = server.http.get(server.url("/metrics")).bearer_auth("wrong-token").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = server.http.get(server.url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("confab_connections"));

    let closed = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.metrics.allow = vec![]).await;
    let r = closed.http.get(closed.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "no allowed network and no token configured");
    let r = closed.http.get(closed.url("/metrics")).bearer_auth("").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "an empty configured token admits nobody");
}
