//! Per-account read positions (PROTOCOL §6.7): last-read message id and its seq, per channel or
//! thread, and the unread counts they imply.
//!
//! A count is the number of messages created after the stored seq, so it stays right when the
//! last-read message is deleted. Counting is an index range on `messages (channel_id, thread_id,
//! seq)` above that seq — its cost follows the unread messages, never the size of the channel —
//! and the total comes from the `message_counts` row the writer keeps.
//!
//! The unread mention count (a Confab extension, `mention_count`) reads the account's range of the
//! `mentions` index — the rows `pings_get` reads — and keeps those above each scope's read seq: its
//! cost follows the number of messages that ever pinged the account or its roles, never the
//! number of messages, and it is one query for every scope.

use std::collections::HashMap;

use super::{
    Store, dispatch,
    messages::{Bind, bind_all},
    pings::pinged,
};
use crate::error::Result;

/// A read position and the counts it implies, for one channel or thread.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unread {
    /// The last-read message id, `None` when the account never read there.
    pub last_read: Option<String>,
    pub unread: i64,
    pub total: i64,
    /// Unread messages that ping the account, as `pings_get` counts them.
    pub mentions: i64,
}

/// A channel (thread `""`) or thread: `(channel_id, thread_id)`.
pub type Scope = (String, String);

const TOTALS: &str = "SELECT channel_id, thread_id, total FROM message_counts";

const READS: &str = "SELECT r.channel_id, r.thread_id, r.last_read_id, (SELECT COUNT(*) FROM messages m \
     WHERE m.channel_id = r.channel_id AND m.thread_id = r.thread_id AND m.seq > r.last_read_seq) \
     FROM read_state r WHERE r.user_id = $1";

impl Store {
    /// Sets the read position of `user_id` in a channel (thread `""`) or thread.
    pub async fn mark_read(
        &self,
        user_id: &str,
        channel_id: &str,
        thread_id: &str,
        message_id: Option<&str>,
        seq: i64,
    ) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO read_state (user_id, channel_id, thread_id, last_read_id, last_read_seq) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, channel_id, thread_id) \
                 DO UPDATE SET last_read_id = excluded.last_read_id, last_read_seq = excluded.last_read_seq",
            )
            .bind(user_id)
            .bind(channel_id)
            .bind(thread_id)
            .bind(message_id)
            .bind(seq)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The read state of `user_id` (holding `role_ids`) in one channel (thread `""`) or thread.
    pub async fn unread(
        &self,
        user_id: &str,
        role_ids: &[String],
        channel_id: &str,
        thread_id: &str,
    ) -> Result<Unread> {
        let totals: Vec<(String, String, i64)> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{TOTALS} WHERE channel_id = $1 AND thread_id = $2")))
                .bind(channel_id)
                .bind(thread_id)
                .fetch_all(pool)
                .await?
        });
        let reads: Vec<(String, String, Option<String>, i64)> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{READS} AND r.channel_id = $2 AND r.thread_id = $3")))
                .bind(user_id)
                .bind(channel_id)
                .bind(thread_id)
                .fetch_all(pool)
                .await?
        });
        let mentions = self.unread_mentions(user_id, role_ids, Some((channel_id, thread_id))).await?;
        let scope = (channel_id.to_owned(), thread_id.to_owned());
        Ok(combine(totals, reads, mentions).remove(&scope).unwrap_or_default())
    }

    /// The read state of `user_id` (holding `role_ids`) in every channel and thread that has
    /// messages or a read position; any other is all zero. One query per table, whatever the
    /// number of channels.
    pub async fn unreads(&self, user_id: &str, role_ids: &[String]) -> Result<HashMap<Scope, Unread>> {
        let totals: Vec<(String, String, i64)> = dispatch!(self, pool => sqlx::query_as(TOTALS).fetch_all(pool).await?);
        let reads: Vec<(String, String, Option<String>, i64)> =
            dispatch!(self, pool => sqlx::query_as(READS).bind(user_id).fetch_all(pool).await?);
        let mentions = self.unread_mentions(user_id, role_ids, None).await?;
        Ok(combine(totals, reads, mentions))
    }

    /// Per scope (or in `only` that one), how many messages after the read position ping
    /// `user_id` or one of `role_ids`. Reads the account's rows of `mentions_by_target`, so it
    /// costs what `pings_get`'s `total` costs.
    async fn unread_mentions(
        &self,
        user_id: &str,
        role_ids: &[String],
        only: Option<(&str, &str)>,
    ) -> Result<Vec<(String, String, i64)>> {
        let mut binds = vec![Bind::Text(user_id)];
        let pinged = pinged(&mut binds, role_ids);
        let scope = match only {
            Some((channel_id, thread_id)) => {
                binds.extend([Bind::Text(channel_id), Bind::Text(thread_id)]);
                format!(" AND m.channel_id = ${} AND m.thread_id = ${}", binds.len() - 1, binds.len())
            }
            None => String::new(),
        };
        let sql = format!(
            "SELECT m.channel_id, m.thread_id, COUNT(DISTINCT m.message_id) FROM mentions m \
             LEFT JOIN read_state r ON r.user_id = $1 AND r.channel_id = m.channel_id AND r.thread_id = m.thread_id \
             WHERE {pinged} AND m.seq > COALESCE(r.last_read_seq, -1){scope} GROUP BY m.channel_id, m.thread_id"
        );
        Ok(dispatch!(self, pool => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())), &binds).fetch_all(pool).await?
        }))
    }
}

/// Joins message totals with read positions and unread mention counts: a scope never read is
/// unread in full.
fn combine(
    totals: Vec<(String, String, i64)>,
    reads: Vec<(String, String, Option<String>, i64)>,
    mentions: Vec<(String, String, i64)>,
) -> HashMap<Scope, Unread> {
    let mut map: HashMap<Scope, Unread> = totals
        .into_iter()
        .map(|(channel, thread, total)| {
            ((channel, thread), Unread { last_read: None, unread: total, total, mentions: 0 })
        })
        .collect();
    for (channel, thread, last_read, unread) in reads {
        let entry = map.entry((channel, thread)).or_default();
        entry.last_read = last_read;
        entry.unread = unread;
    }
    for (channel, thread, count) in mentions {
        map.entry((channel, thread)).or_default().mentions = count;
    }
    map
}
