//! Token buckets and the per-username login lock (PROTOCOL §4.5, §8.3).
//!
//! Pure arithmetic over an explicit `now`, so the rules are testable without waiting.

use std::time::{Duration, Instant};

/// A classic token bucket: `capacity` tokens, refilled continuously at `per_second`.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_second: f64, now: Instant) -> Bucket {
        Bucket { capacity: f64::from(capacity), per_second, tokens: f64::from(capacity), updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Takes `cost` tokens, or says how long until they would be there.
    pub fn take(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(self.wait_for(cost))
        }
    }

    /// Gives back `cost` tokens taken for something that turned out not to cost them.
    pub fn refund(&mut self, cost: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + cost).min(self.capacity);
    }

    /// Time until `cost` tokens are available, without taking any.
    pub fn check(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= cost { Ok(()) } else { Err(self.wait_for(cost)) }
    }

    fn wait_for(&self, cost: f64) -> Duration {
        Duration::from_secs_f64(((cost - self.tokens) / self.per_second).max(0.001))
    }

    /// Tokens as of the last refill.
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// Whether the bucket has been full long enough that forgetting it changes nothing.
    pub fn is_idle(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

/// Failed-login bookkeeping for one username: 5 failures in 15 minutes lock it for 15 minutes.
///
/// An attempt is charged before its (slow) check and counted as a possible failure while it is
/// in flight: no more attempts start than could fail before the lock, so guesses sent all at
/// once cannot pass a lock that none of them has reached yet. Only settled failures lock.
#[derive(Debug, Clone, Default)]
pub struct LoginLock {
    failures: Vec<Instant>,
    /// When each attempt still in flight started.
    pending: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// Failures within [`LOCK_WINDOW`] that lock a username.
pub const LOCK_FAILURES: usize = 5;
/// Both the counting window and the lock duration.
pub const LOCK_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an attempt counts as in flight at most: one whose end was never recorded (its
/// request failed on the way) stops holding a place after this.
const PENDING_MAX: Duration = Duration::from_secs(60);
/// The wait reported to an attempt refused because enough others are in flight: about the time
/// one password check takes.
const PENDING_WAIT: Duration = Duration::from_secs(1);

impl LoginLock {
    /// `Err(remaining)` while the username is locked.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.locked_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt, locking when the threshold is reached.
    pub fn fail(&mut self, now: Instant) {
        self.failures.retain(|t| now.saturating_duration_since(*t) < LOCK_WINDOW);
        self.failures.push(now);
        if self.failures.len() >= LOCK_FAILURES {
            self.locked_until = Some(now + LOCK_WINDOW);
            self.failures.clear();
        }
    }

    /// Starts an attempt, or says how long to wait: while the username is locked, or while the
    /// attempts in flight could, failing, lock it.
    pub fn charge(&mut self, now: Instant) -> Result<(), Duration> {
        self.check(now)?;
        self.failures.retain(|t| now.saturating_duration_since(*t) < LOCK_WINDOW);
        self.pending.retain(|t| now.saturating_duration_since(*t) < PENDING_MAX);
        if self.failures.len() + self.pending.len() >= LOCK_FAILURES {
            return Err(PENDING_WAIT);
        }
        self.pending.push(now);
        Ok(())
    }

    /// Ends an attempt started by [`LoginLock::charge`] that failed.
    pub fn charged_failed(&mut self, now: Instant) {
        self.settle();
        self.fail(now);
    }

    /// Ends an attempt started by [`LoginLock::charge`] that neither failed nor succeeded (a
    /// busy server, a banned account).
    pub fn settle(&mut self) {
        if !self.pending.is_empty() {
            self.pending.remove(0);
        }
    }

    /// Whether the entry holds no information any more and can be dropped.
    pub fn is_stale(&self, now: Instant) -> bool {
        self.check(now).is_ok()
            && self.failures.iter().all(|t| now.saturating_duration_since(*t) >= LOCK_WINDOW)
            && self.pending.iter().all(|t| now.saturating_duration_since(*t) >= PENDING_MAX)
    }
}

/// The originChats `messages` rule (PROTOCOL §4.5): at most 60 accepted in any 60 s, and a request
/// arriving when 10 were accepted in the last 10 s is refused and starts a 30 s cooldown.
#[derive(Debug, Clone, Default)]
pub struct MessageWindow {
    accepted: std::collections::VecDeque<Instant>,
    cooldown_until: Option<Instant>,
}

/// Why the message window refused a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowRefusal {
    /// Still cooling down from an earlier burst.
    Cooldown(Duration),
    /// This request was a burst: a cooldown of this length starts now.
    Burst(Duration),
    /// The per-minute window is full until this wait has passed.
    Window(Duration),
}

/// Requests per minute and per burst, and the burst cooldown.
pub const PER_MINUTE: usize = 60;
pub const BURST: usize = 10;
pub const BURST_WINDOW: Duration = Duration::from_secs(10);
pub const COOLDOWN: Duration = Duration::from_secs(30);
const MINUTE: Duration = Duration::from_secs(60);

impl MessageWindow {
    /// Accepts a request at `now` or says why not.
    pub fn take(&mut self, now: Instant) -> Result<(), WindowRefusal> {
        if let Some(until) = self.cooldown_until {
            if until > now {
                return Err(WindowRefusal::Cooldown(until - now));
            }
            self.cooldown_until = None;
        }
        while self.accepted.front().is_some_and(|t| now.saturating_duration_since(*t) >= MINUTE) {
            self.accepted.pop_front();
        }
        if self.recent(now) >= BURST {
            self.cooldown_until = Some(now + COOLDOWN);
            return Err(WindowRefusal::Burst(COOLDOWN));
        }
        if self.accepted.len() >= PER_MINUTE {
            let oldest = self.accepted.front().copied().unwrap_or(now);
            return Err(WindowRefusal::Window((oldest + MINUTE).saturating_duration_since(now)));
        }
        self.accepted.push_back(now);
        Ok(())
    }

    /// Gives back the last accepted request (it turned out to be an idempotent repeat).
    pub fn refund(&mut self) {
        self.accepted.pop_back();
    }

    /// Accepted in the last 10 s.
    pub fn recent(&self, now: Instant) -> usize {
        self.accepted.iter().filter(|t| now.saturating_duration_since(**t) < BURST_WINDOW).count()
    }

    /// Accepted in the last 60 s.
    pub fn this_minute(&self, now: Instant) -> usize {
        self.accepted.iter().filter(|t| now.saturating_duration_since(**t) < MINUTE).count()
    }

    /// Cooldown left at `now`.
    pub fn cooldown(&self, now: Instant) -> Duration {
        self.cooldown_until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
    }

    /// Whether forgetting this window changes nothing.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.cooldown(now).is_zero() && self.this_minute(now) == 0
    }
}

/// Seconds to show in "Try again in <n> seconds": whole, at least 1.
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_over_time() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2, 0.5, t0);
        assert!(b.take(1.0, t0).is_ok());
        assert!(b.take(1.0, t0).is_ok());
        let wait = b.take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 2.0).abs() < 0.01);
        assert!(b.take(1.0, t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn login_lock_after_five_failures() {
        let t0 = Instant::now();
        let mut l = LoginLock::default();
        for i in 0..4 {
            l.fail(t0 + Duration::from_secs(i));
            assert!(l.check(t0 + Duration::from_secs(i)).is_ok());
        }
        l.fail(t0 + Duration::from_secs(5));
        assert!(l.check(t0 + Duration::from_secs(6)).is_err());
        assert!(l.check(t0 + Duration::from_secs(5) + LOCK_WINDOW).is_ok());
    }

    /// Attempts in flight hold places: the sixth of six started together is refused, a settled
    /// one frees its place, and only settled failures lock.
    #[test]
    fn attempts_in_flight_count_toward_the_lock() {
        let t0 = Instant::now();
        let mut l = LoginLock::default();
        for _ in 0..LOCK_FAILURES {
            assert!(l.charge(t0).is_ok());
        }
        assert_eq!(l.charge(t0), Err(PENDING_WAIT));
        l.settle();
        assert!(l.check(t0).is_ok());
        assert!(l.charge(t0).is_ok());
        for _ in 0..LOCK_FAILURES {
            l.charged_failed(t0);
        }
        assert!(l.check(t0).is_err());
        // An attempt whose end was never recorded stops holding a place.
        let mut l = LoginLock::default();
        for _ in 0..LOCK_FAILURES {
            assert!(l.charge(t0).is_ok());
        }
        assert!(l.charge(t0 + PENDING_MAX).is_ok());
    }

    #[test]
    fn message_window_bursts_then_cools_down() {
        let t0 = Instant::now();
        let mut w = MessageWindow::default();
        for i in 0..10 {
            assert!(w.take(t0 + Duration::from_millis(i)).is_ok());
        }
        assert_eq!(w.take(t0 + Duration::from_millis(20)), Err(WindowRefusal::Burst(COOLDOWN)));
        assert!(matches!(w.take(t0 + Duration::from_secs(5)), Err(WindowRefusal::Cooldown(_))));
        assert!(w.take(t0 + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn message_window_counts_the_minute_and_refunds() {
        let t0 = Instant::now();
        let mut w = MessageWindow::default();
        // Nine every 10 s never trips the burst rule.
        for i in 0..27u64 {
            assert!(w.take(t0 + Duration::from_millis((i / 9) * 10_001 + i % 9)).is_ok(), "request {i}");
        }
        let t = t0 + Duration::from_secs(21);
        assert_eq!(w.this_minute(t), 27);
        assert_eq!(w.recent(t), 9);
        w.refund();
        assert_eq!(w.this_minute(t), 26);
        assert!(w.is_idle(t0 + Duration::from_secs(200)));
    }

    #[test]
    fn whole_seconds_rounds_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(5100)), 6);
    }
}
