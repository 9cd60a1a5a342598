//! Peers that behave as attackers do: a reader that stops reading while the server pushes to it,
//! password guesses sent all at once, registrations in bulk, foreign `Host` names, forged
//! `X-Forwarded-For` entries, `/info` asked in a loop, connections that never finish a request
//! (PROTOCOL §1.1, §3.3, §4.5, §8.1–§8.3, §8.5; issue 13 items 8–12).
//!
//! Each test waits for an event (a metric, a reply, a closed socket) and fails after `WAIT`.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

use crate::{
    gateway::{OPEN_CONNECTIONS, spawn_unlimited, stalled_reader},
    support::{Backend, Client, TestServer, WAIT},
};

// ---------------------------------------------------------------------------------------------
// A peer that stopped reading

/// Characters per flood message, under the 64 KiB frame cap.
const FLOOD_MESSAGE: usize = 60_000;
/// What the flood sends in all: twice the most the kernel may buffer for one loopback socket
/// (`tcp_wmem` max 4 MiB here, plus the stalled reader's small receive buffer), so the server's
/// write to the stalled reader is blocked when the flood ends.
const FLOOD_BYTES: usize = 10 << 20;

/// A server whose queues never overflow during the flood, so that the only thing left holding
/// the stalled connection is its blocked socket write.
async fn flood_server(tweak: impl FnOnce(&mut confab::config::Config)) -> TestServer {
    spawn_unlimited(Backend::Sqlite, |c| {
        c.limits.post_content = FLOOD_MESSAGE;
        c.limits.queue_packets = 4096;
        c.limits.queue_bytes = 64 << 20;
        tweak(c);
    })
    .await
}

/// Posts [`FLOOD_BYTES`] to #general from `sender`, each message acknowledged (so each is in the
/// stalled reader's queue before the next is sent).
async fn flood(sender: &mut Client) {
    let body = "x".repeat(FLOOD_MESSAGE);
    for _ in 0..FLOOD_BYTES / FLOOD_MESSAGE {
        let echo = sender.request(json!({"cmd": "message_new", "channel": "general", "content": body})).await;
        assert_eq!(echo["cmd"], "message_new", "{}", echo["cmd"]);
    }
}

/// Reads what the server had written before it let go; the stream must then end.
async fn assert_ends(mut ws: WebSocketStream<TcpStream>) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("the stalled socket was never closed") {
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
}

/// A ban given while the server's write to the banned connection is blocked still ends that
/// connection: the close order wakes the write's waiter, not only the session loop's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_ends_a_connection_whose_peer_stopped_reading() {
    let server = flood_server(|_| {}).await;
    let stalled = stalled_reader(&server, "Stalled").await;
    let mut admin = server.member("boss", &["admin"]).await;
    let open = server.wait_metric(OPEN_CONNECTIONS, |v| v == 2.0).await;
    flood(&mut admin).await;
    let r = admin.request(json!({"cmd": "user_ban", "user": "Stalled"})).await;
    assert_eq!(r["banned"], true, "{r}");
    server.wait_metric(OPEN_CONNECTIONS, |v| v == open - 1.0).await;
    assert_ends(stalled).await;
    server.stop().await;
}

/// A write blocked past `security.write_timeout_s` drops the connection, although nobody ordered
/// it closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_past_the_timeout_drops_the_connection() {
    let server = flood_server(|c| c.security.write_timeout_s = 1).await;
    let stalled = stalled_reader(&server, "Stalled").await;
    let mut sender = server.register("Sender").await;
    let open = server.wait_metric(OPEN_CONNECTIONS, |v| v == 2.0).await;
    flood(&mut sender).await;
    server.wait_metric(OPEN_CONNECTIONS, |v| v == open - 1.0).await;
    assert!(server.metric("confab_connections{state=\"authenticated\"}").await <= 1.0);
    assert_ends(stalled).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Guesses sent all at once, accounts made in bulk

/// Failed attempts that lock a username (PROTOCOL §8.3), and the per-IP `auth` bucket's capacity
/// (§4.5).
const LOCK_FAILURES: usize = 5;
const IP_CAPACITY: usize = 10;

/// Sends every body to `path` at once; returns how many got each status.
async fn all_at_once(server: &TestServer, path: &str, bodies: Vec<Value>) -> std::collections::BTreeMap<u16, usize> {
    let sent = bodies.into_iter().map(|body| server.post_json(path, body));
    let mut counts = std::collections::BTreeMap::new();
    for (status, _) in futures_util::future::join_all(sent).await {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// Wrong passwords sent together for one username: only the first five are checked, as if they
/// had come one after another; the rest, and then the right password, meet the lock. (Charged
/// after the hash, all of them passed a lock none had reached yet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_meet_the_username_lock() {
    let server = TestServer::spawn().await;
    server.http_register("Victim").await;
    let guesses = (0..12).map(|i| json!({"username": "victim", "password": format!("wrong guess {i}")})).collect();
    let counts = all_at_once(&server, "/auth/login", guesses).await;
    assert_eq!(counts.get(&401), Some(&LOCK_FAILURES), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(12 - LOCK_FAILURES)), "{counts:?}");
    let (status, body) =
        server.post_json("/auth/login", json!({"username": "Victim", "password": "correct horse"})).await;
    assert_eq!(status, 429, "{body}");
}

/// Wrong passwords sent together from one address: only the bucket's ten are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_meet_the_ip_bucket() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.rate_limits.enabled = true).await;
    let guesses = (0..16).map(|i| json!({"username": format!("nobody{i}"), "password": "wrong guess"})).collect();
    let counts = all_at_once(&server, "/auth/login", guesses).await;
    assert_eq!(counts.get(&401), Some(&IP_CAPACITY), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(16 - IP_CAPACITY)), "{counts:?}");
}

/// A login that succeeds costs nothing: more than a bucket's worth of them in a row all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_logins_cost_nothing() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.rate_limits.enabled = true).await;
    server.http_register("Regular").await;
    for _ in 0..IP_CAPACITY + 2 {
        let (status, body) =
            server.post_json("/auth/login", json!({"username": "regular", "password": "correct horse"})).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Every registration, successful or not, costs a token of the address's `auth` bucket: the
/// eleventh account in a row from one address is refused, over HTTP and over the socket alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_cost_from_the_ip_bucket() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.rate_limits.enabled = true).await;
    for i in 0..IP_CAPACITY {
        server.http_register(&format!("made{i}")).await;
    }
    let (status, body) =
        server.post_json("/auth/register", json!({"username": "onemore", "password": "correct horse"})).await;
    assert_eq!((status, &body["code"]), (429, &json!("rate_limited")), "{body}");
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "register", "username": "onemore", "password": "correct horse"})).await;
    assert_eq!((&r["cmd"], &r["code"]), (&json!("auth_error"), &json!("auth_rate_limited")), "{r}");
    assert!(server.store.user_by_name("onemore").await.unwrap().is_none());
    assert_eq!(server.metric("confab_rate_limited_total{class=\"auth\"}").await, 2.0);
}

// ---------------------------------------------------------------------------------------------
// Names and addresses

/// The status line of a raw HTTP/1.1 request to the server.
async fn raw_status(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = vec![0; 256];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut head)).await.expect("an answer in time").expect("read");
    String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_owned()
}

/// GET `path` with `Host: host`; status and JSON body.
async fn get_as(server: &TestServer, host: &str, path: &str) -> (u16, Value) {
    let r = server.http.get(server.url(path)).header("host", host).send().await.expect("http");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A `Host` the server does not answer to (a rebound DNS name) gets 421 before any route runs,
/// on HTTP and on the upgrade alike; the host of `public_url`, loopback and `allowed_hosts` pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_get_421_before_anything_else() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.public_url = "https://chat.example".to_owned();
        c.allowed_hosts = vec!["Alias.Example".to_owned()];
    })
    .await;
    let unknown = (421, json!({"error": "Unknown host"}));
    assert_eq!(get_as(&server, "rebound.example", "/info").await, unknown);
    assert_eq!(get_as(&server, "rebound.example:5613", "/healthz").await, unknown);
    let r =
        server.http.post(server.url("/auth/login")).header("host", "rebound.example").body("x").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 421, "before the body is looked at");
    let upgrade = "GET / HTTP/1.1\r\nHost: rebound.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert_eq!(raw_status(&server, upgrade).await, "HTTP/1.1 421 Misdirected Request");
    for host in ["chat.example", "CHAT.example:443", "alias.example:8080", "localhost:1", "127.0.0.1", "[::1]:5613"] {
        assert_eq!(get_as(&server, host, "/healthz").await.0, 200, "{host}");
    }
    server.connect().await;
}

/// Behind a trusted proxy the client is the rightmost `X-Forwarded-For` entry that is not itself
/// a trusted proxy: a client that writes a new address on the left of each request is still
/// one address to the `auth` bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_read_from_the_right() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.rate_limits.enabled = true;
        c.security.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..IP_CAPACITY + 2 {
        let r = server
            .http
            .post(server.url("/auth/login"))
            .header("x-forwarded-for", format!("10.9.{i}.1, 203.0.113.9, 127.0.0.2"))
            .json(&json!({"username": format!("nobody{i}"), "password": "wrong guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..IP_CAPACITY], [401; IP_CAPACITY], "{statuses:?}");
    assert_eq!(statuses[IP_CAPACITY..], [429, 429], "{statuses:?}");
    // Another client behind the same proxy has a bucket of its own.
    let r = server
        .http
        .post(server.url("/auth/login"))
        .header("x-forwarded-for", "203.0.113.10")
        .json(&json!({"username": "nobody", "password": "wrong guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// `/info` counts visible online accounts without reading each of them from the database: it is
/// answered from memory (reused for at most a second), so a burst of requests costs at most one
/// database read a second — here none at all while the database is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_is_answered_from_memory() {
    let server = TestServer::spawn().await;
    let _a = server.register("Ann").await;
    let _b = server.register("Ben").await;
    let mut hidden = server.register("Hidden").await;
    let r = hidden.request(json!({"cmd": "status_set", "status": "invisible"})).await;
    assert_eq!(r["cmd"], "status_set", "{r}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let stats = loop {
        let (status, info) = get_as(&server, "localhost", "/info").await;
        assert_eq!(status, 200, "{info}");
        if info["stats"]["online_users"] == 2 {
            break info["stats"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "online_users stayed at {}", info["stats"]["online_users"]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(stats["total_users"], 3, "{stats}");
    server.store.close().await;
    let (status, info) = get_as(&server, "localhost", "/info").await;
    assert_eq!((status, &info["stats"]), (200, &stats), "{info}");
}

// ---------------------------------------------------------------------------------------------
// Slowloris: connections that never finish a request

/// Opens a raw TCP connection and sends the start of a request whose headers never end.
async fn partial_request(server: &TestServer) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"GET /info HTTP/1.1\r\nHost: localhost\r\nX-Slow: a").await.expect("write");
    tcp
}

/// What the server does next on `tcp`: `Ok(text)` with what it wrote before closing, `Err(())`
/// if it neither wrote nor closed within `WAIT`.
async fn server_ends(tcp: &mut TcpStream) -> Result<String, ()> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got)).await;
    match read {
        Ok(_) => Ok(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => Err(()),
    }
}

/// A request whose headers do not arrive within `security.header_timeout_s` loses its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_are_dropped_after_the_header_timeout() {
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.security.header_timeout_s = 1).await;
    let started = std::time::Instant::now();
    let mut slow = partial_request(&server).await;
    assert!(server_ends(&mut slow).await.is_ok(), "a connection with unfinished headers stayed open");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "closed before the timeout");
    // A connection that sends nothing at all is no different.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    assert!(server_ends(&mut silent).await.is_ok(), "a silent connection stayed open");
}

/// A kept-alive connection that sends nothing more for `security.idle_timeout_s` is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_dropped_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        (c.security.heartbeat_s, c.security.dead_peer_s, c.security.idle_timeout_s) = (1, 2, 2);
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut head = [0; 12];
    tcp.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    let started = std::time::Instant::now();
    assert!(server_ends(&mut tcp).await.is_ok(), "an idle kept-alive connection stayed open");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "closed before the idle timeout");
}

/// Every accepted connection counts against its address, upgraded or not: half-open requests
/// fill the address's allowance, the next connection is answered 429 and closed, and a closed
/// one gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_count_against_the_address() {
    const LIMIT: usize = 4;
    let server = TestServer::spawn_with(Backend::Sqlite, |c| c.security.max_connections_per_ip = LIMIT).await;
    let mut held = Vec::new();
    let refused = loop {
        assert!(held.len() <= LIMIT, "{} half-open connections were all admitted", held.len());
        let mut tcp = partial_request(&server).await;
        // An admitted connection waits for the rest of its headers; a refused one is answered.
        match tokio::time::timeout(std::time::Duration::from_millis(300), server_ends(&mut tcp)).await {
            Ok(answer) => break answer.expect("answered"),
            Err(_) => held.push(tcp),
        }
    };
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.ends_with(r#"{"error":"Too many connections","code":"too_many_connections"}"#), "{refused}");
    // The test's own HTTP client may hold one connection (from waiting for the server to start).
    assert!(held.len() >= LIMIT - 1, "refused after {} connections", held.len());
    // A closed half-open connection gives its place back.
    held.clear();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut probe = partial_request(&server).await;
        if tokio::time::timeout(std::time::Duration::from_millis(300), server_ends(&mut probe)).await.is_err() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "closed connections never gave their places back");
    }
}
