//! Channels (PROTOCOL §5.5): name, type, permission lists, display position and the `seq` counter.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
};
use crate::error::Result;

/// A stored channel. `permissions` is the JSON object text as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub size: Option<i64>,
    pub permissions: String,
    pub position: i64,
    pub seq: i64,
}

const COLUMNS: &str = "id, name, kind, display_name, description, size, permissions, position, seq";

impl Store {
    /// Every channel in display order, with its current seq.
    pub async fn channels(&self) -> Result<Vec<Channel>> {
        let sql = format!("SELECT {COLUMNS} FROM channels ORDER BY position, name_lower");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }

    /// The channel's current seq (0 when nothing happened yet).
    pub async fn channel_seq(&self, channel_id: &str) -> Result<i64> {
        let row: Option<(i64,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT seq FROM channels WHERE id = $1").bind(channel_id).fetch_optional(pool).await?
        });
        Ok(row.map_or(0, |r| r.0))
    }
}

impl Store {
    /// Creates a channel after the last one, with its audit entry, in one transaction.
    pub async fn channel_create_audited(&self, c: &Channel, audit: &Audit) -> Result<()> {
        let outcome: std::result::Result<(), sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO channels (id, name, name_lower, kind, display_name, description, size, permissions, \
                 position, seq, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 (SELECT COALESCE(MAX(position), -1) + 1 FROM channels), 0, $9)",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(c.name.to_lowercase())
            .bind(&c.kind)
            .bind(&c.display_name)
            .bind(&c.description)
            .bind(c.size)
            .bind(&c.permissions)
            .bind(super::now())
            .execute(&mut *tx)
            .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await
        }.await);
        outcome.map_err(|e| channel_conflict(e, "Channel already exists"))
    }

    /// Saves every editable field of a channel (name, type, texts, size, permissions).
    pub async fn channel_save(&self, c: &Channel, audit: &Audit) -> Result<()> {
        let outcome: std::result::Result<(), sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE channels SET name = $1, name_lower = $2, kind = $3, display_name = $4, description = $5, \
                 size = $6, permissions = $7 WHERE id = $8",
            )
            .bind(&c.name)
            .bind(c.name.to_lowercase())
            .bind(&c.kind)
            .bind(&c.display_name)
            .bind(&c.description)
            .bind(c.size)
            .bind(&c.permissions)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await
        }.await);
        outcome.map_err(|e| channel_conflict(e, "Channel with new name already exists"))
    }

    /// Whether a channel holds any message (its type can then not change).
    pub async fn channel_has_messages(&self, channel_id: &str) -> Result<bool> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT id FROM messages WHERE channel_id = $1 LIMIT 1").bind(channel_id).fetch_optional(pool).await?
        });
        Ok(row.is_some())
    }

    /// Gives the channels the display positions 0…n−1 in the order of `ids`.
    pub async fn channels_reorder(&self, ids: &[String], audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for (position, id) in ids.iter().enumerate() {
                sqlx::query("UPDATE channels SET position = $1 WHERE id = $2")
                    .bind(position as i64)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a channel and everything in it (messages, events, read state cascade).
    pub async fn channel_delete(&self, channel_id: &str, audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM nonces WHERE channel_id = $1").bind(channel_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM channels WHERE id = $1").bind(channel_id).execute(&mut *tx).await?;
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }
}

fn channel_conflict(e: sqlx::Error, text: &str) -> crate::error::Error {
    if super::is_unique_violation(&e) { crate::error::Error::conflict(text) } else { e.into() }
}
