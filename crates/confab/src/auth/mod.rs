//! Credentials: password hashing, JWT access tokens, opaque random tokens, login throttling.
//!
//! Command handlers and HTTP routes call into here; nothing here touches sockets.

pub mod jwt;
pub mod password;
pub mod rotur;
pub mod sauth;
pub mod setup;
pub mod throttle;
pub mod tokens;
