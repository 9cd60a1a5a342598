//! SAUTH2 generic tokens (PROTOCOL §2.7, §7.7): only their SHA-256 digests are stored.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
};
use crate::error::Result;

impl Store {
    /// Stores a new generic token (its digest) for `user_id`.
    pub async fn sauth_token_add(&self, user_id: &str, token_hash: &str, audit: Option<&Audit>) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("INSERT INTO sauth_tokens (token_hash, user_id, created_at) VALUES ($1, $2, $3)")
                .bind(token_hash)
                .bind(user_id)
                .bind(super::now())
                .execute(&mut *tx)
                .await?;
            if let Some(audit) = audit {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether `token_hash` is a live generic token of `user_id`.
    pub async fn sauth_token_valid(&self, user_id: &str, token_hash: &str) -> Result<bool> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT user_id FROM sauth_tokens WHERE token_hash = $1 AND user_id = $2 AND revoked = FALSE")
                .bind(token_hash)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some())
    }

    /// Revokes every generic token of `user_id`; returns how many were live.
    pub async fn sauth_tokens_revoke(&self, user_id: &str, audit: &Audit) -> Result<u64> {
        Ok(dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("UPDATE sauth_tokens SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            audit_in_tx!(tx, audit);
            tx.commit().await?;
            done
        }))
    }
}
