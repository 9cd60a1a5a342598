//! What a session tells its owner.

use serde_json::Value;

use crate::{ClientError, auth::Tokens};

/// The connection as a user would want it shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Logging in or opening the socket (`attempt` counts failures since the last success).
    Connecting { attempt: u32 },
    /// Authenticated and, when channels are tracked, resumed.
    Online,
    /// The connection failed or broke; the next attempt follows after a backoff.
    Down { reason: String },
}

/// Everything a session reports, in the order it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The connection state changed.
    Link(Link),
    /// A socket reached `ready` (after every reconnect): `user` is `ready.user`. Owners refetch the
    /// state that `resume` does not replay (channel list, unreads) here.
    Ready { user: Value },
    /// A server packet, after de-duplication: each channel event (one with a `seq`) arrives once and
    /// in `seq` order, whether it came live or replayed after a reconnect.
    Packet(Value),
    /// A `resume` finished. `stale` channels could not be replayed (too far behind): their history
    /// must be refetched with `messages_get`. `unknown` ones no longer exist or are not viewable.
    Resumed { stale: Vec<String>, unknown: Vec<String> },
    /// The server stored the message sent with this nonce (the echo, or `duplicate` on a re-send);
    /// `packet` is the `message_new` reply.
    Acked { nonce: String, packet: Value },
    /// The server refused the message sent with this nonce; it is not re-sent.
    Failed { nonce: String, error: ClientError },
    /// A new token set, after a login or a refresh: store it (the previous refresh token is spent).
    Tokens(Tokens),
    /// The session ended and will not reconnect (credentials refused, account banned, closed).
    Closed(Option<ClientError>),
}
