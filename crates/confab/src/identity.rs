//! Who an authenticated connection is: the account, its roles and the permissions they add up to.

use serde_json::{Value, json};

use crate::{
    domain::permissions::Actor,
    store::{roles::Role, users::User},
};

/// An authenticated account as one connection sees it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: User,
    /// Highest position first.
    pub roles: Vec<Role>,
    pub actor: Actor,
    /// Session family for JWT / password logins (revocation closes the connection), or the
    /// token a SAUTH2 or bot login used ([`Credential`]).
    pub session_id: Option<String>,
}

/// What a connection's `session_id` says it logged in with.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A refresh-token family (password, JWT, OAuth2 logins).
    Family(&'a str),
    /// The hash of the SAUTH2 generic token.
    Sauth(&'a str),
    /// The hash of the bot's token.
    Bot(&'a str),
}

/// The session id of a connection opened with a SAUTH2 generic token, so revocation finds it.
pub fn sauth_session(token_hash: &str) -> String {
    format!("sauth:{token_hash}")
}

/// The session id of a bot's connection, so a replaced token can be told from the live one.
pub fn bot_session(token_hash: &str) -> String {
    format!("bot:{token_hash}")
}

/// Reads a connection's session id.
pub fn credential(session_id: &str) -> Credential<'_> {
    if let Some(hash) = session_id.strip_prefix("sauth:") {
        Credential::Sauth(hash)
    } else if let Some(hash) = session_id.strip_prefix("bot:") {
        Credential::Bot(hash)
    } else {
        Credential::Family(session_id)
    }
}

impl Identity {
    /// Role names, highest first, as the wire shows them.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name.clone()).collect()
    }

    /// Role ids, as the `mentions` index names the roles a message pings.
    pub fn role_ids(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.id.clone()).collect()
    }

    /// `{"username","roles","color"}` for presence events.
    pub fn presence(&self) -> Value {
        json!({"username": self.user.username, "roles": self.role_names(), "color": crate::wire::color_of(&self.roles)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tag_reads_back_as_its_credential() {
        assert_eq!(credential(&sauth_session("ab")), Credential::Sauth("ab"));
        assert_eq!(credential(&bot_session("cd")), Credential::Bot("cd"));
        // Family ids are UUIDs: they never start with a tag.
        assert_eq!(
            credential("0190c8e4-7b1a-7000-8000-000000000000"),
            Credential::Family("0190c8e4-7b1a-7000-8000-000000000000")
        );
    }
}
