//! When to reconnect: exponential backoff with jitter, and what a close code allows (PROTOCOL §1.7).

use std::time::Duration;

use confab_proto::close;

/// Exponential backoff from 100 ms doubling to a 5 s cap, with up to 25 % random jitter so that many
/// clients cut off together (a server restart) do not all come back in the same millisecond.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    /// The delay before the next attempt; each call counts one failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = Self::FIRST.saturating_mul(1 << self.attempt.min(10)).min(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        let mut byte = [0u8; 1];
        let jitter = if getrandom::fill(&mut byte).is_ok() { base * u32::from(byte[0]) / 1020 } else { Duration::ZERO };
        base + jitter
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A connection reached `ready`: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// What a close code lets a client do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterClose {
    /// Reconnect with backoff and resume.
    Reconnect,
    /// The token was refused on the upgrade: renew it (if possible), then reconnect.
    Renew,
    /// Stop: the account or its session is gone, or the client misbehaved; retrying would not help.
    Stop,
}

/// The policy of PROTOCOL §1.7 for a close code (`None`: the TCP connection just ended).
pub fn after_close(code: Option<u16>) -> AfterClose {
    match code {
        None | Some(close::GOING_AWAY | close::HEARTBEAT_TIMEOUT | close::SLOW_CONSUMER | close::AUTH_TIMEOUT) => {
            AfterClose::Reconnect
        }
        Some(close::POLICY) => AfterClose::Renew,
        Some(close::BANNED | close::REVOKED | close::NORMAL | close::TOO_BIG | close::DECODE_FLOOD) => AfterClose::Stop,
        // Unknown codes and the hard rate limit (4008): try again, slowly.
        Some(_) => AfterClose::Reconnect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_success() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125), "{first:?}");
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(250), "{second:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(6250), "{d:?}");
        }
        assert!(b.next_delay() >= Duration::from_secs(5));
        assert_eq!(b.attempts(), 23);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }

    #[test]
    fn close_codes_follow_the_protocol_table() {
        assert_eq!(after_close(Some(1001)), AfterClose::Reconnect);
        assert_eq!(after_close(Some(4000)), AfterClose::Reconnect);
        assert_eq!(after_close(Some(4009)), AfterClose::Reconnect);
        assert_eq!(after_close(None), AfterClose::Reconnect);
        assert_eq!(after_close(Some(1008)), AfterClose::Renew);
        assert_eq!(after_close(Some(4003)), AfterClose::Stop);
        assert_eq!(after_close(Some(4004)), AfterClose::Stop);
    }
}
