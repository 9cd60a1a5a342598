//! `history`: fill #general with M messages, then time K sequential `messages_get` (limit 100) from
//! one client; repeated for each M (default 1000 and 100 000) on the same server, which is filled
//! up cumulatively. The ratio of latencies between the largest and smallest M shows whether a
//! history read costs O(page) or grows with the channel.
//!
//! Filling uses many connections, each pipelining up to a window of unanswered `message_new`, so
//! the group-commit writer always has a batch to commit.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::{sync::Semaphore, time::Instant};

use crate::{
    Common,
    client::{self, CONNECT_TIMEOUT, Ws},
    progress::Progress,
    report::{Better, Metric, Report},
    scrape::{ServerMetrics, Snapshot},
    stats::{self, Summary},
    target::{Target, floor_then_confab},
};

/// A fill that makes no progress for this long has failed.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests sent before the measured ones, to warm caches and connections.
const WARMUP_REQUESTS: usize = 10;

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// Channel sizes to measure at, comma separated; the channel is filled up to each in turn.
    #[arg(short = 'm', long, value_delimiter = ',', default_values_t = [1000u64, 100_000])]
    pub messages: Vec<u64>,
    /// Measured `messages_get` requests per size.
    #[arg(short = 'k', long, default_value_t = 300)]
    pub requests: usize,
    /// Page size asked for.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// Connections filling the channel.
    #[arg(long, default_value_t = 32)]
    pub fillers: usize,
    /// Unanswered `message_new` each filler may have in flight.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
}

/// Measurements at one channel size.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub messages: u64,
    /// Messages added to reach this size, and how fast they were acknowledged.
    pub filled: u64,
    pub fill_seconds: f64,
    pub fill_per_s: f64,
    pub fill_errors: u64,
    /// Messages in the first page returned (Confab: min(limit, M); floor: 0).
    pub page_len: usize,
    pub latency: Summary,
    /// Confab's own view of the read phase; absent for the floor.
    pub server_metrics: Option<ServerMetrics>,
    /// Confab's own view of the fill phase (group commits); absent for the floor.
    pub fill_metrics: Option<ServerMetrics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryResult {
    pub points: Vec<Point>,
}

pub async fn run(mut args: HistoryArgs) -> Result<()> {
    args.messages.sort_unstable();
    args.messages.dedup();
    if args.messages.is_empty() || args.requests == 0 || args.fillers == 0 || args.window == 0 {
        bail!("--messages, --requests, --fillers and --window must be non-empty / positive");
    }
    let [floor, confab] = floor_then_confab("history", &args.common, async |t| measure(t, &args).await).await?;
    let mut metrics = Vec::new();
    for (f, c) in floor.points.iter().zip(&confab.points) {
        let m = f.messages;
        metrics.push(Metric::new(
            &format!("messages_get p50 @ {m} msgs"),
            "ms",
            Better::Lower,
            f.latency.p50_ms,
            c.latency.p50_ms,
        ));
        metrics.push(Metric::new(
            &format!("messages_get p99 @ {m} msgs"),
            "ms",
            Better::Lower,
            f.latency.p99_ms,
            c.latency.p99_ms,
        ));
    }
    if let (Some(f0), Some(f1), Some(c0), Some(c1)) =
        (floor.points.first(), floor.points.last(), confab.points.first(), confab.points.last())
        && f0.messages != f1.messages
    {
        // Each server's own p50 at the largest size ÷ at the smallest: ~1 means reads cost O(page).
        let growth = |a: f64, b: f64| if a > 0.0 { b / a } else { 0.0 };
        metrics.push(Metric::without_ratio(
            &format!("p50 @ {} ÷ p50 @ {} msgs", f1.messages, f0.messages),
            "×",
            Better::Lower,
            growth(f0.latency.p50_ms, f1.latency.p50_ms),
            growth(c0.latency.p50_ms, c1.latency.p50_ms),
        ));
    }
    let fill = |r: &HistoryResult| {
        let (n, s) = r.points.iter().fold((0, 0.0), |(n, s), p| (n + p.filled, s + p.fill_seconds));
        n as f64 / f64::max(s, 1e-9)
    };
    metrics.push(Metric::new("fill (acknowledged message_new/s)", "1/s", Better::Higher, fill(&floor), fill(&confab)));
    let mut notes = vec![
        "the floor stores nothing and answers messages_get with an empty page, so its latency is the bare round trip"
            .to_owned(),
        format!(
            "pages returned by Confab: {:?} messages at sizes {:?}",
            confab.points.iter().map(|p| p.page_len).collect::<Vec<_>>(),
            args.messages
        ),
    ];
    for p in &confab.points {
        if let (Some(fill), Some(read)) = (&p.fill_metrics, &p.server_metrics) {
            notes.push(format!(
                "Confab @ {} msgs: fill {:.1} messages per group commit, {:.2} ms per commit; messages_get handled in \
                 {:.3} ms on average",
                p.messages, fill.commit_batch_mean, fill.commit_mean_ms, read.messages_get_mean_ms
            ));
        }
    }
    Report::new("history", &args, metrics, &floor, &confab, notes)?.finish(args.common.out.as_deref())
}

async fn measure(target: &Target, a: &HistoryArgs) -> Result<HistoryResult> {
    let mut points = Vec::new();
    let mut stored = 0;
    for &m in &a.messages {
        let add = m - stored;
        let before_fill = target.snapshot().await;
        let started = Instant::now();
        let fill_errors = fill(target, a, add).await?;
        let fill_seconds = started.elapsed().as_secs_f64();
        stored = m;
        let before_read = target.snapshot().await;
        let (page_len, latency) = read_pages(target, a).await?;
        let after = target.snapshot().await;
        let between = |a: &Option<Snapshot>, b: &Option<Snapshot>| match (a, b) {
            (Some(a), Some(b)) => Some(b.since(a)),
            _ => None,
        };
        eprintln!("[{}] {m} messages: p50 {:.3} ms, p99 {:.3} ms", target.label, latency.p50_ms, latency.p99_ms);
        points.push(Point {
            messages: m,
            filled: add,
            fill_seconds,
            fill_per_s: add as f64 / fill_seconds.max(1e-9),
            fill_errors,
            page_len,
            latency,
            server_metrics: between(&before_read, &after),
            fill_metrics: between(&before_fill, &before_read),
        });
    }
    Ok(HistoryResult { points })
}

/// Sends `count` messages over `a.fillers` pipelined connections; returns how many were refused.
async fn fill(target: &Target, a: &HistoryArgs, count: u64) -> Result<u64> {
    if count == 0 {
        return Ok(0);
    }
    let fillers = (a.fillers as u64).min(count) as usize;
    let sockets = target.connect_many(fillers, 1, fillers).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let shown = acked.clone();
    let _progress =
        Progress::start(target.label.clone(), move || format!("filled {}/{count}", shown.load(Ordering::Relaxed)));
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let share = count / fillers as u64 + u64::from((i as u64) < count % fillers as u64);
            tokio::spawn(fill_one(ws, i, share, a.window, acked.clone()))
        })
        .collect();
    let mut errors = 0;
    for t in tasks {
        errors += t.await.context("filler task")??;
    }
    Ok(errors)
}

/// One filler: a writer keeps up to `window` messages unanswered; the reader counts the replies
/// (the requester's copy carries `listener`; broadcasts from other fillers do not).
async fn fill_one(ws: Ws, id: usize, share: u64, window: usize, acked: Arc<AtomicU64>) -> Result<u64> {
    let (mut sink, mut stream) = ws.split();
    let permits = Arc::new(Semaphore::new(window));
    let writer_permits = permits.clone();
    let writer = tokio::spawn(async move {
        for n in 0..share {
            writer_permits.acquire().await?.forget();
            let content = format!("history fill {id}-{n}: the quick brown fox jumps over the lazy dog");
            let frame =
                json!({"cmd": "message_new", "channel": "general", "content": content, "listener": n.to_string()});
            client::send_text(&mut sink, frame.to_string()).await?;
        }
        Ok::<_, anyhow::Error>(sink)
    });
    let (mut answered, mut errors) = (0, 0);
    while answered < share {
        let text = tokio::time::timeout(STALL_TIMEOUT, client::next_text(&mut stream))
            .await
            .map_err(|_| anyhow!("filler {id}: no reply for {}s", STALL_TIMEOUT.as_secs()))??
            .ok_or_else(|| anyhow!("filler {id}: connection closed"))?;
        let Some(packet) = client::parse(&text) else { continue };
        if packet.listener.is_none() {
            continue;
        }
        match packet.cmd.as_ref() {
            "message_new" => acked.fetch_add(1, Ordering::Relaxed),
            "error" => {
                errors += 1;
                0
            }
            _ => continue,
        };
        answered += 1;
        permits.add_permits(1);
    }
    let _sink = writer.await.context("filler writer")??;
    Ok(errors)
}

/// Times `a.requests` sequential `messages_get` on a fresh connection; returns the first page's length.
async fn read_pages(target: &Target, a: &HistoryArgs) -> Result<(usize, Summary)> {
    let addr = target.addr();
    let mut ws = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client::open_with_token(addr, &target.user(0).token, client::source_ip(0, 1)),
    )
    .await
    .context("connect timed out")??;
    let mut latencies = Vec::with_capacity(a.requests);
    let mut page_len = 0;
    for i in 0..WARMUP_REQUESTS + a.requests {
        let frame = json!({"cmd": "messages_get", "channel": "general", "limit": a.limit});
        let t0 = Instant::now();
        let text = tokio::time::timeout(STALL_TIMEOUT, client::request(&mut ws, frame, &format!("h{i}")))
            .await
            .map_err(|_| anyhow!("no messages_get reply for {}s", STALL_TIMEOUT.as_secs()))??;
        let packet = client::parse(&text).ok_or_else(|| anyhow!("messages_get reply is not JSON"))?;
        if packet.cmd != "messages_get" {
            bail!("messages_get answered with {}: {}", packet.cmd, packet.val_text());
        }
        if i == 0 {
            page_len = packet.messages.map_or(0, |m| m.len());
        }
        if i >= WARMUP_REQUESTS {
            latencies.push(t0.elapsed().as_micros() as u64);
        }
    }
    Ok((page_len, stats::summarize(latencies)))
}
