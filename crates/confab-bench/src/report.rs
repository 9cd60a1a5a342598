//! Results: the JSON written per mode (read back by `chart`) and the human summary printed after a run.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which way a metric improves; decides how a ratio reads (and its colour in the chart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One number measured on both servers. In a report whose [`Report::columns`] are not the floor
/// and Confab (`cluster`: one node, then N nodes), `floor` holds the reference and `confab` what
/// is measured against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub floor: f64,
    pub confab: f64,
    /// Confab ÷ floor (measured ÷ reference); absent when the floor's value is zero (e.g. no loss on either).
    pub ratio: Option<f64>,
}

impl Metric {
    pub fn new(name: &str, unit: &str, better: Better, floor: f64, confab: f64) -> Metric {
        let ratio = (floor != 0.0 && (confab / floor).is_finite()).then(|| confab / floor);
        Metric { name: name.to_owned(), unit: unit.to_owned(), better, floor, confab, ratio }
    }

    /// A metric reported for both servers whose Confab ÷ floor ratio would mean nothing (e.g. each
    /// server's own growth between two sizes); it is printed but not charted.
    pub fn without_ratio(name: &str, unit: &str, better: Better, floor: f64, confab: f64) -> Metric {
        Metric { ratio: None, ..Metric::new(name, unit, better, floor, confab) }
    }
}

impl Better {
    /// Whether a Confab ÷ floor `ratio` means Confab did at least as well as the floor.
    pub fn confab_keeps_up(self, ratio: f64) -> bool {
        match self {
            Better::Higher => ratio >= 1.0,
            Better::Lower => ratio <= 1.0,
        }
    }
}

/// Everything one mode wrote: parameters, the comparable metrics, and each server's raw results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub mode: String,
    /// The names of the two sides, reference first: the floor and Confab unless a mode says otherwise.
    #[serde(default = "floor_and_confab")]
    pub columns: [String; 2],
    pub created_unix: u64,
    /// Cores of the machine both servers and the bench shared.
    pub cores: usize,
    pub params: Value,
    pub metrics: Vec<Metric>,
    pub floor: Value,
    pub confab: Value,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(
        mode: &str,
        params: &impl Serialize,
        metrics: Vec<Metric>,
        floor: &impl Serialize,
        confab: &impl Serialize,
        notes: Vec<String>,
    ) -> Result<Report> {
        Ok(Report {
            mode: mode.to_owned(),
            columns: floor_and_confab(),
            created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            params: serde_json::to_value(params)?,
            metrics,
            floor: serde_json::to_value(floor)?,
            confab: serde_json::to_value(confab)?,
            notes,
        })
    }

    /// The same report with other names for its two sides (reference first).
    pub fn with_columns(self, reference: &str, measured: &str) -> Report {
        Report { columns: [reference.to_owned(), measured.to_owned()], ..self }
    }

    /// Whether this report compares Confab with the floor (the chart draws only those).
    pub fn against_floor(&self) -> bool {
        self.columns == floor_and_confab()
    }

    /// Writes the JSON (to `out`, or `bench-results/<mode>.json`) and prints the summary.
    pub fn finish(&self, out: Option<&Path>) -> Result<()> {
        let path =
            out.map_or_else(|| PathBuf::from("bench-results").join(format!("{}.json", self.mode)), Path::to_path_buf);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        print!("{}", self.summary());
        println!("results written to {}", path.display());
        Ok(())
    }

    /// The human summary: one line per metric with both absolute values and the ratio.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let [reference, measured] = &self.columns;
        let _ = writeln!(
            s,
            "\n== {}: {measured} vs {reference} ({} cores, same machine, same run) ==",
            self.mode, self.cores
        );
        let _ = writeln!(
            s,
            "{:<44} {:>14} {:>14} {:>10}",
            "metric",
            reference,
            measured,
            format!("{measured}÷{reference}")
        );
        for m in &self.metrics {
            let ratio = m.ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.3}"));
            let hint = match m.better {
                Better::Higher => "higher is better",
                Better::Lower => "lower is better",
            };
            let _ = writeln!(
                s,
                "{:<44} {:>14} {:>14} {:>10}   ({hint})",
                format!("{} [{}]", m.name, m.unit),
                number(m.floor),
                number(m.confab),
                ratio
            );
        }
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        s
    }
}

fn floor_and_confab() -> [String; 2] {
    ["floor".to_owned(), "confab".to_owned()]
}

/// A number with sensible precision for a table.
fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_confab_over_floor() {
        let m = Metric::new("x", "1/s", Better::Higher, 200.0, 150.0);
        assert_eq!(m.ratio, Some(0.75));
        assert!(!m.better.confab_keeps_up(0.75));
        assert_eq!(Metric::new("loss", "n", Better::Lower, 0.0, 3.0).ratio, None);
        assert!(Better::Lower.confab_keeps_up(0.5));
        let growth = Metric::without_ratio("g", "×", Better::Lower, 0.5, 0.9);
        assert_eq!((growth.ratio, growth.floor, growth.confab), (None, 0.5, 0.9));
    }

    #[test]
    fn report_round_trips_and_summarises() {
        let metrics = vec![Metric::new("deliveries/s", "1/s", Better::Higher, 1000.0, 800.0)];
        let r = Report::new("fanout", &serde_json::json!({"n": 1}), metrics, &1, &2, vec!["a note".into()]).unwrap();
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.metrics, r.metrics);
        let s = r.summary();
        assert!(s.contains("deliveries/s [1/s]"));
        assert!(s.contains("0.800"));
        assert!(s.contains("note: a note"));
        assert!(r.against_floor() && back.against_floor());
        let cluster = r.with_columns("1 node", "3 nodes");
        assert!(!cluster.against_floor());
        assert!(cluster.summary().contains("3 nodes vs 1 node"));
        // Results written before the columns existed read as floor and Confab.
        let mut old = serde_json::to_value(&back).unwrap();
        old.as_object_mut().unwrap().remove("columns");
        assert!(serde_json::from_value::<Report>(old).unwrap().against_floor());
    }
}
