//! Account timeouts as a rate limit (PROTOCOL §4.4–4.6): while an account is in timeout, its
//! `messages`, `typing` and `reactions` commands are answered with a `rate_limit` packet instead.
//!
//! The timeout itself is stored on the account (`user_timeout`, in `moderation`); the connection's
//! identity carries it, so the check costs no database read on the message path.

use confab_proto::Frame;
use serde_json::json;

use crate::gateway::Session;

/// The rate-limit classes a timeout blocks (PROTOCOL §4.5).
pub const TIMEOUT_CLASSES: [&str; 3] = ["messages", "typing", "reactions"];

/// Seconds of timeout left at `now` (Unix seconds), if any.
pub fn remaining(until: Option<f64>, now: f64) -> Option<f64> {
    until.map(|u| u - now).filter(|left| *left > 0.0)
}

/// A wait as the whole milliseconds of `length`, rounded up so a client that waits exactly that
/// long is not refused again.
pub fn millis(seconds: f64) -> u64 {
    (seconds * 1000.0).ceil().max(0.0) as u64
}

/// The `reason` of a timeout refusal, with one decimal as PROTOCOL §4.5 writes it.
pub fn timeout_reason(seconds: f64) -> String {
    format!("You are in timeout for {seconds:.1} more seconds")
}

/// Answers `frame` with a `rate_limit` packet (carrying its `listener`) instead of its reply.
/// Shared by every limiter so the packet has one shape.
pub fn send_rate_limit(s: &Session, frame: &Frame, class: &str, reason: &str, length_ms: u64) {
    s.reply(frame, "rate_limit", json!({"reason": reason, "length": length_ms, "src": frame.cmd, "class": class}));
}

/// The timeout check of PROTOCOL §4.5: when the account is in timeout and `class` is one a timeout
/// blocks, sends the `rate_limit` packet and returns `true`; the caller must then do nothing else
/// (no effect, no other reply). A central per-class limiter can call this before its own buckets.
pub fn refuse_if_timed_out(s: &Session, frame: &Frame, class: &str) -> bool {
    if !TIMEOUT_CLASSES.contains(&class) {
        return false;
    }
    let Some(conn) = &s.conn else { return false };
    let Some(left) = remaining(conn.identity().user.timeout_until, crate::store::now()) else { return false };
    send_rate_limit(s, frame, class, &timeout_reason(left), millis(left));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_and_its_wire_forms() {
        assert_eq!(remaining(None, 100.0), None);
        assert_eq!(remaining(Some(100.0), 100.0), None, "a timeout ends at its instant");
        assert_eq!(remaining(Some(90.0), 100.0), None);
        assert_eq!(remaining(Some(160.5), 100.0), Some(60.5));
        assert_eq!(millis(60.5), 60_500);
        assert_eq!(millis(0.0001), 1);
        assert_eq!(timeout_reason(59.96), "You are in timeout for 60.0 more seconds");
        assert_eq!(timeout_reason(4.21), "You are in timeout for 4.2 more seconds");
    }
}
