//! Message history reads (PROTOCOL §6.1). Writes go through the group-commit [`super::writer`].
//!
//! Every read is an index range on `(channel_id, thread_id, seq)`, so its cost does not grow with
//! the size of the channel (except `OFFSET`, whose cost grows with the offset the client asks for).

use super::{Store, dispatch};
use crate::error::Result;

/// A stored message with its author's and reply target's current names.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub channel_id: String,
    pub thread_id: String,
    pub user_id: Option<String>,
    pub author: String,
    pub content: String,
    pub created_at: f64,
    pub seq: i64,
    pub edited: bool,
    pub pinned: bool,
    pub reply_to: Option<String>,
    pub reply_user: Option<String>,
    pub ping: Option<bool>,
    pub extra: Option<String>,
}

const SELECT: &str = "SELECT m.id, m.channel_id, m.thread_id, m.user_id, \
     COALESCE(u.username, m.author_name) AS author, m.content, m.created_at, m.seq, m.edited, m.pinned, \
     m.reply_to, COALESCE(ru.username, r.author_name) AS reply_user, m.ping, m.extra \
     FROM messages m LEFT JOIN users u ON u.id = m.user_id \
     LEFT JOIN messages r ON r.id = m.reply_to LEFT JOIN users ru ON ru.id = r.user_id";

impl Store {
    /// Up to `limit` messages before the newest `skip`, returned oldest first.
    pub async fn messages_page(
        &self,
        channel_id: &str,
        thread_id: &str,
        skip: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let sql =
            format!("{SELECT} WHERE m.channel_id = $1 AND m.thread_id = $2 ORDER BY m.seq DESC LIMIT $3 OFFSET $4");
        let mut rows: Vec<MessageRow> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(channel_id).bind(thread_id).bind(limit).bind(skip).fetch_all(pool).await?
        });
        rows.reverse();
        Ok(rows)
    }

    /// Up to `limit` messages older than message `before_id`, oldest first; `[]` for an unknown id.
    pub async fn messages_before(
        &self,
        channel_id: &str,
        thread_id: &str,
        before_id: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let sql = format!(
            "{SELECT} WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.seq < \
             (SELECT b.seq FROM messages b WHERE b.id = $3 AND b.channel_id = $1 AND b.thread_id = $2) \
             ORDER BY m.seq DESC LIMIT $4"
        );
        let mut rows: Vec<MessageRow> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(channel_id).bind(thread_id).bind(before_id).bind(limit).fetch_all(pool).await?
        });
        rows.reverse();
        Ok(rows)
    }

    /// One message, only if it is in the given channel or thread.
    pub async fn message_in(&self, channel_id: &str, thread_id: &str, id: &str) -> Result<Option<MessageRow>> {
        let sql = format!("{SELECT} WHERE m.id = $1 AND m.channel_id = $2 AND m.thread_id = $3");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).bind(channel_id).bind(thread_id).fetch_optional(pool).await?
        }))
    }

    /// The newest message of a channel or thread: (id, seq, timestamp).
    pub async fn message_latest(&self, channel_id: &str, thread_id: &str) -> Result<Option<(String, i64, f64)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT id, seq, created_at FROM messages WHERE channel_id = $1 AND thread_id = $2 ORDER BY seq DESC LIMIT 1",
            )
            .bind(channel_id)
            .bind(thread_id)
            .fetch_optional(pool)
            .await?
        }))
    }
}

impl Store {
    /// Forgets idempotency nonces older than the window; they can no longer match anything.
    pub async fn nonces_prune(&self, window_s: f64) -> Result<u64> {
        let cutoff = super::now() - window_s;
        Ok(dispatch!(self, pool => {
            sqlx::query("DELETE FROM nonces WHERE created_at <= $1").bind(cutoff).execute(pool).await?.rows_affected()
        }))
    }
}
