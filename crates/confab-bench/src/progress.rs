//! A line on stderr every second while a long phase runs, so a run never looks hung.

use std::time::Duration;

use tokio::{task::JoinHandle, time::Instant};

/// Prints `[label] <seconds>s <line()>` every second until dropped.
pub struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts printing; `line` is called once a second to describe where the phase is.
    pub fn start(label: String, line: impl Fn() -> String + Send + 'static) -> Progress {
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                tick.tick().await;
                eprintln!("[{label}] {:>4.0}s {}", started.elapsed().as_secs_f64(), line());
            }
        });
        Progress { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}
