//! Session families and rotating refresh tokens (PROTOCOL §3.1, §8.4).
//!
//! A login creates a family (`sid`). Each refresh spends one token and issues the next; presenting a
//! spent token means it was stolen or replayed, so the whole family is revoked.

use super::{Store, WritePool, dispatch};
use crate::error::Result;

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Spent the old token, stored the new one.
    Rotated { session_id: String, user_id: String },
    /// The token had been spent already: the family is now revoked.
    Reused { session_id: String, user_id: String },
    /// Unknown, expired, or its family is revoked or expired.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    session_id: String,
    expires_at: f64,
    spent: bool,
    user_id: String,
    revoked: bool,
    family_expires_at: f64,
}

impl Store {
    /// Starts a session family for `user_id`, living at most until `expires_at`.
    pub async fn session_create(&self, user_id: &str, method: &str, expires_at: f64) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, method, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(user_id)
            .bind(method)
            .bind(super::now())
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(id)
    }

    /// Stores a refresh token (its hash) in a family.
    pub async fn refresh_insert(&self, session_id: &str, token_hash: &str, expires_at: f64) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(session_id)
            .bind(super::now())
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Spends `old_hash` and stores `new_hash` in the same family, or detects reuse.
    pub async fn refresh_rotate(&self, old_hash: &str, new_hash: &str, new_expires_at: f64) -> Result<Rotation> {
        let now = super::now();
        let outcome = dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let row: Option<TokenRow> = sqlx::query_as(
                "SELECT r.session_id, r.expires_at, r.spent, s.user_id, s.revoked, s.expires_at AS family_expires_at \
                 FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
            )
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = match row {
                None => Rotation::Invalid,
                Some(r) if r.spent => {
                    sqlx::query("UPDATE sessions SET revoked = TRUE WHERE id = $1")
                        .bind(&r.session_id)
                        .execute(&mut *tx)
                        .await?;
                    Rotation::Reused { session_id: r.session_id, user_id: r.user_id }
                }
                Some(r) if r.revoked || r.expires_at <= now || r.family_expires_at <= now => Rotation::Invalid,
                Some(r) => {
                    let spent = sqlx::query("UPDATE refresh_tokens SET spent = TRUE WHERE token_hash = $1 AND spent = FALSE")
                        .bind(old_hash)
                        .execute(&mut *tx)
                        .await?;
                    if spent.rows_affected() == 0 {
                        // Lost a race with a concurrent use of the same token: that is reuse too.
                        sqlx::query("UPDATE sessions SET revoked = TRUE WHERE id = $1")
                            .bind(&r.session_id)
                            .execute(&mut *tx)
                            .await?;
                        Rotation::Reused { session_id: r.session_id, user_id: r.user_id }
                    } else {
                        sqlx::query(
                            "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                        )
                        .bind(new_hash)
                        .bind(&r.session_id)
                        .bind(now)
                        .bind(new_expires_at.min(r.family_expires_at))
                        .execute(&mut *tx)
                        .await?;
                        Rotation::Rotated { session_id: r.session_id, user_id: r.user_id }
                    }
                }
            };
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }

    /// The account of a live (not revoked, not expired) family.
    pub async fn session_user(&self, session_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT user_id FROM sessions WHERE id = $1 AND revoked = FALSE AND expires_at > $2")
                .bind(session_id)
                .bind(super::now())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|r| r.0))
    }

    /// The family a refresh token belongs to, whatever its state.
    pub async fn session_of_refresh(&self, token_hash: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|r| r.0))
    }

    /// Revokes a family: its refresh and access tokens stop working.
    pub async fn session_revoke(&self, session_id: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE sessions SET revoked = TRUE WHERE id = $1").bind(session_id).execute(pool).await?;
        });
        Ok(())
    }

    /// Revokes every family of an account (logout of all sessions); returns how many were live.
    pub async fn sessions_revoke_user(&self, user_id: &str) -> Result<u64> {
        Ok(dispatch!(self, pool => {
            sqlx::query("UPDATE sessions SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE")
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Stores a new password hash and revokes every family of the account in one transaction, so
    /// no token issued under the old password outlives the change (PROTOCOL §8.4).
    pub async fn password_change(&self, user_id: &str, hash: &str) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sessions SET revoked = TRUE WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
