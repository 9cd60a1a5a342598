//! Group-commit throughput (issue: "durable writes per second with acknowledgement after commit").
//! Ignored by default — a measurement, not a test; run it in release mode:
//!
//! ```sh
//! cargo test --release -p confab --test it perf_group_commit -- --ignored --nocapture
//! ```
//!
//! Each line compares the group-commit writer with the same writer limited to one message per
//! transaction (`store.batch_max = 1`), measured in the same run on the same machine. Messages
//! carry nonces (idempotent sends, each checked against the stored ones) except on the line that
//! says otherwise, which shows what the look-up costs.

use std::{sync::Arc, time::Instant};

use confab::{
    config::{SqliteSync, StoreConfig},
    metrics::Metrics,
    store::{
        Store,
        writer::{Appended, NewMessage},
    },
};
use serde_json::json;

use crate::support::{Backend, SYSTEM, fresh_location};

const MESSAGES: usize = 40_000;
const SENDERS: usize = 256;

/// Appends per second, and messages per commit on average.
async fn rate(backend: Backend, sync: SqliteSync, batch_max: usize, nonces: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let location = fresh_location(backend, dir.path()).await;
    let options = StoreConfig { batch_max, pool_size: 8, sqlite_synchronous: sync, ..Default::default() };
    let metrics = Arc::new(Metrics::default());
    let store = Store::open_with(&location, &options, metrics.clone()).await.unwrap();
    store.bootstrap(SYSTEM).await.unwrap();
    let channel = store.channels().await.unwrap().remove(0);
    let author = store
        .user_create(confab::store::users::NewUser {
            username: "writer",
            kind: confab::store::users::AccountKind::Local,
            password_hash: None,
            role_ids: Vec::new(),
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let store = store.clone();
        let channel = channel.clone();
        let author = author.id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..MESSAGES / SENDERS {
                let m = NewMessage {
                    id: uuid::Uuid::now_v7().to_string(),
                    channel_id: channel.id.clone(),
                    channel_name: channel.name.clone(),
                    thread_id: None,
                    user_id: Some(author.clone()),
                    author_name: format!("sender{sender}"),
                    content: format!("message {i} from {sender}"),
                    created_at: confab::store::now(),
                    reply_to: None,
                    ping: None,
                    pings: json!({"users": [], "roles": [], "replies": []}),
                    pinged: Default::default(),
                    extra: None,
                    nonce: nonces.then(|| format!("{sender}-{i}")),
                    nonce_window_s: 600.0,
                };
                let out = store.writer().append(m, Box::new(|_, _| {})).await.unwrap();
                assert!(matches!(out, Appended::New { .. }));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let per_second = (MESSAGES / SENDERS * SENDERS) as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    let text = metrics.render();
    let value = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(f64::NAN)
    };
    (per_second, value("confab_db_commit_batch_total") / value("confab_db_commit_seconds_count"))
}

// Two workers, as the server's runtime on this machine: the senders prepare their next messages
// while the writer commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn perf_group_commit() {
    println!("durable appends/s, {SENDERS} concurrent senders, {MESSAGES} messages, acknowledged after commit");
    for (label, backend, sync, nonces) in [
        ("sqlite synchronous=normal", Backend::Sqlite, SqliteSync::Normal, true),
        ("sqlite normal, no nonces", Backend::Sqlite, SqliteSync::Normal, false),
        ("sqlite synchronous=full", Backend::Sqlite, SqliteSync::Full, true),
        ("postgresql", Backend::Postgres, SqliteSync::Normal, true),
    ] {
        let (grouped, per_commit) = rate(backend, sync, 512, nonces).await;
        let (single, _) = rate(backend, sync, 1, nonces).await;
        println!(
            "{label:28} group commit {grouped:>9.0}/s ({per_commit:.0} per commit)   one per transaction \
             {single:>8.0}/s   ratio {:.1}x",
            grouped / single
        );
    }
}
