//! Latency summaries: nearest-rank percentiles over samples in microseconds, reported in milliseconds.

use serde::{Deserialize, Serialize};

/// What a latency distribution is reduced to in the reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted`, which must be ascending; 0 when empty.
///
/// Nearest rank rather than interpolation: every reported value is one that was actually observed.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts the samples (µs) and summarises them.
pub fn summarize(mut samples_us: Vec<u64>) -> Summary {
    samples_us.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let count = samples_us.len();
    let mean_ms =
        if count == 0 { 0.0 } else { samples_us.iter().map(|&v| v as f64).sum::<f64>() / count as f64 / 1000.0 };
    Summary {
        count,
        p50_ms: ms(percentile(&samples_us, 50.0)),
        p99_ms: ms(percentile(&samples_us, 99.0)),
        max_ms: ms(samples_us.last().copied().unwrap_or(0)),
        mean_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.1), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // Small sets: p99 of 10 values is the largest.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), 10);
        assert_eq!(percentile(&ten, 50.0), 5);
    }

    #[test]
    fn summary_sorts_and_converts_to_ms() {
        let s = summarize(vec![3000, 1000, 2000, 4000]);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p99_ms, 4.0);
        assert_eq!(s.max_ms, 4.0);
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(summarize(Vec::new()), Summary::default());
    }
}
