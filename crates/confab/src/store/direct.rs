//! The SQLite writer's own connection, driven synchronously on the writer's thread.
//!
//! Through sqlx every statement is a hop to the connection's worker thread and a hop back: in the
//! fan-out bench the writer and that worker put each other to sleep and woke each other twice per
//! group commit, and the worker's thread took a fifth of the server's CPU. SQLite itself is a
//! library call; this connection makes it one. It serves the writer's hot path only — seqs and
//! batches of appends. Rarer changes (channel events) and search indexing keep to sqlx, whose
//! transaction code is shared with PostgreSQL.
//!
//! Both crates link the same SQLite (one `libsqlite3-sys`), so locks and the WAL index are shared
//! as between any two connections of one process.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, Statement, ToSql};

use super::script::{Script, Val};
use crate::{config::SqliteSync, error::Result};

/// The connection, reopened if a failed batch ever leaves it inside a transaction.
pub(super) struct Direct {
    path: PathBuf,
    sync: SqliteSync,
    conn: Connection,
}

impl Direct {
    /// Opens the database the pool created (migrations have run) with the pool's settings.
    pub(super) fn open(path: &Path, sync: SqliteSync) -> Result<Direct> {
        Ok(Direct { path: path.to_owned(), sync, conn: connect(path, sync)? })
    }

    /// The current seq of each of `channels` that exists.
    pub(super) fn channel_seqs(&self, channels: &[&str]) -> Result<Vec<(String, i64)>> {
        let list = super::script::json_array(channels)?;
        self.rows("SELECT id, seq FROM channels WHERE id IN (SELECT value FROM json_each($1))", &list, |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
    }

    /// The rows of `sql`, whose one parameter `$1` is `param` (the writer binds JSON arrays).
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        param: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map([param], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Runs `script` in one `BEGIN IMMEDIATE` transaction and commits it. On an error nothing is
    /// left written: the transaction is rolled back, or, if even that fails, the connection is
    /// closed (which drops it) and a new one opened.
    pub(super) fn commit(&mut self, script: &Script<'_>) -> Result<()> {
        let written = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            for (sql, binds) in script.statements() {
                let mut stmt = self.conn.prepare_cached(sql)?;
                bind(&mut stmt, binds)?;
                stmt.raw_execute()?;
            }
            self.conn.execute_batch("COMMIT")
        });
        if let Err(e) = written {
            let _ = self.conn.execute_batch("ROLLBACK");
            if !self.conn.is_autocommit() {
                self.conn = connect(&self.path, self.sync)?;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// WAL pages past which the writer checkpoints itself, at the end of the commit that crossed
/// the bound (64 MiB of 4 KiB pages, about a second of the fan-out bench's writes).
///
/// The pool's background checkpoint (`checkpoint`) does the copying, beside the commits. But SQLite
/// starts the WAL over only when a write transaction begins with every frame copied back, and
/// under sustained writes the background checkpoint never catches up with the writer: the WAL grew
/// by 70 MB a second in the bench, without end, and every commit wrote into freshly allocated
/// pages. Run on the writer's own connection, between two commits, a checkpoint can copy the last
/// frames, so the next transaction starts the WAL over. Most of them were copied already; what is
/// left, and its two syncs, is the price, paid once per bound: 5–25 ms, while every sender waits.
/// A bound of 16 MiB paid it three times a second in the bench; at 64 MiB the commits took 8 %
/// less time in all and the queue's mean wait fell by a tenth (BENCHMARKS.md, fourteenth
/// session). The cost is disk: the WAL takes up to this much (more while the checkpoint runs;
/// `WAL_FILE_LIMIT` cuts it back to the same size when it starts over), and a restart after a
/// crash reads at most that much back.
const WAL_BOUND_PAGES: i64 = 16384;

/// A connection with the settings of the pool's (`Store::open_with`), which checkpoints past
/// [`WAL_BOUND_PAGES`].
fn connect(path: &Path, sync: SqliteSync) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(super::SQLITE_BUSY_TIMEOUT)?;
    for (pragma, value) in super::sqlite_pragmas(sync) {
        conn.pragma_update(None, pragma, value)?;
    }
    conn.pragma_update(None, "wal_autocheckpoint", WAL_BOUND_PAGES)?;
    Ok(conn)
}

/// Binds `binds` to `stmt` by their `$n` names. SQLite numbers named parameters in the order they
/// first appear, so `$2` may well be the first slot.
fn bind(stmt: &mut Statement<'_>, binds: &[Val<'_>]) -> rusqlite::Result<()> {
    for slot in 1..=stmt.parameter_count() {
        let n = stmt.parameter_name(slot).and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok());
        let Some(value) = n.and_then(|n| binds.get(n.checked_sub(1)?)) else {
            return Err(rusqlite::Error::InvalidParameterName(stmt.parameter_name(slot).unwrap_or("?").to_owned()));
        };
        let value: &dyn ToSql = match value {
            Val::Text(t) => t,
            Val::Int(i) => i,
        };
        stmt.raw_bind_parameter(slot, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, Direct) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE channels (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
                 CREATE TABLE c (p TEXT NOT NULL REFERENCES channels (id), n INTEGER NOT NULL);
                 INSERT INTO channels VALUES ('a', 5), ('b', 9);",
            )
            .unwrap();
        let direct = Direct::open(&path, SqliteSync::Normal).unwrap();
        (dir, direct)
    }

    #[test]
    fn it_runs_with_the_pools_settings_and_bounds_the_wal() {
        let (dir, _) = scratch();
        let direct = Direct::open(&dir.path().join("t.db"), SqliteSync::Normal).unwrap();
        let pragma = |name: &str| direct.conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(pragma("synchronous"), 1, "NORMAL (SQLite's default is FULL)");
        assert_eq!(pragma("foreign_keys"), 1);
        assert_eq!(pragma("wal_autocheckpoint"), WAL_BOUND_PAGES);
        assert_eq!(pragma("journal_size_limit"), super::super::WAL_FILE_LIMIT);
        assert_eq!(pragma("busy_timeout"), 10_000);
    }

    #[test]
    fn parameters_bind_by_name_not_position() {
        let (_dir, mut direct) = scratch();
        let mut script = Script::default();
        script.push("UPDATE channels SET seq = $2 WHERE id = $1", vec!["a".into(), 7i64.into()]);
        direct.commit(&script).unwrap();
        let mut seqs = direct.channel_seqs(&["a", "b", "gone"]).unwrap();
        seqs.sort();
        assert_eq!(seqs, vec![("a".to_owned(), 7), ("b".to_owned(), 9)]);
    }

    #[test]
    fn a_failing_statement_leaves_nothing_written() {
        let (_dir, mut direct) = scratch();
        let mut script = Script::default();
        script.push("UPDATE channels SET seq = $1 WHERE id = 'a'", vec![100i64.into()]);
        // Breaks the foreign key: the whole transaction goes.
        script.push("INSERT INTO c VALUES ($1, 1)", vec!["nobody".into()]);
        assert!(direct.commit(&script).is_err());
        assert!(direct.conn.is_autocommit());
        assert_eq!(direct.channel_seqs(&["a"]).unwrap(), vec![("a".to_owned(), 5)]);
        // A missing bind is an error, not a NULL.
        let mut script = Script::default();
        script.push("UPDATE channels SET seq = $2 WHERE id = $1", vec!["a".into()]);
        assert!(direct.commit(&script).is_err());
        assert_eq!(direct.channel_seqs(&["a"]).unwrap(), vec![("a".to_owned(), 5)]);
    }
}
