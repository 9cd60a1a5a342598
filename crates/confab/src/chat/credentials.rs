//! Which server and credentials a `confab chat` run uses.

use confab_client::{ClientError, Server, auth::Credentials};

use super::LoginArgs;

/// The server when none is named: the address `confab serve` listens on by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:5613";

/// The server named by the flags or the environment, else the default.
pub fn server(login: &LoginArgs) -> Result<Server, ClientError> {
    server_at(login.server.as_deref().unwrap_or(DEFAULT_SERVER), login)
}

/// The server at `url`, trusting the CA certificate of `--ca-cert` as well when one is given.
pub fn server_at(url: &str, login: &LoginArgs) -> Result<Server, ClientError> {
    let server = Server::parse(url)?;
    match &login.ca_cert {
        Some(ca) => server.trusting(ca),
        None => Ok(server),
    }
}

/// Credentials from the flags or the environment alone: a token, or a user with a password.
/// `None` when neither was given; a user without a password is an error here (scripts cannot be
/// asked), which the interactive client answers with a prompt instead.
pub fn given(login: &LoginArgs) -> Result<Option<Credentials>, ClientError> {
    if let Some(token) = login.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Token(token.to_owned())));
    }
    match (&login.user, &login.password) {
        (Some(username), Some(password)) => {
            Ok(Some(Credentials::Password { username: username.clone(), password: password.clone() }))
        }
        (Some(_), None) => Err(ClientError::Credentials(
            "no password: set CONFAB_CHAT_PASSWORD (or --password), or use CONFAB_CHAT_TOKEN".into(),
        )),
        (None, _) => Ok(None),
    }
}

/// Credentials a script must have.
pub fn required(login: &LoginArgs) -> Result<Credentials, ClientError> {
    given(login)?.ok_or_else(|| {
        ClientError::Credentials(
            "no credentials: give --user with CONFAB_CHAT_PASSWORD, or CONFAB_CHAT_TOKEN (see `confab chat --help`)"
                .into(),
        )
    })
}
