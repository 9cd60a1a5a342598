//! SQLite WAL checkpoints, off the commit path.
//!
//! By default SQLite checkpoints inside the commit that grows the WAL past 1 000 pages: that
//! commit copies the pages into the database file and syncs it, and every message waiting for it
//! waits too (the group commit's slowest percentile was such commits). Connections are opened
//! with automatic checkpoints off, and this task runs a `PASSIVE` checkpoint on a connection of
//! the pool, [`EVERY`] after the last, which runs beside the writer's commits instead of inside
//! one. Under sustained writes it never quite catches up, and the WAL would never start over: the
//! writer's own connection finishes the job past a bound (`direct::WAL_BOUND_PAGES`).

use std::time::Duration;

use sqlx::SqlitePool;

/// How long the task waits after one checkpoint before it runs the next.
///
/// A pause after each checkpoint, not a fixed rate: only one connection may checkpoint at a time,
/// and SQLite refuses the writer's own checkpoint at once (it never waits for that lock) while
/// this one runs. At a fixed rate, a checkpoint that outlasted the period was followed by the next
/// straight away; on a slow disk, or with every I/O call slowed (under `strace`), they ran back to
/// back, the writer's checkpoint found the lock taken at every commit, and the WAL grew without end
/// again (243 MiB in `store::the_wal_starts_over_under_writes_that_never_pause` under `strace`;
/// 17 to 20 MiB with the pause).
const EVERY: Duration = Duration::from_millis(250);

/// Checkpoints `pool`'s database until the task is dropped, pausing [`EVERY`] after each.
pub(super) async fn run(pool: SqlitePool) {
    loop {
        tokio::time::sleep(EVERY).await;
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint");
        }
    }
}
