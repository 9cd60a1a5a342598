//! The cluster's control log (`cluster_events`, docs/cluster.md): effects on live connections
//! that every node applies, numbered without a hole so a node that missed one on the broker finds
//! it here. Written only in cluster mode, so only on PostgreSQL; the reads run on both.

use super::{Store, dispatch};
use crate::error::Result;

/// How long control events are kept: a node that was away longer starts from the head anyway.
const RETENTION_S: f64 = 86_400.0;

impl Store {
    /// Appends effects made by `node`, in order, in one statement; returns the first one's seq
    /// (the others follow without a hole). The counter row is bumped in the same statement, so its
    /// lock is held to the commit and seqs commit in order.
    pub async fn control_append(&self, node: &str, bodies: &[String]) -> Result<i64> {
        let (first,): (i64,) = sqlx::query_as(
            "WITH head AS (UPDATE cluster_head SET seq = seq + cardinality($2::text[]) WHERE id = 1 \
                           RETURNING seq - cardinality($2::text[]) AS base), \
                  rows AS (INSERT INTO cluster_events (seq, node, body, created_at) \
                           SELECT head.base + b.ord, $1, b.body, $3 \
                           FROM head, unnest($2::text[]) WITH ORDINALITY AS b(body, ord) RETURNING seq) \
             SELECT MIN(seq) FROM rows",
        )
        .bind(node)
        .bind(bodies)
        .bind(super::now())
        .fetch_one(self.pg()?)
        .await?;
        Ok(first)
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
