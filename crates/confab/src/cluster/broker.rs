//! The broker connection: core NATS or Redis pub/sub, chosen by the URL's scheme, each behind a
//! cargo feature. Both are at most once; nothing here retries or acknowledges (the sequencer and
//! the database make delivery complete). A node publishes every envelope on one subject of its
//! cluster and subscribes to that one subject, once, whatever the number of channels or sockets.

use bytes::Bytes;
use tokio::sync::mpsc;

/// What the subscription hands the cluster task.
pub enum Incoming {
    Envelope(Bytes),
    /// The subscription was (re)established: anything published meanwhile was lost.
    Subscribed,
}

/// The publishing half of a broker connection.
pub enum Publisher {
    #[cfg(feature = "nats")]
    Nats { client: async_nats::Client, subject: String },
    #[cfg(feature = "redis")]
    Redis { conn: redis::aio::ConnectionManager, channel: String },
}

impl Publisher {
    /// Publishes one envelope; an error means it is lost (receivers read it from the database).
    pub async fn publish(&mut self, bytes: Bytes) -> Result<(), String> {
        // `*self`: without either feature the enum is empty and the match has no arm.
        match *self {
            #[cfg(feature = "nats")]
            Publisher::Nats { ref client, ref subject } => {
                client.publish(subject.clone(), bytes).await.map_err(|e| e.to_string())
            }
            #[cfg(feature = "redis")]
            Publisher::Redis { ref mut conn, ref channel } => redis::cmd("PUBLISH")
                .arg(channel.as_str())
                .arg(bytes.as_ref())
                .query_async::<()>(conn)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Connects to `url` (checked by the configuration: `nats://` or `redis://` of a compiled-in
/// feature), subscribes to cluster `name`'s subject and forwards what arrives to `incoming`.
/// Starting without a reachable broker is not an error: the node runs degraded until it is back.
pub async fn connect(url: &str, name: &str, incoming: mpsc::UnboundedSender<Incoming>) -> Result<Publisher, String> {
    #[cfg(feature = "nats")]
    if url.starts_with("nats://") {
        return nats(url, format!("confab.{name}.ev"), incoming).await;
    }
    #[cfg(feature = "redis")]
    if url.starts_with("redis://") {
        return redis(url, format!("confab:{name}:ev"), incoming).await;
    }
    let _ = (name, incoming);
    Err(format!("no broker for {url}"))
}

#[cfg(feature = "nats")]
async fn nats(url: &str, subject: String, incoming: mpsc::UnboundedSender<Incoming>) -> Result<Publisher, String> {
    use futures_util::StreamExt;
    let events = incoming.clone();
    // Not `no_echo`: a node's probe to itself must come back. Its own envelopes are dropped by
    // node id instead.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| std::time::Duration::from_millis((100 * attempt as u64).min(1000)))
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                match event {
                    // A reconnect re-sends the subscription; a slow consumer lost messages.
                    async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                        let _ = events.send(Incoming::Subscribed);
                    }
                    other => tracing::info!(event = %other, "cluster broker"),
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let mut sub = client.subscribe(subject.clone()).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            if incoming.send(Incoming::Envelope(message.payload)).is_err() {
                break;
            }
        }
    });
    Ok(Publisher::Nats { client, subject })
}

#[cfg(feature = "redis")]
async fn redis(url: &str, channel: String, incoming: mpsc::UnboundedSender<Incoming>) -> Result<Publisher, String> {
    use redis::{PushKind, Value};
    // Pushes (messages, and the re-subscription after a reconnect) need RESP3.
    let url = match (url.contains("protocol="), url.contains('?'), url["redis://".len()..].contains('/')) {
        (true, _, _) => url.to_owned(),
        (false, true, _) => format!("{url}&protocol=resp3"),
        (false, false, true) => format!("{url}?protocol=resp3"),
        (false, false, false) => format!("{url}/?protocol=resp3"),
    };
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<redis::PushInfo>();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_push_sender(push_tx)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
        .set_response_timeout(Some(std::time::Duration::from_secs(1)))
        .set_max_delay(std::time::Duration::from_secs(1));
    tokio::spawn(async move {
        while let Some(push) = push_rx.recv().await {
            let sent = match (push.kind, push.data.last()) {
                (PushKind::Message, Some(Value::BulkString(payload))) => {
                    incoming.send(Incoming::Envelope(Bytes::from(payload.clone())))
                }
                (PushKind::Subscribe, _) => incoming.send(Incoming::Subscribed),
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
    });
    // The manager connects in the background and retries; until the first connection, keep
    // trying here (the node serves degraded meanwhile).
    let mut conn = loop {
        match client.get_connection_manager_with_config(config.clone()).await {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::warn!(error = %e, "cluster broker unreachable; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    };
    conn.subscribe(channel.as_str()).await.map_err(|e| e.to_string())?;
    Ok(Publisher::Redis { conn, channel })
}
