//! Accounts (PROTOCOL §5.2) and their role assignments.

use super::{Store, WritePool, dispatch, is_unique_violation};
use crate::error::{Error, Result};

/// What kind of credential backs an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Local,
    Rotur,
    Bot,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Local => "local",
            AccountKind::Rotur => "rotur",
            AccountKind::Bot => "bot",
        }
    }
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub username: String,
    pub kind: String,
    pub password_hash: Option<String>,
    pub nickname: Option<String>,
    pub status: String,
    pub status_text: String,
    pub pfp_url: Option<String>,
    pub banned: bool,
}

impl User {
    /// `true` for every account not backed by Rotur (PROTOCOL §2.9).
    pub fn cracked(&self) -> bool {
        self.kind != AccountKind::Rotur.as_str()
    }
    pub fn is_bot(&self) -> bool {
        self.kind == AccountKind::Bot.as_str()
    }
}

/// A new account to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub kind: AccountKind,
    pub password_hash: Option<String>,
    pub role_ids: Vec<String>,
}

const COLUMNS: &str = "id, username, kind, password_hash, nickname, status, status_text, pfp_url, banned";

impl Store {
    /// Creates an account with its roles; "Username already taken" if the folded name exists.
    pub async fn user_create(&self, new: NewUser<'_>) -> Result<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let result: std::result::Result<(), sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO users (id, username, username_lower, kind, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(new.username)
            .bind(new.username.to_ascii_lowercase())
            .bind(new.kind.as_str())
            .bind(&new.password_hash)
            .bind(super::now())
            .execute(&mut *tx)
            .await?;
            for role_id in &new.role_ids {
                sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(role_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }.await);
        match result {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::new(confab_proto::ErrorCode::UsernameTaken, "Username already taken"));
            }
            Err(e) => return Err(e.into()),
        }
        self.user_by_id(&id).await?.ok_or_else(|| Error::Internal("created user vanished".into()))
    }

    /// Looks an account up by name, ASCII case-insensitively.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_lower = $1");
        let key = name.trim().to_ascii_lowercase();
        Ok(
            dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(&key).fetch_optional(pool).await?),
        )
    }

    /// Looks an account up by id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        Ok(
            dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await?),
        )
    }

    /// Accounts whose folded names are in `keys` (for mention resolution).
    pub async fn users_by_names(&self, keys: &[String]) -> Result<Vec<User>> {
        let mut found = Vec::new();
        for key in keys {
            if let Some(u) = self.user_by_name(key).await? {
                found.push(u);
            }
        }
        Ok(found)
    }

    /// Every account that is not banned, sorted by name case-insensitively.
    pub async fn users_unbanned(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE banned = FALSE ORDER BY username_lower");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }

    /// Every account, banned included, sorted by name (for the admin CLI).
    pub async fn users_all(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users ORDER BY username_lower");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }

    /// Number of accounts.
    pub async fn user_count(&self) -> Result<i64> {
        let row: (i64,) = dispatch!(self, pool => sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(pool).await?);
        Ok(row.0)
    }

    /// The role ids assigned to one account.
    pub async fn user_role_ids(&self, user_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT role_id FROM user_roles WHERE user_id = $1").bind(user_id).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Every (account id, role id) assignment, for listing many users with one query.
    pub async fn all_user_roles(&self) -> Result<Vec<(String, String)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as("SELECT user_id, role_id FROM user_roles").fetch_all(pool).await?
        }))
    }

    /// Replaces an account's roles.
    pub async fn user_set_roles(&self, user_id: &str, role_ids: &[String]) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
            for role_id in role_ids {
                sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(role_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores a new password hash (after a bcrypt import is rehashed, or a password change).
    pub async fn user_set_password_hash(&self, user_id: &str, hash: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(hash).bind(user_id).execute(pool).await?;
        });
        Ok(())
    }
}
