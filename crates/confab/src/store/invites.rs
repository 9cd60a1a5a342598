//! Invites: the codes that let a person register while `auth.registration = "invite"`, with who
//! made them, an optional expiry and use limit, and how often they were used.
//!
//! Spending a use and creating the account happen in one transaction, and the use is a
//! conditional `UPDATE … WHERE uses < max_uses`: SQLite runs write transactions one at a time
//! (`BEGIN IMMEDIATE`), and PostgreSQL re-checks the condition on the locked row after a
//! concurrent update commits, so two registrations racing for the last use cannot both win.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
    users::{NewUser, User, create_error, user_insert_in_tx},
};
use crate::error::{Error, Result};

/// A stored invite as administrators see it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InviteRow {
    pub code: String,
    /// The creator's current username, or the name it had when the account is gone.
    pub created_by: String,
    pub created_at: f64,
    pub expires_at: Option<f64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked: bool,
}

impl InviteRow {
    /// Whether a registration could use it at `now`.
    pub fn usable(&self, now: f64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| e > now) && self.max_uses.is_none_or(|m| self.uses < m)
    }
}

/// An invite to create.
#[derive(Debug, Clone)]
pub struct NewInvite<'a> {
    pub code: &'a str,
    /// The creating account; `None` for invites made outside any account (tests, tools).
    pub created_by: Option<&'a str>,
    pub created_by_name: &'a str,
    pub expires_at: Option<f64>,
    pub max_uses: Option<i64>,
}

const SELECT: &str = "SELECT i.code, COALESCE(u.username, i.created_by_name) AS created_by, i.created_at, \
     i.expires_at, i.max_uses, i.uses, i.revoked FROM invites i LEFT JOIN users u ON u.id = i.created_by";

impl Store {
    /// Creates an invite with its audit entry.
    pub async fn invite_create(&self, new: &NewInvite<'_>, audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO invites (code, created_by, created_by_name, created_at, expires_at, max_uses) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new.code)
            .bind(new.created_by)
            .bind(new.created_by_name)
            .bind(super::now())
            .bind(new.expires_at)
            .bind(new.max_uses)
            .execute(&mut *tx)
            .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// One invite by code.
    pub async fn invite(&self, code: &str) -> Result<Option<InviteRow>> {
        let sql = format!("{SELECT} WHERE i.code = $1");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(code).fetch_optional(pool).await?
        }))
    }

    /// Every invite, newest first.
    pub async fn invites(&self) -> Result<Vec<InviteRow>> {
        let sql = format!("{SELECT} ORDER BY i.created_at DESC, i.code");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }

    /// Revokes an invite; returns whether it exists (the audit entry is written only then).
    /// Revoking twice is harmless.
    pub async fn invite_revoke(&self, code: &str, audit: &Audit) -> Result<bool> {
        Ok(dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query("UPDATE invites SET revoked = TRUE WHERE code = $1")
                .bind(code)
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

    /// Creates an account and spends one use of invite `code` in the same transaction:
    /// "Invalid or expired invite" (nothing written) when the invite is unknown, revoked, expired
    /// or used up, "Username already taken" (the use not spent) when the name is.
    pub async fn user_create_with_invite(&self, new: NewUser<'_>, code: &str) -> Result<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = super::now();
        let spent: std::result::Result<bool, sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let spent = sqlx::query(
                "UPDATE invites SET uses = uses + 1 WHERE code = $1 AND NOT revoked \
                 AND (expires_at IS NULL OR expires_at > $2) AND (max_uses IS NULL OR uses < max_uses)",
            )
            .bind(code)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !spent {
                return Ok(false);
            }
            user_insert_in_tx!(tx, &id, &new);
            tx.commit().await?;
            Ok(true)
        }.await);
        if !spent.map_err(create_error)? {
            return Err(invalid_invite());
        }
        self.user_by_id(&id).await?.ok_or_else(|| Error::Internal("created user vanished".into()))
    }
}

/// The refusal for an invite that cannot be used, whatever the reason (an unknown code is not
/// told apart from a spent one).
pub fn invalid_invite() -> Error {
    Error::new(confab_proto::ErrorCode::InvalidInvite, "Invalid or expired invite")
}
