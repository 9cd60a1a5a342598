//! Peers that behave as attackers do: a reader that stops reading while the server pushes to it,
//! password guesses sent all at once, registrations in bulk (PROTOCOL §4.5, §8.2, §8.3, §8.5;
//! issue 13 items 8–10).
//!
//! Each test waits for an event (a metric, a reply, a closed socket) and fails after `WAIT`.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

use crate::{
    gateway::{OPEN_CONNECTIONS, metric, spawn_unlimited, stalled_reader, wait_metric},
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
    let open = wait_metric(&server, OPEN_CONNECTIONS, |v| v == 2.0).await;
    flood(&mut admin).await;
    let r = admin.request(json!({"cmd": "user_ban", "user": "Stalled"})).await;
    assert_eq!(r["banned"], true, "{r}");
    wait_metric(&server, OPEN_CONNECTIONS, |v| v == open - 1.0).await;
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
    let open = wait_metric(&server, OPEN_CONNECTIONS, |v| v == 2.0).await;
    flood(&mut sender).await;
    wait_metric(&server, OPEN_CONNECTIONS, |v| v == open - 1.0).await;
    assert!(metric(&server, "confab_connections{state=\"authenticated\"}").await <= 1.0);
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
}
