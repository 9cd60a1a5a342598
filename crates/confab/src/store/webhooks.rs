//! Webhooks (PROTOCOL §3.5, §5.8, §6.9): one text channel each, an opaque token stored only as its
//! SHA-256 digest, and the audit entry of every change written in the change's transaction.
//!
//! Rows are read joined with their channel and creator, so a renamed channel or account shows its
//! current name; deleting the channel deletes its webhooks (foreign-key cascade).

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
};
use crate::error::Result;

/// A stored webhook as the wire shows it (without any token).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub channel_id: String,
    /// The channel's current name.
    pub channel_name: String,
    pub name: String,
    pub avatar: Option<String>,
    /// The creator's current username, or the name it had when the account is gone.
    pub created_by: String,
    pub created_at: f64,
}

/// A webhook to create; `token_hash` is the digest of the token handed out once.
#[derive(Debug, Clone)]
pub struct NewWebhook<'a> {
    pub id: &'a str,
    pub channel_id: &'a str,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub created_by: &'a str,
    pub created_by_name: &'a str,
}

const SELECT: &str = "SELECT w.id, w.channel_id, c.name AS channel_name, w.name, w.avatar, \
     COALESCE(u.username, w.created_by_name) AS created_by, w.created_at \
     FROM webhooks w JOIN channels c ON c.id = w.channel_id LEFT JOIN users u ON u.id = w.created_by";

impl Store {
    /// Creates a webhook with its audit entry.
    pub async fn webhook_create(&self, new: &NewWebhook<'_>, audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO webhooks (id, channel_id, name, token_hash, created_by, created_by_name, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new.id)
            .bind(new.channel_id)
            .bind(new.name)
            .bind(new.token_hash)
            .bind(new.created_by)
            .bind(new.created_by_name)
            .bind(super::now())
            .execute(&mut *tx)
            .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// One webhook by id.
    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>> {
        let sql = format!("{SELECT} WHERE w.id = $1");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await?
        }))
    }

    /// The webhook whose token has digest `token_hash` (what `POST /webhooks` authenticates with).
    pub async fn webhook_by_token(&self, token_hash: &str) -> Result<Option<WebhookRow>> {
        let sql = format!("{SELECT} WHERE w.token_hash = $1");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(token_hash).fetch_optional(pool).await?
        }))
    }

    /// Every webhook, or those of one channel, oldest first.
    pub async fn webhooks(&self, channel_id: Option<&str>) -> Result<Vec<WebhookRow>> {
        let sql = format!("{SELECT} WHERE ($1 IS NULL OR w.channel_id = $1) ORDER BY w.created_at, w.id");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(channel_id).fetch_all(pool).await?
        }))
    }

    /// Sets the name and avatar; returns whether the webhook exists (the audit entry is written
    /// only then).
    pub async fn webhook_update(&self, id: &str, name: &str, avatar: Option<&str>, audit: &Audit) -> Result<bool> {
        Ok(dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query("UPDATE webhooks SET name = $1, avatar = $2 WHERE id = $3")
                .bind(name)
                .bind(avatar)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if found {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            found
        }))
    }

    /// Replaces the token digest, so the old token stops working with this commit; returns whether
    /// the webhook exists.
    pub async fn webhook_set_token(&self, id: &str, token_hash: &str, audit: &Audit) -> Result<bool> {
        Ok(dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query("UPDATE webhooks SET token_hash = $1 WHERE id = $2")
                .bind(token_hash)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if found {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            found
        }))
    }

    /// Deletes a webhook; returns whether it existed.
    pub async fn webhook_delete(&self, id: &str, audit: &Audit) -> Result<bool> {
        Ok(dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found =
                sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected() > 0;
            if found {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            found
        }))
    }
}
