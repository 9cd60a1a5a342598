//! `storm`: the load a restart produces. N clients reconnect at once with tokens; in one phase each
//! only authenticates (the auth-only storm), in the other each then runs the official client's
//! start-up sequence — `channels_get`, `users_list`, `users_online`, `roles_list`, `slash_list`,
//! `unreads_get` and `messages_get` of 100, sent together right after `ready` as that client does —
//! and is done when every answer is in. Reported: time until every client is done, per-client
//! latency, the server's peak RSS during the phase, and its CPU.
//!
//! The floor answers `messages_get` (with an empty page) and nothing else of the sequence, so its
//! start-up phase is authentication plus one reply: the least any server does for a reconnect.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::{sync::Barrier, time::Instant};

use crate::{
    Common,
    client::{self, CONNECT_TIMEOUT},
    procfs::{self, CpuMeter, CpuUse},
    progress::Progress,
    report::{Better, Metric, Report},
    stats::{self, Summary},
    target::{Kind, Target, floor_then_confab},
};

/// The commands the official client sends after `ready`, in its order.
const STARTUP: [&str; 7] =
    ["channels_get", "users_list", "users_online", "roles_list", "slash_list", "unreads_get", "messages_get"];

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients reconnecting at once.
    #[arg(short = 'n', long, default_value_t = 5000)]
    pub clients: usize,
    /// Messages in #general before the storm (the start-up sequence fetches the last 100).
    #[arg(long, default_value_t = 100)]
    pub history: usize,
}

/// One phase on one server.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Clients that finished.
    pub done: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// From the first connect to the last client done.
    pub total_s: f64,
    /// Per client: connect → done.
    pub latency: Summary,
    /// The server's peak resident memory during the phase.
    pub peak_rss_kib: u64,
    pub cpu: CpuUse,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    pub auth_only: Phase,
    pub startup: Phase,
}

pub async fn run(args: StormArgs) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be positive");
    }
    let [floor, confab] = floor_then_confab("storm", &args.common, async |t| {
        seed(t, args.history).await?;
        let auth_only = phase(t, &args, false).await?;
        let startup = phase(t, &args, true).await?;
        Ok(StormResult { auth_only, startup })
    })
    .await?;
    let (fa, ca, fs, cs) = (&floor.auth_only, &confab.auth_only, &floor.startup, &confab.startup);
    let metrics = vec![
        Metric::new("auth-only storm: all ready", "s", Better::Lower, fa.total_s, ca.total_s),
        Metric::new("auth-only storm: p99 per client", "ms", Better::Lower, fa.latency.p99_ms, ca.latency.p99_ms),
        Metric::new("start-up storm: all have history", "s", Better::Lower, fs.total_s, cs.total_s),
        Metric::new("start-up storm: p99 per client", "ms", Better::Lower, fs.latency.p99_ms, cs.latency.p99_ms),
        Metric::new("start-up storm: peak RSS", "MiB", Better::Lower, mib(fs.peak_rss_kib), mib(cs.peak_rss_kib)),
    ];
    let mut notes = vec![format!(
        "confab: the start-up storm took {:.2}× its auth-only storm ({:.2} s vs {:.2} s), server CPU {:.1} s vs {:.1} s",
        cs.total_s / ca.total_s.max(f64::EPSILON),
        cs.total_s,
        ca.total_s,
        cs.cpu.server_cpu_s,
        ca.cpu.server_cpu_s
    )];
    notes.push("the floor answers only auth and an empty messages_get; Confab runs all seven commands".to_owned());
    for (name, r) in [("floor", &floor), ("confab", &confab)] {
        for (phase, p) in [("auth-only", &r.auth_only), ("start-up", &r.startup)] {
            if p.errors > 0 {
                notes.push(format!("{name} {phase}: {} failed clients, first: {:?}", p.errors, p.first_error));
            }
        }
    }
    Report::new("storm", &args, metrics, &floor, &confab, notes)?.finish(args.common.out.as_deref())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Fills #general with `n` messages on Confab (the floor stores nothing).
async fn seed(target: &Target, n: usize) -> Result<()> {
    if target.kind == Kind::Floor || n == 0 {
        return Ok(());
    }
    let mut ws = client::open_with_token(target.addr(), &target.user(0).token, client::source_ip(0, 1)).await?;
    for i in 0..n {
        let frame = json!({"cmd": "message_new", "channel": "general", "content": format!("history {i}")});
        client::request(&mut ws, frame, &format!("seed{i}")).await?;
    }
    Ok(())
}

/// One storm: every client connects at the same moment (a barrier releases them together).
async fn phase(target: &Target, a: &StormArgs, startup: bool) -> Result<Phase> {
    let pid = target.pid();
    procfs::reset_peak_rss(pid)?;
    let meter = CpuMeter::start(pid)?;
    let label = format!("{} {}", target.label, if startup { "start-up" } else { "auth-only" });
    let _progress = Progress::start(label, || String::from("storming"));
    let spread = client::spread_for(a.clients);
    let gate = Arc::new(Barrier::new(a.clients + 1));
    let commands: &'static [&'static str] = match (startup, target.kind) {
        (false, _) => &[],
        (true, Kind::Floor) => &STARTUP[6..],
        (true, Kind::Confab) => &STARTUP,
    };
    let clients: Vec<_> = (0..a.clients)
        .map(|i| {
            let (gate, addr, token) = (gate.clone(), target.addr(), target.user(i).token.clone());
            tokio::spawn(async move {
                gate.wait().await;
                let t0 = Instant::now();
                let run = async {
                    let mut ws = client::open_with_token(addr, &token, client::source_ip(i, spread)).await?;
                    for (k, cmd) in commands.iter().enumerate() {
                        let listener = format!("s{k}");
                        let frame = match *cmd {
                            "messages_get" => {
                                json!({"cmd": cmd, "channel": "general", "limit": 100, "listener": listener})
                            }
                            _ => json!({"cmd": cmd, "listener": listener}),
                        };
                        client::send_text(&mut ws, frame.to_string()).await?;
                    }
                    let mut answered = 0;
                    while answered < commands.len() {
                        let text = client::next_text(&mut ws).await?.context("closed during start-up")?;
                        if client::parse(&text).is_some_and(|p| p.listener.is_some()) {
                            answered += 1;
                        }
                    }
                    Ok::<_, anyhow::Error>((t0.elapsed(), ws))
                };
                tokio::time::timeout(CONNECT_TIMEOUT * 4, run)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
            })
        })
        .collect();
    gate.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(a.clients);
    let (mut errors, mut first_error) = (0, None);
    let mut open = Vec::with_capacity(a.clients);
    let mut finished = futures_util::stream::iter(clients).buffer_unordered(a.clients);
    while let Some(joined) = finished.next().await {
        match joined.context("client task")? {
            Ok((took, ws)) => {
                latencies.push(took.as_micros() as u64);
                open.push(ws);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    let cpu = meter.finish()?;
    let peak_rss_kib = procfs::peak_rss_kib(pid)?;
    drop(open);
    // Let the server close the sockets before the next phase measures anything.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Phase {
        done: latencies.len(),
        errors,
        first_error,
        total_s,
        latency: stats::summarize(latencies),
        peak_rss_kib,
        cpu,
    })
}
