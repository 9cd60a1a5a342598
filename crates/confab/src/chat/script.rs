//! Script mode: `confab chat send` and `confab chat tail`, for bots and shells.

use std::{path::Path, time::Duration};

use confab_client::{ClientError, Event, Link, Session, core::channel_event};
use serde_json::json;

use super::{LoginArgs, credentials};

/// How long `send` waits for the server to store the message, reconnects included.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one message and waits for its acknowledgement (the echo, PROTOCOL §7.3): only then is it
/// stored. Prints the stored message as one JSON line.
pub async fn send(
    login: &LoginArgs,
    channel: &str,
    reply_to: Option<String>,
    nonce: Option<String>,
    text: &str,
) -> Result<(), ClientError> {
    let server = credentials::server(login)?;
    let creds = credentials::required(login)?;
    let content = if text == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| ClientError::Invalid(format!("reading standard input: {e}")))?;
        s.strip_suffix('\n').unwrap_or(&s).to_owned()
    } else {
        text.to_owned()
    };
    let (session, mut events) = Session::start(server.clone(), creds)?;
    let mut fields = json!({"channel": channel, "content": content});
    if let Some(id) = reply_to {
        fields["reply_to"] = json!(id);
    }
    let nonce = match nonce {
        Some(n) => {
            session.send_message_with_nonce(fields, n.clone());
            n
        }
        None => session.send_message(fields),
    };
    let deadline = tokio::time::Instant::now() + SEND_TIMEOUT;
    let mut ready = false;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.map_err(|_| ClientError::Unreachable {
            url: server.http.clone(),
            detail: format!(
                "no acknowledgement within {}s; run again with --nonce {nonce} to retry without a duplicate",
                SEND_TIMEOUT.as_secs()
            ),
        })?;
        match event {
            Some(Event::Ready { .. }) => ready = true,
            Some(Event::Acked { nonce: n, packet }) if n == nonce => {
                println!("{}", packet["message"]);
                session.close();
                return Ok(());
            }
            Some(Event::Failed { nonce: n, error }) if n == nonce => return Err(error),
            // The first connection failed: the server is down or the URL is wrong. (Once connected,
            // a broken socket is retried and the send re-sent with its nonce.)
            Some(Event::Link(Link::Down { reason })) if !ready => {
                return Err(ClientError::Unreachable { url: server.http.clone(), detail: reason });
            }
            Some(Event::Closed(error)) => {
                return Err(error.unwrap_or_else(|| ClientError::Invalid("the session ended".into())));
            }
            None => return Err(ClientError::Invalid("the session ended".into())),
            Some(_) => {}
        }
    }
}

/// Prints `channel`'s events as JSON Lines until interrupted, reconnecting and resuming by itself:
/// every event is printed once, in seq order, across server restarts. Replayed events are printed
/// exactly as live ones (without the `replay` marker).
pub async fn tail(
    login: &LoginArgs,
    channel: &str,
    since_seq: Option<u64>,
    state: Option<&Path>,
) -> Result<(), ClientError> {
    let server = credentials::server(login)?;
    let creds = credentials::required(login)?;
    let start = match state {
        Some(path) => read_state(path)?,
        None => since_seq,
    };
    let (session, mut events) = Session::start(server.clone(), creds)?;
    if let Some(seq) = start {
        session.track(channel, seq);
    }
    let mut ready = false;
    let mut listed = start.is_some();
    while let Some(event) = events.recv().await {
        match event {
            Event::Ready { .. } => {
                ready = true;
                if !listed {
                    // From now on: the channel's current seq is where the list says it is.
                    session.request(json!({"cmd": "channels_get", "listener": "tail"}));
                }
            }
            Event::Packet(p) if p["cmd"] == "channels_get" && p["listener"] == "tail" => {
                let known = p["val"].as_array().into_iter().flatten().any(|c| c["name"] == channel);
                if !known {
                    return Err(not_found(channel));
                }
                listed = true;
            }
            Event::Packet(mut p) => {
                let Some((ch, seq)) = channel_event(&p) else { continue };
                if ch != channel {
                    continue;
                }
                if let Some(map) = p.as_object_mut() {
                    map.remove("replay");
                }
                println!("{p}");
                if let Some(path) = state {
                    write_state(path, seq)?;
                }
            }
            Event::Resumed { stale, unknown } => {
                if unknown.iter().any(|c| c == channel) {
                    return Err(not_found(channel));
                }
                if stale.iter().any(|c| c == channel) {
                    return Err(ClientError::Refused {
                        code: "stale".into(),
                        text: format!(
                            "the server no longer keeps every event of #{channel} after the requested seq; \
                             read its history with messages_get and tail from now on"
                        ),
                    });
                }
            }
            Event::Link(Link::Down { reason }) => {
                if !ready {
                    return Err(ClientError::Unreachable { url: server.http.clone(), detail: reason });
                }
                eprintln!("confab chat tail: {reason}; reconnecting");
            }
            Event::Closed(error) => {
                return Err(error.unwrap_or_else(|| ClientError::Invalid("the session ended".into())));
            }
            _ => {}
        }
    }
    Ok(())
}

fn not_found(channel: &str) -> ClientError {
    ClientError::Refused { code: "not_found".into(), text: format!("Channel not found: {channel}") }
}

/// The seq stored in a state file; `None` when the file does not exist yet.
fn read_state(path: &Path) -> Result<Option<u64>, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            ClientError::Invalid(format!("{}: expected a seq number, found {:?}", path.display(), text.trim()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Invalid(format!("{}: {e}", path.display()))),
    }
}

/// Replaces the state file atomically, so an interrupted tail never leaves half a number.
fn write_state(path: &Path, seq: u64) -> Result<(), ClientError> {
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, format!("{seq}\n")).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| ClientError::Invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail.state");
        assert_eq!(read_state(&path).unwrap(), None);
        write_state(&path, 42).unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(42));
        std::fs::write(&path, "x").unwrap();
        assert!(read_state(&path).unwrap_err().to_string().contains("expected a seq"));
    }
}
