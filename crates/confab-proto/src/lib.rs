//! Wire types of the originChats / Confab protocol: frame decoding, error codes and close codes.
//!
//! This crate does no I/O so that the server, the client library and the benchmark agree on one
//! definition of what a frame is (PROTOCOL §1.2, §7.5) and what each code means (§1.7, §4.2, §7.6).

pub mod close;
pub mod code;
pub mod frame;

pub use code::ErrorCode;
pub use frame::{BadFrame, Frame, decode_frame};

/// Adds `listener` (when the request had one) to a serialised packet without re-serialising it:
/// a reply is built once and only the caller's listener is spliced in (PROTOCOL §1.3). Shared by the
/// server and the bench's floor server, so both pay the same for it.
pub fn with_listener(packet: &str, listener: Option<&str>) -> String {
    match listener {
        None => packet.to_owned(),
        Some(l) => {
            let body = packet.strip_suffix('}').unwrap_or(packet);
            let sep = if body.ends_with('{') { "" } else { "," };
            format!("{body}{sep}\"listener\":{}}}", serde_json::Value::String(l.to_owned()))
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::with_listener;
    use serde_json::Value;

    const PONG: &str = r#"{"cmd":"pong","val":"pong"}"#;

    #[test]
    fn listener_is_spliced_in() {
        let with: Value =
            serde_json::from_str(&with_listener(r#"{"cmd":"pong","val":"pong"}"#, Some("a\"b"))).unwrap_or_default();
        assert_eq!(with["listener"], "a\"b");
        assert_eq!(with["cmd"], "pong");
        assert_eq!(with_listener("{}", Some("x")), r#"{"listener":"x"}"#);
        assert_eq!(with_listener(PONG, None), PONG);
    }
}
