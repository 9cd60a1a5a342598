//! SQLite WAL checkpoints, off the commit path.
//!
//! By default SQLite checkpoints inside the commit that grows the WAL past 1 000 pages: that
//! commit copies the pages into the database file and syncs it, and every message waiting for it
//! waits too (the group commit's slowest percentile was such commits). Connections are opened
//! with automatic checkpoints off, and this task runs a `PASSIVE` checkpoint on a connection of
//! the pool every [`EVERY`], which runs beside the writer's commits instead of inside one. Under
//! sustained writes it never quite catches up, and the WAL would never start over: the writer's
//! own connection finishes the job past a bound (`direct::WAL_BOUND_PAGES`).

use std::time::Duration;

use sqlx::SqlitePool;

/// How often the WAL is copied back into the database file.
const EVERY: Duration = Duration::from_millis(250);

/// Checkpoints `pool`'s database until the task is dropped.
pub(super) async fn run(pool: SqlitePool) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint");
        }
    }
}
