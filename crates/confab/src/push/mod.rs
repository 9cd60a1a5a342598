//! Web Push (PROTOCOL §6.1, §6.9; RFC 8291, RFC 8292): the configuration, the server's VAPID key,
//! and the bounded queue between the message path and the [`sender`] task that encrypts and posts
//! notifications to the browsers' push services.
//!
//! Committing a message never waits for a push service: the message path only offers a [`Job`]
//! to a bounded queue, and a full queue drops it (counted in `confab_push_total{outcome="dropped"}`).
//! The subscriptions are in [`crate::store::push`], the commands in [`crate::commands::push`].

pub mod ece;
pub mod endpoint;
pub mod sender;
pub mod vapid;

use std::{sync::Mutex, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    metrics::Metrics,
    store::writer::{NewMessage, Pinged},
};

/// Characters of the message shown in a notification (PROTOCOL §6.1).
pub const BODY_CHARS: usize = 120;

/// The `push` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Whether the push commands are offered and notifications sent. On by default: the VAPID
    /// key is generated on first start and the official client subscribes after `ready`.
    pub enabled: bool,
    /// The contact the push services see in each request (`sub`, RFC 8292 §2.1): a `mailto:` or
    /// `https:` URI. Empty means `public_url` when it is https (set it when it is not).
    pub subject: String,
    /// How long a push service keeps a notification for an unreachable browser (`TTL` header).
    pub ttl_s: u64,
    /// Notifications waiting to be sent; beyond it new ones are dropped and counted.
    pub queue: usize,
    /// Requests to push services in flight at once.
    pub concurrency: usize,
    /// Seconds one request to a push service may take.
    pub timeout_s: u64,
    /// Tries per notification when the push service fails (5xx, 429, network); then it is dropped.
    pub attempts: u32,
    /// UNSAFE, for tests only: accept `http://` endpoints and endpoints on loopback, private and
    /// other non-public addresses (a local fake push service). Never set it on a real server: any
    /// user could then make the server send requests into its own network.
    pub unsafe_allow_local_endpoints: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: true,
            subject: String::new(),
            ttl_s: 86_400,
            queue: 1024,
            concurrency: 16,
            timeout_s: 10,
            attempts: 3,
            unsafe_allow_local_endpoints: false,
        }
    }
}

/// base64url as browsers write push keys: encoded without padding; decoded with or without it,
/// and from the standard alphabet too.
pub mod b64 {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=').replace('+', "-").replace('/', "_");
        URL_SAFE_NO_PAD.decode(text).ok()
    }
}

/// A committed message that pings someone: what the sender needs to find the recipients and
/// write their notifications.
#[derive(Debug, Clone)]
pub struct Job {
    pub message_id: String,
    pub channel_id: String,
    pub channel_name: String,
    pub thread_id: Option<String>,
    /// `None` for server-generated messages (webhooks, the system user).
    pub author_id: Option<String>,
    pub author_name: String,
    /// The first [`BODY_CHARS`] characters of the content.
    pub body: String,
    pub pinged: Pinged,
}

/// The Web Push runtime of one server.
pub struct Push {
    vapid: Option<vapid::Vapid>,
    jobs: mpsc::Sender<Job>,
    /// The receiving end, taken once by [`sender::run`].
    inbox: Mutex<Option<mpsc::Receiver<Job>>>,
    pub(crate) http: reqwest::Client,
}

impl Push {
    /// The runtime for `config`; `vapid` is `None` when push is disabled.
    pub fn new(config: &PushConfig, vapid: Option<vapid::Vapid>) -> Push {
        let (jobs, inbox) = mpsc::channel(config.queue.max(1));
        let timeout = Duration::from_secs(config.timeout_s);
        Push {
            vapid,
            jobs,
            inbox: Mutex::new(Some(inbox)),
            http: endpoint::client(config.unsafe_allow_local_endpoints, timeout),
        }
    }

    /// The VAPID key, when push is enabled.
    pub fn vapid(&self) -> Option<&vapid::Vapid> {
        self.vapid.as_ref()
    }

    /// The job for `message` when push is on and the message pings anyone.
    pub fn job(&self, message: &NewMessage) -> Option<Job> {
        let p = &message.pinged;
        if self.vapid.is_none() || (p.users.is_empty() && p.roles.is_empty() && p.reply.is_none()) {
            return None;
        }
        Some(Job {
            message_id: message.id.clone(),
            channel_id: message.channel_id.clone(),
            channel_name: message.channel_name.clone(),
            thread_id: message.thread_id.clone(),
            author_id: message.user_id.clone(),
            author_name: message.author_name.clone(),
            body: message.content.chars().take(BODY_CHARS).collect(),
            pinged: p.clone(),
        })
    }

    /// Offers a committed message's job to the sender without waiting; a full queue drops it.
    pub fn enqueue(&self, job: Job, metrics: &Metrics) {
        if let Err(e) = self.jobs.try_send(job) {
            metrics.inc("confab_push_total", "outcome=\"dropped\"".to_owned());
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::warn!("push queue full: a notification was dropped");
            }
        }
    }

    /// The queue's receiving end, for the one sender task.
    fn take_inbox(&self) -> Option<mpsc::Receiver<Job>> {
        self.inbox.lock().ok()?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_with_or_without_padding_in_either_alphabet() {
        assert_eq!(b64::decode("BTBZMqHH6r4Tts7J_aSIgg"), b64::decode("BTBZMqHH6r4Tts7J/aSIgg=="));
        assert_eq!(b64::decode("BTBZMqHH6r4Tts7J_aSIgg").map(|v| v.len()), Some(16));
        assert_eq!(b64::decode("not base64!"), None);
    }
}
