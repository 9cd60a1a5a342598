//! The first-run setup link. A server without an owner prints, at every start, a link with a fresh
//! one-time token; opening it in the web app creates the owner account. Whoever can read the
//! server's output is the operator, so this needs no CLI and leaves no "first visitor becomes
//! admin" hole. Only the token's hash is kept, in memory: a restart makes a new link and voids the
//! old one, using it spends it, and it expires after [`SETUP_TTL_S`].

use std::sync::{Mutex, PoisonError};

use subtle::ConstantTimeEq;

use super::tokens::{hash_token, random_token};

/// How long a printed link stays usable.
pub const SETUP_TTL_S: f64 = 24.0 * 3600.0;

/// The pending setup token of this process, if any.
#[derive(Default)]
pub struct SetupLink {
    pending: Mutex<Option<Pending>>,
}

struct Pending {
    hash: String,
    expires: f64,
}

impl SetupLink {
    /// Makes a new token (replacing any earlier one) and returns it; only its hash is kept.
    pub fn issue(&self, now: f64) -> String {
        let token = random_token();
        *self.slot() = Some(Pending { hash: hash_token(&token), expires: now + SETUP_TTL_S });
        token
    }

    /// Whether `token` is the live one, without spending it.
    pub fn matches(&self, token: &str, now: f64) -> bool {
        self.slot().as_ref().is_some_and(|p| p.valid(token, now))
    }

    /// Spends `token`: true exactly once for the live token.
    pub fn spend(&self, token: &str, now: f64) -> bool {
        let mut slot = self.slot();
        let live = slot.as_ref().is_some_and(|p| p.valid(token, now));
        if live {
            *slot = None;
        }
        live
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pending {
    fn valid(&self, token: &str, now: f64) -> bool {
        now < self.expires && bool::from(hash_token(token).as_bytes().ct_eq(self.hash.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_use_replaced_and_expiring() {
        let link = SetupLink::default();
        assert!(!link.matches("", 0.0));
        let first = link.issue(0.0);
        let token = link.issue(0.0);
        assert!(!link.matches(&first, 1.0), "a new link voids the old one");
        assert!(link.matches(&token, 1.0));
        assert!(!link.matches(&token, SETUP_TTL_S + 1.0), "expired");
        assert!(!link.spend("wrong", 1.0));
        assert!(link.spend(&token, 1.0));
        assert!(!link.spend(&token, 1.0), "spent");
    }
}
