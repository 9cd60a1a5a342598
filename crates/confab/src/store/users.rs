//! Accounts (PROTOCOL §5.2) and their role assignments.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch, is_unique_violation,
};
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
    /// Until when (Unix seconds) the account is in timeout (PROTOCOL §4.6); past or `None` means not.
    pub timeout_until: Option<f64>,
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

const COLUMNS: &str =
    "id, username, kind, password_hash, nickname, status, status_text, pfp_url, banned, timeout_until";

/// Inserts the account `$new` (a `&NewUser`) with id `$id` and its roles inside the open
/// transaction `$tx`, so other aggregates (bots) can create an account together with their own rows.
macro_rules! user_insert_in_tx {
    ($tx:ident, $id:expr, $new:expr) => {{
        let new: &$crate::store::users::NewUser<'_> = $new;
        sqlx::query(
            "INSERT INTO users (id, username, username_lower, kind, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($id)
        .bind(new.username)
        .bind(new.username.to_ascii_lowercase())
        .bind(new.kind.as_str())
        .bind(&new.password_hash)
        .bind($crate::store::now())
        .execute(&mut *$tx)
        .await?;
        for role_id in &new.role_ids {
            sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
                .bind($id)
                .bind(role_id)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(super) use user_insert_in_tx;

/// The error of a failed account insert: a unique violation means the folded name is taken.
pub(super) fn create_error(e: sqlx::Error) -> Error {
    if is_unique_violation(&e) {
        Error::new(confab_proto::ErrorCode::UsernameTaken, "Username already taken")
    } else {
        e.into()
    }
}

impl Store {
    /// Creates an account with its roles; "Username already taken" if the folded name exists.
    pub async fn user_create(&self, new: NewUser<'_>) -> Result<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let result: std::result::Result<(), sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            user_insert_in_tx!(tx, &id, &new);
            tx.commit().await
        }.await);
        result.map_err(create_error)?;
        self.members_changed();
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

    /// Accounts named in `keys` (case-insensitively), in the order of `keys`, with one query
    /// (mention resolution runs on the message path).
    pub async fn users_by_names(&self, keys: &[String]) -> Result<Vec<User>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let folded: Vec<String> = keys.iter().map(|k| k.trim().to_ascii_lowercase()).collect();
        let list = (1..=folded.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_lower IN ({list})");
        let mut found: Vec<User> = dispatch!(self, pool => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for key in &folded {
                q = q.bind(key);
            }
            q.fetch_all(pool).await?
        });
        found.sort_by_key(|u| folded.iter().position(|k| *k == u.username.to_ascii_lowercase()));
        Ok(found)
    }

    /// The accounts with the given ids, sorted by name case-insensitively, in one query whatever
    /// their number (`users_online` asks for every account online).
    pub async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(&String,)> = ids.iter().map(|id| (id,)).collect();
        let list = super::script::json_array(&rows)?;
        let sqlite = matches!(self.backend(), super::Backend::Sqlite(_));
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE id IN (SELECT r.value->>0 FROM {}) ORDER BY username_lower",
            super::script::json_rows(sqlite)
        );
        Ok(
            dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(&list).fetch_all(pool).await?),
        )
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
        self.user_set_roles_audited(user_id, role_ids, None).await
    }

    /// Replaces an account's roles, recording `audit` (when given) in the same transaction.
    pub async fn user_set_roles_audited(
        &self,
        user_id: &str,
        role_ids: &[String],
        audit: Option<&Audit>,
    ) -> Result<()> {
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
            if let Some(audit) = audit {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
        });
        self.members_changed();
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

/// Presence, profile and moderation writes (PROTOCOL §6.4). Each moderation change and its audit
/// entry are committed in one transaction.
impl Store {
    /// Stores a status and returns the previous one (`None` when the account is gone), read in the
    /// same transaction, so the caller knows which presence transition happened.
    pub async fn user_set_status(&self, user_id: &str, status: &str, text: &str) -> Result<Option<String>> {
        let previous = dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let previous: Option<(String,)> = sqlx::query_as("SELECT status FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query("UPDATE users SET status = $1, status_text = $2 WHERE id = $3")
                .bind(status)
                .bind(text)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            previous.map(|p| p.0)
        });
        self.members_changed();
        Ok(previous)
    }

    /// Sets or clears (`None`) an account's own nickname (`/nick`, PROTOCOL §6.8).
    pub async fn user_set_nickname(&self, user_id: &str, nickname: Option<&str>) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE users SET nickname = $1 WHERE id = $2").bind(nickname).bind(user_id).execute(pool).await?;
        });
        self.members_changed();
        Ok(())
    }

    /// Stores an avatar URL.
    pub async fn user_set_pfp(&self, user_id: &str, url: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE users SET pfp_url = $1 WHERE id = $2").bind(url).bind(user_id).execute(pool).await?;
        });
        self.members_changed();
        Ok(())
    }

    /// Renames an account and sets its nickname; "Username already taken" (conflict) when another
    /// account holds the folded name.
    pub async fn user_update_profile(
        &self,
        user_id: &str,
        username: &str,
        nickname: Option<&str>,
        audit: &Audit,
    ) -> Result<()> {
        let result: std::result::Result<(), sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE users SET username = $1, username_lower = $2, nickname = $3 WHERE id = $4")
                .bind(username)
                .bind(username.to_ascii_lowercase())
                .bind(nickname)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await
        }.await);
        match result {
            Err(e) if is_unique_violation(&e) => Err(Error::conflict("Username already taken")),
            other => {
                other?;
                self.members_changed();
                Ok(())
            }
        }
    }

    /// Sets or clears the ban flag; returns whether it changed (the audit entry is written only
    /// then). Banning also revokes every session family of the account, so its access and refresh
    /// tokens stop working at once (PROTOCOL §8.4).
    pub async fn user_set_banned(&self, user_id: &str, banned: bool, audit: &Audit) -> Result<bool> {
        let changed = dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query("UPDATE users SET banned = $1 WHERE id = $2 AND banned = $3")
                .bind(banned)
                .bind(user_id)
                .bind(!banned)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if changed {
                if banned {
                    sqlx::query("UPDATE sessions SET revoked = TRUE WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            changed
        });
        if changed {
            self.members_changed();
        }
        Ok(changed)
    }

    /// Puts an account in timeout until `until` (Unix seconds).
    pub async fn user_set_timeout(&self, user_id: &str, until: f64, audit: &Audit) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE users SET timeout_until = $1 WHERE id = $2")
                .bind(until)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Banned accounts, sorted by name case-insensitively.
    pub async fn users_banned(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE banned = TRUE ORDER BY username_lower");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }

    /// Deletes an account; its roles, sessions and read state go with it. Returns whether it
    /// existed. History shows a live author's current name and falls back to the name stored on
    /// the message, so that name is first set to the account's last username (PROTOCOL §6.4).
    pub async fn user_delete(&self, user_id: &str, audit: Option<&Audit>) -> Result<bool> {
        let deleted = dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE messages SET author_name = (SELECT username FROM users WHERE id = $1) \
                 WHERE user_id = $1 AND EXISTS (SELECT 1 FROM users WHERE id = $1)",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            let deleted =
                sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(&mut *tx).await?.rows_affected() > 0;
            if deleted && let Some(audit) = audit {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            deleted
        });
        if deleted {
            self.members_changed();
        }
        Ok(deleted)
    }
}

/// Accounts backed by an external identity (Rotur, PROTOCOL §2.4), keyed by the external id.
impl Store {
    /// The account bound to external id `external_id`.
    pub async fn user_by_external_id(&self, external_id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE external_id = $1");
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(external_id).fetch_optional(pool).await?
        }))
    }

    /// Creates an external account; "Username already taken" if the folded name exists.
    pub async fn user_create_external(&self, new: NewUser<'_>, external_id: &str) -> Result<User> {
        let user = self.user_create(new).await?;
        dispatch!(self, pool => {
            sqlx::query("UPDATE users SET external_id = $1 WHERE id = $2")
                .bind(external_id)
                .bind(&user.id)
                .execute(pool)
                .await?;
        });
        Ok(user)
    }

    /// Follows a name change made at the identity provider; "Username already taken" on a clash.
    pub async fn user_rename(&self, user_id: &str, username: &str) -> Result<()> {
        let outcome: std::result::Result<_, sqlx::Error> = dispatch!(self, pool => {
            sqlx::query("UPDATE users SET username = $1, username_lower = $2 WHERE id = $3")
                .bind(username)
                .bind(username.to_ascii_lowercase())
                .bind(user_id)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match outcome {
            Err(e) if is_unique_violation(&e) => {
                Err(Error::new(confab_proto::ErrorCode::UsernameTaken, "Username already taken"))
            }
            other => {
                other?;
                self.members_changed();
                Ok(())
            }
        }
    }
}

/// An account with the liveness of one of its session families and its roles, read together.
#[derive(Debug, Clone)]
pub struct UserSession {
    pub user: User,
    /// Whether the family exists, belongs to this account, and is neither revoked nor expired.
    pub session_live: bool,
    /// The ids of the account's roles.
    pub role_ids: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct UserSessionRow {
    #[sqlx(flatten)]
    user: User,
    session_live: bool,
    /// Comma-joined: role ids are UUIDs (`roles.id` is only ever set from `Uuid::now_v7`).
    role_ids: Option<String>,
}

impl Store {
    /// The account, whether session family `session_id` is live for it, and its roles, in one
    /// query: a token login reads all three before the connection joins the hub, and the account
    /// and session again after. Each query is a round trip to a SQLite connection's thread, and
    /// those hops were most of a token connect's cost (BENCHMARKS.md item 16).
    pub async fn user_with_session(&self, user_id: &str, session_id: &str) -> Result<Option<UserSession>> {
        // `string_agg` is PostgreSQL's and, since 3.44, SQLite's.
        let sql = format!(
            "SELECT {COLUMNS}, EXISTS (SELECT 1 FROM sessions s WHERE s.id = $2 AND s.user_id = users.id \
             AND s.revoked = FALSE AND s.expires_at > $3) AS session_live, \
             (SELECT string_agg(r.role_id, ',') FROM user_roles r WHERE r.user_id = users.id) AS role_ids \
             FROM users WHERE id = $1"
        );
        let row: Option<UserSessionRow> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(user_id)
                .bind(session_id)
                .bind(super::now())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|r| UserSession {
            user: r.user,
            session_live: r.session_live,
            role_ids: r.role_ids.map(|ids| ids.split(',').map(str::to_owned).collect()).unwrap_or_default(),
        }))
    }
}
