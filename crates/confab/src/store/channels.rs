//! Channels (PROTOCOL §5.5): name, type, permission lists, display position and the `seq` counter.

use super::{Store, dispatch};
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
    /// Creates a channel at the given position.
    pub async fn channel_create(&self, c: &Channel) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO channels (id, name, name_lower, kind, display_name, description, size, \
                 permissions, position, seq, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(c.name.to_lowercase())
            .bind(&c.kind)
            .bind(&c.display_name)
            .bind(&c.description)
            .bind(c.size)
            .bind(&c.permissions)
            .bind(c.position)
            .bind(c.seq)
            .bind(super::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

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
