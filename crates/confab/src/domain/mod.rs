//! Pure rules with no I/O: name validation, channel permissions, rate-limit arithmetic, CIDRs.
//!
//! Kept apart so the rules can be unit-tested exhaustively and reused by every command group.

pub mod embeds;
pub mod github;
pub mod mentions;
pub mod names;
pub mod net;
pub mod permissions;
pub mod roles;
pub mod slash;
pub mod throttle;
pub mod urls;
