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

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The text sent to the client; internal details are never exposed.
    pub fn text(&self) -> &str {
        match self {
            Error::Client { text, .. } => text,
            Error::Internal(_) => "Internal error",
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
    fn from(e: sqlx::Error) -> Error {
        Error::Internal(format!("storage: {e}"))
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
