//! The one error type of the client, sorted by what a caller does about it.

/// Why an operation or a session failed. The variants are the distinctions a caller acts on:
/// ask for other credentials, wait for the server, or report the server's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The credentials were refused (wrong password, expired or revoked token, banned account).
    #[error("{0}")]
    Credentials(String),
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The server refused a request with an error packet or status (`code` is PROTOCOL §7.6's).
    #[error("{text} ({code})")]
    Refused { code: String, text: String },
    /// A URL or an answer that makes no sense to the client.
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// Exit status for command-line tools: 2 credentials, 3 refused, 4 network, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Credentials(_) => 2,
            ClientError::Refused { .. } => 3,
            ClientError::Unreachable { .. } => 4,
            ClientError::Invalid(_) => 1,
        }
    }

    /// The error of an `error` or `auth_error` packet.
    pub fn from_packet(packet: &serde_json::Value) -> ClientError {
        let text = packet["val"].as_str().unwrap_or("request refused").to_owned();
        let code = packet["code"].as_str().unwrap_or("unknown").to_owned();
        ClientError::Refused { code, text }
    }
}
