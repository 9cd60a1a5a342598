//! Prometheus metrics, kept per server instance (PROTOCOL §3.4).
//!
//! A small registry of atomics rather than the `metrics` facade: the facade installs a process-global
//! recorder, and DESIGN §6 forbids global state — tests run many servers in one process and each
//! must count only its own traffic. Label values come from fixed sets (command names, codes, outcomes),
//! never from user input.

use std::{
    fmt::Write,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use dashmap::DashMap;

const BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The registry. One per server; shared by reference count.
#[derive(Default)]
pub struct Metrics {
    /// Hot counters touched once per frame or per recipient: plain atomics, no map lookup.
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    overflows: AtomicU64,
    counters: DashMap<(&'static str, String), AtomicU64>,
    gauges: DashMap<(&'static str, String), AtomicI64>,
    histograms: DashMap<(&'static str, String), Histogram>,
}

/// Every series Confab records, with its type and help text. [`Metrics::render`] writes only
/// these: a name missing here would be counted and never shown, so debug builds refuse it at the
/// first count (see [`Metrics::add`]).
const HELP: [(&str, &str, &str); 23] = [
    ("confab_connections", "gauge", "Open WebSocket connections by state."),
    ("confab_commands_total", "counter", "Commands handled, by command and outcome."),
    ("confab_command_seconds", "histogram", "Time to handle a command."),
    (
        "confab_rate_limited_total",
        "counter",
        "Requests refused by a rate limit, by class (auth: the authentication throttles).",
    ),
    ("confab_auth_attempts_total", "counter", "Authentication attempts by method and outcome."),
    ("confab_closes_total", "counter", "Connections closed by the server, by close code."),
    ("confab_db_commit_seconds", "histogram", "Duration of group commits."),
    (
        "confab_db_queue_seconds",
        "histogram",
        "Time a change waits in the writer's queue before its group commit starts.",
    ),
    ("confab_db_commit_batch_total", "counter", "Messages committed by the group-commit writer."),
    ("confab_cluster_broker_up", "gauge", "1 while the cluster broker delivers this node's probes."),
    ("confab_cluster_publish_dropped_total", "counter", "Envelopes not published (queue full or broker error)."),
    ("confab_cluster_filled_total", "counter", "Events read from the database because the broker lost them."),
    ("confab_cluster_sequencer_early", "gauge", "Events held back waiting for an earlier seq."),
    ("confab_cluster_degraded_polls_total", "counter", "Database polls while the broker was down."),
    ("confab_cluster_gaps_total", "counter", "Events that arrived over the broker ahead of a missing seq."),
    ("confab_cluster_nodes", "gauge", "Cluster nodes with a live row."),
    ("confab_cluster_nodes_reaped_total", "counter", "Dead nodes whose presence this node removed."),
    ("confab_db_unavailable_total", "counter", "Group commits refused because the database was out of reach."),
    ("confab_db_batch_retries_total", "counter", "Group commits that failed and were retried change by change."),
    ("confab_frames_in_total", "counter", "Frames received from clients."),
    ("confab_frames_out_total", "counter", "Packets queued to clients."),
    ("confab_queue_overflows_total", "counter", "Connections closed because their outbound queue overflowed."),
    ("confab_push_total", "counter", "Web Push notifications by outcome (sent, gone, refused, failed, dropped)."),
];

/// Whether `name` is one of [`HELP`]'s, so that [`Metrics::render`] shows it.
fn described(name: &str) -> bool {
    HELP.iter().any(|(known, _, _)| *known == name)
}

impl Metrics {
    /// One frame received from a client.
    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// One packet queued to a client.
    pub fn frame_out(&self) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    /// One connection closed because its queue overflowed.
    pub fn overflow(&self) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to counter `name{labels}`.
    pub fn add(&self, name: &'static str, labels: String, n: u64) {
        debug_assert!(described(name), "{name} has no HELP line");
        if let Some(c) = self.counters.get(&(name, labels.clone())) {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.counters.entry((name, labels)).or_default().fetch_add(n, Ordering::Relaxed);
    }

    /// Increments counter `name{labels}`.
    pub fn inc(&self, name: &'static str, labels: String) {
        self.add(name, labels, 1);
    }

    /// Moves gauge `name{labels}` by `delta`.
    pub fn gauge(&self, name: &'static str, labels: String, delta: i64) {
        debug_assert!(described(name), "{name} has no HELP line");
        self.gauges.entry((name, labels)).or_default().fetch_add(delta, Ordering::Relaxed);
    }

    /// Sets gauge `name{labels}` to `value`.
    pub fn gauge_set(&self, name: &'static str, labels: String, value: i64) {
        debug_assert!(described(name), "{name} has no HELP line");
        self.gauges.entry((name, labels)).or_default().store(value, Ordering::Relaxed);
    }

    /// Records a duration in histogram `name{labels}`.
    pub fn observe(&self, name: &'static str, labels: String, d: Duration) {
        self.observe_each(name, labels, [d]);
    }

    /// Records several durations in histogram `name{labels}`, finding it once: for one figure
    /// per message of a batch, on the writer that every message waits for.
    pub fn observe_each(&self, name: &'static str, labels: String, ds: impl IntoIterator<Item = Duration>) {
        debug_assert!(described(name), "{name} has no HELP line");
        if let Some(h) = self.histograms.get(&(name, labels.clone())) {
            ds.into_iter().for_each(|d| h.observe(d));
            return;
        }
        let h = self.histograms.entry((name, labels)).or_default();
        ds.into_iter().for_each(|d| h.observe(d));
    }

    /// One group commit of `size` messages took `d`.
    pub fn observe_commit(&self, d: Duration, size: usize) {
        self.observe("confab_db_commit_seconds", String::new(), d);
        self.add("confab_db_commit_batch_total", String::new(), size as u64);
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let hot = match name {
                "confab_frames_in_total" => Some(&self.frames_in),
                "confab_frames_out_total" => Some(&self.frames_out),
                "confab_queue_overflows_total" => Some(&self.overflows),
                _ => None,
            };
            if let Some(counter) = hot {
                let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
                continue;
            }
            match kind {
                "counter" => {
                    let mut rows: Vec<_> = self
                        .counters
                        .iter()
                        .filter(|e| e.key().0 == name)
                        .map(|e| (e.key().1.clone(), e.value().load(Ordering::Relaxed)))
                        .collect();
                    rows.sort();
                    for (labels, v) in rows {
                        let _ = writeln!(out, "{name}{} {v}", braces(&labels));
                    }
                }
                "gauge" => {
                    let mut rows: Vec<_> = self
                        .gauges
                        .iter()
                        .filter(|e| e.key().0 == name)
                        .map(|e| (e.key().1.clone(), e.value().load(Ordering::Relaxed)))
                        .collect();
                    rows.sort();
                    for (labels, v) in rows {
                        let _ = writeln!(out, "{name}{} {v}", braces(&labels));
                    }
                }
                _ => {
                    for e in self.histograms.iter().filter(|e| e.key().0 == name) {
                        let labels = &e.key().1;
                        let h = e.value();
                        let sep = if labels.is_empty() { "" } else { "," };
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                                h.buckets[i].load(Ordering::Relaxed)
                            );
                        }
                        let count = h.count.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
                        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
                    }
                }
            }
        }
        out
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() { String::new() } else { format!("{{{labels}}}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.inc("confab_commands_total", "cmd=\"ping\",outcome=\"ok\"".into());
        m.inc("confab_commands_total", "cmd=\"ping\",outcome=\"ok\"".into());
        m.gauge("confab_connections", "state=\"open\"".into(), 3);
        m.observe_commit(Duration::from_millis(2), 5);
        let text = m.render();
        assert!(text.contains("confab_commands_total{cmd=\"ping\",outcome=\"ok\"} 2"), "{text}");
        assert!(text.contains("confab_connections{state=\"open\"} 3"));
        assert!(text.contains("confab_db_commit_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("confab_db_commit_batch_total 5"));
    }

    /// `render` shows only the series of `HELP`: one counted under another name would never be
    /// seen (four were, until this check), so debug builds refuse it at once.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "confab_not_described_total has no HELP line")]
    fn a_series_render_would_not_show_is_refused() {
        Metrics::default().inc("confab_not_described_total", String::new());
    }

    /// docs/metrics.md is the operators' list: every series of `HELP` has its row there, with
    /// its type, and the list names no series the server does not have.
    #[test]
    fn the_metrics_doc_lists_every_series_and_no_other() {
        let doc = include_str!("../../../docs/metrics.md");
        let rows: Vec<(&str, &str)> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.split(" | ");
                Some((cells.next()?.strip_suffix('`')?, cells.next()?))
            })
            .collect();
        for (name, kind, _) in HELP {
            assert!(rows.contains(&(name, kind)), "docs/metrics.md has no `{name}` row of type {kind}");
        }
        for (name, _) in &rows {
            assert!(described(name), "docs/metrics.md lists `{name}`, which the server does not record");
        }
        assert_eq!(rows.len(), HELP.len(), "a series is listed twice in docs/metrics.md");
    }
}
