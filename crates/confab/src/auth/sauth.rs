//! Pending SAUTH2 web logins (PROTOCOL §2.7, §3.8), held in memory: each is bound to the connection
//! that received `authmsg`, lives at most `sauth.ttl_s`, shows its web token once, and dies with its
//! connection. With one-user-per-token (1UPT) a generic token admits one live or pending session.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::tokens::{ALNUM, constant_time_eq, hash_token, random_string};

/// The web token's alphabet: letters, digits and `.` (PROTOCOL §2.7).
const WEB_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.";
/// Wrong web tokens before the pending login is cancelled.
const MAX_FAILURES: u8 = 3;

struct Pending {
    conn: u64,
    user_id: String,
    token_hash: String,
    web_token_hash: String,
    /// Present until the page has shown it once.
    web_token: Option<String>,
    expires: Instant,
    failures: u8,
}

/// Why a web login could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InUse;

/// The outcome of `tokenauth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    NoPending,
    /// Wrong or expired token; the pending login may have been cancelled.
    Invalid,
    /// Correct: the account to authenticate and the generic token it used.
    Ok {
        user_id: String,
        token_hash: String,
    },
}

/// All pending web logins of this node.
pub struct WebLogins {
    ttl: Duration,
    one_per_token: bool,
    /// Pending logins by their link id.
    pending: DashMap<String, Pending>,
    /// Link id of each connection's pending login.
    by_conn: DashMap<u64, String>,
    /// Generic tokens in use (1UPT), with the connection using them.
    in_use: DashMap<String, u64>,
}

impl WebLogins {
    pub fn new(ttl: Duration, one_per_token: bool) -> WebLogins {
        WebLogins { ttl, one_per_token, pending: DashMap::new(), by_conn: DashMap::new(), in_use: DashMap::new() }
    }

    /// Lifetime of a pending login.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a pending login for `conn`, replacing any it had. Returns the link id.
    pub fn start(&self, conn: u64, user_id: &str, token_hash: &str) -> Result<String, InUse> {
        self.cancel(conn);
        if self.one_per_token {
            let mut holder = self.in_use.entry(token_hash.to_owned()).or_insert(conn);
            if *holder != conn {
                return Err(InUse);
            }
            *holder = conn;
        }
        let id = random_string(32, ALNUM);
        let web_token = random_string(100, WEB_ALPHABET);
        self.pending.insert(
            id.clone(),
            Pending {
                conn,
                user_id: user_id.to_owned(),
                token_hash: token_hash.to_owned(),
                web_token_hash: hash_token(&web_token),
                web_token: Some(web_token),
                expires: Instant::now() + self.ttl,
                failures: 0,
            },
        );
        self.by_conn.insert(conn, id.clone());
        Ok(id)
    }

    /// The web token for link `id`, the first time only and before expiry.
    pub fn serve(&self, id: &str) -> Option<String> {
        let mut p = self.pending.get_mut(id)?;
        if p.expires <= Instant::now() {
            return None;
        }
        p.web_token.take()
    }

    /// When `conn`'s pending login expires (the auth deadline is extended to it).
    pub fn expiry(&self, conn: u64) -> Option<Instant> {
        let id = self.by_conn.get(&conn)?;
        self.pending.get(id.value()).map(|p| p.expires)
    }

    /// Checks `web_token` for `conn`'s pending login.
    pub fn redeem(&self, conn: u64, web_token: &str) -> Redeem {
        let Some(id) = self.by_conn.get(&conn).map(|i| i.clone()) else { return Redeem::NoPending };
        let Some(mut p) = self.pending.get_mut(&id) else { return Redeem::NoPending };
        let good = p.expires > Instant::now() && constant_time_eq(&hash_token(web_token), &p.web_token_hash);
        if good {
            let outcome = Redeem::Ok { user_id: p.user_id.clone(), token_hash: p.token_hash.clone() };
            drop(p);
            self.pending.remove(&id);
            self.by_conn.remove(&conn);
            return outcome;
        }
        p.failures += 1;
        let give_up = p.failures >= MAX_FAILURES || p.expires <= Instant::now();
        drop(p);
        if give_up {
            self.cancel(conn);
        }
        Redeem::Invalid
    }

    /// Cancels `conn`'s pending login (a new auth frame, failures, expiry) and frees its token
    /// unless the connection authenticated with it.
    pub fn cancel(&self, conn: u64) {
        if let Some((_, id)) = self.by_conn.remove(&conn)
            && let Some((_, p)) = self.pending.remove(&id)
        {
            self.in_use.remove_if(&p.token_hash, |_, holder| *holder == conn);
        }
    }

    /// The connection closed: its pending login and its hold on a generic token end.
    pub fn release(&self, conn: u64) {
        self.cancel(conn);
        self.in_use.retain(|_, holder| *holder != conn);
    }

    /// Drops pending logins of `user_id` (revocation, ban).
    pub fn forget_user(&self, user_id: &str) {
        let conns: Vec<u64> = self.pending.iter().filter(|p| p.user_id == user_id).map(|p| p.conn).collect();
        for conn in conns {
            self.cancel(conn);
        }
    }

    /// Forgets expired pending logins.
    pub fn prune(&self) {
        let now = Instant::now();
        let expired: Vec<u64> = self.pending.iter().filter(|p| p.expires <= now).map(|p| p.conn).collect();
        for conn in expired {
            self.cancel(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_login_per_token_and_one_view_per_link() {
        let w = WebLogins::new(Duration::from_secs(60), true);
        let id = w.start(1, "u", "tok").unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(w.start(2, "u", "tok"), Err(InUse));
        let web = w.serve(&id).unwrap();
        assert_eq!(web.len(), 100);
        assert!(web.bytes().all(|b| WEB_ALPHABET.contains(&b)));
        assert_eq!(w.serve(&id), None, "shown once");
        assert_eq!(w.redeem(2, &web), Redeem::NoPending);
        assert_eq!(w.redeem(1, "wrong"), Redeem::Invalid);
        assert_eq!(w.redeem(1, &web), Redeem::Ok { user_id: "u".into(), token_hash: "tok".into() });
        // Still in use by the authenticated connection 1 until it closes.
        assert_eq!(w.start(2, "u", "tok"), Err(InUse));
        w.release(1);
        assert!(w.start(2, "u", "tok").is_ok());
    }

    #[test]
    fn three_wrong_tokens_cancel() {
        let w = WebLogins::new(Duration::from_secs(60), true);
        let id = w.start(1, "u", "tok").unwrap();
        let web = w.serve(&id).unwrap();
        for _ in 0..3 {
            assert_eq!(w.redeem(1, "nope"), Redeem::Invalid);
        }
        assert_eq!(w.redeem(1, &web), Redeem::NoPending);
        assert!(w.start(2, "u", "tok").is_ok(), "the token was freed");
    }

    #[test]
    fn expired_logins_fail() {
        let w = WebLogins::new(Duration::ZERO, false);
        let id = w.start(1, "u", "tok").unwrap();
        assert_eq!(w.serve(&id), None);
        assert_eq!(w.redeem(1, "anything"), Redeem::Invalid);
    }
}
