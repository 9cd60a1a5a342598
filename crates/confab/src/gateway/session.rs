//! One task per socket: `select!` over the close signal, shutdown, the outbound queue, client
//! frames, the heartbeat and the auth deadline (DESIGN §1; PROTOCOL §1.5, §1.7, §2.2).
//!
//! Every packet for this connection — replies and broadcasts alike — goes through its bounded queue,
//! so replies and events reach the client in the order the server produced them. What a command
//! handler sees of the connection is its [`Session`] (`context`).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use confab_proto::close;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tungstenite::{Message, protocol::CloseFrame};

use super::{
    context::Session,
    socket::{Socket, flush, queue_text},
};
use crate::{
    hub::{CloseOrder, Inbox, Outbox, Packet},
    peer::IpSlot,
    state::AppState,
    wire,
};

/// Most packets written before one flush.
const WRITE_BATCH: usize = 64;
/// How long a close frame may take to leave before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Runs one connection from upgrade to close.
pub async fn run(
    state: AppState,
    mut socket: Socket,
    ip: IpAddr,
    slot: Option<IpSlot>,
    origin_ok: bool,
    token: Option<String>,
) {
    let _slot = slot;
    let _task = state.sessions.token();
    let metrics = state.metrics.clone();
    metrics.gauge("confab_connections", "state=\"open\"".into(), 1);
    if !origin_ok {
        send_close(&mut socket, &state, close::POLICY, "Origin not allowed").await;
    } else {
        let (outbox, inbox) = Outbox::new(state.config.limits.queue_packets, state.config.limits.queue_bytes);
        let mut session = Session::new(state.clone(), ip, outbox);
        if let Some(order) = Box::pin(open(&mut session, token)).await {
            send_close(&mut socket, &state, order.code, &order.reason).await;
        } else {
            serve(&mut session, &mut socket, inbox).await;
        }
        crate::commands::connection::disconnected(&mut session);
        state.web_logins.release(session.conn_id);
        state.attachments.release(&session.validator_key, session.conn_id);
        crate::commands::slash::connection_closed(&state, session.conn_id);
        crate::commands::voice::connection_closed(&state, session.conn_id);
    }
    metrics.gauge("confab_connections", "state=\"open\"".into(), -1);
}

/// Sends the handshake, authenticating first when `?token=` was given. `Some` means close at once.
async fn open(session: &mut Session, token: Option<String>) -> Option<CloseOrder> {
    use crate::commands::auth;
    let verified = match &token {
        Some(token) => match auth::upgrade_token(session, token).await {
            Ok(verified) => Some(verified),
            Err(order) => return Some(order),
        },
        None => None,
    };
    match super::handshake::packet(&session.state, &session.validator_key).await {
        Ok(handshake) => session.send(handshake),
        Err(e) => {
            tracing::error!("handshake: {e}");
            return Some(CloseOrder::new(1011, "Internal error", None));
        }
    }
    if let Some(login) = verified
        && let Err(e) = crate::commands::connection::complete(
            session,
            None,
            login.user,
            Some(login.role_ids),
            Some(login.session_id),
            false,
        )
        .await
    {
        tracing::warn!(conn = session.conn_id, code = e.code().as_str(), "token upgrade refused");
        return Some(CloseOrder::new(close::POLICY, e.text(), None));
    }
    None
}

async fn serve(session: &mut Session, socket: &mut Socket, mut inbox: Inbox) {
    let state = session.state.clone();
    let sec = &state.config.security;
    let beat = Duration::from_secs(sec.heartbeat_s);
    let dead_after = Duration::from_secs(sec.dead_peer_s);
    let write_timeout = Duration::from_secs(sec.write_timeout_s);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    let deadline = tokio::time::sleep(Duration::from_secs(sec.auth_deadline_s));
    tokio::pin!(deadline);
    let mut last_seen = Instant::now();
    // Both made once, not on every turn of the loop. Shutdown is watched through a token of this
    // connection's own: every poll of a token's `cancelled()` takes that token's lock, and with
    // the server's one token that lock was shared by every connection writing a packet.
    let outbox = session.outbox.clone();
    let closing = outbox.control().wait();
    let shutdown_token = state.shutdown.child_token();
    let shutdown = shutdown_token.cancelled();
    tokio::pin!(closing, shutdown);

    let order = loop {
        tokio::select! {
            biased;
            order = &mut closing => break order,
            () = &mut shutdown => {
                break CloseOrder::new(close::GOING_AWAY, "Server shutting down", Some("Server shutting down"));
            }
            packet = inbox.recv() => {
                let Some(packet) = packet else { return };
                let written = write_batch(socket, &mut inbox, packet);
                if !guarded(written, outbox.control(), write_timeout).await {
                    return;
                }
            }
            incoming = socket.next() => {
                let Some(incoming) = incoming else { return };
                last_seen = Instant::now();
                match incoming {
                    Ok(Message::Text(text)) => {
                        state.metrics.frame_in();
                        match confab_proto::decode_frame(text.as_str()) {
                            // Boxed: the command futures are large, and an idle connection should
                            // not carry room for the biggest of them in its own state.
                            Ok(frame) => Box::pin(super::dispatch::handle(session, frame)).await,
                            Err(bad) => {
                                bad_frame(session, bad.text());
                            }
                        }
                    }
                    Ok(Message::Binary(_)) => bad_frame(session, "Invalid JSON".to_owned()),
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                    Ok(Message::Close(_)) => {
                        // The library queued the answering Close frame (RFC 6455 §5.5.1); it
                        // leaves only on the next write, so flush it before the socket is dropped.
                        let _ = tokio::time::timeout(CLOSE_GRACE, flush(socket)).await;
                        return;
                    }
                    Err(e) => match read_error(e) {
                        ReadError::TooBig => break CloseOrder::new(close::TOO_BIG, "Frame too big", None),
                        ReadError::BadUtf8 => {
                            // The WebSocket library ends the stream after this error, so the
                            // connection cannot go on: answer, then close with 1007.
                            bad_frame(session, "Invalid JSON".to_owned());
                            break CloseOrder::new(1007, "Invalid UTF-8", None);
                        }
                        ReadError::Fatal => return,
                    },
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() >= dead_after {
                    break CloseOrder::new(close::HEARTBEAT_TIMEOUT, "Heartbeat timeout", None);
                }
                session.send(wire::packet("ping", json!({})));
                if !guarded(socket.send(Message::Ping(Default::default())), outbox.control(), write_timeout).await {
                    return;
                }
            }
            () = &mut deadline, if !session.authenticated() => {
                // A pending SAUTH2 login extends the deadline to its own expiry (PROTOCOL §2.2).
                match state.web_logins.expiry(session.conn_id) {
                    Some(until) if until > Instant::now() => deadline.as_mut().reset(until.into()),
                    _ => break CloseOrder::new(close::AUTH_TIMEOUT, "Authentication timed out", None),
                }
            }
        }
    };
    finish(socket, &state, &mut inbox, order).await;
}

/// Answers an undecodable frame and enforces the flood limit (PROTOCOL §1.2).
fn bad_frame(session: &mut Session, text: String) {
    session.send(wire::packet("error", json!({"src": null, "val": text, "code": "bad_frame"})));
    if session.bad_frame() {
        session.close(CloseOrder::new(close::DECODE_FLOOD, "Too many invalid frames", None));
    }
}

/// What a failed read means for the connection.
enum ReadError {
    /// Frame over the cap: close 1009.
    TooBig,
    /// A text frame that is not UTF-8: answered like any undecodable frame (PROTOCOL §1.2), then
    /// closed with 1007 because the reader cannot continue past it.
    BadUtf8,
    /// The socket is gone.
    Fatal,
}

fn read_error(e: tungstenite::Error) -> ReadError {
    match e {
        tungstenite::Error::Capacity(_) => ReadError::TooBig,
        tungstenite::Error::Utf8(_) => ReadError::BadUtf8,
        _ => ReadError::Fatal,
    }
}

/// Writes `first` and whatever else is queued, then flushes once.
async fn write_batch(socket: &mut Socket, inbox: &mut Inbox, first: Packet) -> Result<(), tungstenite::Error> {
    queue_text(socket, &first);
    for _ in 1..WRITE_BATCH {
        match inbox.try_recv() {
            Some(p) => queue_text(socket, &p),
            None => break,
        }
    }
    flush(socket).await
}

/// Runs one socket write; `false` when it failed, took longer than `limit` or was overtaken by a
/// close order. A peer that stopped reading blocks the write once the kernel buffers are full:
/// the connection is then abandoned (its queue and socket released) rather than left waiting,
/// deaf to the close orders, heartbeats and shutdown that only the session loop looks at.
async fn guarded(
    write: impl Future<Output = Result<(), tungstenite::Error>>,
    control: &crate::hub::Control,
    limit: Duration,
) -> bool {
    tokio::select! {
        // The write first: most complete at once, and then neither the close signal's waiter
        // list nor the timer wheel is touched. One that blocks still loses to a close order.
        biased;
        r = tokio::time::timeout(limit, write) => matches!(r, Ok(Ok(()))),
        _ = control.wait() => false,
    }
}

/// Sends what a close order asks for (disconnect packet, close frame), each within a grace period.
async fn finish(socket: &mut Socket, state: &AppState, inbox: &mut Inbox, order: CloseOrder) {
    if order.code != close::SLOW_CONSUMER {
        // Deliver what was already queued (e.g. the reply that caused a close), within the grace period.
        let drain = async {
            while let Some(p) = inbox.try_recv() {
                queue_text(socket, &p);
            }
            flush(socket).await
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
    if let Some(reason) = &order.disconnect {
        queue_text(socket, &wire::packet("disconnect", json!({"reason": reason})));
        let _ = tokio::time::timeout(CLOSE_GRACE, flush(socket)).await;
    }
    send_close(socket, state, order.code, &order.reason).await;
}

/// Sends the close frame, then waits (briefly) for the peer's own close before the TCP connection
/// is dropped: dropping at once would make the peer's next write (a Pong, say) draw a reset, and a
/// reset discards whatever it had not read yet — the close frame included.
async fn send_close(socket: &mut Socket, state: &AppState, code: u16, reason: &str) {
    state.metrics.inc("confab_closes_total", format!("code=\"{code}\""));
    let frame = CloseFrame { code: code.into(), reason: reason.into() };
    let handshake = async {
        socket.send(Message::Close(Some(frame))).await?;
        while let Some(msg) = socket.next().await {
            if matches!(msg?, Message::Close(_)) {
                break;
            }
        }
        Ok::<_, tungstenite::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, handshake).await;
}
