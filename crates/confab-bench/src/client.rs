//! The wire client: a TCP socket bound to a chosen 127.0.0.x source, the WebSocket upgrade, the auth
//! flows the bench uses (`?token=` on the upgrade, `login` frame), and a cheap view of incoming packets.

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Error as WsError, Message, Utf8Bytes, protocol::WebSocketConfig},
};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one connect may take to reach `ready` before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Buffers of 8 KiB each way (the client side is not compared): tungstenite's 128 KiB defaults would make
/// thousands of bench-side sockets cost gigabytes.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(16 << 20))
}

/// The `n`-th of `spread` loopback source addresses (127.0.0.1, 127.0.0.2, …).
///
/// Each source address has its own ~28 000 ephemeral ports, so spreading many connections (or many
/// short-lived ones, whose ports sit in TIME_WAIT) over several addresses avoids running out.
pub fn source_ip(n: usize, spread: usize) -> IpAddr {
    let k = n % spread.clamp(1, 250);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8))
}

/// How many source addresses `connections` long-lived sockets should be spread over.
pub fn spread_for(connections: usize) -> usize {
    connections.div_ceil(2000).max(1)
}

/// Opens TCP from `source` to `addr` and upgrades on `/ws<query>`. Only loopback addresses are allowed.
pub async fn connect(addr: SocketAddr, query: &str, source: IpAddr) -> Result<Ws> {
    ensure!(addr.ip().is_loopback() && source.is_loopback(), "the bench only talks to 127.0.0.0/8");
    let socket = TcpSocket::new_v4().context("creating a socket")?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("binding {source}"))?;
    let stream = socket.connect(addr).await.with_context(|| format!("connecting {source} → {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/ws{query}");
    let (ws, _) = client_async_with_config(url, stream, Some(ws_config())).await.context("WebSocket upgrade")?;
    Ok(ws)
}

/// Connects with `?token=` and waits for `ready` (PROTOCOL §2.6).
pub async fn open_with_token(addr: SocketAddr, token: &str, source: IpAddr) -> Result<Ws> {
    let mut ws = connect(addr, &format!("?token={token}"), source).await?;
    wait_ready(&mut ws).await?;
    Ok(ws)
}

/// Connects, sends a `login` frame and waits for `ready` (PROTOCOL §2.3).
pub async fn open_with_login(addr: SocketAddr, username: &str, password: &str, source: IpAddr) -> Result<Ws> {
    let mut ws = connect(addr, "", source).await?;
    let frame = serde_json::json!({"cmd": "login", "username": username, "password": password, "listener": "login"});
    ws.send(Message::Text(frame.to_string().into())).await.context("sending login")?;
    wait_ready(&mut ws).await?;
    Ok(ws)
}

/// Reads until `ready`; an `auth_error` or a close is an error.
pub async fn wait_ready<S>(ws: &mut S) -> Result<()>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let text = next_text(ws).await?.ok_or_else(|| anyhow!("closed before ready"))?;
        let packet: Incoming = serde_json::from_str(&text).context("server sent invalid JSON")?;
        match packet.cmd.as_ref() {
            "ready" => return Ok(()),
            "auth_error" => bail!("auth_error: {}", packet.val_text()),
            _ => {}
        }
    }
}

/// The next text frame, skipping control frames (tungstenite answers pings itself). `None` when the
/// stream ended; a close frame is an error naming its code and reason.
pub async fn next_text<S>(ws: &mut S) -> Result<Option<Utf8Bytes>>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Ok(Message::Text(text))) => return Ok(Some(text)),
            Some(Ok(Message::Close(frame))) => match frame {
                Some(f) => bail!("closed by server: {} {}", u16::from(f.code), f.reason),
                None => bail!("closed by server"),
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Sends one text frame.
pub async fn send_text<S>(ws: &mut S, text: String) -> Result<()>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    ws.send(Message::Text(text.into())).await.context("sending a frame")
}

/// Sends `frame` with `listener` and returns the reply that carries it, skipping everything else.
pub async fn request(ws: &mut Ws, mut frame: serde_json::Value, listener: &str) -> Result<Utf8Bytes> {
    frame["listener"] = serde_json::Value::from(listener);
    send_text(ws, frame.to_string()).await?;
    loop {
        let text = next_text(ws).await?.ok_or_else(|| anyhow!("closed while waiting for a reply"))?;
        if parse(&text).is_some_and(|p| p.listener.as_deref() == Some(listener)) {
            return Ok(text);
        }
    }
}

/// The fields of a server packet the bench looks at; everything else is skipped without allocating.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    #[serde(borrow)]
    pub cmd: Cow<'a, str>,
    #[serde(borrow, default)]
    pub listener: Option<Cow<'a, str>>,
    /// Text of errors; an object in the handshake.
    #[serde(default)]
    pub val: Option<serde_json::Value>,
    #[serde(borrow, default)]
    pub message: Option<IncomingMessage<'a>>,
    /// `messages_get` replies: only the count matters.
    #[serde(default)]
    pub messages: Option<Vec<serde::de::IgnoredAny>>,
}

impl Incoming<'_> {
    /// `val` when it is text (error packets), else empty.
    pub fn val_text(&self) -> &str {
        self.val.as_ref().and_then(serde_json::Value::as_str).unwrap_or("")
    }
}

/// The part of a `message` object the bench reads.
#[derive(Debug, Deserialize)]
pub struct IncomingMessage<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
}

/// Parses a packet; `None` when it is not JSON of the expected shape (the server's problem, not ours;
/// callers count or ignore it).
pub fn parse(text: &str) -> Option<Incoming<'_>> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_stay_in_loopback() {
        assert_eq!(source_ip(0, 1), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_ip(5, 4), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(1000, 1000), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_ip(249, 1000), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 250)));
        assert_eq!(spread_for(500), 1);
        assert_eq!(spread_for(19_000), 10);
    }

    #[test]
    fn incoming_reads_only_what_it_needs() {
        let text = r#"{"cmd":"message_new","message":{"id":"x","user":"u","content":"1:2:3","pings":{"users":[]}},
                       "channel":"general","seq":4,"global":true,"listener":"9"}"#;
        let p = parse(text).unwrap();
        assert_eq!(p.cmd, "message_new");
        assert_eq!(p.listener.as_deref(), Some("9"));
        assert_eq!(p.message.unwrap().content.as_deref(), Some("1:2:3"));
        let page = parse(r#"{"cmd":"messages_get","messages":[{"id":1},{"id":2}],"range":{}}"#).unwrap();
        assert_eq!(page.messages.map(|m| m.len()), Some(2));
        assert!(parse("not json").is_none());
    }
}
