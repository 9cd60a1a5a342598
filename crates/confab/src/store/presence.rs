//! Presence across the nodes of a cluster (`cluster_nodes`, `cluster_presence`; docs/cluster.md
//! "Presence"). Every transition of a user's connection count takes the user's advisory lock, so
//! "first connection anywhere" and "last connection anywhere" are each seen by exactly one node.
//! Cluster mode needs PostgreSQL (checked at start), so these statements are PostgreSQL's only.

use sqlx::{PgPool, Postgres, Transaction};

use super::{Backend, Store};
use crate::error::{Error, Result};

/// Serialises one user's presence changes across nodes, until the transaction ends.
const LOCK_USER: &str = "SELECT pg_advisory_xact_lock(hashtextextended('presence:' || $1, 0))";
/// The user's connections on every node (`bigint`, 0 without rows).
const TOTAL: &str = "SELECT COALESCE(SUM(conns), 0)::bigint FROM cluster_presence WHERE user_id = $1";

/// How a connection's arrival went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Counted; `first`: the user had no connection on any node before.
    Counted { first: bool },
    /// The user has `max` connections across the cluster already; nothing was counted.
    Full,
}

impl Store {
    /// The PostgreSQL pool; cluster mode has no other.
    pub(super) fn pg(&self) -> Result<&PgPool> {
        match self.backend() {
            Backend::Postgres(pool) => Ok(pool),
            Backend::Sqlite(_) => Err(Error::Internal("cluster presence needs PostgreSQL".into())),
        }
    }

    /// Locks the user's presence and returns its total over every node.
    async fn locked_total(tx: &mut Transaction<'static, Postgres>, user_id: &str) -> Result<i64> {
        sqlx::query(LOCK_USER).bind(user_id).execute(&mut **tx).await?;
        let (total,): (i64,) = sqlx::query_as(TOTAL).bind(user_id).fetch_one(&mut **tx).await?;
        Ok(total)
    }

    /// Counts one more connection of `user_id` on `node`, unless the user has `max` already.
    pub async fn presence_join(&self, node: &str, user_id: &str, max: usize) -> Result<Joined> {
        let mut tx = self.pg()?.begin().await?;
        let total = Self::locked_total(&mut tx, user_id).await?;
        if total >= max as i64 {
            return Ok(Joined::Full);
        }
        sqlx::query(
            "INSERT INTO cluster_presence (user_id, node_id, conns) VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, node_id) DO UPDATE SET conns = cluster_presence.conns + 1",
        )
        .bind(user_id)
        .bind(node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Joined::Counted { first: total == 0 })
    }

    /// Counts one connection of `user_id` fewer on `node` (all of them with `all`: the node is
    /// gone). `true` when the user has no connection left on any node.
    pub async fn presence_leave(&self, node: &str, user_id: &str, all: bool) -> Result<bool> {
        let mut tx = self.pg()?.begin().await?;
        let before = Self::locked_total(&mut tx, user_id).await?;
        let gone: Option<(i64,)> = if all {
            sqlx::query_as("DELETE FROM cluster_presence WHERE user_id = $1 AND node_id = $2 RETURNING conns")
                .bind(user_id)
                .bind(node)
                .fetch_optional(&mut *tx)
                .await?
        } else {
            sqlx::query_as(
                "UPDATE cluster_presence SET conns = conns - 1 WHERE user_id = $1 AND node_id = $2 RETURNING 1::bigint",
            )
            .bind(user_id)
            .bind(node)
            .fetch_optional(&mut *tx)
            .await?
        };
        sqlx::query("DELETE FROM cluster_presence WHERE user_id = $1 AND node_id = $2 AND conns <= 0")
            .bind(user_id)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before > 0 && before - gone.map_or(0, |(n,)| n) <= 0)
    }

    /// Marks `node` alive now; `false` when its row was gone (another node declared it dead), in
    /// which case the row is made again.
    pub async fn node_beat(&self, node: &str) -> Result<bool> {
        let pool = self.pg()?;
        // Heartbeats are on the database's clock, so every node judges them by the same one.
        let updated = sqlx::query(
            "UPDATE cluster_nodes SET heartbeat_at = EXTRACT(EPOCH FROM clock_timestamp())::double precision \
             WHERE id = $1",
        )
        .bind(node)
        .execute(pool)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO cluster_nodes (id, started_at, heartbeat_at) \
                 SELECT $1, t, t FROM (SELECT EXTRACT(EPOCH FROM clock_timestamp())::double precision AS t) now \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
            )
            .bind(node)
            .execute(pool)
            .await?;
        }
        Ok(updated > 0)
    }

    /// Deletes the nodes silent for `ttl_s` and returns their ids: each to exactly one caller.
    pub async fn nodes_reap(&self, ttl_s: f64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM cluster_nodes \
                 WHERE heartbeat_at < EXTRACT(EPOCH FROM clock_timestamp())::double precision - $1 RETURNING id",
        )
        .bind(ttl_s)
        .fetch_all(self.pg()?)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The nodes with a row (alive, or not reaped yet).
    pub async fn nodes_list(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM cluster_nodes").fetch_all(self.pg()?).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The users counted on `node`.
    pub async fn presence_of_node(&self, node: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT user_id FROM cluster_presence WHERE node_id = $1")
            .bind(node)
            .fetch_all(self.pg()?)
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Nodes with counted connections but no row: declared dead (possibly by a reaper that
    /// failed before it uncounted them all).
    pub async fn presence_orphans(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT p.node_id FROM cluster_presence p \
             WHERE NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.id = p.node_id)",
        )
        .fetch_all(self.pg()?)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Users with a connection on any node.
    pub async fn presence_online(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT user_id FROM cluster_presence").fetch_all(self.pg()?).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// A user's connections over every node.
    pub async fn presence_total(&self, user_id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(TOTAL).bind(user_id).fetch_one(self.pg()?).await?;
        Ok(n)
    }
}
