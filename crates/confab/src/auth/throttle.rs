//! Login throttling: the per-IP `auth` bucket and the per-username lock (PROTOCOL §4.5, §8.3).
//!
//! State is per node and in memory: it protects this node's CPU and slows guessing; it is not a
//! durable record and is pruned as it goes idle.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use dashmap::DashMap;

use crate::domain::throttle::{Bucket, LoginLock};

/// Per-IP bucket: capacity 10, one token back every 6 s.
const IP_CAPACITY: u32 = 10;
const IP_REFILL_PER_S: f64 = 1.0 / 6.0;

/// Auth throttles shared by the WebSocket gateway and the HTTP auth routes.
#[derive(Default)]
pub struct AuthThrottle {
    /// Switched off by `rate_limits.enabled = false`; the username lock stays on regardless.
    ip_enabled: bool,
    ips: DashMap<IpAddr, Bucket>,
    names: DashMap<String, LoginLock>,
}

impl AuthThrottle {
    pub fn new(ip_enabled: bool) -> AuthThrottle {
        AuthThrottle { ip_enabled, ..AuthThrottle::default() }
    }

    /// `Err(wait)` while this IP's bucket is empty: every auth attempt is refused then.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        if !self.ip_enabled {
            return Ok(());
        }
        match self.ips.get_mut(&ip) {
            Some(mut b) => b.check(1.0, Instant::now()),
            None => Ok(()),
        }
    }

    /// Charges one token to `ip`: a failed attempt, a non-auth frame before auth, or (through
    /// `AppState::auth_charge`) an attempt about to be checked. `Err(wait)` when the bucket is empty.
    pub fn charge_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        if !self.ip_enabled {
            return Ok(());
        }
        let now = Instant::now();
        self.ips.entry(ip).or_insert_with(|| Bucket::new(IP_CAPACITY, IP_REFILL_PER_S, now)).take(1.0, now)
    }

    /// Gives back the token of an attempt that turned out not to cost one (a successful login).
    pub fn refund_ip(&self, ip: IpAddr) {
        if let Some(mut b) = self.ips.get_mut(&ip) {
            b.refund(1.0, Instant::now());
        }
    }

    /// Starts an attempt on `name_key` before it is checked; `Err(wait)` while the name is locked
    /// or enough attempts on it are in flight to lock it. End it with [`AuthThrottle::fail_name`],
    /// [`AuthThrottle::settle_name`] or [`AuthThrottle::succeed_name`].
    pub fn charge_name(&self, name_key: &str) -> Result<(), Duration> {
        self.names.entry(name_key.to_owned()).or_default().charge(Instant::now())
    }

    /// Ends a charged attempt on `name_key` that failed.
    pub fn fail_name(&self, name_key: &str) {
        self.names.entry(name_key.to_owned()).or_default().charged_failed(Instant::now());
    }

    /// Ends a charged attempt on `name_key` that neither failed nor succeeded.
    pub fn settle_name(&self, name_key: &str) {
        if let Some(mut lock) = self.names.get_mut(name_key) {
            lock.settle();
        }
    }

    /// A successful login resets the username's counter.
    pub fn succeed_name(&self, name_key: &str) {
        self.names.remove(name_key);
    }

    /// Drops entries that no longer hold information; called periodically.
    pub fn prune(&self) {
        let now = Instant::now();
        self.ips.retain(|_, b| !b.is_idle(now));
        self.names.retain(|_, l| !l.is_stale(now));
    }
}
