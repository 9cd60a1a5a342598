//! Roles (PROTOCOL §5.3): name, colour, server permissions and position (0 = highest).

use super::{Store, dispatch};
use crate::error::Result;

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
    /// Creates a role.
    pub async fn role_create(&self, role: &Role) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO roles (id, name, name_lower, description, color, hoisted, permissions, \
                 self_assignable, category, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
            .bind(role.position)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every role, highest position first.
    pub async fn roles(&self) -> Result<Vec<Role>> {
        let sql = format!("SELECT {COLUMNS} FROM roles ORDER BY position");
        Ok(dispatch!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?))
    }
}
