//! Stable machine-readable error codes (PROTOCOL §2.10, §4.2, §7.6).
//!
//! Codes are never renamed or reused: clients branch on them while showing the human `val` text.

use serde::Serialize;

/// Every code that may appear in an `error` or `auth_error` packet or an HTTP error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    UnknownCommand,
    AlreadyAuthenticated,
    Unauthenticated,
    BadRequest,
    NotFound,
    Forbidden,
    Conflict,
    TooLong,
    TooLarge,
    ThreadLocked,
    ThreadArchived,
    Disabled,
    Unavailable,
    NonceConflict,
    Internal,
    RateLimited,
    RefreshReuse,
    RoturDisabled,
    LocalAuthDisabled,
    InvalidValidator,
    AuthUnavailable,
    Banned,
    MissingCredentials,
    RegistrationDisabled,
    /// Registration is by invite and none was given [ext].
    InviteRequired,
    /// The invite is unknown, revoked, expired or used up [ext].
    InvalidInvite,
    InvalidUsername,
    InvalidPassword,
    UsernameTaken,
    InvalidCredentials,
    WrongAuthMethod,
    InvalidToken,
    InvalidTokenPayload,
    TokenInUse,
    NoPendingLogin,
    InvalidWebToken,
    InvalidBotCredentials,
    BotsDisabled,
    AuthRateLimited,
    TooManyConnections,
    Busy,
}

impl ErrorCode {
    /// The snake_case string sent on the wire.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame => "bad_frame",
            UnknownCommand => "unknown_command",
            AlreadyAuthenticated => "already_authenticated",
            Unauthenticated => "unauthenticated",
            BadRequest => "bad_request",
            NotFound => "not_found",
            Forbidden => "forbidden",
            Conflict => "conflict",
            TooLong => "too_long",
            TooLarge => "too_large",
            ThreadLocked => "thread_locked",
            ThreadArchived => "thread_archived",
            Disabled => "disabled",
            Unavailable => "unavailable",
            NonceConflict => "nonce_conflict",
            Internal => "internal",
            RateLimited => "rate_limited",
            RefreshReuse => "refresh_reuse",
            RoturDisabled => "rotur_disabled",
            LocalAuthDisabled => "local_auth_disabled",
            InvalidValidator => "invalid_validator",
            AuthUnavailable => "auth_unavailable",
            Banned => "banned",
            MissingCredentials => "missing_credentials",
            RegistrationDisabled => "registration_disabled",
            InviteRequired => "invite_required",
            InvalidInvite => "invalid_invite",
            InvalidUsername => "invalid_username",
            InvalidPassword => "invalid_password",
            UsernameTaken => "username_taken",
            InvalidCredentials => "invalid_credentials",
            WrongAuthMethod => "wrong_auth_method",
            InvalidToken => "invalid_token",
            InvalidTokenPayload => "invalid_token_payload",
            TokenInUse => "token_in_use",
            NoPendingLogin => "no_pending_login",
            InvalidWebToken => "invalid_web_token",
            InvalidBotCredentials => "invalid_bot_credentials",
            BotsDisabled => "bots_disabled",
            AuthRateLimited => "auth_rate_limited",
            TooManyConnections => "too_many_connections",
            Busy => "busy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for code in [ErrorCode::BadFrame, ErrorCode::InvalidTokenPayload, ErrorCode::AuthRateLimited] {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
    }
}
