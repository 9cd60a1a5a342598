//! Process figures read from `/proc`: resident memory and CPU time, for the servers and the bench.
//!
//! Each server runs as its own process precisely so these numbers are separate and comparable.

use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Clock ticks per second of the times in `/proc/<pid>/stat`. It is the kernel's `USER_HZ`, which
/// is 100 on every Linux ABI (it is not the configurable `HZ`).
const USER_HZ: f64 = 100.0;

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// `VmHWM` of `pid` in KiB: the peak resident memory since start or since [`reset_peak_rss`].
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Starts a new peak-RSS window for `pid` (writing 5 to `clear_refs` resets `VmHWM`).
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("resetting /proc/{pid} VmHWM"))
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_kib(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn parse_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds used so far by `pid` (all its threads).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    match parse_cpu_ticks(&stat) {
        Some(ticks) => Ok(ticks as f64 / USER_HZ),
        None => bail!("unexpected /proc/{pid}/stat format"),
    }
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives them: what the
/// other processes sharing the cores were doing around a run.
pub fn load_average() -> Result<String> {
    let text = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    Ok(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// CPU seconds of several processes together.
fn cpu_seconds_of(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// utime + stime: fields 14 and 15, counted after the parenthesised command name (which may hold spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU use of the server (every node of a cluster, together) and of the bench itself over a
/// measured window.
pub struct CpuMeter {
    server_pids: Vec<u32>,
    started: Instant,
    server0: f64,
    bench0: f64,
}

/// CPU use over a window, in percent of one core (200 % = both cores of a 2-core machine).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuUse {
    pub server_pct: f64,
    pub bench_pct: f64,
    pub server_cpu_s: f64,
}

impl CpuMeter {
    /// Starts the window now.
    pub fn start(server_pid: u32) -> Result<CpuMeter> {
        CpuMeter::start_all(&[server_pid])
    }

    /// Starts the window now, for several server processes counted together.
    pub fn start_all(server_pids: &[u32]) -> Result<CpuMeter> {
        Ok(CpuMeter {
            server_pids: server_pids.to_vec(),
            started: Instant::now(),
            server0: cpu_seconds_of(server_pids)?,
            bench0: cpu_seconds(std::process::id())?,
        })
    }

    /// Ends the window now.
    pub fn finish(&self) -> Result<CpuUse> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let server = cpu_seconds_of(&self.server_pids)? - self.server0;
        let bench = cpu_seconds(std::process::id())? - self.bench0;
        Ok(CpuUse { server_pct: 100.0 * server / wall, bench_pct: 100.0 * bench / wall, server_cpu_s: server })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tconfab\nVmPeak:\t  9000 kB\nVmHWM:\t   20000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_kib(status, "VmRSS:"), Some(12345));
        assert_eq!(parse_kib(status, "VmHWM:"), Some(20000));
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_own_process() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(peak_rss_kib(std::process::id()).unwrap() >= rss_kib(std::process::id()).unwrap() / 2);
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
        assert_eq!(load_average().unwrap().split(' ').filter(|v| v.parse::<f64>().is_ok()).count(), 3);
    }
}
