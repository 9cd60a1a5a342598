//! Message search (PROTOCOL §6.1 `messages_search`): case-insensitive substring match in one
//! channel, newest first, served by a trigram index so that its cost follows the number of hits
//! rather than the size of the channel.
//!
//! A trigram index is dialect-specific, so it is not in the shared migrations:
//! [`ensure_search_index`] creates it, idempotently, every time the store opens.
//! - SQLite: an FTS5 external-content table `messages_fts` over `messages.content` with the
//!   `trigram` tokenizer. A query becomes the phrase of its trigrams, which matches exactly the
//!   (Unicode case-folded) substrings, read newest rowid first. New messages are indexed by the
//!   writer in steps, off the commit path; until then a search matches them from the queue.
//! - PostgreSQL: a `pg_trgm` GIN index on `messages.content` serving `ILIKE`. Without the
//!   extension the same query still answers, by scanning the channel, and a warning is logged.
//!
//! A query of one or two characters cannot use a trigram index: it searches only the newest
//! [`SCAN_WINDOW`] messages of the channel. A longer query first reads the newest [`PROBE`]
//! messages, stopping at the last hit it needs. That is the whole answer for a common term (a
//! page fills at once, where an index would hand back every message containing it) and for a
//! channel no larger than the probe; otherwise the trigram index answers. One case stays slow on
//! SQLite, whose full-text index spans all channels: a term rare in a large channel but common in
//! newer messages of other channels, which the index walks past.

use futures_util::TryStreamExt;
use sqlx::{PgPool, SqlitePool};

use super::{
    Backend, Store, WritePool, dispatch,
    messages::{Bind, MessageRow},
};
use crate::error::Result;

/// How many of a channel's newest messages a query too short for a trigram index searches.
pub const SCAN_WINDOW: i64 = 5000;

/// How many of a channel's newest messages are read before asking the trigram index. Small, since
/// a rare term pays it on top of the index lookup; big enough that a term common in the channel
/// fills a page from it.
pub const PROBE: i64 = 500;

/// Shortest query a trigram index can serve, in characters.
const TRIGRAM: usize = 3;

/// The SQLite full-text index, its queue of messages not indexed yet, and the triggers that keep
/// both equal to `messages.content`. A new message only queues its rowid (one integer B-tree
/// insert): tokenising its trigrams inside the message's own transaction doubled the cost of a
/// group commit, so the writer indexes the queue in large steps instead ([`index_step`]), when it
/// is idle or the queue is long. Deleting or editing a message still queued leaves the index
/// alone (the step reads the current content). The `'delete'` command of an external-content
/// table must be given the old content, which the triggers have. Foreign-key cascades (channel
/// and thread deletion) fire them too. Recreated at every open, so older databases, whose insert
/// trigger indexed synchronously, move to the queue.
const SQLITE_FTS: [&str; 8] = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content, content = 'messages', tokenize = 'trigram')",
    "CREATE TABLE IF NOT EXISTS messages_fts_pending (message_rowid INTEGER PRIMARY KEY)",
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN \
     INSERT INTO messages_fts_pending (message_rowid) VALUES (new.rowid); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN \
     INSERT INTO messages_fts (messages_fts, rowid, content) SELECT 'delete', old.rowid, old.content \
     WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_rowid = old.rowid); \
     DELETE FROM messages_fts_pending WHERE message_rowid = old.rowid; END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages \
     WHEN NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_rowid = old.rowid) BEGIN \
     INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content); \
     INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content); END",
];

/// Most queued messages one [`index_step`] adds to the SQLite full-text index: large enough that the
/// index's per-transaction cost is shared by many messages, small enough that a step holds up the
/// writer for a few milliseconds only.
pub(super) const INDEX_STEP: i64 = 256;

/// How many messages wait in the SQLite search queue (rows written before the writer started, or
/// by an earlier run that stopped before indexing them).
pub(super) async fn index_backlog(pool: &SqlitePool) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages_fts_pending").fetch_one(pool).await?;
    Ok(n)
}

/// Adds up to [`INDEX_STEP`] queued messages, oldest first, to the SQLite full-text index in one
/// transaction. Returns how many were indexed.
pub(super) async fn index_step(conn: &mut sqlx::SqliteConnection) -> Result<i64> {
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO messages_fts (rowid, content) SELECT m.rowid, m.content FROM messages m \
         JOIN (SELECT message_rowid FROM messages_fts_pending ORDER BY message_rowid LIMIT $1) p \
         ON m.rowid = p.message_rowid",
    )
    .bind(INDEX_STEP)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(
        "DELETE FROM messages_fts_pending WHERE message_rowid IN \
         (SELECT message_rowid FROM messages_fts_pending ORDER BY message_rowid LIMIT $1)",
    )
    .bind(INDEX_STEP)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() as i64)
}

/// Creates the search index of the backend if it is missing (see the module docs). On SQLite a
/// newly created index is filled from the stored messages in the same transaction, so a crash
/// cannot leave it half built. `VACUUM` may renumber the rowids the SQLite index refers to;
/// after one, rebuild it with `INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')`.
pub(super) async fn ensure_search_index(backend: &Backend) -> Result<()> {
    match backend {
        Backend::Sqlite(pool) => {
            let mut tx = pool.begin_write().await?;
            let existed: Option<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'")
                    .fetch_optional(&mut *tx)
                    .await?;
            for statement in SQLITE_FTS {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            if existed.is_none() {
                // A new index is filled from every stored message: nothing is left to queue.
                sqlx::query("DELETE FROM messages_fts_pending").execute(&mut *tx).await?;
                sqlx::query("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')").execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Backend::Postgres(pool) => pg_trigram_index(pool).await?,
    }
    Ok(())
}

impl Store {
    /// Messages stored but not in the search index yet (SQLite; always 0 on PostgreSQL, whose
    /// index the database keeps itself). Searches find them all the same.
    pub async fn search_backlog(&self) -> Result<i64> {
        match self.backend() {
            Backend::Sqlite(pool) => index_backlog(pool).await,
            Backend::Postgres(_) => Ok(0),
        }
    }

    /// Up to `limit` messages of a channel (thread `""`) or thread whose content contains `query`,
    /// ignoring case, newest first.
    ///
    /// The newest messages are looked at first (see the module docs); that answers for good when it
    /// fills the page, covers the whole channel, or the query is too short for a trigram index.
    pub async fn messages_search(
        &self,
        channel_id: &str,
        thread_id: &str,
        query: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let short = query.chars().count() < TRIGRAM;
        let window = if short { SCAN_WINDOW } else { PROBE };
        let (recent, whole_channel) = self.search_window(channel_id, thread_id, query, window, limit).await?;
        if recent.len() as i64 >= limit || whole_channel || short {
            if recent.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders: Vec<String> = (1..=recent.len()).map(|i| format!("${i}")).collect();
            let tail = format!("WHERE m.id IN ({}) ORDER BY m.seq DESC", placeholders.join(", "));
            let binds: Vec<Bind<'_>> = recent.iter().map(|id| Bind::Text(id)).collect();
            return self.select_messages(&tail, &binds).await;
        }
        match self.backend() {
            Backend::Sqlite(pool) => {
                // Messages still queued for the index are matched here; the index answers the rest.
                let mut ids = self.queued_hits(pool, channel_id, thread_id, query).await?;
                // CROSS JOIN keeps the full-text table as the outer loop, read newest rowid first, so
                // the scan stops after `limit` hits in this channel.
                let indexed: Vec<(String,)> = sqlx::query_as(
                    "SELECT x.id FROM messages_fts CROSS JOIN messages x ON x.rowid = messages_fts.rowid \
                     WHERE messages_fts MATCH $3 AND x.channel_id = $1 AND x.thread_id = $2 \
                     ORDER BY messages_fts.rowid DESC LIMIT $4",
                )
                .bind(channel_id)
                .bind(thread_id)
                .bind(fts_phrase(query))
                .bind(limit)
                .fetch_all(pool)
                .await?;
                ids.extend(indexed.into_iter().map(|(id,)| id));
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
                let tail = format!("WHERE m.id IN ({}) ORDER BY m.seq DESC LIMIT {limit}", placeholders.join(", "));
                let binds: Vec<Bind<'_>> = ids.iter().map(|id| Bind::Text(id)).collect();
                self.select_messages(&tail, &binds).await
            }
            // `seq + 0` hides the (channel, thread, seq) index from ORDER BY: walking it backwards
            // would read the whole channel for a rare term; the trigram index finds the few hits.
            Backend::Postgres(_) => {
                let needle = like_pattern(query);
                let binds = [Bind::Text(channel_id), Bind::Text(thread_id), Bind::Text(&needle), Bind::Int(limit)];
                let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.content ILIKE $3 \
                            ORDER BY m.seq + 0 DESC LIMIT $4";
                self.select_messages(tail, &binds).await
            }
        }
    }

    /// Ids of the messages of a channel or thread that wait in the SQLite search queue and contain
    /// `query`, compared as [`Store::search_window`] does. The queue is short: the writer empties it
    /// whenever it is idle and in steps whenever it grows.
    async fn queued_hits(
        &self,
        pool: &SqlitePool,
        channel_id: &str,
        thread_id: &str,
        query: &str,
    ) -> Result<Vec<String>> {
        let needle = query.to_lowercase();
        let queued: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.id, m.content FROM messages_fts_pending p JOIN messages m ON m.rowid = p.message_rowid \
             WHERE m.channel_id = $1 AND m.thread_id = $2",
        )
        .bind(channel_id)
        .bind(thread_id)
        .fetch_all(pool)
        .await?;
        Ok(queued
            .into_iter()
            .filter(|(_, content)| content.to_lowercase().contains(&needle))
            .map(|(id, _)| id)
            .collect())
    }

    /// Ids of up to `limit` matches among the newest `window` messages of a channel or thread,
    /// newest first, and whether those were all its messages. The comparison is Unicode lowercase,
    /// as the trigram indexes fold case; reading stops at the `limit`-th hit.
    async fn search_window(
        &self,
        channel_id: &str,
        thread_id: &str,
        query: &str,
        window: i64,
        limit: i64,
    ) -> Result<(Vec<String>, bool)> {
        let needle = query.to_lowercase();
        let mut hits = Vec::new();
        let mut seen: i64 = 0;
        dispatch!(self, pool => {
            let mut rows = sqlx::query_as::<_, (String, String)>(
                "SELECT id, content FROM messages WHERE channel_id = $1 AND thread_id = $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(channel_id)
            .bind(thread_id)
            .bind(window)
            .fetch(pool);
            while let Some((id, content)) = rows.try_next().await? {
                seen += 1;
                if content.to_lowercase().contains(&needle) {
                    hits.push(id);
                    if hits.len() as i64 >= limit {
                        return Ok((hits, false));
                    }
                }
            }
        });
        Ok((hits, seen < window))
    }
}

/// Creates the `pg_trgm` GIN index on `messages.content`, installing the extension if needed
/// (preferably in `public`, so that every schema of the database finds it). Failing that, search
/// keeps working without the index; the reason is logged.
async fn pg_trigram_index(pool: &PgPool) -> Result<()> {
    let mut schema = trgm_schema(pool).await?;
    if schema.is_none() {
        for create in
            ["CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public", "CREATE EXTENSION IF NOT EXISTS pg_trgm"]
        {
            // Two servers starting at once may race; whoever loses finds the extension below.
            if let Err(e) = sqlx::query(create).execute(pool).await {
                tracing::debug!(error = %e, "{create}");
            }
            schema = trgm_schema(pool).await?;
            if schema.is_some() {
                break;
            }
        }
    }
    let Some(schema) = schema else {
        tracing::warn!("pg_trgm cannot be installed: messages_search scans channels instead of using an index");
        return Ok(());
    };
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS messages_content_trgm ON messages USING gin (content \"{}\".gin_trgm_ops)",
        schema.replace('"', "\"\"")
    );
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
        tracing::warn!(error = %e, "creating the trigram index failed: messages_search scans channels instead");
    }
    Ok(())
}

/// The schema `pg_trgm` is installed in, if it is.
async fn trgm_schema(pool: &PgPool) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pg_trgm'",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.0))
}

/// `%query%` with the `LIKE` wildcards `%` and `_` and the escape character `\` escaped, so the
/// user's text matches only literally.
fn like_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    pattern.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The FTS5 query for `query` as one string: a phrase of its trigrams, with `"` doubled so that no
/// FTS5 syntax (operators, column filters) is interpreted.
fn fts_phrase(query: &str) -> String {
    format!("\"{}\"", query.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_matched_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("héllo"), "%héllo%");
        assert_eq!(fts_phrase("say \"hi\" OR x"), "\"say \"\"hi\"\" OR x\"");
    }
}
