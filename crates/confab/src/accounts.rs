//! Account operations shared by the WebSocket commands, the HTTP routes and the admin CLI:
//! registration, password login, token login, and issuing token sets.
//!
//! Each returns the exact protocol error (PROTOCOL §2.10) so every entry point fails the same way;
//! throttling is applied here so no entry point can skip it.

use std::net::IpAddr;

use confab_proto::ErrorCode;
use serde_json::{Value, json};

use crate::{
    auth::{
        jwt::JwtError,
        password::{Busy, Verified},
        rotur::Verdict,
        tokens::{constant_time_eq, hash_token, random_token},
    },
    config::RegistrationMode,
    domain::{names, throttle::whole_seconds},
    error::{Error, Result},
    state::AppState,
    store::{
        invites::invalid_invite,
        users::{AccountKind, NewUser, User},
    },
};

/// A successful Rotur login.
#[derive(Debug, Clone)]
pub struct RoturLogin {
    pub user: User,
    /// The account was created by this login (`user_join` is due).
    pub created: bool,
    /// The account's name before Rotur reported a new one (`user_updated` is due).
    pub old_name: Option<String>,
}

/// A verified access token: its account, session family and the account's roles.
#[derive(Debug, Clone)]
pub struct TokenLogin {
    pub user: User,
    pub session_id: String,
    /// Read with the account, so joining the hub needs no query of its own for them.
    pub role_ids: Vec<String>,
}

/// The `auth_error` while an IP bucket is empty or a username is locked (PROTOCOL §4.5, §8.3).
fn rate_limited(wait: std::time::Duration) -> Error {
    Error::new(
        ErrorCode::AuthRateLimited,
        format!("Too many authentication attempts. Try again in {} seconds", whole_seconds(wait)),
    )
}

/// The answer when the hashing pool's queue is full (PROTOCOL §8.3).
pub(crate) fn busy(_: Busy) -> Error {
    Error::new(ErrorCode::Busy, "Server busy, try again")
}

/// The `auth_error` for a banned account.
pub fn banned() -> Error {
    Error::new(ErrorCode::Banned, "Access denied: You are banned from this server")
}

impl AppState {
    /// Whether `token_hash` is bot `user_id`'s live token (compared in constant time).
    pub async fn bot_token_live(&self, user_id: &str, token_hash: &str) -> Result<bool> {
        Ok(self.store.bot_token_hash(user_id).await?.is_some_and(|live| constant_time_eq(&live, token_hash)))
    }

    /// Refuses the attempt while `ip`'s auth bucket is empty.
    pub fn auth_gate(&self, ip: IpAddr) -> Result<()> {
        self.throttle.check_ip(ip).map_err(|wait| self.auth_limited(wait))
    }

    /// The answer to an attempt refused by an auth throttle (an empty IP bucket or a locked
    /// name), counted as `confab_rate_limited_total{class="auth"}`: a password-guessing run shows
    /// on `/metrics` as these refusals, not as failures, once the throttles hold it back.
    pub fn auth_limited(&self, wait: std::time::Duration) -> Error {
        self.metrics.inc("confab_rate_limited_total", "class=\"auth\"".into());
        rate_limited(wait)
    }

    /// Counts a failed attempt against `ip` and passes the error through.
    pub fn auth_failed(&self, ip: IpAddr, method: &str, err: Error) -> Error {
        let _ = self.throttle.charge_ip(ip);
        self.auth_failure(method, err)
    }

    /// Charges an attempt to `ip` before it is checked, refusing it while the bucket is empty.
    /// For checks that take time (a password hash): charged only afterwards, attempts made at the
    /// same time all passed a bucket none of them had emptied yet. A success gives the token
    /// back ([`AppState::auth_refund`]); a failure keeps it ([`AppState::auth_failure`]).
    pub fn auth_charge(&self, ip: IpAddr) -> Result<()> {
        self.throttle.charge_ip(ip).map_err(|wait| self.auth_limited(wait))
    }

    /// Gives back the token [`AppState::auth_charge`] took, for an attempt that costs nothing.
    pub fn auth_refund(&self, ip: IpAddr) {
        self.throttle.refund_ip(ip);
    }

    /// Counts a failed attempt already charged to its IP, and passes the error through.
    pub fn auth_failure(&self, method: &str, err: Error) -> Error {
        self.metrics.inc("confab_auth_attempts_total", format!("method=\"{method}\",outcome=\"failure\""));
        err
    }

    /// Refuses local-account operations in `rotur` mode (PROTOCOL §3.1).
    pub fn local_enabled(&self) -> Result<()> {
        if self.config.auth_mode.local_enabled() {
            Ok(())
        } else {
            Err(Error::new(ErrorCode::LocalAuthDisabled, "Local accounts are disabled on this server"))
        }
    }

    /// Registers a local account (checks in the order of PROTOCOL §2.3, the registration mode
    /// first). Every attempt costs a token of the IP's `auth` bucket, charged before the password
    /// is hashed; a new account keeps it too (PROTOCOL §4.5), so one address cannot mint accounts
    /// faster than it refills. `invite` is the code of an invite; it is needed, and spent, only
    /// in `invite` mode.
    pub async fn register(
        &self,
        ip: IpAddr,
        username: Option<&str>,
        password: Option<&str>,
        invite: Option<&str>,
    ) -> Result<User> {
        self.local_enabled()?;
        self.auth_charge(ip)?;
        let result = self.register_inner(username, password, invite).await;
        match result {
            Ok(user) => {
                self.metrics.inc("confab_auth_attempts_total", "method=\"register\",outcome=\"success\"".into());
                Ok(user)
            }
            Err(e) if e.is_failure() => Err(e),
            Err(e) if e.code() == ErrorCode::Busy => {
                self.auth_refund(ip);
                Err(e)
            }
            Err(e) => Err(self.auth_failure("register", e)),
        }
    }

    async fn register_inner(
        &self,
        username: Option<&str>,
        password: Option<&str>,
        invite: Option<&str>,
    ) -> Result<User> {
        let invite = match self.config.auth.registration_mode() {
            RegistrationMode::Closed => {
                return Err(Error::new(ErrorCode::RegistrationDisabled, "Registration is disabled"));
            }
            RegistrationMode::Open => None,
            RegistrationMode::Invite => {
                let code = invite.filter(|c| !c.is_empty()).ok_or_else(|| {
                    Error::new(ErrorCode::InviteRequired, "An invite is required to register on this server")
                })?;
                // Checked before the password is hashed, so a wrong code costs no hashing; the
                // use itself is spent with the account, in one transaction.
                if !self.store.invite(code).await?.is_some_and(|i| i.usable(crate::store::now())) {
                    return Err(invalid_invite());
                }
                Some(code)
            }
        };
        let (name, hash) = self.new_local(username, password).await?;
        match invite {
            None => self.create_account(&name, AccountKind::Local, Some(hash)).await,
            Some(code) => {
                let role_ids = self.default_role_ids();
                let new = NewUser { username: &name, kind: AccountKind::Local, password_hash: Some(hash), role_ids };
                self.store.user_create_with_invite(new, code).await
            }
        }
    }

    /// Checks a new local account's name and password as registration does (PROTOCOL §2.3) and
    /// hashes the password: `(name, hash)`.
    async fn new_local(&self, username: Option<&str>, password: Option<&str>) -> Result<(String, String)> {
        let Some((username, password)) = credentials(username, password) else {
            return Err(Error::new(ErrorCode::MissingCredentials, "Username and password required"));
        };
        let name = names::username_length(username)?;
        names::password_length(password, self.config.auth.password_min, self.config.auth.password_max)?;
        names::username_chars(name)?;
        if names::is_reserved(name, &self.config.system_username) || self.store.user_by_name(name).await?.is_some() {
            return Err(Error::new(ErrorCode::UsernameTaken, "Username already taken"));
        }
        let hash = self.hasher.hash(password.to_owned()).await.map_err(busy)?;
        Ok((name.to_owned(), hash))
    }

    /// Whether some account holds the `owner` role.
    pub async fn has_owner(&self) -> Result<bool> {
        let Some(owner) = self.directory().role("owner").map(|r| r.id.clone()) else {
            return Ok(false);
        };
        Ok(self.store.all_user_roles().await?.iter().any(|(_, role)| *role == owner))
    }

    /// Creates the owner account with the first-run link's `token` (`auth::setup`): checked like a
    /// registration, refused once an owner exists, and the token is spent only by a success.
    pub async fn create_owner(
        &self,
        ip: IpAddr,
        token: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<User> {
        self.local_enabled()?;
        self.auth_gate(ip)?;
        let invalid = || Error::new(ErrorCode::InvalidToken, "Invalid or expired setup link");
        if !self.setup.matches(token, crate::store::now()) {
            return Err(self.auth_failed(ip, "setup", invalid()));
        }
        if self.has_owner().await? {
            return Err(Error::new(ErrorCode::Conflict, "The server already has an owner"));
        }
        let (name, hash) = self.new_local(username, password).await?;
        let owner = self.directory().role("owner").map(|r| r.id.clone()).ok_or_else(invalid)?;
        if !self.setup.spend(token, crate::store::now()) {
            return Err(invalid());
        }
        let new =
            NewUser { username: &name, kind: AccountKind::Local, password_hash: Some(hash), role_ids: vec![owner] };
        self.store.user_create(new).await
    }

    /// Creates an account with the configured default roles.
    pub async fn create_account(&self, name: &str, kind: AccountKind, password_hash: Option<String>) -> Result<User> {
        let role_ids = self.default_role_ids();
        self.store.user_create(NewUser { username: name, kind, password_hash, role_ids }).await
    }

    /// Checks a username and password (PROTOCOL §2.3, §8.3). The attempt is charged to the IP
    /// bucket and the username's lock before the password is hashed, and refunded on success.
    pub async fn login(&self, ip: IpAddr, username: Option<&str>, password: Option<&str>) -> Result<User> {
        self.local_enabled()?;
        self.auth_charge(ip)?;
        let Some((username, password)) = credentials(username, password) else {
            return Err(self.auth_failure(
                "password",
                Error::new(ErrorCode::MissingCredentials, "Username and password required"),
            ));
        };
        let key = names::fold(username);
        self.charge_name(ip, &key)?;
        let user = self.store.user_by_name(&key).await?;
        if let Some(u) = &user
            && u.kind == AccountKind::Rotur.as_str()
        {
            self.throttle.settle_name(&key);
            return Err(self.auth_failure(
                "password",
                Error::new(ErrorCode::WrongAuthMethod, "This account uses Rotur authentication"),
            ));
        }
        let stored =
            user.as_ref().filter(|u| u.kind == AccountKind::Local.as_str()).and_then(|u| u.password_hash.clone());
        let verdict = self.verify(ip, &key, password, stored).await?;
        match (user, verdict) {
            (Some(user), Verified::Ok { rehash }) => {
                if let Some(new_hash) = rehash {
                    self.store.user_set_password_hash(&user.id, &new_hash).await?;
                }
                if user.banned {
                    self.throttle.settle_name(&key);
                    return Err(self.auth_failure("password", banned()));
                }
                self.throttle.succeed_name(&key);
                self.auth_refund(ip);
                self.metrics.inc("confab_auth_attempts_total", "method=\"password\",outcome=\"success\"".into());
                Ok(user)
            }
            _ => {
                self.throttle.fail_name(&key);
                Err(self.auth_failure("password", Error::new(ErrorCode::InvalidCredentials, "Invalid password")))
            }
        }
    }

    /// Charges an attempt on the username `key` (its IP already charged); while the name is
    /// locked the attempt is refused and the IP's token given back, as a lock is not a failure.
    fn charge_name(&self, ip: IpAddr, key: &str) -> Result<()> {
        self.throttle.charge_name(key).map_err(|wait| {
            self.auth_refund(ip);
            self.auth_limited(wait)
        })
    }

    /// Checks `password` against `stored` in the hashing pool. A full pool refunds both charges
    /// of the attempt: it was not made.
    async fn verify(&self, ip: IpAddr, key: &str, password: &str, stored: Option<String>) -> Result<Verified> {
        self.hasher.verify(password.to_owned(), stored).await.map_err(|b| {
            self.throttle.settle_name(key);
            self.auth_refund(ip);
            busy(b)
        })
    }

    /// Changes the password of `user` (already authenticated by an access token) after checking
    /// the current one through the hashing pool, then revokes every session family of the account
    /// in the same commit (PROTOCOL §8.4). The new password follows the registration rules. A
    /// wrong current password counts against the username lock and the IP bucket like a failed
    /// login. The caller closes the account's sockets.
    pub async fn change_password(
        &self,
        ip: IpAddr,
        user: &User,
        current: Option<&str>,
        new: Option<&str>,
    ) -> Result<()> {
        self.local_enabled()?;
        let (Some(current), Some(new)) = (current, new) else {
            return Err(Error::new(ErrorCode::MissingCredentials, "password and new_password are required"));
        };
        names::password_length(new, self.config.auth.password_min, self.config.auth.password_max)?;
        self.auth_charge(ip)?;
        let key = names::fold(&user.username);
        self.charge_name(ip, &key)?;
        let stored = user.password_hash.clone().filter(|_| user.kind == AccountKind::Local.as_str());
        match self.verify(ip, &key, current, stored).await? {
            Verified::Ok { .. } => {}
            Verified::Wrong => {
                self.throttle.fail_name(&key);
                return Err(
                    self.auth_failure("password_change", Error::new(ErrorCode::InvalidCredentials, "Invalid password"))
                );
            }
        }
        self.throttle.succeed_name(&key);
        self.auth_refund(ip);
        let hash = self.hasher.hash(new.to_owned()).await.map_err(busy)?;
        self.store.password_change(&user.id, &hash).await?;
        self.metrics.inc("confab_auth_attempts_total", "method=\"password_change\",outcome=\"success\"".into());
        Ok(())
    }

    /// Verifies a JWT access token and its session family (PROTOCOL §2.5, §8.4).
    pub async fn token_login(&self, ip: IpAddr, token: &str) -> Result<TokenLogin> {
        self.local_enabled()?;
        self.auth_gate(ip)?;
        let invalid = || Error::new(ErrorCode::InvalidToken, "Invalid or expired token");
        let payload = || Error::new(ErrorCode::InvalidTokenPayload, "Invalid token payload");
        let outcome = async {
            let id = self.jwt.verify(token, crate::store::now()).map_err(|e| match e {
                JwtError::Invalid => invalid(),
                JwtError::Payload => payload(),
            })?;
            let found = self.store.user_with_session(&id.user_id, &id.session_id).await?.ok_or_else(payload)?;
            if !found.session_live {
                return Err(invalid());
            }
            if found.user.banned {
                return Err(banned());
            }
            Ok(TokenLogin { user: found.user, session_id: id.session_id, role_ids: found.role_ids })
        }
        .await;
        match outcome {
            Ok(ok) => {
                self.metrics.inc("confab_auth_attempts_total", "method=\"token\",outcome=\"success\"".into());
                Ok(ok)
            }
            Err(e) if e.is_failure() => Err(e),
            Err(e) => Err(self.auth_failed(ip, "token", e)),
        }
    }

    /// Logs in (or creates) the account proven by a Rotur validator for connection key `key`
    /// (PROTOCOL §2.4). Returns the account, whether it was created, and its previous name when
    /// Rotur reported a new one.
    pub async fn rotur_login(&self, ip: IpAddr, key: &str, validator: &str) -> Result<RoturLogin> {
        self.auth_gate(ip)?;
        let invalid = || Error::new(ErrorCode::InvalidValidator, "Invalid authentication");
        let (id, reported) = match self.rotur.validate(key, validator).await {
            Verdict::Valid { id, username } => (id, username),
            Verdict::Invalid => return Err(self.auth_failed(ip, "rotur", invalid())),
            Verdict::Unavailable => {
                self.metrics.inc("confab_auth_attempts_total", "method=\"rotur\",outcome=\"unavailable\"".into());
                return Err(Error::new(ErrorCode::AuthUnavailable, "Authentication service unavailable"));
            }
        };
        let taken = || Error::new(ErrorCode::UsernameTaken, "Username already taken");
        let name = names::username(&reported).ok().map(str::to_owned);
        let login = match self.store.user_by_external_id(&id).await? {
            Some(user) => {
                if user.banned {
                    return Err(self.auth_failed(ip, "rotur", banned()));
                }
                match name.filter(|n| *n != user.username) {
                    // A rename is a new name like any other: the system name stays reserved.
                    Some(new_name) if names::is_reserved(&new_name, &self.config.system_username) => {
                        return Err(taken());
                    }
                    Some(new_name) => {
                        self.store.user_rename(&user.id, &new_name).await.map_err(|_| taken())?;
                        let renamed = self.store.user_by_id(&user.id).await?.ok_or_else(invalid)?;
                        RoturLogin { user: renamed, created: false, old_name: Some(user.username) }
                    }
                    None => RoturLogin { user, created: false, old_name: None },
                }
            }
            None => {
                let name = name.ok_or_else(invalid)?;
                if names::is_reserved(&name, &self.config.system_username)
                    || self.store.user_by_name(&name).await?.is_some()
                {
                    return Err(self.auth_failed(ip, "rotur", taken()));
                }
                let role_ids = self.default_role_ids();
                let new = NewUser { username: &name, kind: AccountKind::Rotur, password_hash: None, role_ids };
                let user = self.store.user_create_external(new, &id).await?;
                RoturLogin { user, created: true, old_name: None }
            }
        };
        self.metrics.inc("confab_auth_attempts_total", "method=\"rotur\",outcome=\"success\"".into());
        Ok(login)
    }

    /// Role ids of `auth.default_roles`.
    fn default_role_ids(&self) -> Vec<String> {
        let dir = self.directory();
        self.config.auth.default_roles.iter().filter_map(|r| dir.role(r).map(|r| r.id.clone())).collect()
    }

    /// Starts a session family and returns `(sid, access token)`.
    pub async fn start_session(&self, user: &User, method: &str) -> Result<(String, String)> {
        let now = crate::store::now();
        let sid = self.store.session_create(&user.id, method, now + self.config.auth.family_max_s as f64).await?;
        let access = self.jwt.issue(&user.id, &sid, now);
        Ok((sid, access))
    }

    /// The token set of PROTOCOL §3.1 for a new login.
    pub async fn token_set(&self, user: &User, method: &str) -> Result<Value> {
        let (sid, access) = self.start_session(user, method).await?;
        let refresh = random_token();
        let expires = crate::store::now() + self.config.auth.refresh_ttl_s as f64;
        self.store.refresh_insert(&sid, &hash_token(&refresh), expires).await?;
        Ok(self.token_set_json(user, &access, &refresh))
    }

    /// Renders a token set.
    pub fn token_set_json(&self, user: &User, access: &str, refresh: &str) -> Value {
        json!({
            "user": {"id": user.id, "username": user.username},
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.jwt.ttl_s(),
            "refresh_token": refresh,
            "refresh_expires_in": self.config.auth.refresh_ttl_s,
        })
    }
}

/// Both credentials of a `register` or `login`; an empty string counts as missing, as in
/// originChats, so `""` gets "Username and password required" rather than a length error.
fn credentials<'a>(username: Option<&'a str>, password: Option<&'a str>) -> Option<(&'a str, &'a str)> {
    Some((username.filter(|u| !u.is_empty())?, password.filter(|p| !p.is_empty())?))
}
