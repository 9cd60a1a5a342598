//! Server-wide key/value settings (server name, icon, banner) that admins change at run time.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
};
use crate::error::Result;

const UPSERT: &str =
    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

impl Store {
    /// The stored value of `key`, if any.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(pool).await?
        });
        Ok(row.map(|r| r.0))
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(UPSERT).bind(key).bind(value).execute(pool).await?;
        });
        Ok(())
    }

    /// Stores every `(key, value)` together with the audit entry describing the change, in one
    /// transaction.
    pub async fn set_settings_audited(&self, pairs: &[(&str, &str)], audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for (key, value) in pairs {
                sqlx::query(UPSERT).bind(key).bind(value).execute(&mut *tx).await?;
            }
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }
}
