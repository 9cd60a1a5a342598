//! A client of a Confab server, shared by `confab chat` (terminal UI and script mode) and any other
//! Rust client.
//!
//! What a client must get right to neither miss nor repeat anything lives here once:
//! - [`auth`]: login with a password over HTTP, or a stored access/refresh token, and the rotating
//!   refresh of the token set before the access token expires (PROTOCOL §3.1);
//! - [`core`]: the protocol state without a socket — per-channel `seq` bookkeeping for `resume`
//!   (PROTOCOL §7.1–7.2) and the outbox that gives every send a nonce and re-sends unacknowledged
//!   ones after a reconnect with the same nonce (§7.4). It is pure, so its unit tests need no network;
//! - [`session`]: the thin socket part that drives [`core::Core`]: connect with `?token=`, reconnect with
//!   backoff ([`backoff`]) and report everything as [`session::Event`]s.

pub mod auth;
pub mod backoff;
pub mod core;
pub mod error;
pub mod event;
pub mod server;
pub mod session;

pub use error::ClientError;
pub use event::{Event, Link};
pub use server::Server;
pub use session::Session;
