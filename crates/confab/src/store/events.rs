//! The per-channel event log behind `resume` (PROTOCOL §7.1, §7.2): every channel-scoped event as
//! it was broadcast, keyed by (channel, seq), pruned to a bounded window.

use super::{Store, dispatch};
use crate::error::Result;

impl Store {
    /// Up to `limit` logged events of a channel with seq > `after`, in seq order, read in one
    /// statement. Events about messages deleted since come without their payload (`None`): they are
    /// not replayed, but they are part of the log a resume covers. Deletions keep theirs.
    pub async fn events_after(&self, channel_id: &str, after: i64, limit: i64) -> Result<Vec<(i64, Option<String>)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT e.seq, CASE WHEN e.message_id IS NULL OR e.kind = 'message_delete' \
                      OR EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id) THEN e.payload END \
                 FROM events e WHERE e.channel_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
            )
            .bind(channel_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every channel's last seq, in one statement (a cluster node's start and tail sync).
    pub async fn channel_seqs(&self) -> Result<Vec<(String, i64)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as("SELECT id, seq FROM channels").fetch_all(pool).await?
        }))
    }

    /// The oldest seq still in a channel's log.
    pub async fn events_min_seq(&self, channel_id: &str) -> Result<Option<i64>> {
        let row: (Option<i64>,) = dispatch!(self, pool => {
            sqlx::query_as("SELECT MIN(seq) FROM events WHERE channel_id = $1").bind(channel_id).fetch_one(pool).await?
        });
        Ok(row.0)
    }

    /// Drops events older than `max_age_s` or beyond the newest `keep` of their channel.
    pub async fn events_prune(&self, keep: i64, max_age_s: f64) -> Result<u64> {
        let cutoff = super::now() - max_age_s;
        let done = dispatch!(self, pool => {
            let by_age = sqlx::query("DELETE FROM events WHERE created_at < $1").bind(cutoff).execute(pool).await?;
            let by_count = sqlx::query(
                "DELETE FROM events WHERE seq <= (SELECT c.seq FROM channels c WHERE c.id = events.channel_id) - $1",
            )
            .bind(keep)
            .execute(pool)
            .await?;
            by_age.rows_affected() + by_count.rows_affected()
        });
        Ok(done)
    }
}
