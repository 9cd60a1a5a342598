//! confab-bench: the command line. Measures Confab against a floor server over real sockets, in the
//! same run, and reports Confab ÷ floor ratios (DESIGN §3: on a shared machine only ratios mean much).
//!
//! `fanout`, `idle`, `auth`, `history` and `storm` each start the floor server (this binary re-executed with
//! the hidden `floor` subcommand) and then Confab as child processes, run the same workload against
//! both, print a summary and write JSON. `community` and `cluster` compare Confab with itself (a small
//! community; one node against a cluster). `chart` draws the floor ratios from those JSON files as SVG.

mod auth;
mod chart;
mod client;
mod cluster;
mod community;
mod fanout;
mod floor;
mod history;
mod idle;
mod process;
mod procfs;
mod progress;
mod report;
mod schema;
mod scrape;
mod stats;
mod storm;
mod target;
mod users;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "confab-bench",
    version,
    about = "Load generator for Confab, measured against a floor server in the same run",
    long_about = "Each mode starts the floor server and Confab (fresh data folder, free port on 127.0.0.1, rate \
                  limits off, connection limits raised), runs the same workload against both over real sockets, \
                  prints absolute numbers and Confab ÷ floor ratios, and writes JSON (default \
                  bench-results/<mode>.json)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Broadcast throughput and latency: N clients in #general, S of them sending.
    Fanout(fanout::FanoutArgs),
    /// The fanout workload on a cluster of Confab nodes (PostgreSQL + a private NATS) against one node.
    Cluster(cluster::ClusterArgs),
    /// Server memory per authenticated idle connection.
    Idle(idle::IdleArgs),
    /// Authenticated connects per second, by JWT on the upgrade URL and by `login` frame.
    Auth(auth::AuthArgs),
    /// `messages_get` latency on a channel holding M messages, for several M.
    History(history::HistoryArgs),
    /// A large community: users_list, users_online, presence and role mentions at A accounts, O online.
    Community(community::CommunityArgs),
    /// A reconnect storm: N clients at once, auth only and then the official client's start-up.
    Storm(storm::StormArgs),
    /// Draw the Confab ÷ floor ratios from the JSON results as an SVG bar chart.
    Chart(chart::ChartArgs),
    /// Run the floor server (started by the other modes as a child process).
    #[command(hide = true)]
    Floor {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, value_enum, default_value = "tuned")]
        buffers: floor::Buffers,
    },
}

/// Options every measuring mode shares.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Common {
    /// The Confab binary to start.
    #[arg(long, default_value = "./target/release/confab")]
    pub confab_bin: PathBuf,
    /// Where to write the JSON results [default: bench-results/<mode>.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Accounts registered on Confab; connections are spread over them. Each registration costs an
    /// Argon2 hash (tens of ms), so keep this small.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// The floor's WebSocket buffers: small ones (`tuned`: 1 KiB read, 2 KiB write), or tungstenite's defaults
    /// (`default`), the reference an untuned server gives.
    #[arg(long, value_enum, default_value = "tuned")]
    pub floor_buffers: floor::Buffers,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Fanout(args) => fanout::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Idle(args) => idle::run(args).await,
            Command::Auth(args) => auth::run(args).await,
            Command::History(args) => history::run(args).await,
            Command::Storm(args) => storm::run(args).await,
            Command::Community(args) => community::run(args).await,
            Command::Chart(args) => chart::run(&args),
            Command::Floor { listen, buffers } => floor::serve(listen, buffers).await,
        }
    })
}
