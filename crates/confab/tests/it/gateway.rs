//! The gateway and core messaging over real sockets: handshake, framing, listeners, heartbeat,
//! origin and connection limits, presence, `message_new` (with nonces), history paging, and
//! fan-out past a slow consumer (PROTOCOL §1, §2.1, §2.2, §2.11, §4.1, §5.6, §6.1, §7.4, §7.5, §8.1,
//! §8.2; DESIGN §1, §3).
//!
//! No test waits on a clock to decide an outcome: each waits for an event (a packet, a close, a
//! metric) and fails after `support::WAIT`. Absence is proven with a fence: a `ping` sent after the
//! cause, whose `pong` must arrive before anything the cause could have queued.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use confab::config::AuthMode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        protocol::{
            CloseFrame,
            frame::{
                Frame,
                coding::{Data, OpCode},
            },
        },
    },
};

use crate::support::{Backend, Client, Closed, TestServer, WAIT, written};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A server on `backend` whose configuration `tweak` may change, with the rate limiter off (these
/// tests send more messages than the `messages` class allows and are not about rate limits).
pub(crate) async fn spawn_unlimited(backend: Backend, tweak: impl FnOnce(&mut confab::config::Config)) -> TestServer {
    TestServer::spawn_with(backend, |c| {
        c.rate_limits.enabled = false;
        tweak(c);
    })
    .await
}

/// The next WebSocket message of any kind; `None` when the stream ended.
async fn next_ws(c: &mut Client) -> Option<Result<Message, tungstenite::Error>> {
    tokio::time::timeout(WAIT, c.ws.next()).await.expect("timed out waiting for the socket")
}

/// A packet without its `listener` (for comparing a reply with an expected shape).
fn unlisten(p: &Value) -> Value {
    let mut p = p.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("listener");
    }
    p
}

/// Asserts `p` is exactly the `error` packet for `src` with `val` and `code` (plus a listener).
#[track_caller]
fn assert_error(p: &Value, src: &str, val: &str, code: &str) {
    assert!(p["listener"].is_string(), "error without listener: {p}");
    assert_eq!(unlisten(p), json!({"cmd": "error", "src": src, "val": val, "code": code}));
}

/// The exact packet for an undecodable frame (PROTOCOL §1.2).
fn bad_frame(val: &str) -> Value {
    json!({"cmd": "error", "src": null, "val": val, "code": "bad_frame"})
}

static FENCES: AtomicUsize = AtomicUsize::new(0);

/// Sends a `ping` with a unique listener and returns every packet that arrived before its `pong`.
/// Everything the server queued for this connection before handling the ping is in the list.
async fn sync(c: &mut Client) -> Vec<Value> {
    let listener = format!("fence-{}", FENCES.fetch_add(1, Ordering::Relaxed));
    c.send(json!({"cmd": "ping", "listener": listener})).await;
    let mut before = Vec::new();
    loop {
        let p = c.recv().await;
        if p["listener"] == listener.as_str() {
            assert_eq!(unlisten(&p), json!({"cmd": "pong", "val": "pong"}));
            return before;
        }
        before.push(p);
    }
}

/// Sends `frame` with `listener` and returns the first packet carrying it, or `None` when the
/// connection ends first.
async fn answer(c: &mut Client, mut frame: Value, listener: &str) -> Option<Value> {
    frame["listener"] = json!(listener);
    if c.ws.send(Message::text(frame.to_string())).await.is_err() {
        return None;
    }
    loop {
        match next_ws(c).await {
            Some(Ok(Message::Text(t))) => {
                let p: Value = serde_json::from_str(t.as_str()).expect("server sent JSON");
                if p["listener"] == listener {
                    return Some(p);
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

pub(crate) const OPEN_CONNECTIONS: &str = "confab_connections{state=\"open\"}";

/// Sends a message to #general and returns the echo.
async fn say(c: &mut Client, content: &str) -> Value {
    let echo = c.request(json!({"cmd": "message_new", "channel": "general", "content": content})).await;
    assert_eq!(echo["cmd"], "message_new", "{echo}");
    echo
}

/// `id` of the message in a `message_new` packet.
fn id_of(p: &Value) -> String {
    p["message"]["id"].as_str().unwrap_or_else(|| panic!("no message id in {p}")).to_owned()
}

/// Message ids of a `messages_get` reply, in order, without the first start's welcome.
fn ids(reply: &Value) -> Vec<String> {
    assert_eq!(reply["cmd"], "messages_get", "{reply}");
    written(reply).iter().map(|m| m["id"].as_str().expect("message id").to_owned()).collect()
}

/// Asserts the validator key is `originChats-<public_url>-<32 × [A-Za-z0-9]>`.
#[track_caller]
fn assert_validator_key(key: &Value, public_url: &str) {
    let key = key.as_str().unwrap_or_else(|| panic!("validator_key is not a string: {key}"));
    let nonce = key
        .strip_prefix(&format!("originChats-{public_url}-"))
        .unwrap_or_else(|| panic!("validator_key {key:?} does not start with originChats-{public_url}-"));
    assert_eq!(nonce.len(), 32, "{key}");
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
}

// ---------------------------------------------------------------------------------------------
// Handshake (§2.1)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn handshake_describes_the_server() {
    let server = TestServer::spawn().await;
    let a = server.connect().await;
    let b = server.connect().await;
    let public_url = format!("http://{}", server.addr);
    let val = &a.handshake["val"];

    assert_eq!(val["server"]["name"], "Confab");
    assert_eq!(val["server"]["owner"], json!({"name": "Admin"}));
    assert_eq!(val["server"]["icon"], "");
    assert_eq!(val["server"]["banner"], "");
    assert_eq!(val["server"]["url"], public_url.as_str());
    assert_eq!(val["limits"], json!({"post_content": 2000, "search_results": 30}));
    assert_eq!(val["version"], "1.1.0");
    assert_eq!(val["auth_mode"], "cracked-only");
    assert_eq!(val["permissions"], json!(confab_proto::PERMISSIONS));

    assert_validator_key(&val["validator_key"], &public_url);
    assert_validator_key(&b.handshake["val"]["validator_key"], &public_url);
    assert_ne!(val["validator_key"], b.handshake["val"]["validator_key"], "validator_key must be fresh per connection");

    let caps: Vec<&str> = val["capabilities"]
        .as_array()
        .expect("capabilities array")
        .iter()
        .map(|c| c.as_str().expect("capability name"))
        .collect();
    let mut sorted = caps.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(caps, sorted, "capabilities must be sorted by byte value, without duplicates");
    assert_eq!(caps, confab::gateway::handshake::capabilities(AuthMode::Local, true, true, true));
    for name in ["login", "register", "ping", "message_new", "messages_get", "message_get"] {
        assert!(caps.contains(&name), "{name} missing from {caps:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn handshake_uses_the_configured_public_url() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.public_url = "https://chat.example.com/".into();
        c.limits.post_content = 50;
    })
    .await;
    let mut c = server.connect().await;
    let val = &c.handshake["val"];
    assert_eq!(val["server"]["url"], "https://chat.example.com");
    assert_validator_key(&val["validator_key"], "https://chat.example.com");
    // The advertised limit is the enforced one (§1.6).
    assert_eq!(val["limits"]["post_content"], 50);
    c.send(json!({"cmd": "register", "username": "Alice", "password": "correct horse"})).await;
    c.expect_auth().await;
    let p = c.request(json!({"cmd": "message_new", "channel": "general", "content": "y".repeat(51)})).await;
    assert_error(&p, "message_new", "Message too long. Maximum length is 50 characters", "too_long");
    say(&mut c, &"y".repeat(50)).await;
    server.stop().await;
}

/// Plausible fields for any command: enough that a handler reaches its own validation.
fn plausible(cmd: &str, message_id: &str) -> Value {
    let mut f = json!({
        "cmd": cmd, "channel": "general", "id": message_id, "message_id": message_id, "around": message_id,
        "user": "Bob", "content": "capability check", "emoji": "👍", "name": "capcheck", "query": "hello",
        "limit": 5, "status": "online", "text": "", "roles": ["user"],
    });
    match cmd {
        "resume" => f["channels"] = json!({"general": 0}),
        "login" | "register" => {
            f["username"] = json!("Alice");
            f["password"] = json!("correct horse");
        }
        "auth" | "tokenauth" => f["token"] = json!("x"),
        "botauth" => {
            f["botusername"] = json!("bot");
            f["bottoken"] = json!("x");
        }
        _ => {}
    }
    f
}

#[tokio::test]
async fn every_capability_is_dispatched() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("Alice").await;
    let _bob = server.register("Bob").await;
    let message_id = id_of(&say(&mut alice, "hello").await);
    let mut caps: Vec<String> = alice.handshake["val"]["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .map(|c| c.as_str().expect("name").to_owned())
        .collect();
    assert!(!caps.is_empty());
    // `user_leave` deletes the account: run it last.
    caps.sort_by_key(|c| c == "user_leave");
    for cap in caps {
        if cap == "attachment_upload" {
            // Advertised for the official client's upload button; it is an HTTP route (§2.1).
            continue;
        }
        let listener = format!("cap-{cap}");
        match answer(&mut alice, plausible(&cap, &message_id), &listener).await {
            Some(p) => assert!(
                !(p["cmd"] == "error" && p["code"] == "unknown_command"),
                "advertised capability {cap} is not dispatched: {p}"
            ),
            None => assert_eq!(cap, "user_leave", "{cap} closed the connection without an answer"),
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Framing (§1.2, §1.3, §4.1, §7.5)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn undecodable_frames_get_bad_frame_errors() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    let cases = [
        ("{", "Invalid JSON"),
        (r#"{"cmd":"ping""#, "Invalid JSON"),
        ("42", "Invalid message format: expected a dictionary, got number"),
        ("-1.5", "Invalid message format: expected a dictionary, got number"),
        (r#""ping""#, "Invalid message format: expected a dictionary, got string"),
        ("true", "Invalid message format: expected a dictionary, got boolean"),
        ("null", "Invalid message format: expected a dictionary, got null"),
        ("[]", "Invalid array frame"),
        ("[1]", "Invalid array frame"),
    ];
    for (text, val) in cases {
        c.send_raw(text).await;
        assert_eq!(c.recv().await, bad_frame(val), "reply to {text}");
    }
    // Nine bad frames so far: a tenth would close; continue on a fresh connection.
    let mut c = server.register("Alice").await;
    sync(&mut c).await;
    let cases = [
        (r#"["message_new",{},3]"#, "Invalid array frame"),
        (r#"[{"cmd":"ping"}]"#, "Invalid array frame"),
        (r#"{"cmd":5}"#, "Missing or invalid cmd"),
        (r#"{"cmd":null}"#, "Missing or invalid cmd"),
        (r#"{"val":"ping","listener":"x"}"#, "Missing or invalid cmd"),
    ];
    for (text, val) in cases {
        c.send_raw(text).await;
        assert_eq!(c.recv().await, bad_frame(val), "reply to {text}");
    }
    c.ws.send(Message::binary(br#"{"cmd":"ping"}"#.to_vec())).await.expect("send binary");
    assert_eq!(c.recv().await, bad_frame("Invalid JSON"), "reply to a binary frame");
    // Still open and authenticated.
    assert!(sync(&mut c).await.is_empty());
    say(&mut c, "still here").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_text_frames_get_invalid_json() {
    let server = TestServer::spawn().await;
    let mut c = server.register("Alice").await;
    sync(&mut c).await;
    // A text frame whose payload is not UTF-8: answered like invalid JSON. The WebSocket library
    // cannot read on after such a frame, so the server then closes with 1007 (invalid payload).
    let raw = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(raw)).await.expect("send invalid UTF-8");
    match next_ws(&mut c).await {
        Some(Ok(Message::Text(t))) => {
            let p: Value = serde_json::from_str(t.as_str()).expect("JSON");
            assert_eq!(p, bad_frame("Invalid JSON"), "reply to invalid UTF-8");
        }
        other => panic!("expected the Invalid JSON error for a non-UTF-8 text frame, got {other:?}"),
    }
    assert!(matches!(c.closed().await, Closed::Frame(1007, _)));
    // Other users are unaffected.
    let mut bob = server.register("Bob").await;
    say(&mut bob, "still here").await;
    server.stop().await;
}

#[tokio::test]
async fn ten_bad_frames_within_a_minute_close_with_4002() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    for i in 0..9 {
        c.send_raw("not json").await;
        assert_eq!(c.recv().await, bad_frame("Invalid JSON"), "bad frame {i}");
    }
    // Good frames in between neither close the connection nor reset the count.
    assert!(sync(&mut c).await.is_empty());
    c.send_raw("[]").await;
    assert_eq!(c.recv().await, bad_frame("Invalid array frame"));
    match c.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 4002),
        Closed::Dropped => panic!("expected close 4002, the connection was dropped"),
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_commands_and_wrong_field_types() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    // Before auth: ping works, anything else asks for authentication.
    c.send(json!({"cmd": "ping"})).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong"}));
    let p = c.request(json!({"cmd": "ping"})).await;
    assert_eq!(unlisten(&p), json!({"cmd": "pong", "val": "pong"}));
    for cmd in ["frobnicate", "messages_get", "message_new"] {
        let p = c.request(json!({"cmd": cmd, "channel": "general", "content": "x"})).await;
        assert_eq!(
            unlisten(&p),
            json!({"cmd": "auth_error", "val": "Authentication required", "code": "unauthenticated"}),
            "{cmd} before auth"
        );
    }
    c.send(json!({"cmd": "register", "username": "Alice", "password": "correct horse"})).await;
    c.expect_auth().await;

    let p = c.request(json!({"cmd": "frobnicate"})).await;
    assert_error(&p, "frobnicate", "Unknown command: frobnicate", "unknown_command");
    let p = c.request(json!({"cmd": "Message_New", "channel": "general", "content": "x"})).await;
    assert_error(&p, "Message_New", "Unknown command: Message_New", "unknown_command");
    for cmd in ["login", "register", "auth"] {
        let p = c.request(json!({"cmd": cmd, "username": "Alice", "password": "correct horse"})).await;
        assert_error(&p, cmd, &format!("Unknown command: {cmd}"), "already_authenticated");
    }

    for bad in [json!({"start": true}), json!({"limit": "x"}), json!({"limit": 2.5}), json!({"start": [1]})] {
        let mut frame = json!({"cmd": "messages_get", "channel": "general"});
        for (k, v) in bad.as_object().expect("object") {
            frame[k] = v.clone();
        }
        let p = c.request(frame).await;
        assert_error(&p, "messages_get", "Invalid start or limit", "bad_request");
    }
    let p = c.request(json!({"cmd": "message_new", "channel": "general", "content": 5})).await;
    assert_eq!(p["cmd"], "error", "{p}");
    assert_eq!(p["src"], "message_new", "{p}");
    assert_eq!(p["code"], "bad_request", "{p}");
    // Nothing was stored by the refused frames.
    let history = c.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(written(&history), Vec::<Value>::new(), "{history}");
    server.stop().await;
}

#[tokio::test]
async fn array_frames_are_rewritten() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    c.send_raw(r#"["ping"]"#).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong"}));
    c.send_raw(r#"["ping",{"listener":"a1"}]"#).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong", "listener": "a1"}));
    // A `cmd` inside the object is overwritten by the array's.
    c.send_raw(r#"["ping",{"cmd":"frobnicate","listener":"a2"}]"#).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong", "listener": "a2"}));
    c.send_raw(r#"["register",{"username":"Alice","password":"correct horse","listener":"a3"}]"#).await;
    let ok = c.expect_auth().await;
    assert_eq!(ok["listener"], "a3");

    c.send_raw(r#"["message_new",{"channel":"general","content":"x","listener":"a4"}]"#).await;
    let echo = c.recv_cmd("message_new").await;
    assert_eq!(echo["listener"], "a4");
    assert_eq!(echo["message"]["content"], "x");
    assert_eq!(echo["message"]["user"], "Alice");
    // `[cmd, value]` puts the value in `val`, so this messages_get names no channel.
    c.send_raw(r#"["messages_get","general"]"#).await;
    assert_eq!(
        c.recv().await,
        json!({"cmd": "error", "src": "messages_get", "val": "Channel or thread_id required", "code": "bad_request"})
    );
    let history = c.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(ids(&history), vec![id_of(&echo)]);
    server.stop().await;
}

#[tokio::test]
async fn listener_is_echoed_only_when_valid_and_only_to_the_requester() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("Alice").await;
    let mut bob = server.register("Bob").await;
    sync(&mut alice).await;

    let longest = "é".repeat(256);
    alice.send(json!({"cmd": "ping", "listener": longest})).await;
    assert_eq!(alice.recv().await, json!({"cmd": "pong", "val": "pong", "listener": longest}));
    alice.send(json!({"cmd": "ping", "listener": ""})).await;
    assert_eq!(alice.recv().await, json!({"cmd": "pong", "val": "pong", "listener": ""}));
    for ignored in [json!("x".repeat(257)), json!(5), json!({"a": 1}), json!(null)] {
        alice.send(json!({"cmd": "ping", "listener": ignored})).await;
        assert_eq!(alice.recv().await, json!({"cmd": "pong", "val": "pong"}), "listener {ignored}");
    }
    // Errors carry it too.
    alice.send(json!({"cmd": "frobnicate", "listener": "err"})).await;
    assert_eq!(alice.recv().await["listener"], "err");

    alice.send(json!({"cmd": "message_new", "channel": "general", "content": "hi", "listener": "mine"})).await;
    let echo = alice.recv_cmd("message_new").await;
    assert_eq!(echo["listener"], "mine");
    let copy = bob.recv_cmd("message_new").await;
    assert!(copy.get("listener").is_none(), "broadcast copy carries the listener: {copy}");
    assert_eq!(copy, unlisten(&echo));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Transport limits, auth deadline, heartbeat (§1.5, §1.6, §2.2)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ping_works_before_auth() {
    let server = TestServer::spawn().await;
    let mut c = server.connect().await;
    c.send(json!({"cmd": "ping"})).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong"}));
    c.send(json!({"cmd": "ping", "listener": "p"})).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong", "listener": "p"}));
    server.stop().await;
}

/// A `ping` frame padded to exactly `len` bytes.
fn padded_ping(len: usize) -> String {
    let empty = json!({"cmd": "ping", "listener": "big", "pad": ""}).to_string();
    let frame = json!({"cmd": "ping", "listener": "big", "pad": "x".repeat(len - empty.len())}).to_string();
    assert_eq!(frame.len(), len);
    frame
}

#[tokio::test]
async fn frames_over_64_kib_close_with_1009() {
    let server = TestServer::spawn().await;
    let mut c = server.register("Alice").await;
    sync(&mut c).await;
    c.send_raw(&padded_ping(65_536)).await;
    assert_eq!(c.recv().await, json!({"cmd": "pong", "val": "pong", "listener": "big"}));
    c.send_raw(&padded_ping(65_537)).await;
    match c.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 1009),
        Closed::Dropped => panic!("expected close 1009, the connection was dropped"),
    }
    server.stop().await;
}

#[tokio::test]
async fn unauthenticated_connections_close_at_the_auth_deadline() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.security.auth_deadline_s = 1).await;
    let mut c = server.connect().await;
    assert_eq!(c.handshake["val"]["params"]["auth_deadline_s"], 1);
    assert_eq!(c.closed().await, Closed::Frame(4001, "Authentication timed out".into()));
    server.stop().await;
}

/// A client's Close frame is answered with one (RFC 6455 §5.5.1), echoing its code, before or
/// after auth: the client sees a clean close, not an abrupt end (1006).
#[tokio::test]
async fn a_clients_close_frame_is_answered_with_a_close_frame() {
    let server = TestServer::spawn().await;
    let unauthenticated = server.connect().await;
    let authenticated = server.register("Alice").await;
    for (mut c, code) in [(unauthenticated, 1000), (authenticated, 4321)] {
        let frame = CloseFrame { code: code.into(), reason: "bye".into() };
        c.ws.send(Message::Close(Some(frame))).await.expect("send close");
        let answer = loop {
            match next_ws(&mut c).await {
                Some(Ok(Message::Close(answer))) => break answer,
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected the server's close frame, got {other:?}"),
            }
        };
        assert_eq!(answer.map(|f| u16::from(f.code)), Some(code));
        // After the close handshake the stream ends cleanly.
        assert!(next_ws(&mut c).await.is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_pings_live_clients() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.security.heartbeat_s = 1;
        c.security.dead_peer_s = 2;
    })
    .await;
    let mut unauthenticated = server.connect().await;
    let mut c = server.register("Alice").await;
    // Four heartbeats span more than the dead-peer timeout: a client that reads (and so answers
    // the control Pings) stays open. Each beat is a JSON ping and a control Ping.
    let (mut json_pings, mut control_pings) = (0, 0);
    while json_pings < 4 || control_pings < 4 {
        match next_ws(&mut c).await {
            Some(Ok(Message::Text(t))) => {
                let p: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if p["cmd"] == "ping" {
                    assert_eq!(p, json!({"cmd": "ping"}));
                    json_pings += 1;
                }
            }
            Some(Ok(Message::Ping(_))) => control_pings += 1,
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    // Unauthenticated connections get them too.
    assert_eq!(unauthenticated.recv_cmd("ping").await, json!({"cmd": "ping"}));
    for p in sync(&mut c).await {
        assert_eq!(p["cmd"], "ping", "{p}");
    }
    say(&mut c, "alive").await;
    server.stop().await;
}

#[tokio::test]
async fn silent_peers_are_closed_with_4000() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.security.heartbeat_s = 1;
        c.security.dead_peer_s = 2;
    })
    .await;
    let mut silent = server.register("Alice").await;
    // Don't touch the socket (no reads, so no Pong either) until the server has given up on it.
    server.wait_metric("confab_closes_total{code=\"4000\"}", |v| v >= 1.0).await;
    match silent.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 4000),
        Closed::Dropped => panic!("expected close 4000, the connection was dropped"),
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Origin (§8.1)
// ---------------------------------------------------------------------------------------------

/// Opens a socket with `Origin: origin`; the first thing received must be the close 1008.
async fn assert_origin_refused(server: &TestServer, origin: &str) {
    let mut c = Client::open(&server.ws_url("/"), &[("Origin", origin)]).await.expect("the upgrade itself succeeds");
    match next_ws(&mut c).await {
        Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
            assert_eq!(u16::from(code), 1008, "origin {origin}");
            assert_eq!(reason.as_str(), "Origin not allowed", "origin {origin}");
        }
        other => panic!("origin {origin}: expected close 1008 before anything else, got {other:?}"),
    }
}

/// Opens a socket with `Origin: origin` (or none); the handshake must arrive.
async fn assert_origin_allowed(server: &TestServer, origin: Option<&str>) {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    let mut c = Client::open(&server.ws_url("/"), &headers).await.expect("upgrade");
    let p = c.recv().await;
    assert_eq!(p["cmd"], "handshake", "origin {origin:?}: {p}");
}

#[tokio::test]
async fn origin_is_checked_on_upgrade() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.public_url = "https://chat.example.com".into();
        c.allowed_origins = vec!["https://app.example.org".into()];
    })
    .await;
    let port = server.addr.port();
    assert_origin_allowed(&server, None).await;
    // Same host as the request's Host header (127.0.0.1:<port>).
    assert_origin_allowed(&server, Some(&format!("http://127.0.0.1:{port}"))).await;
    // The public URL's origin.
    assert_origin_allowed(&server, Some("https://chat.example.com")).await;
    // Listed in allowed_origins.
    assert_origin_allowed(&server, Some("https://app.example.org")).await;

    assert_origin_refused(&server, "https://evil.example").await;
    assert_origin_refused(&server, &format!("http://localhost:{port}")).await;
    assert_origin_refused(&server, &format!("http://127.0.0.1:{}", port.wrapping_add(1))).await;
    assert_origin_refused(&server, "https://app.example.org.evil.example").await;
    assert_origin_refused(&server, "https://chat.example.com.evil.example").await;
    assert_origin_refused(&server, "null").await;
    server.stop().await;
}

#[tokio::test]
async fn wildcard_origin_allows_anything() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.allowed_origins = vec!["*".into()]).await;
    assert_origin_allowed(&server, Some("https://evil.example")).await;
    assert_origin_allowed(&server, Some("null")).await;
    assert_origin_allowed(&server, None).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Connection limits (§8.2)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connections_per_ip_are_limited_before_the_upgrade() {
    // Every accepted connection counts: the test's HTTP client keeps one open (from waiting for
    // the server to be ready), and two sockets make three.
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.security.max_connections_per_ip = 3).await;
    let first = server.connect().await;
    let _second = server.connect().await;
    match Client::open(&server.ws_url("/"), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 429),
        Err(other) => panic!("expected HTTP 429, got {other}"),
        Ok(_) => panic!("a third connection from one IP was upgraded"),
    }
    // A closed connection gives its slot back.
    drop(first);
    server.wait_metric(OPEN_CONNECTIONS, |v| v <= 1.0).await;
    let mut third = Client::open(&server.ws_url("/"), &[]).await.expect("a freed slot admits a new connection");
    assert_eq!(third.recv().await["cmd"], "handshake");
    server.stop().await;
}

#[tokio::test]
async fn connections_per_user_are_limited() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.security.max_connections_per_user = 1).await;
    let mut first = server.register("Alice").await;
    let mut second = server.connect().await;
    second.send(json!({"cmd": "login", "username": "alice", "password": "correct horse", "listener": "again"})).await;
    assert_eq!(
        second.recv().await,
        json!({"cmd": "auth_error", "val": "Too many connections", "code": "too_many_connections", "listener": "again"})
    );
    match second.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, 1008),
        Closed::Dropped => panic!("expected close 1008, the connection was dropped"),
    }
    // The first connection is untouched.
    sync(&mut first).await;
    say(&mut first, "still here").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Presence (§2.11)
// ---------------------------------------------------------------------------------------------

fn presence(name: &str) -> Value {
    json!({"username": name, "roles": ["user"], "color": null})
}

fn count_cmd(packets: &[Value], cmd: &str) -> usize {
    packets.iter().filter(|p| p["cmd"] == cmd).count()
}

async fn online_names(c: &mut Client) -> Vec<String> {
    let p = c.request(json!({"cmd": "users_online"})).await;
    assert_eq!(p["cmd"], "users_online", "{p}");
    p["users"].as_array().expect("users").iter().map(|u| u["username"].as_str().expect("name").to_owned()).collect()
}

#[tokio::test]
async fn presence_follows_the_first_and_last_connection() {
    let server = TestServer::spawn().await;
    let mut alice1 = server.register("Alice").await;
    let own = sync(&mut alice1).await;
    assert!(own.contains(&json!({"cmd": "user_connect", "user": presence("Alice")})), "{own:?}");

    // Bob registers by hand to check the order and the listener: auth_success, ready (both with
    // the listener), then user_join and user_connect (events, without it).
    let mut bob = server.connect().await;
    bob.send(json!({"cmd": "register", "username": "Bob", "password": "correct horse", "listener": "reg"})).await;
    let mut own = vec![bob.recv().await];
    own.extend(sync(&mut bob).await);
    let cmds: Vec<&str> = own.iter().map(|p| p["cmd"].as_str().unwrap_or("")).collect();
    assert_eq!(cmds, vec!["auth_success", "ready", "user_join", "user_connect"], "{own:?}");
    assert_eq!(own[0], json!({"cmd": "auth_success", "val": "Authentication successful", "listener": "reg"}));
    assert_eq!(own[1]["listener"], "reg");
    assert_eq!(own[1]["user"]["username"], "Bob");
    assert_eq!(own[2], json!({"cmd": "user_join", "user": presence("Bob")}));
    assert_eq!(own[3], json!({"cmd": "user_connect", "user": presence("Bob")}));
    let seen = sync(&mut alice1).await;
    assert!(seen.contains(&json!({"cmd": "user_join", "user": presence("Bob")})), "{seen:?}");
    assert!(seen.contains(&json!({"cmd": "user_connect", "user": presence("Bob")})), "{seen:?}");
    assert_eq!(count_cmd(&seen, "user_connect"), 1, "{seen:?}");

    // A second connection of Alice announces nothing.
    let mut alice2 = server.login("alice", "correct horse").await;
    let seen = sync(&mut bob).await;
    assert_eq!(count_cmd(&seen, "user_connect"), 0, "{seen:?}");
    let seen = sync(&mut alice1).await;
    assert_eq!(count_cmd(&seen, "user_connect"), 0, "{seen:?}");
    sync(&mut alice2).await;

    assert_eq!(online_names(&mut bob).await, vec!["Alice", "Bob"]);
    assert_eq!(online_names(&mut alice2).await, vec!["Alice", "Bob"]);

    // Closing one of two connections: still online, nothing announced.
    alice1.ws.close(None).await.expect("close");
    drop(alice1);
    server.wait_metric(OPEN_CONNECTIONS, |v| v <= 2.0).await;
    let seen = sync(&mut bob).await;
    assert_eq!(count_cmd(&seen, "user_disconnect"), 0, "{seen:?}");
    assert_eq!(online_names(&mut bob).await, vec!["Alice", "Bob"]);

    // Closing the last one announces the disconnect.
    alice2.ws.close(None).await.expect("close");
    drop(alice2);
    assert_eq!(bob.recv_cmd("user_disconnect").await, json!({"cmd": "user_disconnect", "username": "Alice"}));
    assert_eq!(online_names(&mut bob).await, vec!["Bob"]);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// message_new (§6.1, §5.6)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn message_new_echoes_and_broadcasts_in_seq_order() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("Alice").await;
    let mut alice2 = server.login("Alice", "correct horse").await;
    let mut bob = server.register("Bob").await;
    let mut stranger = server.connect().await;

    let echo = alice.request(json!({"cmd": "message_new", "channel": "general", "content": "  first  "})).await;
    assert_eq!(echo["cmd"], "message_new");
    assert_eq!(echo["channel"], "general");
    assert_eq!(echo["thread_id"], Value::Null);
    assert_eq!(echo["global"], true);
    assert!(echo.get("duplicate").is_none(), "{echo}");
    let seq = echo["seq"].as_i64().expect("seq");
    assert!(seq >= 1);
    let m = &echo["message"];
    assert!(m["id"].as_str().is_some_and(|id| !id.is_empty()), "{m}");
    assert_eq!(m["user"], "Alice");
    assert_eq!(m["content"], "  first  ", "content is stored exactly as sent");
    assert_eq!(m["type"], "message");
    assert_eq!(m["pinned"], false);
    assert_eq!(m["interaction"], Value::Null);
    assert_eq!(m["seq"], seq);
    assert!(m["timestamp"].is_number(), "{m}");
    assert_eq!(m["pings"], json!({"users": [], "roles": [], "replies": []}));
    assert!(m.get("nonce").is_none() && m.get("reply_to").is_none() && m.get("ping").is_none(), "{m}");

    // The copies (other users and the sender's other connections) are the same packet without listener.
    let copy = bob.recv_cmd("message_new").await;
    assert!(copy.get("listener").is_none(), "{copy}");
    assert_eq!(copy, unlisten(&echo));
    let own_copy = alice2.recv_cmd("message_new").await;
    assert_eq!(own_copy, unlisten(&echo));

    let second = say(&mut alice, "second").await;
    assert_eq!(second["seq"], seq + 1);
    assert_eq!(second["message"]["seq"], seq + 1);
    let copy2 = bob.recv_cmd("message_new").await;
    assert_eq!(copy2["seq"], seq + 1);
    assert_eq!(copy2["message"]["id"], second["message"]["id"]);
    let third = say(&mut bob, "third").await;
    assert_eq!(third["seq"], seq + 2);
    assert_eq!(alice.recv_cmd("message_new").await["seq"], seq + 2);

    // Optional fields sent as null are absent (§1.2).
    let p = alice
        .request(json!({
            "cmd": "message_new", "channel": "general", "content": "nulls", "reply_to": null, "ping": null,
            "nonce": null, "embeds": null, "attachments": null,
        }))
        .await;
    assert_eq!(p["cmd"], "message_new", "{p}");
    assert_eq!(p["seq"], seq + 3);
    for key in ["reply_to", "ping", "nonce", "embeds", "attachments"] {
        assert!(p["message"].get(key).is_none(), "{key} in {p}");
    }

    // Unauthenticated connections receive no broadcasts (§1.4).
    assert!(sync(&mut stranger).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn message_new_reports_mentions_and_reply_pings() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("Alice").await;
    let mut bob = server.register("Bob").await;

    let p = say(&mut alice, "hey @bob, mail bob@example.com").await;
    assert_eq!(p["message"]["pings"], json!({"users": ["Bob"], "roles": [], "replies": []}));
    let p = say(&mut alice, "hey @nobody").await;
    assert_eq!(p["message"]["pings"]["users"], json!([]));
    let p = say(&mut alice, "(@BOB) and @Bob again").await;
    assert_eq!(p["message"]["pings"]["users"], json!(["Bob"]));

    let question = id_of(&say(&mut bob, "question").await);
    let reply = |extra: Value| {
        let mut f = json!({"cmd": "message_new", "channel": "general", "content": "answer", "reply_to": question});
        for (k, v) in extra.as_object().expect("object") {
            f[k] = v.clone();
        }
        f
    };
    let p = alice.request(reply(json!({}))).await;
    assert_eq!(p["message"]["reply_to"], json!({"id": question, "user": "Bob"}));
    assert_eq!(p["message"]["pings"], json!({"users": [], "roles": [], "replies": ["Bob"]}));
    assert!(p["message"].get("ping").is_none(), "{p}");
    let p = alice.request(reply(json!({"ping": true}))).await;
    assert_eq!(p["message"]["pings"]["replies"], json!(["Bob"]));
    assert_eq!(p["message"]["ping"], true);
    let p = alice.request(reply(json!({"ping": false}))).await;
    assert_eq!(p["message"]["reply_to"], json!({"id": question, "user": "Bob"}));
    assert_eq!(p["message"]["pings"], json!({"users": [], "roles": [], "replies": []}));
    assert_eq!(p["message"]["ping"], false);

    // History keeps reply_to and ping but not pings.
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general", "limit": 1})).await;
    let last = &history["messages"][0];
    assert_eq!(last["id"], p["message"]["id"]);
    assert_eq!(last["reply_to"], json!({"id": question, "user": "Bob"}));
    assert_eq!(last["ping"], false);
    assert!(last.get("pings").is_none(), "{last}");
    server.stop().await;
}

#[tokio::test]
async fn message_new_refuses_bad_requests_with_exact_errors() {
    let server = spawn_unlimited(Backend::Sqlite, |_| {}).await;
    let mut alice = server.register("Alice").await;
    let mut bob = server.register("Bob").await;
    sync(&mut bob).await;
    let ten: Vec<Value> = (0..10).map(|i| json!({"title": format!("t{i}")})).collect();
    let eleven: Vec<Value> = (0..11).map(|i| json!({"title": format!("t{i}")})).collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"content": "x"}), "Missing fields: channel or thread_id", "bad_request"),
        (json!({"channel": "general"}), "Missing fields: content or attachments", "bad_request"),
        (json!({}), "Missing fields: channel or thread_id, content or attachments", "bad_request"),
        (
            json!({"channel": null, "content": null}),
            "Missing fields: channel or thread_id, content or attachments",
            "bad_request",
        ),
        // Empty content counts as missing, as in originChats; whitespace-only content is "empty".
        (json!({"channel": "general", "content": ""}), "Missing fields: content or attachments", "bad_request"),
        (json!({"content": ""}), "Missing fields: channel or thread_id, content or attachments", "bad_request"),
        (
            json!({"channel": "general", "content": "", "attachments": []}),
            "Missing fields: content or attachments",
            "bad_request",
        ),
        (
            json!({"channel": "general", "content": " \n\t "}),
            "Message content or attachments cannot be empty",
            "bad_request",
        ),
        (json!({"channel": "general", "content": "x", "embeds": "nope"}), "Embeds must be an array", "bad_request"),
        (
            json!({"channel": "general", "content": "x", "embeds": eleven}),
            "Cannot have more than 10 embeds",
            "bad_request",
        ),
        (
            json!({"channel": "general", "content": "x".repeat(2001)}),
            "Message too long. Maximum length is 2000 characters",
            "too_long",
        ),
        (json!({"channel": "nope", "content": "x"}), "Channel not found", "not_found"),
        (json!({"thread_id": "nope", "content": "x"}), "Thread not found", "not_found"),
        (json!({"channel": "general", "thread_id": "nope", "content": "x"}), "Thread not found", "not_found"),
        (
            json!({"channel": "general", "content": "x", "reply_to": "00000000-0000-7000-8000-000000000000"}),
            "The message you're trying to reply to was not found",
            "not_found",
        ),
        (
            json!({"channel": "general", "content": "x", "attachments": [{"id": "a1"}]}),
            "Attachment a1 not found or expired",
            "not_found",
        ),
        (
            json!({"channel": "general", "attachments": [{"id": "a1"}]}),
            "Attachment a1 not found or expired",
            "not_found",
        ),
        (
            json!({"channel": "general", "content": "x", "nonce": ""}),
            "Nonce must be a string of 1-64 characters",
            "bad_request",
        ),
        (
            json!({"channel": "general", "content": "x", "nonce": "n".repeat(65)}),
            "Nonce must be a string of 1-64 characters",
            "bad_request",
        ),
        (
            json!({"channel": "general", "content": "x", "nonce": 5}),
            "Nonce must be a string of 1-64 characters",
            "bad_request",
        ),
        (
            json!({"channel": "general", "content": "x", "nonce": "a\u{0}b"}),
            "Nonce must be a string of 1-64 characters",
            "bad_request",
        ),
        // U+0000 could not be stored as acknowledged (see `refuse_nul`).
        (
            json!({"channel": "general", "content": "before\u{0}after"}),
            "Message content cannot contain NUL characters",
            "bad_request",
        ),
    ];
    for (fields, val, code) in cases {
        let mut frame = fields.clone();
        frame["cmd"] = json!("message_new");
        let p = alice.request(frame).await;
        assert_error(&p, "message_new", val, code);
    }
    // Checks run in the documented order: presence, embeds, length, nonce, then target, reply, attachments.
    let long = "x".repeat(2001);
    let ordered: Vec<(Value, &str)> = vec![
        (json!({"channel": "general", "content": long, "embeds": "nope"}), "Embeds must be an array"),
        (json!({"channel": "nope", "content": long}), "Message too long. Maximum length is 2000 characters"),
        (
            json!({"channel": "general", "content": long, "nonce": ""}),
            "Message too long. Maximum length is 2000 characters",
        ),
        (json!({"channel": "nope", "content": "x", "nonce": ""}), "Nonce must be a string of 1-64 characters"),
        (json!({"thread_id": "nope", "content": "x", "nonce": 1}), "Nonce must be a string of 1-64 characters"),
        (json!({"channel": "nope", "content": "x", "reply_to": "nope"}), "Channel not found"),
        (
            json!({"channel": "general", "content": "x", "reply_to": "nope", "attachments": [{"id": "a1"}]}),
            "The message you're trying to reply to was not found",
        ),
    ];
    for (fields, val) in ordered {
        let mut frame = fields.clone();
        frame["cmd"] = json!("message_new");
        let p = alice.request(frame).await;
        assert_eq!(p["val"], val, "{fields}");
    }
    for (embeds, index) in [(json!([5]), 0), (json!([{"title": "ok"}, {"title": "t".repeat(257)}]), 1)] {
        let p =
            alice.request(json!({"cmd": "message_new", "channel": "general", "content": "x", "embeds": embeds})).await;
        assert_eq!(p["cmd"], "error", "{p}");
        assert_eq!(p["code"], "bad_request", "{p}");
        let val = p["val"].as_str().expect("val");
        let prefix = format!("Embed {index}: ");
        assert!(val.starts_with(&prefix) && val.len() > prefix.len(), "{val}");
    }
    // Nothing refused reached anyone or the store.
    assert!(sync(&mut bob).await.is_empty());
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(written(&history), Vec::<Value>::new(), "{history}");

    // The boundaries themselves are accepted: 2000 characters (not bytes), a 64-character nonce, 10 embeds.
    let p = say(&mut alice, &"é".repeat(2000)).await;
    assert_eq!(p["message"]["content"].as_str().map(|c| c.chars().count()), Some(2000));
    let nonce = "n".repeat(64);
    let p = alice.request(json!({"cmd": "message_new", "channel": "general", "content": "x", "nonce": nonce})).await;
    assert_eq!(p["cmd"], "message_new", "{p}");
    assert_eq!(p["message"]["nonce"], nonce.as_str());
    let p = alice.request(json!({"cmd": "message_new", "channel": "general", "content": "x", "embeds": ten})).await;
    assert_eq!(p["cmd"], "message_new", "{p}");
    assert_eq!(p["message"]["embeds"].as_array().map(Vec::len), Some(10));
    server.stop().await;
}

/// A naming field of another JSON type than string is a `bad_request` in every command, never a
/// `not_found` (the handler would otherwise have read it as no channel, no thread …); `null` is
/// still absent.
async fn mistyped_fields_are_bad_requests(backend: Backend) {
    let server = spawn_unlimited(backend, |_| {}).await;
    let mut alice = server.member("alice", &["owner"]).await;
    let id = say(&mut alice, "hello").await["message"]["id"].clone();
    let cases = [
        json!({"cmd": "message_new", "channel": ["general"], "content": "x"}),
        json!({"cmd": "message_new", "channel": "general", "thread_id": 5, "content": "x"}),
        json!({"cmd": "messages_get", "channel": {"name": "general"}}),
        json!({"cmd": "messages_search", "channel": "general", "query": ["hello"]}),
        json!({"cmd": "message_get", "channel": "general", "id": [id]}),
        json!({"cmd": "message_pin", "channel": "general", "id": 7}),
        json!({"cmd": "message_react_add", "channel": "general", "id": id, "emoji": 1}),
        json!({"cmd": "messages_around", "channel": "general", "around": true}),
        json!({"cmd": "thread_get", "thread_id": 12}),
        json!({"cmd": "unreads_ack", "channel": "general", "message_id": 3}),
        json!({"cmd": "status_get", "user": ["alice"]}),
        json!({"cmd": "user_roles_get", "user": 3}),
        json!({"cmd": "self_role_add", "role": {"name": "user"}}),
        json!({"cmd": "channel_update", "current_name": ["general"], "updates": {"description": "d"}}),
    ];
    let fields = ["channel", "thread_id", "channel", "query", "id", "id", "emoji", "around", "thread_id", "message_id"];
    let fields = fields.into_iter().chain(["user", "user", "role", "current_name"]);
    for (frame, field) in cases.into_iter().zip(fields) {
        let cmd = frame["cmd"].as_str().expect("cmd").to_owned();
        let p = alice.request(frame.clone()).await;
        assert_error(&p, &cmd, &format!("Field '{field}' must be a string"), "bad_request");
    }
    // `null` is absent, as before; the frames above changed nothing.
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general", "thread_id": null})).await;
    assert_eq!(history["cmd"], "messages_get", "{history}");
    assert_eq!(history["messages"].as_array().expect("messages").last().expect("one")["id"], id);
    assert_eq!(history["messages"].as_array().expect("messages").last().expect("one")["pinned"], false);
    // An unknown command is still unknown, whatever its fields.
    let p = alice.request(json!({"cmd": "no_such_cmd", "channel": []})).await;
    assert_error(&p, "no_such_cmd", "Unknown command: no_such_cmd", "unknown_command");
    server.stop().await;
}

on_both! { mistyped_fields_are_bad_requests => mistyped_fields_are_bad_requests_sqlite, mistyped_fields_are_bad_requests_postgres; }

async fn nonce_makes_message_new_idempotent(backend: Backend) {
    let server = match backend {
        Backend::Sqlite => TestServer::spawn().await,
        Backend::Postgres => TestServer::spawn_pg().await,
    };
    let mut alice = server.register("Alice").await;
    let mut bob = server.register("Bob").await;
    let send = json!({"cmd": "message_new", "channel": "general", "content": "hello", "nonce": "n-1"});

    let first = alice.request(send.clone()).await;
    assert_eq!(first["cmd"], "message_new", "{first}");
    assert_eq!(first["message"]["nonce"], "n-1");
    assert!(first.get("duplicate").is_none(), "{first}");
    let copy = bob.recv_cmd("message_new").await;
    assert_eq!(copy, unlisten(&first));

    let again = alice.request(send.clone()).await;
    assert_eq!(again["cmd"], "message_new", "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["message"]["seq"], first["seq"]);
    assert_eq!(again["message"]["nonce"], "n-1");
    assert_eq!(again["channel"], "general");
    assert_eq!(again["global"], true);

    // Nothing was broadcast for the repeat, and it used no seq: the next thing Bob receives is this.
    let later = say(&mut alice, "later").await;
    let next = bob.recv().await;
    assert_eq!(next["cmd"], "message_new", "{next}");
    assert_eq!(next["message"]["content"], "later");
    assert_eq!(later["seq"], first["seq"].as_i64().expect("seq") + 1);

    // The same nonce on different content is a conflict, and also broadcasts nothing.
    let p =
        alice.request(json!({"cmd": "message_new", "channel": "general", "content": "other", "nonce": "n-1"})).await;
    assert_error(&p, "message_new", "Nonce already used for a different message", "nonce_conflict");
    let last = say(&mut alice, "last").await;
    let next = bob.recv().await;
    assert_eq!(next["message"]["content"], "last", "{next}");
    assert_eq!(last["seq"], first["seq"].as_i64().expect("seq") + 2);

    // The window holds across reconnects; the scope is the account.
    drop(alice);
    let mut alice = server.login("alice", "correct horse").await;
    let again = alice.request(send.clone()).await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    let bobs = bob.request(send.clone()).await;
    assert!(bobs.get("duplicate").is_none(), "{bobs}");
    assert_ne!(bobs["message"]["id"], first["message"]["id"]);
    assert_eq!(bobs["message"]["user"], "Bob");

    // History never shows nonces.
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let messages = written(&history);
    assert_eq!(messages.len(), 4, "{history}");
    for m in &messages {
        assert!(m.get("nonce").is_none(), "nonce in history: {m}");
        assert!(m.get("pings").is_none(), "pings in history: {m}");
    }
    let one = alice.request(json!({"cmd": "message_get", "channel": "general", "id": first["message"]["id"]})).await;
    assert_eq!(one["message"]["id"], first["message"]["id"]);
    assert!(one["message"].get("nonce").is_none(), "{one}");
    server.stop().await;
}

on_both! { nonce_makes_message_new_idempotent => nonce_makes_message_new_idempotent_sqlite, nonce_makes_message_new_idempotent_postgres; }

// ---------------------------------------------------------------------------------------------
// messages_get, message_get (§6.1)
// ---------------------------------------------------------------------------------------------

async fn messages_get_pages_history(backend: Backend) {
    let server = spawn_unlimited(backend, |_| {}).await;
    let mut alice = server.register("Alice").await;
    let mut m = Vec::new();
    let mut last_seq = 0;
    for i in 0..5 {
        let echo = say(&mut alice, &format!("m{i}")).await;
        last_seq = echo["seq"].as_i64().expect("seq");
        m.push(id_of(&echo));
    }
    let get = |fields: Value| {
        let mut f = json!({"cmd": "messages_get", "channel": "general"});
        for (k, v) in fields.as_object().expect("object") {
            f[k] = v.clone();
        }
        f
    };

    let all = alice.request(get(json!({}))).await;
    assert_eq!(ids(&all), m);
    let nulls = alice.request(get(json!({"start": null, "limit": null}))).await;
    assert_eq!(ids(&nulls), m, "null start and limit are absent");
    assert_eq!(all["channel"], "general");
    assert_eq!(all["range"], json!({"start": 0, "end": 100}));
    assert_eq!(all["seq"], last_seq);
    assert!(all.get("thread_id").is_none(), "{all}");
    assert_eq!(written(&all)[0]["content"], "m0");

    // Skip the newest two (m4, m3), then two before them.
    let page = alice.request(get(json!({"start": 2, "limit": 2}))).await;
    assert_eq!(ids(&page), vec![m[1].clone(), m[2].clone()]);
    assert_eq!(page["range"], json!({"start": 2, "end": 4}));
    let page = alice.request(get(json!({"start": 4, "limit": 2}))).await;
    assert_eq!(ids(&page), vec![m[0].clone()]);
    let page = alice.request(get(json!({"start": 5}))).await;
    assert_eq!(ids(&page), Vec::<String>::new());
    let page = alice.request(get(json!({"start": -3, "limit": 1}))).await;
    assert_eq!(ids(&page), vec![m[4].clone()], "a negative start counts as 0");

    // A message id as start: older than that message.
    let page = alice.request(get(json!({"start": m[3]}))).await;
    assert_eq!(ids(&page), m[..3].to_vec());
    assert_eq!(page["range"], json!({"start": m[3], "end": null}));
    let page = alice.request(get(json!({"start": m[3], "limit": 1}))).await;
    assert_eq!(ids(&page), vec![m[2].clone()]);
    let page = alice.request(get(json!({"start": m[0]}))).await;
    assert_eq!(ids(&page), Vec::<String>::new());
    let page = alice.request(get(json!({"start": "00000000-0000-7000-8000-000000000000"}))).await;
    assert_eq!(ids(&page), Vec::<String>::new(), "an unknown id gives []");
    assert_eq!(page["range"]["end"], Value::Null);

    // limit is clamped to 1..=200.
    let page = alice.request(get(json!({"limit": 0}))).await;
    assert_eq!(ids(&page), vec![m[4].clone()]);
    let page = alice.request(get(json!({"limit": -7}))).await;
    assert_eq!(ids(&page), vec![m[4].clone()]);
    for i in 5..205 {
        alice.send(json!({"cmd": "message_new", "channel": "general", "content": format!("m{i}")})).await;
    }
    for _ in 5..205 {
        let echo = alice.recv_cmd("message_new").await;
        m.push(id_of(&echo));
    }
    let page = alice.request(get(json!({"limit": 500}))).await;
    assert_eq!(ids(&page), m[5..].to_vec());
    let page = alice.request(get(json!({"limit": 200, "start": 200}))).await;
    assert_eq!(ids(&page), m[..5].to_vec());
    server.stop().await;
}

on_both! { messages_get_pages_history => messages_get_pages_history_sqlite, messages_get_pages_history_postgres; }

/// The first start posts a welcome from the system user into `general` (the official client shows
/// nothing sent into a channel that was empty when it loaded until a reload): stored like any
/// message with seq 1, so history and `resume` show it; a restart posts no second one.
async fn first_start_welcomes_in_general(backend: Backend) {
    let server = spawn_unlimited(backend, |_| {}).await;
    let mut alice = server.register("Alice").await;
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let messages = history["messages"].as_array().expect("messages").clone();
    assert_eq!(messages.len(), 1, "{history}");
    let welcome = &messages[0];
    assert_eq!(welcome["user"], "originChats", "{welcome}");
    assert_eq!(welcome["content"], confab::store::bootstrap::WELCOME);
    assert_eq!(welcome["seq"], 1);
    assert_eq!(history["seq"], 1);
    alice.send(json!({"cmd": "resume", "channels": {"general": 0}, "listener": "r"})).await;
    let replayed = alice.recv_cmd("message_new").await;
    assert_eq!((replayed["seq"].clone(), replayed["replay"].clone()), (json!(1), json!(true)), "{replayed}");
    assert_eq!(replayed["message"]["id"], welcome["id"]);
    assert_eq!(alice.recv_cmd("resumed").await["channels"]["general"], 1);
    let echo = say(&mut alice, "hi").await;
    assert_eq!(echo["seq"], 2);

    let server = server.restart().await;
    let mut alice = server.login("Alice", "correct horse").await;
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let contents: Vec<&str> =
        history["messages"].as_array().expect("messages").iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents, [confab::store::bootstrap::WELCOME, "hi"]);
    server.stop().await;
}

on_both! { first_start_welcomes_in_general => first_start_welcomes_in_general_sqlite, first_start_welcomes_in_general_postgres; }

/// Sends `frame` and returns (packets that arrived before the reply, the reply).
async fn request_collect(c: &mut Client, mut frame: Value, listener: &str) -> (Vec<Value>, Value) {
    frame["listener"] = json!(listener);
    c.send(frame).await;
    let mut before = Vec::new();
    loop {
        let p = c.recv().await;
        if p["listener"] == listener {
            return (before, p);
        }
        before.push(p);
    }
}

#[tokio::test]
async fn messages_get_from_the_start_marks_the_channel_read() {
    let server = TestServer::spawn().await;
    let mut alice1 = server.register("Alice").await;
    let mut alice2 = server.login("Alice", "correct horse").await;
    let mut bob = server.register("Bob").await;
    say(&mut bob, "one").await;
    let newest = id_of(&say(&mut bob, "two").await);
    sync(&mut alice1).await;
    sync(&mut alice2).await;
    sync(&mut bob).await;
    let update = json!({"cmd": "unreads_update", "last_read": newest, "channel": "general"});

    let (before, reply) =
        request_collect(&mut alice1, json!({"cmd": "messages_get", "channel": "general"}), "read-1").await;
    assert_eq!(reply["cmd"], "messages_get");
    assert_eq!(before, vec![update.clone()], "unreads_update goes to the requester first");
    assert_eq!(sync(&mut alice2).await, vec![update.clone()], "and to the user's other connections");
    assert!(sync(&mut bob).await.is_empty(), "but not to other users");

    // Other pages do not mark anything read.
    for (i, fields) in [json!({"start": 1}), json!({"start": newest})].into_iter().enumerate() {
        let mut frame = json!({"cmd": "messages_get", "channel": "general"});
        frame["start"] = fields["start"].clone();
        let (before, reply) = request_collect(&mut alice1, frame, &format!("page-{i}")).await;
        assert_eq!(reply["cmd"], "messages_get");
        assert!(before.is_empty(), "{before:?}");
        assert!(sync(&mut alice2).await.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn message_get_and_history_errors() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("Alice").await;
    let sent = alice
        .request(json!({"cmd": "message_new", "channel": "general", "content": "hello @Alice", "nonce": "k"}))
        .await;
    let id = id_of(&sent);

    let p = alice.request(json!({"cmd": "message_get", "channel": "general", "id": id})).await;
    assert_eq!(p["cmd"], "message_get", "{p}");
    assert_eq!(p["channel"], "general");
    let m = &p["message"];
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["user"], "Alice");
    assert_eq!(m["content"], "hello @Alice");
    assert_eq!(m["seq"], sent["seq"]);
    assert_eq!(m["timestamp"], sent["message"]["timestamp"]);
    assert!(m.get("nonce").is_none() && m.get("pings").is_none(), "{m}");

    let p = alice.request(json!({"cmd": "message_get", "channel": "general", "id": "nope"})).await;
    assert_error(&p, "message_get", "Message not found", "not_found");
    let p = alice.request(json!({"cmd": "message_get", "channel": "general"})).await;
    assert_error(&p, "message_get", "Channel/thread and message ID are required", "bad_request");
    let p = alice.request(json!({"cmd": "message_get", "id": id})).await;
    assert_error(&p, "message_get", "Channel/thread and message ID are required", "bad_request");
    let p = alice.request(json!({"cmd": "message_get", "channel": "nope", "id": id})).await;
    assert_error(&p, "message_get", "Channel not found", "not_found");

    let p = alice.request(json!({"cmd": "message_get", "thread_id": "nope", "id": id})).await;
    assert_error(&p, "message_get", "Thread not found", "not_found");
    let p = alice.request(json!({"cmd": "messages_get", "thread_id": "nope"})).await;
    assert_error(&p, "messages_get", "Thread not found", "not_found");
    let p = alice.request(json!({"cmd": "messages_get"})).await;
    assert_error(&p, "messages_get", "Channel or thread_id required", "bad_request");
    let p = alice.request(json!({"cmd": "messages_get", "channel": null})).await;
    assert_error(&p, "messages_get", "Channel or thread_id required", "bad_request");
    let p = alice.request(json!({"cmd": "messages_get", "channel": "nope"})).await;
    assert_error(&p, "messages_get", "Channel not found", "not_found");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Fan-out under a slow consumer (DESIGN §1, §3; PROTOCOL §1.6, §8.2)
// ---------------------------------------------------------------------------------------------

/// A raw socket with a small kernel receive buffer, so that a client that stops reading backs up
/// into the server quickly instead of into megabytes of autotuned TCP buffers.
pub(crate) async fn open_small_buffer(server: &TestServer) -> WebSocketStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(server.addr).await.expect("connect");
    let request = server.ws_url("/").into_client_request().expect("request");
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await.expect("upgrade");
    ws
}

/// Registers `name` over a socket with a 4 KiB receive buffer, reads up to `ready`, then never
/// reads again.
pub(crate) async fn stalled_reader(server: &TestServer, name: &str) -> WebSocketStream<TcpStream> {
    let mut ws = open_small_buffer(server).await;
    let register = json!({"cmd": "register", "username": name, "password": "correct horse"});
    ws.send(Message::text(register.to_string())).await.expect("send");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("ready in time");
        let Some(Ok(Message::Text(t))) = msg else { panic!("expected a packet, got {msg:?}") };
        let p: Value = serde_json::from_str(t.as_str()).expect("JSON");
        assert_ne!(p["cmd"], "auth_error", "{p}");
        if p["cmd"] == "ready" {
            return ws;
        }
    }
}

/// (seq, id) of a `message_new` packet.
fn seq_id(p: &Value) -> (i64, String) {
    (p["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {p}")), id_of(p))
}

/// A `message_new` of about 60 KB (ten embeds of 5 950 characters): near the 64 KiB frame limit.
fn large_message(i: usize) -> Value {
    let embed =
        json!({"title": "t".repeat(250), "description": "d".repeat(4000), "footer": {"text": "f".repeat(1700)}});
    json!({"cmd": "message_new", "channel": "general", "content": format!("big {i} @Bob"), "embeds": vec![embed; 10]})
}

/// Replies that list messages are paged to an eighth of the outbound byte bound (1 MiB), and a
/// reply is never an overflow by itself: a fast reader loads a history of large messages — and
/// searches and pings over them — without being closed as a slow consumer (4009).
async fn large_histories_reach_a_fast_reader(backend: Backend) {
    const COUNT: usize = 24;
    let server = spawn_unlimited(backend, |_| {}).await;
    server.http_register("Bob").await;
    let mut alice = server.register("Alice").await;
    // What is stored is bounded: an embed keeps only the fields PROTOCOL names.
    let junk = json!({"cmd": "message_new", "channel": "general", "content": "junk",
                      "embeds": [{"title": "t", "junk": "y".repeat(30_000), "footer": {"text": "f", "more": [1]}}]});
    let echo = alice.request(junk).await;
    assert_eq!(echo["message"]["embeds"], json!([{"title": "t", "footer": {"text": "f"}}]));
    let stored = alice.request(json!({"cmd": "message_get", "channel": "general", "id": echo["message"]["id"]})).await;
    assert_eq!(stored["message"]["embeds"], echo["message"]["embeds"]);
    let mut sent = vec![id_of(&echo)];
    for i in 0..COUNT {
        let echo = alice.request(large_message(i)).await;
        assert_eq!(echo["cmd"], "message_new", "{echo}");
        sent.push(id_of(&echo));
    }
    // Bob connects afterwards: he reads what he asks for, and nothing else is queued for him.
    let mut bob = server.login("Bob", "correct horse").await;
    let budget = (1 << 20) / 8;

    // The newest page first, then older pages by `start` = messages loaded, as the official client does.
    let mut loaded: Vec<String> = Vec::new();
    loop {
        let page = bob
            .request(json!({"cmd": "messages_get", "channel": "general", "start": loaded.len(), "limit": 100}))
            .await;
        assert_eq!(page["cmd"], "messages_get", "{}", page["cmd"]);
        assert!(page.to_string().len() < 1 << 20, "a page stays under the queue bound");
        let ids = ids(&page);
        let truncated = page["truncated"] == true;
        if truncated {
            assert!(!ids.is_empty() && page.to_string().len() <= budget + 4096);
        }
        loaded.splice(0..0, ids);
        if !truncated {
            break;
        }
    }
    assert_eq!(loaded, sent, "every message, once, in order");

    // Around the newest, older ones: the nearest fit; range says where they are.
    let around = bob
        .request(json!({"cmd": "messages_around", "channel": "general", "around": sent[COUNT], "bounds": {"above": 0, "below": 100}}))
        .await;
    assert_eq!(around["truncated"], true, "{}", around["range"]);
    let got: Vec<String> =
        around["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, sent[COUNT + 1 - got.len()..].to_vec());
    assert_eq!(around["range"], json!({"start": COUNT + 2 - got.len(), "end": COUNT + 2}), "after the welcome");

    let search = bob.request(json!({"cmd": "messages_search", "channel": "general", "query": "big"})).await;
    assert_eq!(search["truncated"], true, "{}", search["cmd"]);
    let found = search["results"].as_array().unwrap();
    assert_eq!(found[0]["id"], sent[COUNT], "newest first");

    let pings = bob.request(json!({"cmd": "pings_get", "limit": 100})).await;
    assert_eq!((pings["truncated"].clone(), pings["total"].clone()), (json!(true), json!(COUNT)), "{}", pings["cmd"]);
    let given = pings["messages"].as_array().unwrap().len();
    assert_eq!(pings["limit"], given, "limit is what was given, so offset + limit is the next page");
    let next = bob.request(json!({"cmd": "pings_get", "limit": 100, "offset": given})).await;
    assert_eq!(next["messages"][0]["id"], sent[COUNT - given]);

    // Still open.
    assert_eq!(bob.request(json!({"cmd": "ping"})).await["cmd"], "pong");
    server.stop().await;
}

on_both! { large_histories_reach_a_fast_reader => large_histories_reach_a_fast_reader_sqlite, large_histories_reach_a_fast_reader_postgres; }

/// The member list is not paged (the official client wants it whole): larger than the outbound
/// byte bound, it still reaches a reader that keeps up.
async fn a_member_list_larger_than_the_queue_bound_reaches_a_fast_reader(backend: Backend) {
    let server = spawn_unlimited(backend, |c| c.limits.queue_bytes = 16 * 1024).await;
    let user = server.store.roles().await.unwrap().into_iter().find(|r| r.name == "user").unwrap().id;
    for i in 0..1000 {
        let name = format!("member_{i:04}_{}", "x".repeat(20));
        let new = confab::store::users::NewUser {
            username: &name,
            kind: confab::store::users::AccountKind::Local,
            password_hash: None,
            role_ids: vec![user.clone()],
        };
        server.store.user_create(new).await.unwrap();
    }
    let mut alice = server.register("Alice").await;
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(list["cmd"], "users_list");
    assert_eq!(list["users"].as_array().unwrap().len(), 1001);
    // Larger than the queue bound, and than the write buffer's former cap (128 KiB).
    assert!(list.to_string().len() > 128 * 1024, "{}", list.to_string().len());
    assert_eq!(alice.request(json!({"cmd": "ping"})).await["cmd"], "pong");
    server.stop().await;
}

on_both! { a_member_list_larger_than_the_queue_bound_reaches_a_fast_reader => a_member_list_larger_than_the_queue_bound_reaches_a_fast_reader_sqlite, a_member_list_larger_than_the_queue_bound_reaches_a_fast_reader_postgres; }

/// The member list is built once per change and kept: every kind of change shows in the next
/// `users_list` / `users_online` after a cached one (accounts, status, nickname, roles, a role's
/// colour, bans, presence).
async fn a_cached_member_list_follows_every_change(backend: Backend) {
    let server = spawn_unlimited(backend, |_| {}).await;
    let mut alice = server.member("Alice", &["owner"]).await;
    let mut bob = server.register("Bob").await;
    let entry =
        |list: &Value, name: &str| list["users"].as_array().unwrap().iter().find(|u| u["username"] == name).cloned();
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(entry(&list, "Bob").unwrap()["status"]["status"], "online", "{list}");

    let carol = server.register("Carol").await;
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert!(entry(&list, "Carol").is_some(), "a new account: {list}");

    let r = bob.request(json!({"cmd": "status_set", "status": "idle", "text": "away"})).await;
    assert_eq!(r["cmd"], "status_get", "{r}");
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(entry(&list, "Bob").unwrap()["status"], json!({"status": "idle", "text": "away"}), "{list}");

    let r = alice.request(json!({"cmd": "user_update", "user": "Bob", "updates": {"nickname": "Bobby"}})).await;
    assert_ne!(r["cmd"], "error", "{r}");
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(entry(&list, "Bob").unwrap()["nickname"], "Bobby", "{list}");

    let r = alice.request(json!({"cmd": "role_create", "name": "vip", "color": "#112233"})).await;
    assert_ne!(r["cmd"], "error", "{r}");
    let r = alice.request(json!({"cmd": "user_roles_set", "user": "Bob", "roles": ["vip"]})).await;
    assert_ne!(r["cmd"], "error", "{r}");
    let list = alice.request(json!({"cmd": "users_list"})).await;
    let bob_entry = entry(&list, "Bob").unwrap();
    assert_eq!((&bob_entry["roles"], &bob_entry["color"]), (&json!(["vip"]), &json!("#112233")), "{bob_entry}");
    let vip = server.store.roles().await.unwrap().into_iter().find(|r| r.name == "vip").unwrap().id;
    let r = alice.request(json!({"cmd": "role_update", "id": vip, "color": "#445566"})).await;
    assert_ne!(r["cmd"], "error", "{r}");
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(entry(&list, "Bob").unwrap()["color"], "#445566", "a role's colour: {list}");
    let online = alice.request(json!({"cmd": "users_online"})).await;
    assert_eq!(entry(&online, "Bob").unwrap()["nickname"], "Bobby", "{online}");

    let r = alice.request(json!({"cmd": "user_ban", "user": "Carol"})).await;
    assert_eq!(r["banned"], true, "{r}");
    drop(carol);
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert!(entry(&list, "Carol").is_none(), "a banned account is not listed: {list}");

    drop(bob);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let online = alice.request(json!({"cmd": "users_online"})).await;
        if entry(&online, "Bob").is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Bob still online: {online}");
        alice.recv_cmd("user_disconnect").await;
    }
    let list = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(entry(&list, "Bob").unwrap()["status"]["status"], "offline", "{list}");
    server.stop().await;
}

on_both! { a_cached_member_list_follows_every_change => a_cached_member_list_follows_every_change_sqlite, a_cached_member_list_follows_every_change_postgres; }

/// Slash commands of many bots: the list (not paged, as the official client wants it whole) is
/// larger than the outbound byte bound and still reaches a reader that keeps up.
async fn a_command_list_larger_than_the_queue_bound_reaches_a_fast_reader(backend: Backend) {
    const BOTS: usize = 4;
    let server = spawn_unlimited(backend, |c| {
        c.limits.queue_bytes = 16 * 1024;
        c.bots = (0..BOTS)
            .map(|i| confab::config::BotConfig {
                name: format!("bot{i}"),
                token: format!("token-of-bot-{i}-0123456789-abcdefghijklmnopqrstuvwxyz"),
                ..Default::default()
            })
            .collect();
    })
    .await;
    let option = |o: usize| json!({"name": format!("opt{o}"), "description": "o".repeat(100), "type": "str"});
    let mut bots = Vec::new();
    for i in 0..BOTS {
        let mut bot = server.connect().await;
        let token = format!("token-of-bot-{i}-0123456789-abcdefghijklmnopqrstuvwxyz");
        bot.send(json!({"cmd": "botauth", "botusername": format!("bot{i}"), "bottoken": token})).await;
        bot.expect_auth().await;
        let commands: Vec<Value> = (0..100)
            .map(|c| json!({"name": format!("b{i}c{c}"), "description": "d".repeat(100), "options": (0..3).map(option).collect::<Vec<_>>()}))
            .collect();
        let r = bot.request(json!({"cmd": "slash_register", "commands": commands})).await;
        assert_eq!(r["val"], "100 commands registered successfully", "{}", r["cmd"]);
        bots.push(bot);
    }
    let mut alice = server.register("Alice").await;
    let list = alice.request(json!({"cmd": "slash_list"})).await;
    assert_eq!(list["cmd"], "slash_list");
    let registered = list["commands"].as_array().unwrap().iter().filter(|c| c["registeredBy"] != "originChats").count();
    assert_eq!(registered, BOTS * 100);
    assert!(list.to_string().len() > 128 * 1024, "{}", list.to_string().len());
    assert_eq!(alice.request(json!({"cmd": "ping"})).await["cmd"], "pong");
    server.stop().await;
}

on_both! { a_command_list_larger_than_the_queue_bound_reaches_a_fast_reader => a_command_list_larger_than_the_queue_bound_reaches_a_fast_reader_sqlite, a_command_list_larger_than_the_queue_bound_reaches_a_fast_reader_postgres; }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_and_delays_no_one() {
    const MAX_MESSAGES: usize = 6000;
    const AFTER_OVERFLOW: usize = 20;
    let server = spawn_unlimited(Backend::Sqlite, |c| {
        c.limits.queue_packets = 16;
        c.limits.queue_bytes = 16 * 1024;
    })
    .await;

    // A authenticates, then stops reading.
    let mut slow = stalled_reader(&server, "Slow").await;

    let mut sender = server.register("Sender").await;
    let mut reader = server.register("Reader").await;
    sync(&mut reader).await;
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let p = reader.recv().await;
            if p["cmd"] == "message_new" {
                got.push(seq_id(&p));
                if p["message"]["content"] == "done" {
                    return got;
                }
            }
        }
    });

    let body = "x".repeat(1500);
    let mut acked = Vec::new();
    let mut overflow_at = None;
    for i in 0..MAX_MESSAGES {
        let echo = say(&mut sender, &format!("{i:05} {body}")).await;
        acked.push(seq_id(&echo));
        if overflow_at.is_none() && i % 16 == 0 && server.metric("confab_queue_overflows_total").await >= 1.0 {
            overflow_at = Some(i);
        }
        if overflow_at.is_some_and(|at| i >= at + AFTER_OVERFLOW) {
            break;
        }
    }
    acked.push(seq_id(&say(&mut sender, "done").await));
    assert!(overflow_at.is_some(), "the silent client never overflowed in {} messages", acked.len());

    // The reader got every acknowledged message, in seq order, nothing missing.
    let got = tokio::time::timeout(WAIT, reading).await.expect("reader finished").expect("reader task");
    assert_eq!(got.len(), acked.len());
    assert!(got == acked, "the reader's stream differs from what the sender had acknowledged");
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "seq has gaps");

    // The silent client got a gap-free prefix, then was closed (4009, or dropped before the close
    // frame could be written into its full buffers).
    let mut prefix = Vec::new();
    let end = loop {
        match tokio::time::timeout(WAIT, slow.next()).await.expect("the silent client was never closed") {
            Some(Ok(Message::Text(t))) => {
                let p: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if p["cmd"] == "message_new" {
                    prefix.push(seq_id(&p));
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => break Closed::Frame(frame.code.into(), frame.reason.to_string()),
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => break Closed::Dropped,
            Some(Ok(_)) => {}
        }
    };
    assert!(matches!(end, Closed::Frame(4009, _) | Closed::Dropped), "{end:?}");
    assert!(prefix.len() < acked.len(), "the silent client received everything");
    assert_eq!(prefix, acked[..prefix.len()], "the silent client's stream has a gap");
    server.stop().await;
}

/// Sends `request` on a fresh TCP connection and returns the response head.
async fn raw_upgrade(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("send request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte)).await.expect("response head in time").expect("read");
        assert_eq!(n, 1, "the connection closed inside the response head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("ASCII head")
}

/// The upgrade is Confab's own (so the socket can sit on its own write buffer): it must accept
/// what browsers send — Firefox lists `keep-alive, Upgrade` — answer with RFC 6455's accept key,
/// and leave anything that is not a version-13 upgrade to the plain route.
#[tokio::test]
async fn upgrades_follow_rfc_6455_and_other_requests_are_served_plainly() {
    let server = TestServer::spawn().await;
    let host = server.addr;
    let request = |connection: &str, version: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\nUpgrade: WebSocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
        )
    };
    let head = raw_upgrade(&server, &request("keep-alive, Upgrade", "13")).await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 101"), "{head}");
    assert!(lower.contains("upgrade: websocket"), "{head}");
    // RFC 6455 §1.3's worked example (the key is case-sensitive base64).
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    for (connection, version) in [("keep-alive, Upgrade", "8"), ("keep-alive", "13"), ("upgraded", "13")] {
        let head = raw_upgrade(&server, &request(connection, version)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{connection} / {version}: {head}");
    }
    server.stop().await;
}
