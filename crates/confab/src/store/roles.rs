//! Roles (PROTOCOL §5.3): name, colour, server permissions and position (0 = highest), and the
//! role writes of PROTOCOL §6.5 — each in one transaction with its audit entry.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
};
use crate::{
    domain::{
        permissions::ChannelPermissions,
        roles::{channel_uses_role, rename_in_channel},
    },
    error::{Error, Result},
};

/// A stored role. `permissions` is the JSON array text as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    pub color: Option<String>,
    pub hoisted: bool,
    pub permissions: String,
    pub self_assignable: bool,
    pub category: Option<String>,
    pub position: i64,
}

impl Role {
    /// The role's server permissions.
    pub fn permission_list(&self) -> Vec<String> {
        serde_json::from_str(&self.permissions).unwrap_or_default()
    }
}

const COLUMNS: &str = "id, name, description, color, hoisted, permissions, self_assignable, category, position";

impl Store {
    /// Every role, highest position first.
    pub async fn roles(&self) -> Result<Vec<Role>> {
        let sql = format!("SELECT {COLUMNS} FROM roles ORDER BY position");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }
}

/// Taken first by every role write transaction: a no-op update of the `owner` row (which is never
/// renamed, deleted or moved), so concurrent role writes queue behind each other on PostgreSQL as
/// they do on SQLite (`BEGIN IMMEDIATE`), and positions computed inside them stay unique and dense.
const LOCK_ROLES: &str = "UPDATE roles SET position = position WHERE name_lower = 'owner'";

/// A unique-name violation as "Role already exists"; anything else as a storage error.
fn name_conflict(e: sqlx::Error) -> Error {
    if super::is_unique_violation(&e) { Error::conflict("Role already exists") } else { e.into() }
}

/// Role writes (PROTOCOL §6.5), each committed together with its audit entry.
impl Store {
    /// Creates a role below every other one.
    pub async fn role_create_last(&self, role: &Role, audit: Option<&Audit>) -> Result<()> {
        let written = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(LOCK_ROLES).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO roles (id, name, name_lower, description, color, hoisted, permissions, self_assignable, \
                 category, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 (SELECT COALESCE(MAX(position), -1) + 1 FROM roles))",
            )
            .bind(&role.id)
            .bind(&role.name)
            .bind(role.name.to_ascii_lowercase())
            .bind(&role.description)
            .bind(&role.color)
            .bind(role.hoisted)
            .bind(&role.permissions)
            .bind(role.self_assignable)
            .bind(&role.category)
            .execute(&mut *tx)
            .await
            .map_err(name_conflict)?;
            if let Some(audit) = audit {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            Ok::<_, Error>(())
        }.await);
        self.members_written(written)
    }

    /// Saves every editable field of a role (not its position). A rename is carried into every
    /// channel permission list that names the role, in the same transaction, so no list is ever
    /// left pointing at a name that no longer exists.
    pub async fn role_save(&self, role: &Role, old_name: &str, audit: &Audit) -> Result<()> {
        let renamed = role.name != old_name;
        let written = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(LOCK_ROLES).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE roles SET name = $1, name_lower = $2, description = $3, color = $4, hoisted = $5, \
                 permissions = $6, self_assignable = $7, category = $8 WHERE id = $9",
            )
            .bind(&role.name)
            .bind(role.name.to_ascii_lowercase())
            .bind(&role.description)
            .bind(&role.color)
            .bind(role.hoisted)
            .bind(&role.permissions)
            .bind(role.self_assignable)
            .bind(&role.category)
            .bind(&role.id)
            .execute(&mut *tx)
            .await
            .map_err(name_conflict)?;
            if renamed {
                let channels: Vec<(String, String)> =
                    sqlx::query_as("SELECT id, permissions FROM channels").fetch_all(&mut *tx).await?;
                for (id, text) in channels {
                    let mut perms: ChannelPermissions = serde_json::from_str(&text).unwrap_or_default();
                    if rename_in_channel(&mut perms, old_name, &role.name) {
                        sqlx::query("UPDATE channels SET permissions = $1 WHERE id = $2")
                            .bind(serde_json::json!(perms).to_string())
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            audit_in_tx!(tx, audit);
            tx.commit().await?;
            Ok::<_, Error>(())
        }.await);
        self.members_written(written)
    }

    /// Deletes a role, takes it from every account and closes the gap in the positions. Refused
    /// with "Role is used in channel '<name>' permissions" (conflict) while a channel list names
    /// it, checked inside the transaction.
    pub async fn role_delete(&self, role: &Role, audit: &Audit) -> Result<()> {
        let written = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(LOCK_ROLES).execute(&mut *tx).await?;
            let channels: Vec<(String, String)> =
                sqlx::query_as("SELECT name, permissions FROM channels ORDER BY position, name_lower")
                    .fetch_all(&mut *tx)
                    .await?;
            for (name, text) in channels {
                let perms: ChannelPermissions = serde_json::from_str(&text).unwrap_or_default();
                if channel_uses_role(&perms, &role.name) {
                    return Err(Error::conflict(format!("Role is used in channel '{name}' permissions")));
                }
            }
            let position: Option<(i64,)> = sqlx::query_as("SELECT position FROM roles WHERE id = $1")
                .bind(&role.id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((position,)) = position else { return Err(Error::not_found("Role not found")) };
            sqlx::query("DELETE FROM user_roles WHERE role_id = $1").bind(&role.id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM roles WHERE id = $1").bind(&role.id).execute(&mut *tx).await?;
            sqlx::query("UPDATE roles SET position = position - 1 WHERE position > $1")
                .bind(position)
                .execute(&mut *tx)
                .await?;
            audit_in_tx!(tx, audit);
            tx.commit().await?;
            Ok::<_, Error>(())
        }.await);
        self.members_written(written)
    }

    /// Gives the roles the positions 0…n−1 in the order of `ids`. Refused with "Roles array must
    /// list every role exactly once" when `ids` is not exactly the stored set (a role created or
    /// deleted since the caller looked), so positions never collide.
    pub async fn roles_reorder(&self, ids: &[String], audit: &Audit) -> Result<()> {
        let written = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(LOCK_ROLES).execute(&mut *tx).await?;
            let stored: Vec<(String,)> = sqlx::query_as("SELECT id FROM roles").fetch_all(&mut *tx).await?;
            let mut wanted = ids.to_vec();
            wanted.sort();
            let mut stored: Vec<String> = stored.into_iter().map(|r| r.0).collect();
            stored.sort();
            if wanted != stored {
                return Err(Error::bad_request("Roles array must list every role exactly once"));
            }
            for (position, id) in ids.iter().enumerate() {
                sqlx::query("UPDATE roles SET position = $1 WHERE id = $2")
                    .bind(position as i64)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            audit_in_tx!(tx, audit);
            tx.commit().await?;
            Ok::<_, Error>(())
        }.await);
        self.members_written(written)
    }

    /// Gives an account one more role; `false` (and no audit entry) if it already had it.
    pub async fn user_role_add(&self, user_id: &str, role_id: &str, audit: &Audit) -> Result<bool> {
        let written = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let added = sqlx::query(
                "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT (user_id, role_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(role_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if added {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            Ok::<_, Error>(added)
        }.await);
        self.members_written(written)
    }

    /// Takes one role from an account; `false` (and no audit entry) if it did not have it.
    pub async fn user_role_remove(&self, user_id: &str, role_id: &str, audit: &Audit) -> Result<bool> {
        let written = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let removed = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2")
                .bind(user_id)
                .bind(role_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if removed {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
            Ok::<_, Error>(removed)
        }.await);
        self.members_written(written)
    }
}
