//! The audit log (PROTOCOL §5.8): who did what to whom, kept for a per-category retention period.
//!
//! Entries are inserted by the store method that makes the change, inside its transaction (see
//! [`audit_in_tx!`]), so a change and its entry are committed together or not at all.

use serde_json::Value;

use super::{Store, WritePool, dispatch};
use crate::error::Result;

/// One entry to record with a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub action: &'static str,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    /// Never message content or secrets.
    pub details: Value,
}

impl Audit {
    /// The category an action belongs to (PROTOCOL §5.8).
    pub fn category(action: &str) -> &'static str {
        match action {
            "user_ban" | "user_unban" | "user_timeout" | "user_roles_set" | "user_update" | "user_delete" => {
                "user_moderation"
            }
            "role_create"
            | "role_update"
            | "role_delete"
            | "role_reorder"
            | "role_permissions_set"
            | "self_role_add"
            | "self_role_remove" => "role_management",
            "channel_create" | "channel_update" | "channel_move" | "channel_delete" => "channel_management",
            "message_delete" | "message_pin" | "message_unpin" => "message_moderation",
            _ => "server_management",
        }
    }

    /// Retention in days per category.
    pub fn retention_days(category: &str) -> f64 {
        match category {
            "user_moderation" | "role_management" => 365.0,
            "channel_management" | "server_management" => 180.0,
            _ => 90.0,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub action: String,
    pub category: String,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub details: String,
    pub created_at: f64,
}

/// Filters of `modlog_get`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub after: Option<f64>,
    pub category: Option<String>,
    pub action: Option<String>,
    /// Matches the actor's id or name.
    pub actor: Option<String>,
    /// Matches the target's id or name.
    pub target: Option<String>,
}

/// Inserts `$audit` (an `&Audit`) inside the open transaction `$tx`.
macro_rules! audit_in_tx {
    ($tx:ident, $audit:expr) => {{
        let a: &$crate::store::audit::Audit = $audit;
        sqlx::query(
            "INSERT INTO audit_log (id, action, category, actor_id, actor_name, target_id, target_name, details, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(a.action)
        .bind($crate::store::audit::Audit::category(a.action))
        .bind(&a.actor_id)
        .bind(&a.actor_name)
        .bind(&a.target_id)
        .bind(&a.target_name)
        .bind(a.details.to_string())
        .bind($crate::store::now())
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use audit_in_tx;

const FILTER: &str = "WHERE ($1 IS NULL OR created_at > $1) AND ($2 IS NULL OR category = $2) \
     AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR actor_id = $4 OR LOWER(actor_name) = LOWER($4)) \
     AND ($5 IS NULL OR target_id = $5 OR LOWER(target_name) = LOWER($5))";

impl Store {
    /// Records an entry on its own (for changes that have no transaction of their own).
    pub async fn audit(&self, audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Entries matching `filter`, newest first, with the total count.
    pub async fn audit_list(&self, filter: &AuditFilter, limit: i64, offset: i64) -> Result<(Vec<AuditRow>, i64)> {
        let list = format!(
            "SELECT id, action, category, actor_id, actor_name, target_id, target_name, details, created_at \
             FROM audit_log {FILTER} ORDER BY created_at DESC LIMIT $6 OFFSET $7"
        );
        let count = format!("SELECT COUNT(*) FROM audit_log {FILTER}");
        let f = filter;
        let rows: Vec<AuditRow> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(list.as_str()))
                .bind(f.after).bind(&f.category).bind(&f.action).bind(&f.actor).bind(&f.target)
                .bind(limit).bind(offset)
                .fetch_all(pool).await?
        });
        let total: (i64,) = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(count.as_str()))
                .bind(f.after).bind(&f.category).bind(&f.action).bind(&f.actor).bind(&f.target)
                .fetch_one(pool).await?
        });
        Ok((rows, total.0))
    }

    /// Counts per (category, action).
    pub async fn audit_summary(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as("SELECT category, action, COUNT(*) FROM audit_log GROUP BY category, action")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Deletes entries past their category's retention.
    pub async fn audit_prune(&self) -> Result<u64> {
        let mut done = 0;
        for category in
            ["user_moderation", "role_management", "channel_management", "message_moderation", "server_management"]
        {
            let cutoff = super::now() - Audit::retention_days(category) * 86_400.0;
            done += dispatch!(self, pool => {
                sqlx::query("DELETE FROM audit_log WHERE category = $1 AND created_at < $2")
                    .bind(category)
                    .bind(cutoff)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(done)
    }
}
