//! The WebSocket gateway: the upgrade (origin, per-IP limit), the socket and its write buffer, the
//! per-connection session loop, and dispatch of decoded frames to command handlers (PROTOCOL §1, §2, §8.1–8.2).

mod context;
pub mod dispatch;
pub mod handshake;
pub mod session;
mod socket;
pub mod upgrade;

pub use context::Session;
