//! `auth`: authenticated connects per second for D seconds with C concurrent workers, once by JWT on
//! the upgrade URL (`/ws?token=…`, PROTOCOL §2.6) and once by password (`login` frame, §2.3).
//!
//! A connect counts when `ready` arrives; the socket is then dropped. Connections rotate over many
//! 127.0.0.x source addresses so ports left in TIME_WAIT never run out.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    Common,
    client::{self, CONNECT_TIMEOUT},
    procfs::{CpuMeter, CpuUse},
    progress::Progress,
    report::{Better, Metric, Report},
    stats::{self, Summary},
    target::{Target, floor_then_confab},
};

/// Source addresses short-lived connections rotate over.
const SOURCE_SPREAD: usize = 200;
/// Pause after a failed connect, so a refusing server is not hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct AuthArgs {
    #[command(flatten)]
    pub common: Common,
    /// Measured seconds per method.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Concurrent workers, each connecting again as soon as its last connect got `ready`.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub concurrency: usize,
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Token,
    Password,
}

/// One method against one server.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub connects: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub connects_per_s: f64,
    /// Connect → `ready`.
    pub latency: Summary,
    pub cpu: CpuUse,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthResult {
    pub token: MethodResult,
    pub password: MethodResult,
}

pub async fn run(args: AuthArgs) -> Result<()> {
    if args.duration <= 0.0 || args.concurrency == 0 {
        bail!("--duration and --concurrency must be positive");
    }
    let [floor, confab] = floor_then_confab("auth", &args.common, async |t| {
        let token = measure(t, &args, Method::Token).await?;
        let password = measure(t, &args, Method::Password).await?;
        Ok(AuthResult { token, password })
    })
    .await?;
    let (ft, ct, fp, cp) = (&floor.token, &confab.token, &floor.password, &confab.password);
    let metrics = vec![
        Metric::new("token connects/s", "1/s", Better::Higher, ft.connects_per_s, ct.connects_per_s),
        Metric::new("token connect→ready p50", "ms", Better::Lower, ft.latency.p50_ms, ct.latency.p50_ms),
        Metric::new("token connect→ready p99", "ms", Better::Lower, ft.latency.p99_ms, ct.latency.p99_ms),
        Metric::new("password connects/s", "1/s", Better::Higher, fp.connects_per_s, cp.connects_per_s),
        Metric::new("password connect→ready p50", "ms", Better::Lower, fp.latency.p50_ms, cp.latency.p50_ms),
        Metric::new("password connect→ready p99", "ms", Better::Lower, fp.latency.p99_ms, cp.latency.p99_ms),
    ];
    let mut notes = vec![
        "password logins on Confab are bound by Argon2id (m=19 MiB, t=2) on its hashing pool; the floor checks nothing"
            .to_owned(),
    ];
    for (name, r) in [("floor", &floor), ("confab", &confab)] {
        for (method, m) in [("token", &r.token), ("password", &r.password)] {
            notes.push(format!(
                "{name} {method}: server CPU {:.0}%, bench CPU {:.0}% (of one core)",
                m.cpu.server_pct, m.cpu.bench_pct
            ));
            if m.errors > 0 {
                notes.push(format!("{name} {method}: {} failed connects, first: {:?}", m.errors, m.first_error));
            }
        }
    }
    Report::new("auth", &args, metrics, &floor, &confab, notes)?.finish(args.common.out.as_deref())
}

async fn measure(target: &Target, a: &AuthArgs, method: Method) -> Result<MethodResult> {
    let meter = CpuMeter::start(target.pid())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.duration);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let shown = done.clone();
    let label = format!("{} {method:?}", target.label);
    let progress = Progress::start(label, move || format!("{} connects", shown.load(Ordering::Relaxed)));
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (next, done) = (next.clone(), done.clone());
            let addr = target.addr();
            let users = target.users.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let user = &users[i % users.len()];
                    let source = client::source_ip(i, SOURCE_SPREAD);
                    let t0 = Instant::now();
                    let open = async {
                        match method {
                            Method::Token => client::open_with_token(addr, &user.token, source).await,
                            Method::Password => client::open_with_login(addr, &user.name, &user.password, source).await,
                        }
                    };
                    match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
                        Ok(Ok(ws)) => {
                            // Only connects completed inside the window count.
                            if Instant::now() <= deadline {
                                latencies.push(t0.elapsed().as_micros() as u64);
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            drop(ws);
                        }
                        outcome => {
                            errors += 1;
                            if first_error.is_none() {
                                first_error = Some(match outcome {
                                    Ok(Err(e)) => format!("{e:#}"),
                                    _ => "timed out".to_owned(),
                                });
                            }
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for w in workers {
        let (l, e, f) = w.await?;
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    let cpu = meter.finish()?;
    drop(progress);
    let connects = latencies.len() as u64;
    // Let the server finish closing the last sockets before the next phase measures anything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(MethodResult {
        connects,
        errors,
        first_error,
        connects_per_s: connects as f64 / a.duration,
        latency: stats::summarize(latencies),
        cpu,
    })
}
