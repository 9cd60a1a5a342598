//! Attachment rows (PROTOCOL §3.6, §6.9): who uploaded what for which channel, which message uses
//! it, and until when it is kept. The bytes are in [`crate::attachments::storage`]; this table is
//! what the sweeper reads to know which files to remove, so it works from stored times alone and
//! picks up where it left off after a restart.

use super::{Store, dispatch};
use crate::error::Result;

/// One stored upload.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AttachmentRow {
    pub id: String,
    pub user_id: String,
    pub channel_id: String,
    pub name: String,
    pub mime_type: String,
    pub size: i64,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub permanent: bool,
    pub created_at: f64,
    /// Unix seconds; `None` never expires by time.
    pub expires_at: Option<f64>,
    pub message_id: Option<String>,
}

const COLUMNS: &str =
    "id, user_id, channel_id, name, mime_type, size, width, height, permanent, created_at, expires_at, message_id";

impl Store {
    /// Records an upload whose bytes are already stored.
    pub async fn attachment_create(&self, a: &AttachmentRow) -> Result<()> {
        let sql =
            format!("INSERT INTO attachments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
        dispatch!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(&a.id)
                .bind(&a.user_id)
                .bind(&a.channel_id)
                .bind(&a.name)
                .bind(&a.mime_type)
                .bind(a.size)
                .bind(a.width)
                .bind(a.height)
                .bind(a.permanent)
                .bind(a.created_at)
                .bind(a.expires_at)
                .bind(&a.message_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// An upload by id, expired or not (callers decide what expiry means to them).
    pub async fn attachment(&self, id: &str) -> Result<Option<AttachmentRow>> {
        let sql = format!("SELECT {COLUMNS} FROM attachments WHERE id = $1");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await?
        }))
    }

    /// The ids of `user_id`'s uploads, oldest first.
    pub async fn attachments_of(&self, user_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT id FROM attachments WHERE user_id = $1 ORDER BY created_at, id";
        let rows: Vec<(String,)> = dispatch!(self, pool => sqlx::query_as(sql).bind(user_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Marks `user_id`'s unused uploads `ids` as used by `message_id`; the number marked.
    pub async fn attachments_link(&self, ids: &[String], user_id: &str, message_id: &str) -> Result<u64> {
        let mut linked = 0;
        for id in ids {
            let sql = "UPDATE attachments SET message_id = $1 WHERE id = $2 AND user_id = $3 AND message_id IS NULL";
            linked += dispatch!(self, pool => {
                sqlx::query(sql).bind(message_id).bind(id).bind(user_id).execute(pool).await?.rows_affected()
            });
        }
        Ok(linked)
    }

    /// Forgets an upload (its file must be gone already, or be going).
    pub async fn attachment_delete(&self, id: &str) -> Result<bool> {
        let done = dispatch!(self, pool => {
            sqlx::query("DELETE FROM attachments WHERE id = $1").bind(id).execute(pool).await?.rows_affected()
        });
        Ok(done > 0)
    }

    /// Up to `limit` uploads to remove now: expired ones, unused ones created before
    /// `unused_before`, and those whose message or channel is gone.
    pub async fn attachments_due(&self, now: f64, unused_before: f64, limit: i64) -> Result<Vec<String>> {
        let sql = "SELECT a.id FROM attachments a WHERE (a.expires_at IS NOT NULL AND a.expires_at <= $1) \
             OR (a.message_id IS NULL AND a.created_at <= $2) \
             OR (a.message_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = a.message_id)) \
             OR NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = a.channel_id) LIMIT $3";
        let rows: Vec<(String,)> = dispatch!(self, pool => {
            sqlx::query_as(sql).bind(now).bind(unused_before).bind(limit).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
