//! Wire types of the originChats / Confab protocol: frame decoding, error codes and close codes.
//!
//! This crate does no I/O so that the server, the client library and the benchmark agree on one
//! definition of what a frame is (PROTOCOL §1.2, §7.5) and what each code means (§1.7, §4.2, §7.6).

pub mod close;
pub mod code;
pub mod frame;

pub use code::ErrorCode;
pub use frame::{BadFrame, Frame, decode_frame};

/// The originChats protocol version Confab speaks; the handshake always carries it (PROTOCOL §2.1).
pub const PROTOCOL_VERSION: &str = "1.1.0";

/// The 20 server permission names, in the order the handshake lists them (PROTOCOL §5.4).
pub const PERMISSIONS: [&str; 20] = [
    "administrator",
    "manage_server",
    "view_audit_log",
    "manage_roles",
    "manage_channels",
    "manage_threads",
    "manage_users",
    "manage_messages",
    "read_message_history",
    "send_messages",
    "embed_links",
    "attach_files",
    "add_reactions",
    "external_emojis",
    "connect",
    "speak",
    "stream",
    "use_voice_activity",
    "mention_everyone",
    "use_slash_commands",
];
