//! The WebSocket gateway: the upgrade (origin, per-IP limit, buffers), the per-connection session
//! loop, and dispatch of decoded frames to command handlers (PROTOCOL §1, §2, §8.1–8.2).

mod context;
pub mod dispatch;
pub mod handshake;
pub mod session;
pub mod upgrade;

pub use context::Session;
