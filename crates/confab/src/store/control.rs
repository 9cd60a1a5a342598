//! The cluster's control log (`cluster_events`, docs/cluster.md): effects on live connections
//! that every node applies, numbered without a hole so a node that missed one on the broker finds
//! it here. Written only in cluster mode, so only on PostgreSQL; the statements run on both.

use super::{Store, dispatch};
use crate::error::Result;

/// How long control events are kept: a node that was away longer starts from the head anyway.
const RETENTION_S: f64 = 86_400.0;

impl Store {
    /// Appends an effect made by `node`; returns its seq. The counter row is bumped in the same
    /// statement, so its lock is held to the commit and seqs commit in order.
    pub async fn control_append(&self, node: &str, body: &str) -> Result<i64> {
        let row: (i64,) = dispatch!(self, pool => {
            sqlx::query_as(
                "WITH head AS (UPDATE cluster_head SET seq = seq + 1 WHERE id = 1 RETURNING seq) \
                 INSERT INTO cluster_events (seq, node, body, created_at) SELECT seq, $1, $2, $3 FROM head \
                 RETURNING seq",
            )
            .bind(node)
            .bind(body)
            .bind(super::now())
            .fetch_one(pool)
            .await?
        });
        Ok(row.0)
    }

    /// Up to `limit` control events with seq > `after`, in order: (seq, node, body).
    pub async fn control_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as("SELECT seq, node, body FROM cluster_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// The last committed control seq.
    pub async fn control_head(&self) -> Result<i64> {
        let row: (i64,) = dispatch!(self, pool => {
            sqlx::query_as("SELECT seq FROM cluster_head WHERE id = 1").fetch_one(pool).await?
        });
        Ok(row.0)
    }

    /// Drops control events older than a day.
    pub async fn control_prune(&self) -> Result<u64> {
        let cutoff = super::now() - RETENTION_S;
        Ok(dispatch!(self, pool => {
            sqlx::query("DELETE FROM cluster_events WHERE created_at < $1").bind(cutoff).execute(pool).await?.rows_affected()
        }))
    }
}
