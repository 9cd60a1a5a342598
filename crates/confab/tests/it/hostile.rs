//! Peers that behave as attackers do: a reader that stops reading while the server pushes to it
//! (PROTOCOL §8.2, §8.5; issue 13 item 8).
//!
//! Each test waits for an event (a metric, a reply, a closed socket) and fails after `WAIT`.

use futures_util::StreamExt;
use serde_json::json;
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
