//! The push sender task: takes committed messages off the queue, finds who to notify (mentioned
//! users, the replied-to author, members of mentioned roles; never the author, nobody with a live
//! connection, nobody who cannot see the channel), encrypts one notification per subscription and
//! posts it, a bounded number at once. 404 and 410 from the push service delete the subscription;
//! 429, 5xx and network failures are retried a few times, then dropped with a log line.

use std::{collections::HashMap, sync::Arc, time::Duration};

use p256::PublicKey;
use serde_json::json;
use tokio::{sync::Semaphore, task::JoinSet};

use super::{Job, b64, ece, endpoint};
use crate::{error::Result, state::AppState, store::push::PushSubscription};

/// Longest pause between two tries of one notification.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why someone gets a notification; the first that applies names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Mentioned by name.
    Mention,
    /// Author of the message replied to.
    Reply,
    /// Holds a mentioned role (its name).
    Role(String),
}

/// What became of one notification, as counted in `confab_push_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// The push service no longer knows the subscription; it was deleted.
    Gone,
    /// The endpoint is no longer acceptable (an address that became private, a setting changed).
    Refused,
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Gone => "gone",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// Runs until shutdown: one job at a time is planned, its notifications are sent concurrently
/// with at most `push.concurrency` requests in flight across all jobs.
pub async fn run(state: AppState) {
    let Some(mut inbox) = state.push.take_inbox() else { return };
    let slots = Arc::new(Semaphore::new(state.config.push.concurrency.max(1)));
    // Dropped (so aborted) with this task at shutdown.
    let mut sending = JoinSet::new();
    loop {
        let job = tokio::select! {
            job = inbox.recv() => job,
            () = state.shutdown.cancelled() => None,
        };
        let Some(job) = job else { break };
        while sending.try_join_next().is_some() {}
        let deliveries = match plan(&state, &job).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(message = %job.message_id, "finding push recipients: {e}");
                continue;
            }
        };
        for (sub, reason) in deliveries {
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
            let state = state.clone();
            let payload = payload(&job, &reason);
            sending.spawn(async move {
                let outcome = deliver(&state, &sub, &payload).await;
                state.metrics.inc("confab_push_total", format!("outcome=\"{}\"", outcome.label()));
                drop(slot);
            });
        }
    }
}

/// The subscriptions to notify about `job` and why.
async fn plan(state: &AppState, job: &Job) -> Result<Vec<(PushSubscription, Reason)>> {
    let dir = state.directory();
    let Some(channel) = dir.channels.iter().find(|c| c.row.id == job.channel_id) else { return Ok(Vec::new()) };
    let mut users = job.pinged.users.clone();
    users.extend(job.pinged.reply.iter().cloned());
    let (subs, held) = state.store.push_audience(&users, &job.pinged.roles).await?;
    let mut roles_of: HashMap<String, Vec<String>> = HashMap::new();
    for (user, role) in held {
        roles_of.entry(user).or_default().push(role);
    }
    let role_name = |id: &str| dir.roles.iter().find(|r| r.id == id).map(|r| r.name.clone());
    // A cluster's online set is in PostgreSQL (one query); one node asks its hub per user.
    let cluster_online = match &state.cluster {
        Some(_) => Some(state.online_users().await?),
        None => None,
    };
    let online = |user: &str| match &cluster_online {
        Some(set) => set.contains(user),
        None => state.hub.user_connections(user) > 0,
    };
    let can_view = |roles: &[String]| dir.actor(&dir.roles_of(roles)).channel_allows(&channel.perms, "view");
    Ok(recipients(job, subs, &roles_of, role_name, online, can_view))
}

/// Picks from `subs` (with each owner's role ids in `roles_of`) the ones to notify about `job`:
/// never the author's, nobody `online`, nobody who cannot view the channel.
fn recipients(
    job: &Job,
    subs: Vec<PushSubscription>,
    roles_of: &HashMap<String, Vec<String>>,
    role_name: impl Fn(&str) -> Option<String>,
    online: impl Fn(&str) -> bool,
    can_view: impl Fn(&[String]) -> bool,
) -> Vec<(PushSubscription, Reason)> {
    let none = Vec::new();
    subs.into_iter()
        .filter_map(|sub| {
            let user = sub.user_id.as_str();
            if job.author_id.as_deref() == Some(user) || online(user) {
                return None;
            }
            let roles = roles_of.get(user).unwrap_or(&none);
            if !can_view(roles) {
                return None;
            }
            let reason = if job.pinged.users.iter().any(|u| u == user) {
                Reason::Mention
            } else if job.pinged.reply.as_deref() == Some(user) {
                Reason::Reply
            } else {
                let role = job.pinged.roles.iter().find(|r| roles.contains(r))?;
                Reason::Role(role_name(role)?)
            };
            Some((sub, reason))
        })
        .collect()
}

/// The notification the official client's service worker shows: `{title, body, channelName}`
/// (PROTOCOL §6.1), plus the message id and thread for clients that open it.
fn payload(job: &Job, reason: &Reason) -> Vec<u8> {
    let head = format!("#{} — {}", job.channel_name, job.author_name);
    let title = match reason {
        Reason::Mention => head,
        Reason::Reply => format!("{head} replied"),
        Reason::Role(role) => format!("{head} mentioned @{role}"),
    };
    let mut body =
        json!({"title": title, "body": job.body, "channelName": job.channel_name, "message_id": job.message_id});
    if let Some(thread) = &job.thread_id {
        body["thread_id"] = json!(thread);
    }
    body.to_string().into_bytes()
}

/// Encrypts and posts one notification, retrying failures that may pass.
async fn deliver(state: &AppState, sub: &PushSubscription, payload: &[u8]) -> Outcome {
    let cfg = &state.config.push;
    let allow_local = cfg.unsafe_allow_local_endpoints;
    let Some(vapid) = state.push.vapid() else { return Outcome::Refused };
    let url = match endpoint::parse(&sub.endpoint, allow_local).and_then(|u| {
        endpoint::check_literal(&u, allow_local)?;
        Ok(u)
    }) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(user = %sub.user_id, "push endpoint refused: {e}");
            return Outcome::Refused;
        }
    };
    let ua_public = b64::decode(&sub.p256dh).and_then(|k| PublicKey::from_sec1_bytes(&k).ok());
    let auth = b64::decode(&sub.auth).and_then(|a| <[u8; 16]>::try_from(a).ok());
    let (Some(ua_public), Some(auth)) = (ua_public, auth) else {
        // Checked when subscribing; a row that fails now can never be used.
        forget(state, sub).await;
        return Outcome::Gone;
    };
    let body = match ece::encrypt(payload, &ua_public, &auth) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(user = %sub.user_id, "encrypting a notification: {e}");
            return Outcome::Failed;
        }
    };
    let now = crate::store::now();
    let authorization = vapid.authorization(&url.origin().ascii_serialization(), &cfg.subject, now as u64);
    let attempts = cfg.attempts.max(1);
    for attempt in 1..=attempts {
        let sent = state
            .push
            .http
            .post(url.clone())
            .header("TTL", cfg.ttl_s.to_string())
            .header("Urgency", "high")
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", &authorization)
            .body(body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => {
                if let Err(e) = state.store.push_used(&sub.endpoint, crate::store::now()).await {
                    tracing::warn!(user = %sub.user_id, "recording a push: {e}");
                }
                return Outcome::Sent;
            }
            Ok(r) if matches!(r.status().as_u16(), 404 | 410) => {
                forget(state, sub).await;
                return Outcome::Gone;
            }
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => format!("status {}", r.status()),
            Ok(r) => {
                tracing::warn!(user = %sub.user_id, status = r.status().as_u16(), "push service refused a notification");
                return Outcome::Failed;
            }
            // Without the URL: the endpoint is a capability and stays out of the log.
            Err(e) => e.without_url().to_string(),
        };
        if attempt == attempts {
            tracing::warn!(user = %sub.user_id, "push dropped after {attempts} tries: {why}");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1 << (attempt - 1).min(5)).min(BACKOFF_MAX)).await;
    }
    Outcome::Failed
}

/// Deletes a subscription the push service no longer knows.
async fn forget(state: &AppState, sub: &PushSubscription) {
    match state.store.push_forget(&sub.endpoint).await {
        Ok(_) => tracing::info!(user = %sub.user_id, "push subscription gone; deleted"),
        Err(e) => tracing::warn!(user = %sub.user_id, "deleting a push subscription: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::Pinged;

    fn sub(user: &str) -> PushSubscription {
        PushSubscription {
            endpoint: format!("https://push.example/{user}"),
            user_id: user.into(),
            p256dh: String::new(),
            auth: String::new(),
        }
    }

    #[test]
    fn mentioned_replied_and_role_members_offline_who_can_see_never_the_author() {
        let job = Job {
            message_id: "m1".into(),
            channel_id: "c1".into(),
            channel_name: "general".into(),
            thread_id: None,
            author_id: Some("author".into()),
            author_name: "alice".into(),
            body: "hi".into(),
            pinged: Pinged {
                users: vec!["author".into(), "bob".into(), "online".into(), "blind".into()],
                roles: vec!["r-mods".into()],
                reply: Some("carol".into()),
            },
        };
        let roles_of: HashMap<String, Vec<String>> = [
            ("dave".to_owned(), vec!["r-mods".to_owned()]),
            ("blind".to_owned(), vec!["r-muted".to_owned()]),
            ("eve".to_owned(), vec!["r-other".to_owned()]),
        ]
        .into();
        let subs = ["author", "bob", "online", "blind", "carol", "dave", "eve"].map(sub).to_vec();
        let got = recipients(
            &job,
            subs,
            &roles_of,
            |id| (id == "r-mods").then(|| "mods".to_owned()),
            |u| u == "online",
            |roles| !roles.iter().any(|r| r == "r-muted"),
        );
        let got: Vec<(&str, Reason)> = got.iter().map(|(s, r)| (s.user_id.as_str(), r.clone())).collect();
        assert_eq!(got, [("bob", Reason::Mention), ("carol", Reason::Reply), ("dave", Reason::Role("mods".into()))]);
        let body: serde_json::Value = serde_json::from_slice(&payload(&job, &Reason::Role("mods".into()))).unwrap();
        assert_eq!(body["title"], "#general — alice mentioned @mods");
        assert_eq!(body["channelName"], "general");
    }
}
