//! What a command handler sees of its connection (DESIGN §6: never the socket): its identity, a way
//! to answer, its rate-limit and bad-frame counters. The session loop (`session`) owns the socket
//! and hands frames to `dispatch` with this context.

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use confab_proto::{ErrorCode, Frame, close};
use serde_json::{Value, json};

use crate::{
    auth::tokens::{ALNUM, random_string},
    error::Error,
    hub::{CloseOrder, Conn, ConnId, Outbox, Packet},
    state::{AppState, Identity},
    wire,
};

/// `rate_limit` replies tolerated within [`HARD_LIMIT_WINDOW`] before closing with 4008 (PROTOCOL §4.7).
const HARD_LIMIT: usize = 50;
const HARD_LIMIT_WINDOW: Duration = Duration::from_secs(10);
/// Undecodable frames tolerated within [`BAD_FRAME_WINDOW`] before closing with 4002.
const BAD_FRAME_LIMIT: usize = 10;
const BAD_FRAME_WINDOW: Duration = Duration::from_secs(60);
/// What a command handler sees of its connection: identity and a way to answer. Never the socket.
pub struct Session {
    pub state: AppState,
    pub conn_id: ConnId,
    pub ip: IpAddr,
    pub outbox: Outbox,
    /// The handshake's `validator_key` (PROTOCOL §2.1).
    pub validator_key: String,
    /// Set once Rotur answered a validation for this key: it cannot be used for `auth` again.
    pub validator_key_used: bool,
    /// Set once authenticated; its identity is the one the hub judges permissions with.
    pub conn: Option<Arc<Conn>>,
    bad_frames: VecDeque<Instant>,
    rate_limited: VecDeque<Instant>,
}

impl Session {
    /// A new, unauthenticated connection's context, with a fresh handshake `validator_key`.
    pub(super) fn new(state: AppState, ip: IpAddr, outbox: Outbox) -> Session {
        Session {
            conn_id: state.next_conn_id(),
            ip,
            outbox,
            validator_key_used: false,
            validator_key: format!("originChats-{}-{}", state.config.public_url, random_string(32, ALNUM)),
            conn: None,
            bad_frames: VecDeque::new(),
            rate_limited: VecDeque::new(),
            state,
        }
    }

    /// Queues a serialised packet answering this connection's command (see [`Outbox::push_reply`]).
    pub fn send(&self, packet: String) {
        self.state.hub.account(&self.outbox, self.outbox.push_reply(&Packet::from(packet)));
    }

    /// Queues the reply `cmd` with `fields`, carrying the request's `listener`.
    pub fn reply(&self, frame: &Frame, cmd: &str, fields: Value) {
        self.send(wire::with_listener(&wire::packet(cmd, fields), frame.listener()));
    }

    /// Logs a failure of the server's (the client is told only its stable text).
    fn log_failure(&self, frame: &Frame, err: &Error) {
        match err {
            Error::Internal(detail) => tracing::error!(cmd = %frame.cmd, conn = self.conn_id, "{detail}"),
            Error::Unavailable(detail) => tracing::warn!(cmd = %frame.cmd, conn = self.conn_id, "{detail}"),
            Error::Client { .. } => {}
        }
    }

    /// Queues an `error` (or, for auth codes, `auth_error`) answering `frame`.
    pub fn error(&self, frame: &Frame, err: &Error) {
        self.log_failure(frame, err);
        let fields = json!({"src": frame.cmd, "val": err.text(), "code": err.code().as_str()});
        self.reply(frame, "error", fields);
    }

    /// Applies the account's timeout and the limit of `class` to `frame`. When refused, the
    /// `rate_limit` packet has been sent and the caller must do nothing else.
    pub fn limited(&mut self, frame: &Frame, class: &'static str, cost: f64) -> bool {
        let refused = if crate::commands::timeout::refuse_if_timed_out(self, frame, class) {
            true
        } else {
            let Some(conn) = &self.conn else { return false };
            match self.state.limiter.take(&conn.user_id, class, cost) {
                Ok(()) => false,
                Err(r) => {
                    let ms = crate::commands::timeout::millis(r.wait.as_secs_f64());
                    crate::commands::timeout::send_rate_limit(self, frame, class, &r.reason, ms);
                    true
                }
            }
        };
        if refused {
            self.state.metrics.inc("confab_rate_limited_total", format!("class=\"{class}\""));
            self.count_refusal();
        }
        refused
    }

    /// Counts a `rate_limit` (or `auth_rate_limited`) answer; too many close the connection with 4008.
    fn count_refusal(&mut self) {
        let now = Instant::now();
        while self.rate_limited.front().is_some_and(|t| now.duration_since(*t) > HARD_LIMIT_WINDOW) {
            self.rate_limited.pop_front();
        }
        self.rate_limited.push_back(now);
        if self.rate_limited.len() > HARD_LIMIT && self.state.limiter.enabled() {
            self.close(CloseOrder::new(close::HARD_RATE_LIMIT, "Rate limit exceeded", None));
        }
    }

    /// Queues an `auth_error` answering `frame`.
    pub fn auth_error(&mut self, frame: &Frame, err: &Error) {
        if err.code() == ErrorCode::AuthRateLimited {
            self.count_refusal();
        }
        self.log_failure(frame, err);
        self.reply(frame, "auth_error", json!({"val": err.text(), "code": err.code().as_str()}));
    }

    /// The authenticated identity as of now; handlers run only after auth.
    pub fn me(&self) -> Result<Arc<Identity>, Error> {
        self.conn
            .as_ref()
            .map(|c| c.identity())
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "Authentication required"))
    }

    /// Whether the connection is authenticated.
    pub fn authenticated(&self) -> bool {
        self.conn.is_some()
    }

    /// Orders this connection closed.
    pub fn close(&self, order: CloseOrder) {
        self.outbox.control().close(order);
    }

    /// Records an undecodable frame; `true` when the flood limit is reached.
    pub(super) fn bad_frame(&mut self) -> bool {
        let now = Instant::now();
        while self.bad_frames.front().is_some_and(|t| now.duration_since(*t) > BAD_FRAME_WINDOW) {
            self.bad_frames.pop_front();
        }
        self.bad_frames.push_back(now);
        self.bad_frames.len() >= BAD_FRAME_LIMIT
    }
}
