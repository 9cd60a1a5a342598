//! Per-account rate limits by command class (PROTOCOL §4.5): the originChats `messages` window and
//! token buckets for `typing`, `reactions`, `reads` and `other`, shared by all of an account's
//! connections on this node.
//!
//! Limits live in memory, per node: they protect this node and its users from floods; they are not
//! a durable record. Timeouts (a moderation decision) are durable and checked separately.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::{Value, json};

use crate::domain::throttle::{BURST, Bucket, MessageWindow, PER_MINUTE, WindowRefusal};

/// What one relayed WebRTC signal (`voice_signal`, docs/voice.md) costs of an `other` token. A
/// join sends each peer an offer or answer and then a handful of ICE candidates (one per address
/// and transport), so at a full token apiece joining a channel of five would be refused halfway
/// and its calls would never connect. A tenth still bounds a flood: 300 at once, 10 a second after.
const SIGNAL_COST: f64 = 0.1;

/// A command's class and cost; `None` for commands no class limits (ping, auth).
pub fn classify(cmd: &str) -> Option<(&'static str, f64)> {
    Some(match cmd {
        "ping" | "auth" | "login" | "register" | "tokenauth" | "botauth" => return None,
        "message_new" | "message_edit" | "poll_create" | "slash_call" | "slash_response" | "thread_create" => {
            ("messages", 1.0)
        }
        "typing" => ("typing", 1.0),
        "voice_signal" => ("other", SIGNAL_COST),
        "message_react_add" | "message_react_remove" | "poll_vote" => ("reactions", 1.0),
        "messages_search" | "pings_get" | "users_list" | "unreads_get" | "modlog_get" | "modlog_summary" | "resume" => {
            ("reads", 5.0)
        }
        "messages_get" | "messages_around" | "message_get" | "message_replies" | "messages_pinned"
        | "thread_messages" | "thread_get" | "embeds_list" | "unreads_count" | "channels_get" | "users_online"
        | "poll_results" | "poll_get" | "attachment_get" => ("reads", 1.0),
        _ => ("other", 1.0),
    })
}

/// The token-bucket classes: (name, capacity, refill per second).
const BUCKETS: [(&str, u32, f64); 4] =
    [("typing", 5, 0.5), ("reactions", 10, 1.0), ("reads", 60, 2.0), ("other", 30, 1.0)];

/// A refused request: what the `rate_limit` packet says.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub class: &'static str,
    pub reason: String,
    pub wait: Duration,
}

struct Account {
    messages: MessageWindow,
    buckets: Vec<Bucket>,
}

impl Account {
    fn new(now: Instant) -> Account {
        Account {
            messages: MessageWindow::default(),
            buckets: BUCKETS.iter().map(|(_, cap, rate)| Bucket::new(*cap, *rate, now)).collect(),
        }
    }
}

/// The limiter of one node.
pub struct Limiter {
    enabled: bool,
    accounts: DashMap<String, Account>,
}

fn seconds(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

impl Limiter {
    /// A limiter; when `enabled` is false it refuses nothing (PROTOCOL §4.5 `rate_limits.enabled`).
    pub fn new(enabled: bool) -> Limiter {
        Limiter { enabled, accounts: DashMap::new() }
    }

    /// Whether limiting is switched on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Charges `cost` of `class` to the account, or refuses with the protocol's reason text.
    pub fn take(&self, user_id: &str, class: &'static str, cost: f64) -> Result<(), Refusal> {
        if !self.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let mut account = self.accounts.entry(user_id.to_owned()).or_insert_with(|| Account::new(now));
        if class == "messages" {
            return account.messages.take(now).map_err(|r| match r {
                WindowRefusal::Cooldown(left) => Refusal {
                    class,
                    reason: format!("You are in cooldown for {} more seconds", seconds(left)),
                    wait: left,
                },
                WindowRefusal::Burst(cooldown) => Refusal {
                    class,
                    reason: format!("Burst limit exceeded. You're in cooldown for {} seconds", cooldown.as_secs()),
                    wait: cooldown,
                },
                WindowRefusal::Window(wait) => {
                    Refusal { class, reason: format!("Rate limit exceeded. Wait {} seconds", seconds(wait)), wait }
                }
            });
        }
        let Some(i) = BUCKETS.iter().position(|(name, _, _)| *name == class) else { return Ok(()) };
        account.buckets[i].take(cost, now).map_err(|wait| Refusal {
            class,
            reason: format!("Rate limit exceeded. Wait {} seconds", seconds(wait)),
            wait,
        })
    }

    /// Gives back a `messages` charge (an idempotent repeat uses no tokens, PROTOCOL §7.4).
    pub fn refund_message(&self, user_id: &str) {
        if let Some(mut account) = self.accounts.get_mut(user_id) {
            account.messages.refund();
        }
    }

    /// Clears an account's buckets and cooldown (not a timeout).
    pub fn reset(&self, user_id: &str) {
        self.accounts.remove(user_id);
    }

    /// The `status` object of `rate_limit_status`, without the timeout (added by the caller).
    pub fn status(&self, user_id: &str) -> Value {
        let now = Instant::now();
        let mut account = self.accounts.entry(user_id.to_owned()).or_insert_with(|| Account::new(now));
        let mut classes = serde_json::Map::new();
        for (i, (name, cap, _)) in BUCKETS.iter().enumerate() {
            let tokens = match account.buckets[i].check(0.0, now) {
                Ok(()) | Err(_) => account.buckets[i].tokens(),
            };
            classes.insert((*name).to_owned(), json!({"tokens": (tokens * 10.0).floor() / 10.0, "capacity": cap}));
        }
        let m = &account.messages;
        classes.insert(
            "messages".to_owned(),
            json!({"tokens": PER_MINUTE.saturating_sub(m.this_minute(now)), "capacity": PER_MINUTE}),
        );
        json!({
            "messages_this_minute": m.this_minute(now),
            "messages_per_minute_limit": PER_MINUTE,
            "recent_messages": m.recent(now),
            "burst_limit": BURST,
            "cooldown_remaining": (m.cooldown(now).as_secs_f64() * 10.0).ceil() / 10.0,
            "classes": classes,
        })
    }

    /// Forgets accounts whose limits are all back to rest.
    pub fn prune(&self) {
        let now = Instant::now();
        self.accounts.retain(|_, a| !(a.messages.is_idle(now) && a.buckets.iter_mut().all(|b| b.is_idle(now))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_protocol_table() {
        assert_eq!(classify("ping"), None);
        assert_eq!(classify("message_edit"), Some(("messages", 1.0)));
        assert_eq!(classify("messages_search"), Some(("reads", 5.0)));
        assert_eq!(classify("channels_get"), Some(("reads", 1.0)));
        assert_eq!(classify("role_create"), Some(("other", 1.0)));
        assert_eq!(classify("voice_signal"), Some(("other", SIGNAL_COST)));
    }

    #[test]
    fn buckets_refuse_with_the_wait_and_reset_clears_them() {
        let l = Limiter::new(true);
        for _ in 0..5 {
            assert!(l.take("u", "typing", 1.0).is_ok());
        }
        let r = l.take("u", "typing", 1.0).unwrap_err();
        assert_eq!(r.class, "typing");
        assert!(r.reason.starts_with("Rate limit exceeded. Wait "), "{}", r.reason);
        l.reset("u");
        assert!(l.take("u", "typing", 1.0).is_ok());
        assert!(Limiter::new(false).take("u", "typing", 100.0).is_ok());
    }

    #[test]
    fn messages_burst_text() {
        let l = Limiter::new(true);
        for _ in 0..10 {
            assert!(l.take("u", "messages", 1.0).is_ok());
        }
        let r = l.take("u", "messages", 1.0).unwrap_err();
        assert_eq!(r.reason, "Burst limit exceeded. You're in cooldown for 30 seconds");
        let r = l.take("u", "messages", 1.0).unwrap_err();
        assert!(r.reason.starts_with("You are in cooldown for "), "{}", r.reason);
        l.refund_message("u");
    }
}
