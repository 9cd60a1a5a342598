//! A fresh PostgreSQL schema for one `cluster` run, so every run starts on an empty database
//! whatever earlier runs left, and dropped afterwards.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A schema created in the database at `base`.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// Creates `confab_bench_<pid>_<nanos>` in the database `base` (a `postgres://` URL).
    pub async fn create(base: &str) -> Result<Schema> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!("confab_bench_{}_{nanos}", std::process::id());
        execute(base, &format!("CREATE SCHEMA {name}")).await?;
        Ok(Schema { base: base.to_owned(), name })
    }

    /// `base` with the schema as `search_path`: the `database_url` that puts Confab in it.
    pub fn url(&self) -> String {
        with_search_path(&self.base, &self.name)
    }

    /// Drops the schema and everything in it (after the servers using it have stopped).
    pub async fn remove(self) -> Result<()> {
        execute(&self.base, &format!("DROP SCHEMA {} CASCADE", self.name)).await
    }
}

/// `base` with `options=-csearch_path=<schema>` added to its query.
fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

/// One statement on its own connection. The names are the bench's own, made of `[a-z0-9_]`.
async fn execute(base: &str, statement: &str) -> Result<()> {
    let mut conn =
        PgConnection::connect(base).await.with_context(|| format!("connecting to PostgreSQL for `{statement}`"))?;
    sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .with_context(|| statement.to_owned())?;
    conn.close().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_goes_in_the_query() {
        assert_eq!(with_search_path("postgres://u@h/db", "s1"), "postgres://u@h/db?options=-csearch_path%3Ds1");
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s1"),
            "postgres://u@h/db?sslmode=disable&options=-csearch_path%3Ds1"
        );
    }
}
