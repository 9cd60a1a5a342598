//! A server under test — the floor or Confab, running as a child process, or several Confab nodes
//! of one cluster — with the accounts the bench connects as, and the helper that opens many
//! authenticated connections to it.

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{
    Common,
    client::{self, CONNECT_TIMEOUT, Ws},
    process::ServerProcess,
    procfs,
    progress::Progress,
    scrape::{self, Snapshot},
    users::{self, User},
};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Floor,
    Confab,
}

impl Kind {
    /// The order every mode runs them in.
    pub const BOTH: [Kind; 2] = [Kind::Floor, Kind::Confab];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Floor => "floor",
            Kind::Confab => "confab",
        })
    }
}

/// Runs `measure` against the floor, then against Confab, each on a freshly started server that
/// is stopped afterwards, and returns `[floor, confab]`. A failed run carries its server's log tail.
pub async fn floor_then_confab<R>(
    mode: &str,
    common: &Common,
    measure: impl AsyncFn(&Target) -> Result<R>,
) -> Result<[R; 2]> {
    let mut results = Vec::with_capacity(2);
    for kind in Kind::BOTH {
        results.push(Target::start(kind, mode, common).await?.run(&measure).await?);
    }
    <[R; 2]>::try_from(results).map_err(|_| anyhow::anyhow!("two runs expected"))
}

/// The node of `nodes` connection `i` goes to: round-robin, so any first `nodes` connections (the
/// senders, say) are on different nodes.
pub fn node_of(i: usize, nodes: usize) -> usize {
    i % nodes.max(1)
}

/// A started server — or the nodes of one Confab cluster — and its accounts.
pub struct Target {
    pub kind: Kind,
    /// One server, or every node of a cluster (the first took the accounts).
    pub nodes: Vec<ServerProcess>,
    pub users: Vec<User>,
    /// Prefix of progress lines, e.g. `fanout/confab`.
    pub label: String,
}

impl Target {
    /// Starts the server and prepares `common.users` accounts on it.
    pub async fn start(kind: Kind, mode: &str, common: &Common) -> Result<Target> {
        let label = format!("{mode}/{kind}");
        match kind {
            Kind::Floor => {
                eprintln!("[{label}] starting server");
                let server = ServerProcess::floor(common.floor_buffers).await?;
                Ok(Target { kind, nodes: vec![server], users: users::floor_users(common.users.max(1)), label })
            }
            Kind::Confab => Target::confab_nodes(label, common, 1, &[]).await,
        }
    }

    /// Starts `nodes` Confab processes with the extra environment `env` (for more than one, a
    /// cluster's shared database, secret and broker) and registers `common.users` accounts on the
    /// first. The first node migrates the database alone; the others start once it is ready.
    pub async fn confab_nodes(label: String, common: &Common, nodes: usize, env: &[(&str, String)]) -> Result<Target> {
        eprintln!("[{label}] starting {nodes} Confab node(s)");
        let mut started = Vec::with_capacity(nodes);
        for _ in 0..nodes.max(1) {
            started.push(ServerProcess::confab(&common.confab_bin, env).await?);
        }
        let first = &started[0];
        let users = users::register(&format!("http://{}", first.addr()), common.users.max(1), &label)
            .await
            .with_context(|| format!("registering accounts; server log:\n{}", first.log_tail(20)))?;
        Ok(Target { kind: Kind::Confab, nodes: started, users, label })
    }

    /// Runs `measure` against this target, then stops it. A failure carries the servers' log tails.
    pub async fn run<R>(self, measure: impl AsyncFnOnce(&Target) -> Result<R>) -> Result<R> {
        let result = measure(&self).await.map_err(|e| self.explain(e));
        self.stop().await;
        result
    }

    /// The first (for a single server, the only) node's address.
    pub fn addr(&self) -> SocketAddr {
        self.nodes[0].addr()
    }

    /// The first (for a single server, the only) node's process id.
    pub fn pid(&self) -> u32 {
        self.nodes[0].pid()
    }

    /// Every node's process id.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(ServerProcess::pid).collect()
    }

    /// The node connection `i` goes to (see [`node_of`]).
    pub fn node_of(&self, i: usize) -> usize {
        node_of(i, self.nodes.len())
    }

    /// Resident memory of every node together.
    pub fn rss_kib(&self) -> Result<u64> {
        self.nodes.iter().map(|n| procfs::rss_kib(n.pid())).sum()
    }

    /// What every node logged as a warning or an error (see [`ServerProcess::logged_errors`]),
    /// prefixed with the node's number when there are several.
    pub fn logged_errors(&self) -> Vec<String> {
        let several = self.nodes.len() > 1;
        let lines = self.nodes.iter().enumerate().flat_map(|(i, n)| {
            n.logged_errors().into_iter().map(move |l| if several { format!("node {i}: {l}") } else { l })
        });
        lines.take(20).collect()
    }

    /// The account for connection `i`: connections are spread round-robin over the pool.
    pub fn user(&self, i: usize) -> &User {
        &self.users[i % self.users.len()]
    }

    /// Opens `n` connections authenticated by `?token=`, `concurrency` at a time, from `spread`
    /// source addresses, connection `i` to node [`Target::node_of`]`(i)`, and returns them once
    /// every one has received `ready`.
    pub async fn connect_many(&self, n: usize, spread: usize, concurrency: usize) -> Result<Vec<Ws>> {
        let done = Arc::new(AtomicU64::new(0));
        let shown = done.clone();
        let _progress =
            Progress::start(self.label.clone(), move || format!("{}/{n} connected", shown.load(Ordering::Relaxed)));
        stream::iter(0..n)
            .map(|i| {
                let (token, done) = (&self.user(i).token, done.clone());
                let addr = self.nodes[self.node_of(i)].addr();
                async move {
                    let open = client::open_with_token(addr, token, client::source_ip(i, spread));
                    let ws = tokio::time::timeout(CONNECT_TIMEOUT, open)
                        .await
                        .context("timed out")
                        .and_then(|r| r)
                        .with_context(|| format!("connection {} of {n}", i + 1))?;
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, anyhow::Error>(ws)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// Confab's own counters (`/metrics`) now, summed over the nodes; `None` for the floor, which
    /// keeps none (or when a node does not answer).
    pub async fn snapshot(&self) -> Option<Snapshot> {
        if self.kind == Kind::Floor {
            return None;
        }
        let mut total = Snapshot::default();
        for node in &self.nodes {
            match scrape::fetch(node.addr()).await {
                Ok(s) => total = total.plus(&s),
                Err(e) => {
                    eprintln!("[{}] could not read /metrics of {}: {e:#}", self.label, node.addr());
                    return None;
                }
            }
        }
        Some(total)
    }

    /// Adds the servers' log tails to an error from a run against them.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let tails: Vec<String> =
            self.nodes.iter().map(|n| format!("{} log tail:\n{}", n.addr(), n.log_tail(20))).collect();
        err.context(format!("{} run failed; {}", self.label, tails.join("\n")))
    }

    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}
