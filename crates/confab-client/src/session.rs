//! The socket part of a session: a task that logs in, connects with `?token=`, feeds every packet to
//! [`Core`] and reports [`Event`]s, renews the token set before it expires, and reconnects with
//! backoff for as long as the close code allows (PROTOCOL §1.7). Everything it decides is decided by
//! [`Core`], [`crate::backoff`] and [`crate::auth`], which are tested without a network.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    ClientError, Event, Link, Server,
    auth::{self, Credentials, Tokens},
    backoff::{AfterClose, Backoff, after_close},
    core::Core,
};

/// How long opening a socket, and then reaching `ready`, may take before the attempt counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// An access token this close to its expiry is renewed before it is presented.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// After a refresh that failed for a network reason, try again this much later.
const REFRESH_RETRY: Duration = Duration::from_secs(30);

enum Command {
    Message { fields: Value, nonce: String },
    Request(Value),
    Track(String, u64),
    Close,
}

/// A handle on a running session. Dropping it (or [`Session::close`]) ends the session.
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    nonce_prefix: String,
    sent: AtomicU64,
}

impl Session {
    /// Starts the session task on the current tokio runtime; its events arrive on the receiver.
    pub fn start(
        server: Server,
        credentials: Credentials,
    ) -> Result<(Session, mpsc::UnboundedReceiver<Event>), ClientError> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::unbounded_channel();
        let task = Task {
            http: server.http_client()?,
            server,
            credentials,
            tokens: None,
            core: Core::new(),
            events,
            commands: command_rx,
            backoff: Backoff::default(),
        };
        tokio::spawn(task.run());
        Ok((Session { commands, nonce_prefix: random_prefix(), sent: AtomicU64::new(0) }, event_rx))
    }

    /// Sends a `message_new` (`fields`: `channel` or `thread_id`, `content`, `reply_to`, …) with a new
    /// nonce, returned here and named again by [`Event::Acked`] or [`Event::Failed`]. While offline it
    /// waits; after a reconnect it is sent again with the same nonce until the server answers it.
    pub fn send_message(&self, fields: Value) -> String {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let nonce = format!("{}-{n}", self.nonce_prefix);
        self.send_message_with_nonce(fields, nonce.clone());
        nonce
    }

    /// [`Session::send_message`] with the caller's nonce (a shell retrying the same send).
    pub fn send_message_with_nonce(&self, fields: Value, nonce: String) {
        let _ = self.commands.send(Command::Message { fields, nonce });
    }

    /// Sends any other frame now; while offline it is dropped (refetch on [`Event::Ready`]).
    pub fn request(&self, frame: Value) {
        let _ = self.commands.send(Command::Request(frame));
    }

    /// Follows `channel` from `seq` on: events above it are replayed after every reconnect.
    pub fn track(&self, channel: &str, seq: u64) {
        let _ = self.commands.send(Command::Track(channel.to_owned(), seq));
    }

    /// Closes the socket and ends the session; [`Event::Closed`] follows.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

/// 16 hex digits, so that this process's nonces differ from every other session's of the account.
fn random_prefix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How one connection ended.
enum Outcome {
    /// Try again after a backoff.
    Retry(String),
    /// Do not try again (`None`: the owner closed the session).
    Stop(Option<ClientError>),
}

struct Task {
    server: Server,
    credentials: Credentials,
    http: reqwest::Client,
    /// The current token set and when it was obtained.
    tokens: Option<(Tokens, Instant)>,
    core: Core,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    backoff: Backoff,
}

impl Task {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    async fn run(mut self) {
        loop {
            self.emit(Event::Link(Link::Connecting { attempt: self.backoff.attempts() }));
            let outcome = self.connection().await;
            self.core.on_disconnect();
            match outcome {
                Outcome::Stop(error) => {
                    self.emit(Event::Closed(error));
                    return;
                }
                Outcome::Retry(reason) => {
                    self.emit(Event::Link(Link::Down { reason }));
                    let delay = self.backoff.next_delay();
                    if !self.wait_offline(delay).await {
                        self.emit(Event::Closed(None));
                        return;
                    }
                }
            }
        }
    }

    /// Waits `delay` while keeping the owner's commands: sends are queued, other requests dropped.
    /// `false` when the owner closed the session.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return false,
                    Some(other) => { self.apply_offline(other); }
                },
            }
        }
    }

    fn apply_offline(&mut self, command: Command) -> Option<Value> {
        match command {
            Command::Message { fields, nonce } => self.core.submit_message(fields, &nonce),
            Command::Request(frame) => self.core.request(frame),
            Command::Track(channel, seq) => {
                self.core.track(&channel, seq);
                None
            }
            Command::Close => None,
        }
    }

    /// A token set that is good for the next upgrade: the current one, a refreshed one, or a new login.
    async fn usable_tokens(&mut self) -> Result<Tokens, ClientError> {
        let now = Instant::now();
        if let Some((t, _)) = &self.tokens
            && !t.expired(now, EXPIRY_MARGIN)
        {
            return Ok(t.clone());
        }
        let previous_refresh = self.tokens.as_ref().and_then(|(t, _)| t.refresh_token.clone());
        let fresh = match (previous_refresh, &self.credentials) {
            (Some(refresh), Credentials::Password { username, password }) => {
                match auth::refresh(&self.http, &self.server, &refresh).await {
                    // The family was revoked or expired: the password still works.
                    Err(ClientError::Credentials(_)) => auth::login(&self.http, &self.server, username, password).await,
                    other => other,
                }
            }
            (Some(refresh), Credentials::Token(_)) => auth::refresh(&self.http, &self.server, &refresh).await,
            (None, Credentials::Password { username, password }) => {
                auth::login(&self.http, &self.server, username, password).await
            }
            (None, Credentials::Token(token)) if auth::is_access_token(token) => {
                if self.tokens.is_some() {
                    return Err(ClientError::Credentials("the access token has expired; log in again".into()));
                }
                let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let t = Tokens::from_access(token, now, unix_now);
                self.tokens = Some((t.clone(), now));
                return Ok(t);
            }
            (None, Credentials::Token(refresh)) => auth::refresh(&self.http, &self.server, refresh).await,
        }?;
        self.tokens = Some((fresh.clone(), now));
        self.emit(Event::Tokens(fresh.clone()));
        Ok(fresh)
    }

    /// One socket from login to its end.
    async fn connection(&mut self) -> Outcome {
        let tokens = match self.usable_tokens().await {
            Ok(t) => t,
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Refused { .. })) => {
                return Outcome::Retry(e.to_string());
            }
            Err(e) => return Outcome::Stop(Some(e)),
        };
        let url = self.server.ws_with_token(&tokens.access_token);
        let ws = match tokio::time::timeout(STEP_TIMEOUT, self.server.connect(&url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return Outcome::Retry(auth::unreachable(&self.server.http, &e).to_string()),
            Err(_) => return Outcome::Retry(format!("{}: no answer to the upgrade", self.server.ws)),
        };
        let (mut sink, mut stream) = ws.split();
        // The handshake, auth_success and ready (PROTOCOL §2.6).
        let user = loop {
            let next = tokio::time::timeout(STEP_TIMEOUT, stream.next()).await;
            let Ok(next) = next else { return Outcome::Retry("no `ready` from the server".into()) };
            match self.read(next) {
                Read::Packet(p) if p["cmd"] == "ready" => break p["user"].clone(),
                Read::Packet(p) if p["cmd"] == "auth_error" => {
                    return Outcome::Stop(Some(ClientError::Credentials(p["val"].as_str().unwrap_or("").into())));
                }
                Read::Packet(_) | Read::Nothing => {}
                Read::End(outcome) => return outcome,
            }
        };
        self.backoff.reset();
        // Commands given while connecting (a channel to track, a send) shape the first frames.
        loop {
            match self.commands.try_recv() {
                Ok(Command::Close) | Err(mpsc::error::TryRecvError::Disconnected) => return Outcome::Stop(None),
                Ok(command) => {
                    self.apply_offline(command);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
        }
        for frame in self.core.on_ready() {
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                return Outcome::Retry("the connection broke".into());
            }
        }
        // Announced once online, so that what the owner requests in answer is sent, not dropped.
        self.emit(Event::Ready { user });
        self.emit(Event::Link(Link::Online));
        let obtained = self.tokens.as_ref().map(|(_, at)| *at);
        let mut refresh_at = obtained.and_then(|at| tokens.refresh_at(at)).map(tokio::time::Instant::from_std);
        loop {
            let refresh_due = async {
                match refresh_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = stream.next() => match self.read(next) {
                    Read::Packet(p) => {
                        for event in self.core.on_packet(p) {
                            self.emit(event);
                        }
                    }
                    Read::Nothing => {}
                    Read::End(outcome) => return outcome,
                },
                command = self.commands.recv() => {
                    let frame = match command {
                        None | Some(Command::Close) => {
                            let _ = sink.send(Message::Close(None)).await;
                            return Outcome::Stop(None);
                        }
                        Some(command) => self.apply_offline(command),
                    };
                    if let Some(frame) = frame
                        && sink.send(Message::text(frame.to_string())).await.is_err()
                    {
                        return Outcome::Retry("the connection broke".into());
                    }
                }
                () = refresh_due => {
                    // Renew early so that the next reconnect presents a valid token; the open socket
                    // stays authenticated either way.
                    if let Some((t, _)) = &mut self.tokens {
                        t.expires_at = Some(Instant::now());
                    }
                    refresh_at = match self.usable_tokens().await {
                        Ok(t) => t.refresh_at(Instant::now()).map(tokio::time::Instant::from_std),
                        Err(ClientError::Credentials(e)) => {
                            return Outcome::Stop(Some(ClientError::Credentials(e)));
                        }
                        Err(_) => Some(tokio::time::Instant::now() + REFRESH_RETRY),
                    };
                }
            }
        }
    }

    /// Interprets one item of the socket's stream.
    fn read(&mut self, next: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Read {
        match next {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                Ok(packet) => Read::Packet(packet),
                Err(_) => Read::Nothing,
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) =
                    frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                let described = match code {
                    Some(c) if reason.is_empty() => format!("closed by the server ({c})"),
                    Some(c) => format!("closed by the server ({c}: {reason})"),
                    None => "closed by the server".to_owned(),
                };
                Read::End(match after_close(code) {
                    AfterClose::Reconnect => Outcome::Retry(described),
                    AfterClose::Renew => {
                        // A password or a refresh token can get a new access token; a bare one cannot.
                        let renewable = matches!(self.credentials, Credentials::Password { .. })
                            || self.tokens.as_ref().is_some_and(|(t, _)| t.refresh_token.is_some());
                        match &mut self.tokens {
                            Some((t, _)) if renewable => {
                                t.expires_at = Some(Instant::now());
                                Outcome::Retry(described)
                            }
                            _ => Outcome::Stop(Some(ClientError::Credentials(described))),
                        }
                    }
                    AfterClose::Stop if code == Some(confab_proto::close::NORMAL) => Outcome::Stop(None),
                    AfterClose::Stop
                        if matches!(code, Some(confab_proto::close::BANNED | confab_proto::close::REVOKED)) =>
                    {
                        Outcome::Stop(Some(ClientError::Credentials(described)))
                    }
                    AfterClose::Stop => Outcome::Stop(Some(ClientError::Invalid(described))),
                })
            }
            Some(Ok(_)) => Read::Nothing,
            Some(Err(e)) => Read::End(Outcome::Retry(format!("the connection broke: {e}"))),
            None => Read::End(Outcome::Retry("the connection ended".into())),
        }
    }
}

enum Read {
    Packet(Value),
    Nothing,
    End(Outcome),
}
