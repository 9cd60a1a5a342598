//! Confab's own `/metrics` (Prometheus text), reduced to the few figures that explain a result:
//! how long group commits took and how big they were, how long commands took, queue overflows, and
//! in cluster mode what the broker lost.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// Server-side figures accumulated since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerMetrics {
    pub commits: f64,
    pub commit_mean_ms: f64,
    /// Messages (and other changes) per group commit, on average.
    pub commit_batch_mean: f64,
    pub message_new_mean_ms: f64,
    /// How long a change waited in the writer's queue for its group commit to start, on average.
    pub writer_queue_mean_ms: f64,
    pub messages_get_mean_ms: f64,
    pub queue_overflows: f64,
    /// Cluster mode: events a node read from PostgreSQL because the broker lost or delayed them.
    pub cluster_filled: f64,
    /// Cluster mode: envelopes dropped before the broker (a full publish queue).
    pub cluster_publish_dropped: f64,
}

/// The raw counters `ServerMetrics` is derived from, so a window can be taken as a difference.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    commit_sum: f64,
    commit_count: f64,
    batch_total: f64,
    new_sum: f64,
    new_count: f64,
    queue_sum: f64,
    queue_count: f64,
    get_sum: f64,
    get_count: f64,
    overflows: f64,
    filled: f64,
    publish_dropped: f64,
}

/// Fetches `http://<addr>/metrics` (allowed from loopback by default).
pub async fn fetch(addr: std::net::SocketAddr) -> Result<Snapshot> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    let text = http.get(format!("http://{addr}/metrics")).send().await?.text().await.context("GET /metrics")?;
    Ok(Snapshot::parse(&text))
}

/// The sum of every sample of `name` whose labels contain `label` (empty: any labels).
fn sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.contains(label)).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl Snapshot {
    pub fn parse(text: &str) -> Snapshot {
        let (new, get) = ("cmd=\"message_new\"", "cmd=\"messages_get\"");
        Snapshot {
            commit_sum: sum(text, "confab_db_commit_seconds_sum", ""),
            commit_count: sum(text, "confab_db_commit_seconds_count", ""),
            batch_total: sum(text, "confab_db_commit_batch_total", ""),
            new_sum: sum(text, "confab_command_seconds_sum", new),
            new_count: sum(text, "confab_command_seconds_count", new),
            queue_sum: sum(text, "confab_db_queue_seconds_sum", ""),
            queue_count: sum(text, "confab_db_queue_seconds_count", ""),
            get_sum: sum(text, "confab_command_seconds_sum", get),
            get_count: sum(text, "confab_command_seconds_count", get),
            overflows: sum(text, "confab_queue_overflows_total", ""),
            filled: sum(text, "confab_cluster_filled_total", ""),
            publish_dropped: sum(text, "confab_cluster_publish_dropped_total", ""),
        }
    }

    /// Both snapshots' counters added: the figures of several nodes taken together.
    pub fn plus(&self, other: &Snapshot) -> Snapshot {
        Snapshot {
            commit_sum: self.commit_sum + other.commit_sum,
            commit_count: self.commit_count + other.commit_count,
            batch_total: self.batch_total + other.batch_total,
            new_sum: self.new_sum + other.new_sum,
            new_count: self.new_count + other.new_count,
            queue_sum: self.queue_sum + other.queue_sum,
            queue_count: self.queue_count + other.queue_count,
            get_sum: self.get_sum + other.get_sum,
            get_count: self.get_count + other.get_count,
            overflows: self.overflows + other.overflows,
            filled: self.filled + other.filled,
            publish_dropped: self.publish_dropped + other.publish_dropped,
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> ServerMetrics {
        let d = |a: f64, b: f64| a - b;
        let commits = d(self.commit_count, earlier.commit_count);
        ServerMetrics {
            commits,
            commit_mean_ms: 1000.0 * ratio(d(self.commit_sum, earlier.commit_sum), commits),
            commit_batch_mean: ratio(d(self.batch_total, earlier.batch_total), commits),
            message_new_mean_ms: 1000.0 * ratio(d(self.new_sum, earlier.new_sum), d(self.new_count, earlier.new_count)),
            writer_queue_mean_ms: 1000.0
                * ratio(d(self.queue_sum, earlier.queue_sum), d(self.queue_count, earlier.queue_count)),
            messages_get_mean_ms: 1000.0
                * ratio(d(self.get_sum, earlier.get_sum), d(self.get_count, earlier.get_count)),
            queue_overflows: d(self.overflows, earlier.overflows),
            cluster_filled: d(self.filled, earlier.filled),
            cluster_publish_dropped: d(self.publish_dropped, earlier.publish_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_prometheus_text() {
        let text = "# HELP confab_db_commit_seconds x\n\
                    confab_db_commit_seconds_bucket{le=\"0.001\"} 3\n\
                    confab_db_commit_seconds_sum 0.5\n\
                    confab_db_commit_seconds_count 100\n\
                    confab_db_commit_batch_total 800\n\
                    confab_command_seconds_sum{cmd=\"message_new\"} 2\n\
                    confab_command_seconds_count{cmd=\"message_new\"} 1000\n\
                    confab_command_seconds_sum{cmd=\"messages_get\"} 1\n\
                    confab_command_seconds_count{cmd=\"messages_get\"} 500\n\
                    confab_db_queue_seconds_sum 0.3\n\
                    confab_db_queue_seconds_count 1000\n";
        let m = Snapshot::parse(text).since(&Snapshot::default());
        assert_eq!(m.commits, 100.0);
        assert_eq!(m.commit_mean_ms, 5.0);
        assert_eq!(m.commit_batch_mean, 8.0);
        assert_eq!(m.message_new_mean_ms, 2.0);
        assert_eq!(m.messages_get_mean_ms, 2.0);
        assert!((m.writer_queue_mean_ms - 0.3).abs() < 1e-9, "{}", m.writer_queue_mean_ms);
        assert_eq!(m.queue_overflows, 0.0);
        assert_eq!(Snapshot::parse(text).since(&Snapshot::parse(text)), ServerMetrics::default());
        let two = Snapshot::parse(text).plus(&Snapshot::parse(text)).since(&Snapshot::default());
        assert_eq!((two.commits, two.commit_mean_ms, two.commit_batch_mean), (200.0, 5.0, 8.0));
        let cluster = "confab_cluster_filled_total 7\nconfab_cluster_publish_dropped_total 2\n";
        let c = Snapshot::parse(cluster).since(&Snapshot::default());
        assert_eq!((c.cluster_filled, c.cluster_publish_dropped), (7.0, 2.0));
    }
}
