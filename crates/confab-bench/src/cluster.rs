//! `cluster`: the `fanout` workload across the nodes of one Confab cluster against one node, in
//! the same run. The cluster is N `confab serve` processes on one fresh PostgreSQL schema, with a
//! shared `auth.jwt_secret` and `public_url` and a private NATS broker this mode starts on a free
//! port (never a shared one); the reference is one node on the same PostgreSQL, in a fresh schema
//! of its own, with no broker (single-node mode). Clients and senders are spread round-robin over
//! the nodes, so a delivery is cross-node when its sender is on another node than its viewer; that
//! latency is reported beside the single node's (docs/cluster.md).

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::{
    Common,
    fanout::{self, FanoutResult, Load},
    process::ServerProcess,
    procfs,
    report::{Better, Metric, Report},
    schema::Schema,
    target::Target,
};

/// The token-signing secret every node shares (cluster mode refuses to start without one).
const SECRET: &str = "confab-bench-cluster-secret-of-at-least-32-chars";
/// The `public_url` every node shares, as behind a load balancer: tokens carry it as issuer and
/// audience, so nodes that each default to their own listen address refuse each other's tokens.
const PUBLIC_URL: &str = "http://confab-bench.invalid";
/// Issue 16's targets on a 2-core machine: N nodes ÷ one node.
const DELIVERIES_TARGET: f64 = 0.5;
const CROSS_NODE_P99_TARGET: f64 = 3.0;

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: Load,
    /// Nodes of the cluster (the reference is one node).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The PostgreSQL database both runs use, each in a fresh schema that is dropped afterwards.
    /// Not written to the results (it may hold a password).
    #[arg(long, env = "CONFAB_TEST_POSTGRES_URL", default_value = "postgres://root@127.0.0.1:5432/test")]
    #[serde(skip)]
    pub database_url: String,
    /// The NATS server binary; the bench starts a private one on a free port.
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Pairs of runs (one node, then the cluster, each on fresh servers and a fresh schema); the pair
    /// with the median deliveries ratio is reported.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// Runs the workload on one node, then on the cluster, and reports cluster ÷ one node.
pub async fn run(args: ClusterArgs) -> Result<()> {
    args.load.check(args.rounds)?;
    if args.nodes < 2 || args.load.senders < args.nodes {
        bail!("--nodes must be at least 2 and --senders at least --nodes (senders on every node)");
    }
    let broker = ServerProcess::nats(&args.nats_server).await?;
    let broker_url = format!("nats://{}", broker.addr());
    let load_before = procfs::load_average()?;
    let mut pairs = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            eprintln!("[cluster] round {round} of {}", args.rounds);
        }
        let one = nodes(&args, 1, None).await?;
        let many = nodes(&args, args.nodes, Some(&broker_url)).await?;
        pairs.push([one, many]);
    }
    broker.stop().await;
    let cluster_name = format!("{} nodes", args.nodes);
    let names = ["1 node", cluster_name.as_str()];
    let ([one, many], mut notes) = fanout::median_pair(pairs, names);
    let mut metrics = fanout::metrics(&one, &many);
    // Cross-node against the single node's all deliveries: what crossing the broker adds.
    metrics.insert(
        4,
        Metric::new("cross-node latency p50", "ms", Better::Lower, one.latency.p50_ms, many.cross_node_latency.p50_ms),
    );
    metrics.insert(
        5,
        Metric::new("cross-node latency p99", "ms", Better::Lower, one.latency.p99_ms, many.cross_node_latency.p99_ms),
    );
    notes.insert(0, verdict(&one, &many));
    notes.push(format!(
        "{} of {} measured deliveries on the cluster were cross-node (the sender on another node than the viewer); \
         PostgreSQL and the broker are not in the server CPU or RSS figures; load average (1, 5, 15 min) before: \
         {load_before}, after: {}",
        many.cross_node_latency.count,
        many.latency.count,
        procfs::load_average()?
    ));
    let (cross, same) = (&many.cross_node_latency, &many.same_node_latency);
    notes.push(format!(
        "on the {} nodes, cross-node p50 / p99 {:.2} / {:.2} ms against same-node {:.2} / {:.2} ms: what the \
         broker hop itself adds",
        args.nodes, cross.p50_ms, cross.p99_ms, same.p50_ms, same.p99_ms
    ));
    notes.extend(fanout::notes_for(names, &args.load, [&one, &many]));
    Report::new("cluster", &args, metrics, &one, &many, notes)?
        .with_columns(names[0], names[1])
        .finish(args.common.out.as_deref())
}

/// One run of the workload on `count` nodes of a fresh schema, joined by `broker` if given.
async fn nodes(args: &ClusterArgs, count: usize, broker: Option<&str>) -> Result<FanoutResult> {
    let schema = Schema::create(&args.database_url).await?;
    let mut env = vec![
        ("CONFAB_DATABASE_URL", schema.url()),
        ("CONFAB_AUTH__JWT_SECRET", SECRET.to_owned()),
        ("CONFAB_PUBLIC_URL", PUBLIC_URL.to_owned()),
    ];
    if let Some(url) = broker {
        env.push(("CONFAB_CLUSTER__BROKER", url.to_owned()));
    }
    let label = format!("cluster/{count} node{}", if count == 1 { "" } else { "s" });
    let result = match Target::confab_nodes(label, &args.common, count, &env).await {
        Ok(target) => target.run(async |t| fanout::measure(t, &args.load).await).await,
        Err(e) => Err(e),
    };
    // The servers have stopped: nothing holds the schema any more.
    if let Err(e) = schema.remove().await {
        eprintln!("[cluster] could not drop the bench's schema: {e:#}");
    }
    result
}

/// Issue 16's two targets, met or not, in one line.
fn verdict(one: &FanoutResult, many: &FanoutResult) -> String {
    let deliveries = many.deliveries_per_s / one.deliveries_per_s.max(f64::EPSILON);
    let p99 = many.cross_node_latency.p99_ms / one.latency.p99_ms.max(f64::EPSILON);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    format!(
        "targets: {} nodes ÷ 1 node deliveries/s {deliveries:.3} (≥ {DELIVERIES_TARGET}: {}), cross-node p99 ÷ \
         single-node p99 {p99:.3} (≤ {CROSS_NODE_P99_TARGET}: {})",
        many.nodes,
        met(deliveries >= DELIVERIES_TARGET),
        met(p99 <= CROSS_NODE_P99_TARGET)
    )
}
