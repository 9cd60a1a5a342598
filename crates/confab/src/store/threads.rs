//! Threads of forum channels (PROTOCOL §5.7). Writes that take a seq go through the writer
//! ([`super::writer::Step`]); this module holds the reads.

use super::{Store, dispatch};
use crate::error::Result;

/// A stored thread with its creator's current name.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ThreadRow {
    pub id: String,
    pub channel_id: String,
    pub name: String,
    pub created_by: String,
    pub creator: String,
    pub created_at: f64,
    pub locked: bool,
    pub archived: bool,
}

const SELECT: &str = "SELECT t.id, t.channel_id, t.name, t.created_by, COALESCE(u.username, t.created_by_name) AS creator, \
     t.created_at, t.locked, t.archived FROM threads t LEFT JOIN users u ON u.id = t.created_by";

impl Store {
    /// One thread by id.
    pub async fn thread(&self, id: &str) -> Result<Option<ThreadRow>> {
        let sql = format!("{SELECT} WHERE t.id = $1");
        Ok(
            dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await?),
        )
    }

    /// The threads of a forum channel, oldest first.
    pub async fn threads_in(&self, channel_id: &str) -> Result<Vec<ThreadRow>> {
        let sql = format!("{SELECT} WHERE t.channel_id = $1 ORDER BY t.created_at");
        Ok(
            dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(channel_id).fetch_all(pool).await?),
        )
    }

    /// Participants' current names, in joining order.
    pub async fn thread_participants(&self, thread_id: &str) -> Result<Vec<(String, String)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT p.user_id, COALESCE(u.username, '') FROM thread_participants p \
                 LEFT JOIN users u ON u.id = p.user_id WHERE p.thread_id = $1 ORDER BY p.joined_at",
            )
            .bind(thread_id)
            .fetch_all(pool)
            .await?
        }))
    }
}
