//! Message history reads (PROTOCOL §6.1). Writes go through the group-commit [`super::writer`].
//!
//! Every read is an index range on `(channel_id, thread_id, seq)` (or the reply / pinned indexes),
//! so its cost does not grow with the size of the channel — except `OFFSET`, whose cost grows with
//! the offset the client asks for, and the history index of `messages_around`.

use std::collections::HashMap;

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
    /// (emoji, username) in the order the reactions were added; filled by the read methods.
    #[sqlx(skip)]
    pub reactions: Vec<(String, String)>,
}

const SELECT: &str = "SELECT m.id, m.channel_id, m.thread_id, m.user_id, \
     COALESCE(u.username, m.author_name) AS author, m.content, m.created_at, m.seq, m.edited, m.pinned, \
     m.reply_to, COALESCE(ru.username, r.author_name) AS reply_user, m.ping, m.extra \
     FROM messages m LEFT JOIN users u ON u.id = m.user_id \
     LEFT JOIN messages r ON r.id = m.reply_to LEFT JOIN users ru ON ru.id = r.user_id";

/// Binds each of `$binds` (a `&[Bind]`) to the query `$q`, in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::store::messages::Bind::Text(t) => q.bind(*t),
                $crate::store::messages::Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(super) use bind_all;

impl Store {
    /// Messages matching `tail` (the SQL after the shared `SELECT … FROM messages m …` joins, using
    /// `m` for the message), with their reactions.
    pub(super) async fn select_messages(&self, tail: &str, binds: &[Bind<'_>]) -> Result<Vec<MessageRow>> {
        let sql = format!("{SELECT} {tail}");
        let rows: Vec<MessageRow> = dispatch!(self, pool => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())), binds).fetch_all(pool).await?
        });
        self.with_reactions(rows).await
    }

    /// Fills `reactions` for a page of messages with one query.
    async fn with_reactions(&self, mut rows: Vec<MessageRow>) -> Result<Vec<MessageRow>> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let placeholders: Vec<String> = (1..=rows.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT r.message_id, r.emoji, COALESCE(u.username, '') FROM reactions r \
             LEFT JOIN users u ON u.id = r.user_id WHERE r.message_id IN ({}) ORDER BY r.created_at",
            placeholders.join(", ")
        );
        let found: Vec<(String, String, String)> = dispatch!(self, pool => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for row in &rows {
                q = q.bind(&row.id);
            }
            q.fetch_all(pool).await?
        });
        let mut by_message: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (message, emoji, user) in found {
            by_message.entry(message).or_default().push((emoji, user));
        }
        for row in &mut rows {
            if let Some(r) = by_message.remove(&row.id) {
                row.reactions = r;
            }
        }
        Ok(rows)
    }

    /// Up to `limit` messages before the newest `skip`, returned oldest first.
    pub async fn messages_page(
        &self,
        channel_id: &str,
        thread_id: &str,
        skip: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 ORDER BY m.seq DESC LIMIT $3 OFFSET $4";
        let binds = [Bind::Text(channel_id), Bind::Text(thread_id), Bind::Int(limit), Bind::Int(skip)];
        let mut rows = self.select_messages(tail, &binds).await?;
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
        let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.seq < \
             (SELECT b.seq FROM messages b WHERE b.id = $3 AND b.channel_id = $1 AND b.thread_id = $2) \
             ORDER BY m.seq DESC LIMIT $4";
        let binds = [Bind::Text(channel_id), Bind::Text(thread_id), Bind::Text(before_id), Bind::Int(limit)];
        let mut rows = self.select_messages(tail, &binds).await?;
        rows.reverse();
        Ok(rows)
    }

    /// Up to `limit` messages newer than seq `after`, oldest first.
    pub async fn messages_after_seq(
        &self,
        channel_id: &str,
        thread_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.seq > $3 ORDER BY m.seq LIMIT $4";
        self.select_messages(tail, &[Bind::Text(channel_id), Bind::Text(thread_id), Bind::Int(after), Bind::Int(limit)])
            .await
    }

    /// Up to `limit` messages older than seq `before`, oldest first.
    pub async fn messages_before_seq(
        &self,
        channel_id: &str,
        thread_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.seq < $3 ORDER BY m.seq DESC LIMIT $4";
        let binds = [Bind::Text(channel_id), Bind::Text(thread_id), Bind::Int(before), Bind::Int(limit)];
        let mut rows = self.select_messages(tail, &binds).await?;
        rows.reverse();
        Ok(rows)
    }

    /// How many messages of a channel or thread are older than seq `before` (a history index).
    pub async fn messages_count_before(&self, channel_id: &str, thread_id: &str, before: i64) -> Result<i64> {
        let row: (i64,) = dispatch!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM messages WHERE channel_id = $1 AND thread_id = $2 AND seq < $3")
                .bind(channel_id)
                .bind(thread_id)
                .bind(before)
                .fetch_one(pool)
                .await?
        });
        Ok(row.0)
    }

    /// Replies to message `id` in the same channel or thread, oldest first.
    pub async fn messages_replying(
        &self,
        channel_id: &str,
        thread_id: &str,
        id: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let tail = "WHERE m.reply_to = $1 AND m.channel_id = $2 AND m.thread_id = $3 ORDER BY m.seq LIMIT $4";
        self.select_messages(tail, &[Bind::Text(id), Bind::Text(channel_id), Bind::Text(thread_id), Bind::Int(limit)])
            .await
    }

    /// Pinned messages of a channel or thread, newest first.
    pub async fn messages_pinned(&self, channel_id: &str, thread_id: &str) -> Result<Vec<MessageRow>> {
        let tail = "WHERE m.channel_id = $1 AND m.thread_id = $2 AND m.pinned = TRUE ORDER BY m.seq DESC LIMIT 500";
        self.select_messages(tail, &[Bind::Text(channel_id), Bind::Text(thread_id)]).await
    }

    /// One message, only if it is in the given channel or thread.
    pub async fn message_in(&self, channel_id: &str, thread_id: &str, id: &str) -> Result<Option<MessageRow>> {
        let tail = "WHERE m.id = $1 AND m.channel_id = $2 AND m.thread_id = $3";
        Ok(self.select_messages(tail, &[Bind::Text(id), Bind::Text(channel_id), Bind::Text(thread_id)]).await?.pop())
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

    /// Distinct emoji on a message, and whether `user_id` already reacted with `emoji`.
    pub async fn reaction_state(&self, message_id: &str, emoji: &str, user_id: &str) -> Result<(i64, bool)> {
        let distinct: (i64,) = dispatch!(self, pool => {
            sqlx::query_as("SELECT COUNT(DISTINCT emoji) FROM reactions WHERE message_id = $1")
                .bind(message_id)
                .fetch_one(pool)
                .await?
        });
        let mine: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT emoji FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3")
                .bind(message_id)
                .bind(emoji)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok((distinct.0, mine.is_some()))
    }

    /// Whether anyone reacted to a message with `emoji`.
    pub async fn message_has_emoji(&self, message_id: &str, emoji: &str) -> Result<bool> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT emoji FROM reactions WHERE message_id = $1 AND emoji = $2 LIMIT 1")
                .bind(message_id)
                .bind(emoji)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some())
    }

    /// Forgets idempotency nonces older than the window; they can no longer match anything.
    pub async fn nonces_prune(&self, window_s: f64) -> Result<u64> {
        let cutoff = super::now() - window_s;
        Ok(dispatch!(self, pool => {
            sqlx::query("DELETE FROM nonces WHERE created_at <= $1").bind(cutoff).execute(pool).await?.rows_affected()
        }))
    }
}

/// A bind value for the shared message query builder.
#[derive(Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}
