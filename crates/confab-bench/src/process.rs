//! Server child processes: Confab from `--confab-bin`, the floor server (this binary re-executed
//! with `floor`) and, for `cluster`, a private `nats-server`, each on a free 127.0.0.1 port with its
//! own temporary folder, log and data.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use tokio::{
    process::{Child, Command},
    time::Instant,
};

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment for Confab under benchmark: no rate limits and connection limits far above any
/// workload, so the bench measures the server's work rather than its policy. Logging is kept to
/// warnings so it costs nothing on the hot path.
const CONFAB_ENV: [(&str, &str); 4] = [
    ("CONFAB_RATE_LIMITS__ENABLED", "false"),
    ("CONFAB_SECURITY__MAX_CONNECTIONS_PER_IP", "100000"),
    ("CONFAB_SECURITY__MAX_CONNECTIONS_PER_USER", "100000"),
    ("RUST_LOG", "warn"),
];

/// A running server, killed (and its folder removed) when dropped.
pub struct ServerProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    dir: PathBuf,
}

impl ServerProcess {
    /// Starts the floor server by re-executing this binary.
    pub async fn floor(buffers: crate::floor::Buffers) -> Result<ServerProcess> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let addr = free_port()?;
        let dir = temp_dir("floor")?;
        let mut cmd = Command::new(exe);
        cmd.arg("floor").arg("--listen").arg(addr.to_string());
        if buffers == crate::floor::Buffers::Default {
            cmd.args(["--buffers", "default"]);
        }
        // The floor exits when its standard input closes, so it never outlives the bench.
        cmd.stdin(Stdio::piped());
        ServerProcess::spawn(cmd, addr, dir).await?.wait_tcp().await
    }

    /// Starts Confab with a fresh data folder and, on top of [`CONFAB_ENV`], the variables `env`
    /// (a cluster node's database, shared secret and broker).
    pub async fn confab(bin: &Path, env: &[(&str, String)]) -> Result<ServerProcess> {
        let bin = std::fs::canonicalize(bin).with_context(|| {
            format!("Confab binary {} not found (build it: cargo build --release -p confab)", bin.display())
        })?;
        let addr = free_port()?;
        let dir = temp_dir("confab")?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--listen").arg(addr.to_string()).arg("--data-dir").arg(dir.join("data"));
        for (k, v) in CONFAB_ENV {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        ServerProcess::spawn(cmd, addr, dir).await?.wait_ready(&format!("http://{addr}/readyz")).await
    }

    /// Starts a private NATS broker (`bin`, e.g. `nats-server` from PATH) on a free port: the
    /// cluster's own, never a shared one, so nothing else's traffic is measured with it.
    pub async fn nats(bin: &Path) -> Result<ServerProcess> {
        let addr = free_port()?;
        let dir = temp_dir("nats")?;
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", &addr.port().to_string()]).stdin(Stdio::null());
        ServerProcess::spawn(cmd, addr, dir)
            .await
            .with_context(|| format!("{} is required for the cluster mode", bin.display()))?
            .wait_tcp()
            .await
    }

    /// Spawns `cmd` in `dir` (so no stray `confab.toml` is picked up) with output to `dir/server.log`.
    async fn spawn(mut cmd: Command, addr: SocketAddr, dir: PathBuf) -> Result<ServerProcess> {
        let log = std::fs::File::create(dir.join("server.log")).context("creating the server log")?;
        cmd.current_dir(&dir).stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        let child = cmd.spawn().context("starting the server")?;
        let pid = child.id().context("server exited at once")?;
        Ok(ServerProcess { child, pid, addr, dir })
    }

    /// Waits until the port accepts connections.
    async fn wait_tcp(mut self) -> Result<Self> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(self);
            }
            if Instant::now() > deadline {
                bail!("server did not open {} in time; log:\n{}", self.addr, self.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `url` answers 200 (Confab binds before it has migrated, so TCP alone is too early).
    async fn wait_ready(mut self, url: &str) -> Result<Self> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            if let Ok(r) = http.get(url).send().await
                && r.status().is_success()
            {
                return Ok(self);
            }
            if Instant::now() > deadline {
                bail!("server at {} not ready in time; log:\n{}", self.addr, self.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("server exited with {status}; log:\n{}", self.log_tail(20));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last `lines` lines of the server's output, to explain a failure.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Errors the server logged, if any: reported with the results, since a server that complains
    /// under load has not really kept up.
    pub fn logged_errors(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).take(20).map(str::to_owned).collect()
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// A new, empty folder under the system temp folder.
fn temp_dir(kind: &str) -> Result<PathBuf> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("confab-bench-{}-{kind}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
