//! The floor server: the least a broadcast server can do on the wire subset the bench speaks, so
//! Confab's numbers have a reference measured on the same machine in the same run (DESIGN §3).
//!
//! It accepts the upgrade, sends a minimal `handshake`, answers `register`/`login`/`auth` (and any
//! `?token=`) at once with `auth_success` + `ready` without checking or storing anything, answers
//! `ping`, answers `messages_get` with an empty page, and fans each `message_new` out to every
//! authenticated connection. The packet is serialised once and its bytes shared; each connection has
//! a bounded queue drained by a writer that flushes once per batch — the same shape Confab uses,
//! minus authentication, authorisation and storage. Nothing else.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use confab_proto::with_listener;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::{Notify, mpsc},
};
use tokio_tungstenite::{
    WebSocketStream, accept_hdr_async_with_config,
    tungstenite::{
        Message, Utf8Bytes,
        handshake::server::{ErrorResponse, Request, Response},
        protocol::WebSocketConfig,
    },
};

/// Packets a connection may have queued, as Confab's default `limits.queue_packets`.
const QUEUE: usize = 2048;
/// Most packets written before one flush, as Confab.
const WRITE_BATCH: usize = 64;

const HANDSHAKE: &str = concat!(
    r#"{"cmd":"handshake","val":{"server":{"name":"floor","owner":{"name":"floor"},"icon":"","banner":"","url":""},"#,
    r#""limits":{"post_content":2000,"search_results":30},"version":"1.1.0","auth_mode":"cracked-only","#,
    r#""capabilities":["auth","login","message_new","messages_get","ping","register"]}}"#
);
const AUTH_SUCCESS: &str = r#"{"cmd":"auth_success","val":"Authentication successful"}"#;
const PONG: &str = r#"{"cmd":"pong","val":"pong"}"#;

/// The floor's WebSocket buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Buffers {
    /// Small buffers (1 KiB read, 2 KiB write): low idle memory, and writes of about 2 KiB in a
    /// burst. Confab used these sizes until its write buffer became its own (freed when idle).
    Tuned,
    /// tungstenite's defaults (128 KiB read and write buffers, no write-buffer cap): what an
    /// untuned server gets, and faster under load than small buffers.
    Default,
}

impl Buffers {
    fn config(self) -> WebSocketConfig {
        match self {
            Buffers::Tuned => tuned_config(),
            Buffers::Default => WebSocketConfig::default(),
        }
    }
}

/// The small buffers of [`Buffers::Tuned`].
fn tuned_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(2 * 1024)
        .max_write_buffer_size(128 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// An authenticated connection as the fan-out sees it.
struct Peer {
    queue: mpsc::Sender<Utf8Bytes>,
    /// Wakes the connection's task to drop it when its queue overflowed.
    kill: Arc<Notify>,
}

/// What connections share: who is authenticated, the id counters, and the buffer sizes.
#[derive(Default)]
struct Hub {
    ws: WebSocketConfig,
    peers: RwLock<HashMap<u64, Peer>>,
    next_conn: AtomicU64,
    next_msg: AtomicU64,
}

impl Hub {
    /// Queues `packet` on every peer but `except`; a peer whose queue is full is dropped.
    fn fan_out(&self, packet: &Utf8Bytes, except: u64) {
        let mut overflowed = Vec::new();
        if let Ok(peers) = self.peers.read() {
            for (id, peer) in peers.iter() {
                if *id != except && peer.queue.try_send(packet.clone()).is_err() {
                    overflowed.push(*id);
                }
            }
        }
        for id in overflowed {
            if let Some(peer) = self.remove(id) {
                peer.kill.notify_one();
            }
        }
    }

    fn insert(&self, id: u64, peer: Peer) {
        if let Ok(mut peers) = self.peers.write() {
            peers.insert(id, peer);
        }
    }

    fn remove(&self, id: u64) -> Option<Peer> {
        self.peers.write().ok()?.remove(&id)
    }
}

/// Runs the floor server on `listen` until its standard input closes (the bench holds the other end).
pub async fn serve(listen: SocketAddr, buffers: Buffers) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let hub = Arc::new(Hub { ws: buffers.config(), ..Hub::default() });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(hub.clone(), stream));
                }
                // Out of file descriptors, typically: wait for some to close.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::select! {
        () = accept => Ok(()),
        () = parent_gone() => Ok(()),
    }
}

/// Resolves when standard input reaches end of file or fails.
async fn parent_gone() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// The `token` query parameter of the upgrade request, if any (accepted blindly).
fn token_of(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_owned)
}

/// The fields of a client frame the floor reads.
#[derive(Deserialize)]
struct Frame {
    cmd: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    listener: Option<String>,
}

/// One connection's state.
struct Conn {
    id: u64,
    hub: Arc<Hub>,
    queue: mpsc::Sender<Utf8Bytes>,
    kill: Arc<Notify>,
    user: Option<String>,
}

async fn connection(hub: Arc<Hub>, stream: TcpStream) {
    let mut token = None;
    // The signature is tungstenite's `Callback`; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        token = token_of(request.uri().query());
        Ok(response)
    };
    let Ok(ws) = accept_hdr_async_with_config(stream, callback, Some(hub.ws)).await else {
        return;
    };
    let (sink, mut incoming) = ws.split();
    let (queue, rx) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write_loop(sink, rx));
    let id = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let kill = Arc::new(Notify::new());
    let mut conn = Conn { id, hub, queue, kill: kill.clone(), user: None };
    conn.push(Utf8Bytes::from_static(HANDSHAKE));
    if token.is_some() {
        conn.authenticate(format!("user{id}"), None);
    }
    loop {
        tokio::select! {
            () = kill.notified() => {
                writer.abort();
                break;
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => conn.handle(&text),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    conn.hub.remove(id);
    // Dropping `conn` drops the last queue sender: the writer drains what is queued and ends.
}

/// Writes queued packets, flushing once per batch rather than once per packet.
async fn write_loop(mut sink: SplitSink<WebSocketStream<TcpStream>, Message>, mut rx: mpsc::Receiver<Utf8Bytes>) {
    while let Some(first) = rx.recv().await {
        if sink.feed(Message::Text(first)).await.is_err() {
            return;
        }
        for _ in 1..WRITE_BATCH {
            match rx.try_recv() {
                Ok(packet) => {
                    if sink.feed(Message::Text(packet)).await.is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

impl Conn {
    /// Queues a packet for this connection; a full queue drops the connection.
    fn push(&self, packet: Utf8Bytes) {
        if self.queue.try_send(packet).is_err() {
            self.kill.notify_one();
        }
    }

    fn reply(&self, packet: &str, listener: Option<&str>) {
        self.push(with_listener(packet, listener).into());
    }

    fn handle(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        let listener = frame.listener.as_deref();
        match (frame.cmd.as_str(), &self.user) {
            ("ping", _) => self.reply(PONG, listener),
            ("register" | "login" | "auth", None) => {
                let name = frame.username.clone().unwrap_or_else(|| format!("user{}", self.id));
                self.authenticate(name, listener);
            }
            ("message_new", Some(user)) => {
                let seq = self.hub.next_msg.fetch_add(1, Ordering::Relaxed) + 1;
                let channel = frame.channel.as_deref().unwrap_or("general");
                let packet = message_packet(seq, user, frame.content.as_deref().unwrap_or(""), now(), channel);
                let own = with_listener(&packet, listener);
                self.hub.fan_out(&packet.into(), self.id);
                self.push(own.into());
            }
            ("messages_get", Some(_)) => {
                let channel = frame.channel.as_deref().unwrap_or("general");
                let page = json!({"cmd": "messages_get", "channel": channel, "messages": [],
                                  "range": {"start": 0, "end": 100}, "seq": 0});
                self.reply(&page.to_string(), listener);
            }
            _ => {}
        }
    }

    /// `auth_success` + `ready`, then joins the fan-out audience.
    fn authenticate(&mut self, name: String, listener: Option<&str>) {
        self.reply(AUTH_SUCCESS, listener);
        self.reply(&ready_packet(self.id, &name), listener);
        self.hub.insert(self.id, Peer { queue: self.queue.clone(), kill: self.kill.clone() });
        self.user = Some(name);
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn ready_packet(id: u64, name: &str) -> String {
    json!({"cmd": "ready", "user": {"id": id.to_string(), "username": name, "nickname": null, "roles": ["user"],
           "status": {"status": "online", "text": ""}, "pfp_url": null, "cracked": true, "bot": false},
           "validator": "floor"})
    .to_string()
}

/// The broadcast `message_new`, shaped like Confab's (PROTOCOL §6.1), serialised once.
fn message_packet(seq: u64, user: &str, content: &str, timestamp: f64, channel: &str) -> String {
    let message = json!({"id": seq.to_string(), "user": user, "content": content, "timestamp": timestamp,
                         "type": "message", "pinned": false, "seq": seq});
    let packet: Value = json!({"cmd": "message_new", "message": message, "channel": channel, "thread_id": null,
                               "seq": seq, "global": true});
    packet.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_packet_has_confab_shape() {
        let packet: Value = serde_json::from_str(&message_packet(7, "alice", "hi \"there\"", 1.5, "general")).unwrap();
        let mut top: Vec<&str> = packet.as_object().unwrap().keys().map(String::as_str).collect();
        top.sort_unstable();
        assert_eq!(top, ["channel", "cmd", "global", "message", "seq", "thread_id"]);
        assert_eq!(packet["cmd"], "message_new");
        assert_eq!(packet["channel"], "general");
        assert_eq!(packet["thread_id"], Value::Null);
        assert_eq!(packet["seq"], 7);
        assert_eq!(packet["global"], true);
        let m = &packet["message"];
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["content", "id", "pinned", "seq", "timestamp", "type", "user"]);
        assert_eq!(m["content"], "hi \"there\"");
        assert_eq!(m["user"], "alice");
        assert_eq!(m["type"], "message");
        assert_eq!(m["pinned"], false);
        assert_eq!(m["seq"], 7);
    }

    #[test]
    fn fixed_packets_are_json() {
        for p in [HANDSHAKE, AUTH_SUCCESS, PONG] {
            let v: Value = serde_json::from_str(p).unwrap();
            assert!(v["cmd"].is_string());
        }
        let ready: Value = serde_json::from_str(&ready_packet(3, "bob")).unwrap();
        assert_eq!(ready["user"]["username"], "bob");
    }

    #[test]
    fn token_is_read_from_the_query() {
        assert_eq!(token_of(Some("a=1&token=xyz")), Some("xyz".to_owned()));
        assert_eq!(token_of(Some("a=1")), None);
        assert_eq!(token_of(None), None);
    }
}
