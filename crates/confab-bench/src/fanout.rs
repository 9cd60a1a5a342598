//! `fanout`: N clients in #general, S of them sending; deliveries/s, messages/s, send→receipt
//! latency at every receiver, and loss. The send time travels in the message content, so latency
//! is measured where the message lands, with one clock (the bench's). Against several nodes
//! (`cluster`), clients are spread over them and deliveries from a sender on another node are also
//! summarised on their own (the cross-node latency).

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
    procfs::{CpuMeter, CpuUse},
    progress::Progress,
    report::{Better, Metric, Report},
    scrape::ServerMetrics,
    stats::{self, Summary},
    target::{self, Target, floor_then_confab},
};

/// A closed-loop sender gives up waiting for its echo after this long and counts a timeout.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight while the clients join.
const CONNECT_CONCURRENCY: usize = 32;

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: Load,
    /// Pairs of runs (floor, then Confab, each on fresh servers). On a shared machine one pair
    /// can be lucky or unlucky either way: the pair with the median deliveries ratio is reported,
    /// and every pair's ratio is listed in the notes.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// The workload, shared by `fanout` and `cluster`.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Load {
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
}

impl Load {
    /// Refuses a workload that cannot run (`rounds` is the caller's number of pairs).
    pub fn check(&self, rounds: usize) -> Result<()> {
        if self.senders == 0 || self.senders > self.clients {
            bail!("--senders must be between 1 and --clients");
        }
        if self.duration <= 0.0 || self.warmup < 0.0 || rounds == 0 {
            bail!("--duration and --rounds must be positive and --warmup not negative");
        }
        Ok(())
    }
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
    /// Send → receipt where sender and receiver are on different nodes (empty on one node).
    pub cross_node_latency: Summary,
    /// Send → receipt where they are on the same node (all of `latency` on one node).
    pub same_node_latency: Summary,
    /// How many nodes the clients were spread over.
    pub nodes: usize,
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
    args.load.check(args.rounds)?;
    let mut pairs = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            eprintln!("[fanout] round {round} of {}", args.rounds);
        }
        pairs.push(floor_then_confab("fanout", &args.common, async |t| measure(t, &args.load).await).await?);
    }
    let names = ["floor", "Confab"];
    let ([floor, confab], mut notes) = median_pair(pairs, names);
    notes.extend(notes_for(names, &args.load, [&floor, &confab]));
    Report::new("fanout", &args, metrics(&floor, &confab), &floor, &confab, notes)?.finish(args.common.out.as_deref())
}

/// Of several `[reference, measured]` pairs, the one with the median deliveries ratio, and (for
/// more than one) a note listing every pair's ratio in the order they ran. `names` are the two
/// sides' names, reference first.
pub fn median_pair(mut pairs: Vec<[FanoutResult; 2]>, names: [&str; 2]) -> ([FanoutResult; 2], Vec<String>) {
    let ratios: Vec<f64> = pairs.iter().map(|[r, m]| m.deliveries_per_s / r.deliveries_per_s).collect();
    let mut notes = Vec::new();
    if pairs.len() > 1 {
        // Every pair as "ratio (measured / reference deliveries/s)".
        let listed: Vec<String> = pairs
            .iter()
            .zip(&ratios)
            .map(|([r, m], x)| format!("{x:.3} ({:.0}k / {:.0}k)", m.deliveries_per_s / 1e3, r.deliveries_per_s / 1e3))
            .collect();
        notes.push(format!(
            "{} rounds; {} ÷ {} deliveries/s per round, in order run: {} — the median round is reported",
            pairs.len(),
            names[1],
            names[0],
            listed.join(", ")
        ));
    }
    (pairs.swap_remove(median_at(&ratios)), notes)
}

/// The figures every fan-out report compares, `reference` first.
pub fn metrics(reference: &FanoutResult, measured: &FanoutResult) -> Vec<Metric> {
    let (r, m) = (reference, measured);
    vec![
        Metric::new("deliveries/s", "1/s", Better::Higher, r.deliveries_per_s, m.deliveries_per_s),
        Metric::new("messages/s", "1/s", Better::Higher, r.messages_per_s, m.messages_per_s),
        Metric::new("latency p50", "ms", Better::Lower, r.latency.p50_ms, m.latency.p50_ms),
        Metric::new("latency p99", "ms", Better::Lower, r.latency.p99_ms, m.latency.p99_ms),
        Metric::new("latency max", "ms", Better::Lower, r.latency.max_ms, m.latency.max_ms),
        Metric::new("loss", "deliveries", Better::Lower, r.loss as f64, m.loss as f64),
        Metric::new(
            "server CPU per 1000 deliveries",
            "ms",
            Better::Lower,
            r.server_cpu_ms_per_k_deliveries,
            m.server_cpu_ms_per_k_deliveries,
        ),
        // Growth, not the absolute size: Confab's baseline is dominated by what the allocator keeps
        // after the Argon2 hashes of account registration, which says nothing about fan-out.
        Metric::new(
            "server RSS growth (clients + traffic)",
            "KiB",
            Better::Lower,
            r.server_rss_kib.saturating_sub(r.server_rss_before_kib) as f64,
            m.server_rss_kib.saturating_sub(m.server_rss_before_kib) as f64,
        ),
    ]
}

/// The notes every fan-out report carries: what limited the client, memory before and after,
/// Confab's own view of the window, dropped connections. `names` and `results`: reference first.
pub fn notes_for(names: [&str; 2], load: &Load, results: [&FanoutResult; 2]) -> Vec<String> {
    let [(rn, r), (mn, m)] = [(names[0], results[0]), (names[1], results[1])];
    let mut notes = vec![
        format!(
            "{} loop; bench CPU {:.0}% ({rn} run) / {:.0}% ({mn} run) of one core — near 100% × cores means the \
             client, not the server, was the limit",
            if load.rate.is_some() { "open" } else { "closed" },
            r.cpu.bench_pct,
            m.cpu.bench_pct
        ),
        format!(
            "server RSS before clients connected (after start-up and registering accounts) → at the end of the \
             window: {rn} {} → {} KiB, {mn} {} → {} KiB",
            r.server_rss_before_kib, r.server_rss_kib, m.server_rss_before_kib, m.server_rss_kib
        ),
    ];
    for (name, result) in [(rn, r), (mn, m)] {
        if let Some(s) = &result.server_metrics {
            let mut line = format!(
                "{name} during the window: {:.0} group commits, {:.2} ms each on average, {:.1} messages per \
                 commit; message_new handled in {:.2} ms on average, {:.2} ms of it waiting in the writer's queue",
                s.commits, s.commit_mean_ms, s.commit_batch_mean, s.message_new_mean_ms, s.writer_queue_mean_ms
            );
            if result.nodes > 1 {
                line += &format!(
                    "; {:.0} events read from PostgreSQL for gaps, {:.0} publishes dropped",
                    s.cluster_filled, s.cluster_publish_dropped
                );
            }
            notes.push(line);
        }
    }
    for (name, result) in [(rn, r), (mn, m)] {
        if result.disconnected > 0 || result.echo_timeouts > 0 {
            notes.push(format!(
                "{name}: {} connections dropped ({:?}), {} echo timeouts",
                result.disconnected, result.disconnect_reasons, result.echo_timeouts
            ));
        }
    }
    notes
}

/// Where the median of `values` (not empty) is: the lower of the middle two for an even count.
fn median_at(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order[(order.len() - 1) / 2]
}

/// One run against one server, or against every node of a cluster (clients and senders spread
/// round-robin over the nodes).
pub async fn measure(target: &Target, a: &Load) -> Result<FanoutResult> {
    let server_rss_before_kib = target.rss_kib()?;
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
        let reader = Reader {
            id: i,
            node: target.node_of(i),
            nodes: target.nodes.len(),
            epoch,
            window,
            echo: is_sender.then_some(echo_tx),
            received: received.clone(),
        };
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
    let meter = CpuMeter::start_all(&target.pids())?;
    let before = target.snapshot().await;
    tokio::time::sleep_until(end).await;
    let cpu = meter.finish()?;
    let server_metrics = match (before, target.snapshot().await) {
        (Some(b), Some(a)) => Some(a.since(&b)),
        _ => None,
    };
    let server_rss_kib = target.rss_kib()?;

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

    let (mut same_latencies, mut cross_latencies) = (Vec::new(), Vec::new());
    let mut got = 0;
    let mut disconnect_reasons = sender_errors;
    let mut disconnected = 0;
    for task in readers {
        let r = task.await.context("reader task")?;
        got += r.in_window;
        same_latencies.extend(r.same_node_us);
        cross_latencies.extend(r.cross_node_us);
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
        same_node_latency: stats::summarize(same_latencies.clone()),
        cross_node_latency: stats::summarize(cross_latencies.clone()),
        latency: stats::summarize([same_latencies, cross_latencies].concat()),
        nodes: target.nodes.len(),
        echo_timeouts,
        disconnected,
        disconnect_reasons,
        server_cpu_ms_per_k_deliveries: if got == 0 { 0.0 } else { cpu.server_cpu_s * 1e6 / got as f64 },
        cpu,
        server_rss_kib,
        server_rss_before_kib,
        server_log_warnings: target.logged_errors(),
        server_metrics,
    })
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// One client's receiving side: timestamps every `message_new` and forwards its own echoes.
struct Reader {
    id: usize,
    /// The node this client is connected to, of `nodes`; sender `s` is on node
    /// [`target::node_of`]`(s, nodes)`.
    node: usize,
    nodes: usize,
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
    /// Send → receipt of each window delivery, by where the sender was: this node, another one.
    same_node_us: Vec<u64>,
    cross_node_us: Vec<u64>,
    /// Why the connection ended early, if it did.
    ended: Option<String>,
}

impl Reader {
    async fn run(self, mut stream: SplitStream<Ws>, mut stop: watch::Receiver<bool>) -> ReaderResult {
        let mut result =
            ReaderResult { in_window: 0, cross_node_us: Vec::new(), same_node_us: Vec::new(), ended: None };
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
                let latency = now_us.saturating_sub(t_us);
                result.in_window += 1;
                if target::node_of(sender, self.nodes) == self.node {
                    result.same_node_us.push(latency);
                } else {
                    result.cross_node_us.push(latency);
                }
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
