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
    /// Session family for JWT / password logins (revocation closes the connection).
    pub session_id: Option<String>,
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
