//! The one error type of the server, with stable codes (PROTOCOL §4.2, §7.6).
//!
//! A handler returns `Error`; the gateway turns it into an `error` (or `auth_error`) frame and the
//! HTTP layer into a status with `{"error","code"}`. The text is the exact originChats string.

use axum::http::StatusCode;
use confab_proto::ErrorCode;

/// A failed request: what to tell the client, or an internal failure whose detail stays in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's request cannot be served; `text` is shown to the user.
    #[error("{text}")]
    Client { code: ErrorCode, text: String },
    /// Storage or another internal part failed; nothing was changed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The database did not answer in time (`store.timeout_ms`) or its connection broke. Nothing
    /// was acknowledged; a write cut off at its commit may still have committed, which is why a
    /// message refused so is sent again with its nonce (PROTOCOL §7.4).
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

/// Shorthand for handler results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A client error with `code` and exact text.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Error {
        Error::Client { code, text: text.into() }
    }
    pub fn bad_request(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::BadRequest, text)
    }
    pub fn not_found(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, text)
    }
    pub fn forbidden(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::Forbidden, text)
    }
    pub fn conflict(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::Conflict, text)
    }
    /// `"Access denied: '<perm>' permission required"` (PROTOCOL §4.3).
    pub fn missing_permission(perm: &str) -> Error {
        Error::forbidden(format!("Access denied: '{perm}' permission required"))
    }

    /// The server failed, not the request: no fault of the client's to count against it.
    pub fn is_failure(&self) -> bool {
        matches!(self, Error::Internal(_) | Error::Unavailable(_))
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            Error::Internal(_) => ErrorCode::Internal,
            Error::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// The text sent to the client; internal details are never exposed.
    pub fn text(&self) -> &str {
        match self {
            Error::Client { text, .. } => text,
            Error::Internal(_) => "Internal error",
            Error::Unavailable(_) => "Database unavailable, try again",
        }
    }

    /// The HTTP status for this error on the JSON API.
    pub fn status(&self) -> StatusCode {
        use ErrorCode::*;
        match self.code() {
            BadFrame | BadRequest | MissingCredentials | InvalidUsername | InvalidPassword => StatusCode::BAD_REQUEST,
            NotFound => StatusCode::NOT_FOUND,
            Forbidden | Banned | RegistrationDisabled | InviteRequired | InvalidInvite | WrongAuthMethod
            | LocalAuthDisabled | RoturDisabled | BotsDisabled => StatusCode::FORBIDDEN,
            Conflict | UsernameTaken | NonceConflict => StatusCode::CONFLICT,
            TooLong | TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthenticated
            | InvalidCredentials
            | InvalidToken
            | InvalidTokenPayload
            | RefreshReuse
            | InvalidWebToken
            | InvalidBotCredentials
            | InvalidValidator => StatusCode::UNAUTHORIZED,
            RateLimited | AuthRateLimited => StatusCode::TOO_MANY_REQUESTS,
            Busy | Unavailable | AuthUnavailable | Disabled => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for Error {
    /// A lost or refused connection, or a pool that gave none in time, is [`Error::Unavailable`];
    /// anything the database answered is [`Error::Internal`].
    fn from(e: sqlx::Error) -> Error {
        use sqlx::Error::*;
        let lost = match &e {
            Io(_) | Tls(_) | PoolTimedOut | PoolClosed | WorkerCrashed => true,
            // Connection exceptions (class 08), the server shutting down or not yet up (57P0x),
            // and a session ended for idling in its transaction (25P03).
            Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "25P03"),
            _ => false,
        };
        if lost { Error::Unavailable(format!("storage: {e}")) } else { Error::Internal(format!("storage: {e}")) }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Internal(format!("storage: {e}"))
    }
}

impl From<crate::domain::names::NameError> for Error {
    fn from(e: crate::domain::names::NameError) -> Error {
        Error::new(e.code, e.text)
    }
}
