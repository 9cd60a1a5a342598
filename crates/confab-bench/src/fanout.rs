//! `fanout`: N clients in #general, S of them sending; deliveries/s, messages/s, send→receipt
//! latency at every receiver, and loss. The send time travels in the message content, so latency
//! is measured where the message lands, with one clock (the bench's).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use futures_util::{
    StreamExt,
    stream::{SplitSink, SplitStream},
};
use serde::Serialize;
use serde_json::json;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Common,
    client::{self, Ws},
    procfs::{self, CpuMeter, CpuUse},
    progress::Progress,
    report::{Better, Metric, Report},
    scrape::ServerMetrics,
    stats::{self, Summary},
    target::{Target, floor_then_confab},
};

/// A closed-loop sender gives up waiting for its echo after this long and counts a timeout.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight while the clients join.
const CONNECT_CONCURRENCY: usize = 32;

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connected clients, all in #general (every one receives every message).
    #[arg(short = 'n', long, default_value_t = 100)]
    pub clients: usize,
    /// How many of the clients send. Closed loop: each sends, waits for its own echo, sends again.
    #[arg(short = 's', long, default_value_t = 10)]
    pub senders: usize,
    /// Open loop instead: this many messages per second in total, spread evenly over the senders.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Longest wait, after sending stops, for messages still in flight (seconds).
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Pairs of runs (floor, then Confab, each on fresh servers). On a shared machine one pair
    /// can be lucky or unlucky either way: the pair with the median deliveries ratio is reported,
    /// and every pair's ratio is listed in the notes.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// The measured window, in µs since the run's epoch.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_us: u64,
    end_us: u64,
}

impl Window {
    fn contains(&self, t_us: u64) -> bool {
        (self.start_us..self.end_us).contains(&t_us)
    }
}

/// What one run against one server measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    pub clients: usize,
    pub senders: usize,
    /// Messages sent inside the window.
    pub sent: u64,
    /// `sent × clients`: each message reaches every client, its sender included (as the echo).
    pub expected: u64,
    /// Deliveries of window messages received.
    pub received: u64,
    pub loss: u64,
    pub messages_per_s: f64,
    pub deliveries_per_s: f64,
    /// Send → receipt at every receiver.
    pub latency: Summary,
    pub echo_timeouts: u64,
    /// Connections that ended before the run did, with the reason of the first few.
    pub disconnected: usize,
    pub disconnect_reasons: Vec<String>,
    pub cpu: CpuUse,
    /// Server CPU milliseconds per 1000 deliveries.
    pub server_cpu_ms_per_k_deliveries: f64,
    pub server_rss_kib: u64,
    /// Server RSS after start-up and account registration, before any client connected.
    pub server_rss_before_kib: u64,
    pub server_log_warnings: Vec<String>,
    /// Confab's own view of the window (group commits, command times); absent for the floor.
    pub server_metrics: Option<ServerMetrics>,
}

/// The message content: `sender:n:send_time_µs`. Digits and colons only, so it needs no escaping.
fn probe(sender: usize, n: u64, t_us: u64) -> String {
    format!("{sender}:{n}:{t_us}")
}

/// Reads a probe back: (sender, n, send time µs).
fn parse_probe(content: &str) -> Option<(usize, u64, u64)> {
    let mut parts = content.split(':');
    let sender = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    let t = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((sender, n, t))
}

fn frame(sender: usize, n: u64, t_us: u64) -> String {
    json!({"cmd": "message_new", "channel": "general", "content": probe(sender, n, t_us), "listener": n.to_string()})
        .to_string()
}

/// Runs the workload against the floor, then Confab, and reports.
pub async fn run(args: FanoutArgs) -> Result<()> {
    if args.senders == 0 || args.senders > args.clients {
        bail!("--senders must be between 1 and --clients");
    }
    if args.duration <= 0.0 || args.warmup < 0.0 || args.rounds == 0 {
        bail!("--duration and --rounds must be positive and --warmup not negative");
    }
    let mut pairs = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            eprintln!("[fanout] round {round} of {}", args.rounds);
        }
        pairs.push(floor_then_confab("fanout", &args.common, async |t| measure(t, &args).await).await?);
    }
    let ratios: Vec<f64> = pairs.iter().map(|[f, c]| c.deliveries_per_s / f.deliveries_per_s).collect();
    // Every pair as "ratio (Confab / floor deliveries/s)", in the order they ran.
    let listed: Vec<String> = pairs
        .iter()
        .zip(&ratios)
        .map(|([f, c], r)| format!("{r:.3} ({:.0}k / {:.0}k)", c.deliveries_per_s / 1e3, f.deliveries_per_s / 1e3))
        .collect();
    let [floor, confab] = pairs.swap_remove(median_at(&ratios));
    let metrics = vec![
        Metric::new("deliveries/s", "1/s", Better::Higher, floor.deliveries_per_s, confab.deliveries_per_s),
        Metric::new("messages/s", "1/s", Better::Higher, floor.messages_per_s, confab.messages_per_s),
        Metric::new("latency p50", "ms", Better::Lower, floor.latency.p50_ms, confab.latency.p50_ms),
        Metric::new("latency p99", "ms", Better::Lower, floor.latency.p99_ms, confab.latency.p99_ms),
        Metric::new("latency max", "ms", Better::Lower, floor.latency.max_ms, confab.latency.max_ms),
        Metric::new("loss", "deliveries", Better::Lower, floor.loss as f64, confab.loss as f64),
        Metric::new(
            "server CPU per 1000 deliveries",
            "ms",
            Better::Lower,
            floor.server_cpu_ms_per_k_deliveries,
            confab.server_cpu_ms_per_k_deliveries,
        ),
        // Growth, not the absolute size: Confab's baseline is dominated by what the allocator keeps
        // after the Argon2 hashes of account registration, which says nothing about fan-out.
        Metric::new(
            "server RSS growth (clients + traffic)",
            "KiB",
            Better::Lower,
            floor.server_rss_kib.saturating_sub(floor.server_rss_before_kib) as f64,
            confab.server_rss_kib.saturating_sub(confab.server_rss_before_kib) as f64,
        ),
    ];
    let mut notes = Vec::new();
    if args.rounds > 1 {
        notes.push(format!(
            "{} rounds; Confab ÷ floor deliveries/s per round, in order run: {} — the median round is reported",
            args.rounds,
            listed.join(", ")
        ));
    }
    notes.push(format!(
        "{} loop; bench CPU {:.0}% (floor run) / {:.0}% (Confab run) of one core — near 100% × cores means the \
         client, not the server, was the limit",
        if args.rate.is_some() { "open" } else { "closed" },
        floor.cpu.bench_pct,
        confab.cpu.bench_pct
    ));
    notes.push(format!(
        "server RSS before clients connected (after start-up and registering accounts) → at the end of the window: \
         floor {} → {} KiB, Confab {} → {} KiB",
        floor.server_rss_before_kib, floor.server_rss_kib, confab.server_rss_before_kib, confab.server_rss_kib
    ));
    if let Some(m) = &confab.server_metrics {
        notes.push(format!(
            "Confab during the window: {:.0} group commits, {:.2} ms each on average, {:.1} messages per commit; \
             message_new handled in {:.2} ms on average",
            m.commits, m.commit_mean_ms, m.commit_batch_mean, m.message_new_mean_ms
        ));
    }
    for (name, r) in [("floor", &floor), ("confab", &confab)] {
        if r.disconnected > 0 || r.echo_timeouts > 0 {
            notes.push(format!(
                "{name}: {} connections dropped ({:?}), {} echo timeouts",
                r.disconnected, r.disconnect_reasons, r.echo_timeouts
            ));
        }
    }
    Report::new("fanout", &args, metrics, &floor, &confab, notes)?.finish(args.common.out.as_deref())
}

/// Where the median of `values` (not empty) is: the lower of the middle two for an even count.
fn median_at(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order[(order.len() - 1) / 2]
}

/// One run against one server.
async fn measure(target: &Target, a: &FanoutArgs) -> Result<FanoutResult> {
    let server_rss_before_kib = procfs::rss_kib(target.pid())?;
    let clients = target.connect_many(a.clients, client::spread_for(a.clients), CONNECT_CONCURRENCY).await?;
    let epoch = Instant::now() + Duration::from_millis(100);
    let start = epoch + Duration::from_secs_f64(a.warmup);
    let end = start + Duration::from_secs_f64(a.duration);
    let window = Window { start_us: micros(start - epoch), end_us: micros(end - epoch) };
    let sent_total = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = a.rate.map(|r| Duration::from_secs_f64(a.senders as f64 / r.max(1e-3)));

    let mut readers = Vec::with_capacity(a.clients);
    let mut senders = Vec::with_capacity(a.senders);
    let mut quiet_sinks = Vec::new();
    for (i, ws) in clients.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        let (echo_tx, echo_rx) = mpsc::unbounded_channel();
        let is_sender = i < a.senders;
        let reader = Reader { id: i, epoch, window, echo: is_sender.then_some(echo_tx), received: received.clone() };
        readers.push(tokio::spawn(reader.run(stream, stop_rx.clone())));
        if is_sender {
            let sender = Sender {
                id: i,
                epoch,
                window,
                end,
                // Open-loop senders start evenly staggered over one interval.
                first: epoch + interval.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / a.senders as f64)),
                interval,
                sent: sent_total.clone(),
            };
            senders.push(tokio::spawn(sender.run(sink, echo_rx)));
        } else {
            quiet_sinks.push(sink);
        }
    }

    let (shown_sent, shown_received) = (sent_total.clone(), received.clone());
    let progress = Progress::start(target.label.clone(), move || {
        format!(
            "sent {} messages, {} measured deliveries",
            shown_sent.load(Ordering::Relaxed),
            shown_received.load(Ordering::Relaxed)
        )
    });
    tokio::time::sleep_until(start).await;
    let meter = CpuMeter::start(target.pid())?;
    let before = target.snapshot().await;
    tokio::time::sleep_until(end).await;
    let cpu = meter.finish()?;
    let server_metrics = match (before, target.snapshot().await) {
        (Some(b), Some(a)) => Some(a.since(&b)),
        _ => None,
    };
    let server_rss_kib = procfs::rss_kib(target.pid())?;

    let mut sent = 0;
    let mut echo_timeouts = 0;
    let mut sender_errors = Vec::new();
    for task in senders {
        match task.await.context("sender task")? {
            Ok(s) => {
                sent += s.in_window;
                echo_timeouts += s.echo_timeouts;
            }
            Err(e) => sender_errors.push(format!("{e:#}")),
        }
    }
    let expected = sent * a.clients as u64;
    let drain_until = Instant::now() + Duration::from_secs_f64(a.drain);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(progress);
    let _ = stop_tx.send(true);

    let mut latencies = Vec::new();
    let mut got = 0;
    let mut disconnect_reasons = sender_errors;
    let mut disconnected = 0;
    for task in readers {
        let r = task.await.context("reader task")?;
        got += r.in_window;
        latencies.extend(r.latencies_us);
        if let Some(reason) = r.ended {
            disconnected += 1;
            if disconnect_reasons.len() < 5 {
                disconnect_reasons.push(reason);
            }
        }
    }
    drop(quiet_sinks);
    let secs = a.duration;
    Ok(FanoutResult {
        clients: a.clients,
        senders: a.senders,
        sent,
        expected,
        received: got,
        loss: expected.saturating_sub(got),
        messages_per_s: sent as f64 / secs,
        deliveries_per_s: got as f64 / secs,
        latency: stats::summarize(latencies),
        echo_timeouts,
        disconnected,
        disconnect_reasons,
        server_cpu_ms_per_k_deliveries: if got == 0 { 0.0 } else { cpu.server_cpu_s * 1e6 / got as f64 },
        cpu,
        server_rss_kib,
        server_rss_before_kib,
        server_log_warnings: target.server.logged_errors(),
        server_metrics,
    })
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// One client's receiving side: timestamps every `message_new` and forwards its own echoes.
struct Reader {
    id: usize,
    epoch: Instant,
    window: Window,
    /// For senders: the `n` of each of their own messages as it comes back.
    echo: Option<mpsc::UnboundedSender<u64>>,
    /// Window deliveries received, across all clients (for progress and the drain).
    received: Arc<AtomicU64>,
}

/// What one reader saw.
struct ReaderResult {
    in_window: u64,
    latencies_us: Vec<u64>,
    /// Why the connection ended early, if it did.
    ended: Option<String>,
}

impl Reader {
    async fn run(self, mut stream: SplitStream<Ws>, mut stop: watch::Receiver<bool>) -> ReaderResult {
        let mut result = ReaderResult { in_window: 0, latencies_us: Vec::new(), ended: None };
        loop {
            let text = tokio::select! {
                biased;
                _ = stop.changed() => break,
                next = client::next_text(&mut stream) => match next {
                    Ok(Some(text)) => text,
                    Ok(None) => {
                        result.ended = Some("connection closed".to_owned());
                        break;
                    }
                    Err(e) => {
                        result.ended = Some(format!("{e:#}"));
                        break;
                    }
                },
            };
            let now_us = micros(self.epoch.elapsed());
            let Some(packet) = client::parse(&text) else { continue };
            if packet.cmd != "message_new" {
                continue;
            }
            let Some((sender, n, t_us)) = packet.message.and_then(|m| m.content).and_then(|c| parse_probe(&c)) else {
                continue;
            };
            if self.window.contains(t_us) {
                result.in_window += 1;
                result.latencies_us.push(now_us.saturating_sub(t_us));
                self.received.fetch_add(1, Ordering::Relaxed);
            }
            if sender == self.id
                && let Some(echo) = &self.echo
            {
                let _ = echo.send(n);
            }
        }
        result
    }
}

/// One client's sending side.
struct Sender {
    id: usize,
    epoch: Instant,
    window: Window,
    /// No message is sent at or after this instant.
    end: Instant,
    first: Instant,
    /// Open loop: the time between two sends. `None`: closed loop.
    interval: Option<Duration>,
    sent: Arc<AtomicU64>,
}

struct SenderResult {
    in_window: u64,
    echo_timeouts: u64,
}

impl Sender {
    async fn run(
        self,
        mut sink: SplitSink<Ws, Message>,
        mut echoes: mpsc::UnboundedReceiver<u64>,
    ) -> Result<SenderResult> {
        let mut result = SenderResult { in_window: 0, echo_timeouts: 0 };
        let mut ticker = self.interval.map(|p| {
            let mut t = tokio::time::interval_at(self.first, p);
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
            t
        });
        tokio::time::sleep_until(self.first).await;
        for n in 0.. {
            if let Some(t) = &mut ticker {
                t.tick().await;
            }
            let now = Instant::now();
            if now >= self.end {
                break;
            }
            let t_us = micros(now - self.epoch);
            client::send_text(&mut sink, frame(self.id, n, t_us)).await?;
            self.sent.fetch_add(1, Ordering::Relaxed);
            if self.window.contains(t_us) {
                result.in_window += 1;
            }
            if ticker.is_none() {
                let wait = async {
                    while let Some(m) = echoes.recv().await {
                        if m == n {
                            return true;
                        }
                    }
                    false
                };
                match tokio::time::timeout(ECHO_TIMEOUT, wait).await {
                    Ok(true) => {}
                    Ok(false) => bail!("sender {}: connection ended", self.id),
                    Err(_) => result.echo_timeouts += 1,
                }
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_round_is_found_where_it_ran() {
        assert_eq!(median_at(&[0.7]), 0);
        assert_eq!(median_at(&[0.71, 0.58, 0.66]), 2);
        assert_eq!(median_at(&[0.60, 0.70, 0.65, 0.50]), 0);
    }

    #[test]
    fn probes_round_trip() {
        assert_eq!(parse_probe(&probe(3, 17, 123_456)), Some((3, 17, 123_456)));
        assert_eq!(parse_probe("hello"), None);
        assert_eq!(parse_probe("1:2:3:4"), None);
        let f: serde_json::Value = serde_json::from_str(&frame(1, 2, 3)).unwrap();
        assert_eq!(f["content"], "1:2:3");
        assert_eq!(f["listener"], "2");
        assert_eq!(f["channel"], "general");
    }

    #[test]
    fn window_is_half_open() {
        let w = Window { start_us: 10, end_us: 20 };
        assert!(!w.contains(9));
        assert!(w.contains(10));
        assert!(w.contains(19));
        assert!(!w.contains(20));
    }
}
