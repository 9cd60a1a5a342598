//! A server under test — the floor or Confab, running as a child process — with the accounts the
//! bench connects as, and the helper that opens many authenticated connections to it.

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
        let target = Target::start(kind, mode, common).await?;
        let result = measure(&target).await.map_err(|e| target.explain(e));
        target.stop().await;
        results.push(result?);
    }
    <[R; 2]>::try_from(results).map_err(|_| anyhow::anyhow!("two runs expected"))
}

/// A started server and its accounts.
pub struct Target {
    pub kind: Kind,
    pub server: ServerProcess,
    pub users: Vec<User>,
    /// Prefix of progress lines, e.g. `fanout/confab`.
    pub label: String,
}

impl Target {
    /// Starts the server and prepares `common.users` accounts on it.
    pub async fn start(kind: Kind, mode: &str, common: &Common) -> Result<Target> {
        let label = format!("{mode}/{kind}");
        eprintln!("[{label}] starting server");
        let count = common.users.max(1);
        let (server, users) = match kind {
            Kind::Floor => (ServerProcess::floor(common.floor_buffers).await?, users::floor_users(count)),
            Kind::Confab => {
                let server = ServerProcess::confab(&common.confab_bin).await?;
                let users = users::register(&format!("http://{}", server.addr()), count, &label)
                    .await
                    .with_context(|| format!("registering accounts; server log:\n{}", server.log_tail(20)))?;
                (server, users)
            }
        };
        Ok(Target { kind, server, users, label })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The account for connection `i`: connections are spread round-robin over the pool.
    pub fn user(&self, i: usize) -> &User {
        &self.users[i % self.users.len()]
    }

    /// Opens `n` connections authenticated by `?token=`, `concurrency` at a time, from `spread`
    /// source addresses, and returns them once every one has received `ready`.
    pub async fn connect_many(&self, n: usize, spread: usize, concurrency: usize) -> Result<Vec<Ws>> {
        let done = Arc::new(AtomicU64::new(0));
        let shown = done.clone();
        let _progress =
            Progress::start(self.label.clone(), move || format!("{}/{n} connected", shown.load(Ordering::Relaxed)));
        let addr = self.addr();
        stream::iter(0..n)
            .map(|i| {
                let (token, done) = (&self.user(i).token, done.clone());
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

    /// Confab's own counters (`/metrics`) now; `None` for the floor, which keeps none.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        match self.kind {
            Kind::Floor => None,
            Kind::Confab => match scrape::fetch(self.addr()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("[{}] could not read /metrics: {e:#}", self.label);
                    None
                }
            },
        }
    }

    /// Adds the server's log tail to an error from a run against it.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        err.context(format!("{} run failed; server log tail:\n{}", self.kind, self.server.log_tail(20)))
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
