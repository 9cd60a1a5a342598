//! Slash-command registrations of every node of a cluster (`cluster_slash`; docs/cluster.md,
//! "Slash commands"). Each row is one registering connection's commands in their `slash_list`
//! form; writes take one advisory lock, so a clash between two nodes' registrations is seen by
//! whichever commits second. Cluster mode needs PostgreSQL, so these statements are its only.

use super::Store;
use crate::error::Result;

/// Serialises registrations across nodes, until the transaction ends.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('cluster_slash', 0))";

/// One connection's registration as another node sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlashRow {
    pub node_id: String,
    pub conn_id: i64,
    pub user_id: String,
    pub username: String,
    /// The JSON list of the commands in their `slash_list` form.
    pub commands: String,
}

impl Store {
    /// Stores `row` as its connection's registration (removes it when `row.commands` is `None`),
    /// unless `judge` refuses it given the other connections' registrations, all under the lock.
    pub async fn slash_claim<E>(
        &self,
        row: &SlashRow,
        keep: bool,
        judge: impl FnOnce(&[SlashRow]) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<(), E>> {
        let mut tx = self.pg()?.begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let others: Vec<SlashRow> = sqlx::query_as(
            "SELECT node_id, conn_id, user_id, username, commands FROM cluster_slash \
             WHERE NOT (node_id = $1 AND conn_id = $2)",
        )
        .bind(&row.node_id)
        .bind(row.conn_id)
        .fetch_all(&mut *tx)
        .await?;
        if let Err(refused) = judge(&others) {
            return Ok(Err(refused));
        }
        if keep {
            sqlx::query(
                "INSERT INTO cluster_slash (node_id, conn_id, user_id, username, commands) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (node_id, conn_id) DO UPDATE SET commands = EXCLUDED.commands, username = EXCLUDED.username",
            )
            .bind(&row.node_id)
            .bind(row.conn_id)
            .bind(&row.user_id)
            .bind(&row.username)
            .bind(&row.commands)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("DELETE FROM cluster_slash WHERE node_id = $1 AND conn_id = $2")
                .bind(&row.node_id)
                .bind(row.conn_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Stores `row` as its connection's registration without judging it (a node declared dead
    /// and alive again puts back what its connections still hold).
    pub async fn slash_put(&self, row: &SlashRow) -> Result<()> {
        self.slash_claim(row, true, |_| Ok::<(), ()>(())).await.map(|_| ())
    }

    /// Deletes one connection's registration.
    pub async fn slash_release(&self, node: &str, conn_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM cluster_slash WHERE node_id = $1 AND conn_id = $2")
            .bind(node)
            .bind(conn_id)
            .execute(self.pg()?)
            .await?;
        Ok(())
    }

    /// The registrations of the nodes other than `node`.
    pub async fn slash_elsewhere(&self, node: &str) -> Result<Vec<SlashRow>> {
        Ok(sqlx::query_as(
            "SELECT node_id, conn_id, user_id, username, commands FROM cluster_slash WHERE node_id <> $1",
        )
        .bind(node)
        .fetch_all(self.pg()?)
        .await?)
    }

    /// Deletes the registrations of `node` (an earlier run under its id), or with `None` those of
    /// every node without a row in `cluster_nodes` (declared dead); returns their command lists,
    /// each to exactly one caller.
    pub async fn slash_drop_nodes(&self, node: Option<&str>) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = match node {
            Some(node) => {
                sqlx::query_as("DELETE FROM cluster_slash WHERE node_id = $1 RETURNING commands")
                    .bind(node)
                    .fetch_all(self.pg()?)
                    .await?
            }
            None => {
                sqlx::query_as(
                    "DELETE FROM cluster_slash s \
                     WHERE NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.id = s.node_id) RETURNING commands",
                )
                .fetch_all(self.pg()?)
                .await?
            }
        };
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }
}
