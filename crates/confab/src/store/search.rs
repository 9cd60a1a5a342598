//! Message search (PROTOCOL §6.1 `messages_search`): case-insensitive substring match in one
//! channel, newest first, served by a trigram index so that its cost follows the number of hits
//! rather than the size of the channel.
//!
//! A trigram index is dialect-specific, so it is not in the shared migrations:
//! [`Store::ensure_search_index`] creates it, idempotently, every time the store opens.
//! - SQLite: an FTS5 external-content table `messages_fts` over `messages.content` with the
//!   `trigram` tokenizer, kept in sync by triggers. A query becomes the phrase of its trigrams,
//!   which matches exactly the (Unicode case-folded) substrings, read newest rowid first.
//! - PostgreSQL: a `pg_trgm` GIN index on `messages.content` serving `ILIKE`. Without the
//!   extension the same query still answers, by scanning the channel, and a warning is logged.
//!
//! A trigram index cannot serve a query of one or two characters: those scan only the newest
//! [`SCAN_WINDOW`] messages of the channel. On PostgreSQL that window is also tried first for longer
//! queries, because a common term fills a page from the newest messages at once, whereas the GIN
//! index would hand back every message containing it.

use sqlx::PgPool;

use super::{
    Backend, Store, WritePool,
    messages::{Bind, MessageRow},
};
use crate::error::Result;

/// How many of a channel's newest messages a query that no index can serve looks at.
pub const SCAN_WINDOW: i64 = 5000;

/// Shortest query a trigram index can serve, in characters.
const TRIGRAM: usize = 3;

/// The SQLite full-text index and the triggers that keep it equal to `messages.content`. The
/// `'delete'` command of an external-content table must be given the old content, which the
/// triggers have. Foreign-key cascades (channel and thread deletion) fire them too.
const SQLITE_FTS: [&str; 4] = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content, content = 'messages', tokenize = 'trigram')",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN \
     INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN \
     INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages BEGIN \
     INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content); \
     INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content); END",
];

impl Store {
    /// Creates the search index of the backend if it is missing (see the module docs). On SQLite a
    /// newly created index is filled from the stored messages in the same transaction, so a crash
    /// cannot leave it half built. `VACUUM` may renumber the rowids the SQLite index refers to;
    /// after one, rebuild it with `INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')`.
    pub async fn ensure_search_index(&self) -> Result<()> {
        match self.backend() {
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
                    sqlx::query("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')").execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Backend::Postgres(pool) => pg_trigram_index(pool).await?,
        }
        Ok(())
    }

    /// Up to `limit` messages of a channel (thread `""`) or thread whose content contains `query`,
    /// ignoring case, newest first.
    pub async fn messages_search(
        &self,
        channel_id: &str,
        thread_id: &str,
        query: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let short = query.chars().count() < TRIGRAM;
        let pattern = like_pattern(query);
        let scope = [Bind::Text(channel_id), Bind::Text(thread_id)];
        match self.backend() {
            Backend::Sqlite(_) if short => self.search_window(&scope, "LIKE", &pattern, limit).await,
            Backend::Sqlite(_) => {
                // CROSS JOIN keeps the full-text table as the outer loop, read newest rowid first, so
                // the scan stops after `limit` hits in this channel.
                let tail = "WHERE m.rowid IN (SELECT messages_fts.rowid FROM messages_fts \
                     CROSS JOIN messages x ON x.rowid = messages_fts.rowid \
                     WHERE messages_fts MATCH $3 AND x.channel_id = $1 AND x.thread_id = $2 \
                     ORDER BY messages_fts.rowid DESC LIMIT $4) ORDER BY m.seq DESC";
                let phrase = fts_phrase(query);
                let binds = [Bind::Text(channel_id), Bind::Text(thread_id), Bind::Text(&phrase), Bind::Int(limit)];
                self.select_messages(tail, &binds).await
            }
            Backend::Postgres(_) => {
                let recent = self.search_window(&scope, "ILIKE", &pattern, limit).await?;
                if short || recent.len() as i64 >= limit {
                    return Ok(recent);
                }
                // `seq + 0` hides the (channel, thread, seq) index from ORDER BY: walking it backwards
                // would read the whole channel for a rare term; the trigram index finds the few hits.
                let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.content ILIKE $3 \
                     ORDER BY m.seq + 0 DESC LIMIT $4";
                let binds = [Bind::Text(channel_id), Bind::Text(thread_id), Bind::Text(&pattern), Bind::Int(limit)];
                self.select_messages(tail, &binds).await
            }
        }
    }

    /// Matches of the `LIKE`-style `op` among the newest [`SCAN_WINDOW`] messages of `scope`
    /// (channel id, thread id), newest first.
    async fn search_window(
        &self,
        scope: &[Bind<'_>; 2],
        op: &str,
        pattern: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let tail = format!(
            "WHERE m.id IN (SELECT w.id FROM (SELECT id, seq, content FROM messages \
             WHERE channel_id = $1 AND thread_id = $2 ORDER BY seq DESC LIMIT $3) w \
             WHERE w.content {op} $4 ESCAPE '\\' ORDER BY w.seq DESC LIMIT $5) ORDER BY m.seq DESC"
        );
        let [channel, thread] = scope;
        let binds = [*channel, *thread, Bind::Int(SCAN_WINDOW), Bind::Text(pattern), Bind::Int(limit)];
        self.select_messages(&tail, &binds).await
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
