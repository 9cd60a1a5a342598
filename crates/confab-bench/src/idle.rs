//! `idle`: N authenticated connections that do nothing; the server's resident memory per connection
//! is (VmRSS after − VmRSS before) ÷ N, read from `/proc/<server pid>/status`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    Common,
    client::{self},
    procfs,
    report::{Better, Metric, Report},
    target::{Target, floor_then_confab},
};

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle authenticated connections. The open-file limit (20 000 here) caps it near 19 000.
    #[arg(short = 'n', long, default_value_t = 2000)]
    pub connections: usize,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to wait after the last connect before reading memory.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub connections: usize,
    pub source_addresses: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub kib_per_connection: f64,
    pub connect_seconds: f64,
    pub connects_per_s: f64,
    /// Connections the server closed before memory was read (should be 0).
    pub closed_early: usize,
}

pub async fn run(args: IdleArgs) -> Result<()> {
    if args.connections == 0 || args.connections > 19_500 {
        bail!("--connections must be between 1 and 19500 (the open-file limit is 20000)");
    }
    let [floor, confab] = floor_then_confab("idle", &args.common, async |t| measure(t, &args).await).await?;
    let metrics = vec![
        Metric::new(
            "RSS per idle connection",
            "KiB",
            Better::Lower,
            floor.kib_per_connection,
            confab.kib_per_connection,
        ),
        Metric::new(
            "token connects/s while filling",
            "1/s",
            Better::Higher,
            floor.connects_per_s,
            confab.connects_per_s,
        ),
    ];
    let notes = vec![format!(
        "{} connections from {} source addresses; RSS before/after: floor {}→{} KiB, Confab {}→{} KiB",
        args.connections,
        floor.source_addresses,
        floor.rss_before_kib,
        floor.rss_after_kib,
        confab.rss_before_kib,
        confab.rss_after_kib
    )];
    Report::new("idle", &args, metrics, &floor, &confab, notes)?.finish(args.common.out.as_deref())
}

async fn measure(target: &Target, a: &IdleArgs) -> Result<IdleResult> {
    let n = a.connections;
    let spread = client::spread_for(n);
    let rss_before_kib = procfs::rss_kib(target.pid())?;
    let started = Instant::now();
    let sockets = target.connect_many(n, spread, a.concurrency).await?;
    let connect_seconds = started.elapsed().as_secs_f64();
    // Each socket keeps being read, so the server's pings are answered as a real client would.
    let closed = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let closed = closed.clone();
            tokio::spawn(async move {
                while let Ok(Some(_)) = client::next_text(&mut ws).await {}
                closed.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    eprintln!("[{}] {n} connections open; settling {}s", target.label, a.settle);
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_after_kib = procfs::rss_kib(target.pid())?;
    let closed_early = closed.load(Ordering::Relaxed);
    for r in &readers {
        r.abort();
    }
    Ok(IdleResult {
        connections: n,
        source_addresses: spread,
        rss_before_kib,
        rss_after_kib,
        kib_per_connection: rss_after_kib.saturating_sub(rss_before_kib) as f64 / n as f64,
        connect_seconds,
        connects_per_s: n as f64 / connect_seconds.max(1e-9),
        closed_early,
    })
}
