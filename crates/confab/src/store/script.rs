//! A list of writes whose results the group-commit writer does not need, sent to SQLite in one
//! round trip.
//!
//! Every statement sent to SQLite is a hop to the connection's worker thread and back; on the
//! machines Confab is measured on, each hop cost about 100 µs under load, and a commit of a few
//! messages was eight of them. SQLite runs a multi-statement text in one go, binding `$n` by
//! number across all of its statements, so the writer joins its inserts into one text with the
//! parameters renumbered. PostgreSQL prepares one statement at a time, so there the statements run
//! one after another; the SQL text of each is the same on both backends.

use std::borrow::Cow;

/// A value bound to a script statement: the writer binds ids, JSON row arrays and seqs.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Text(Cow<'a, str>),
    Int(i64),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Val<'a> {
        Val::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Val<'_> {
    fn from(s: String) -> Self {
        Val::Text(Cow::Owned(s))
    }
}

impl From<i64> for Val<'_> {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}

/// The row source of a statement that reads a JSON array of rows bound as `$1`, each row as
/// `r.value` (read a column with `r.value->>k`, which both dialects have). On SQLite `jsonb_each`
/// hands each row over in binary form: with `json_each` every `->>` parsed the row's text again,
/// which took twice as long as inserting it.
pub fn json_rows(sqlite: bool) -> &'static str {
    if sqlite { "jsonb_each($1) AS r" } else { "jsonb_array_elements(CAST($1 AS jsonb)) AS r(value)" }
}

/// `rows` as one JSON array of arrays, the form [`json_rows`] reads; each row is a tuple, which
/// serialises straight to text without building a `serde_json::Value` per row.
pub fn json_array<T: serde::Serialize>(rows: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Statements in the order they must run, each with its own `$1…$n` parameters.
#[derive(Debug, Default)]
pub struct Script<'a> {
    statements: Vec<(String, Vec<Val<'a>>)>,
    /// Statements that must write an exact number of rows: (index, rows).
    counted: Vec<(usize, u64)>,
}

impl<'a> Script<'a> {
    /// Adds a statement numbering its parameters from `$1`.
    pub fn push(&mut self, sql: impl Into<String>, binds: Vec<Val<'a>>) {
        self.statements.push((sql.into(), binds));
    }

    /// Adds a statement that must write exactly `rows` rows, or the script fails (PostgreSQL checks
    /// it; see [`run_script`]).
    pub fn push_counted(&mut self, sql: impl Into<String>, binds: Vec<Val<'a>>, rows: u64) {
        self.counted.push((self.statements.len(), rows));
        self.push(sql, binds);
    }

    /// The number of rows statement `i` must write, if it was added with [`Script::push_counted`].
    pub fn expected_rows(&self, i: usize) -> Option<u64> {
        self.counted.iter().find(|(k, _)| *k == i).map(|(_, rows)| *rows)
    }

    /// The statements one by one (PostgreSQL).
    pub fn statements(&self) -> &[(String, Vec<Val<'a>>)] {
        &self.statements
    }

    /// The statements joined into as few texts as SQLite's limit of bound parameters allows, each
    /// with its parameters renumbered and its binds in order (SQLite).
    pub fn joined(&self) -> Vec<(String, Vec<&Val<'a>>)> {
        let mut texts: Vec<(String, Vec<&Val<'a>>)> = Vec::new();
        for (text, vals) in &self.statements {
            match texts.last_mut() {
                Some((sql, binds)) if binds.len() + vals.len() <= SQLITE_MAX_PARAMS => {
                    sql.push_str(&shift_params(text, binds.len()));
                    sql.push_str(";\n");
                    binds.extend(vals);
                }
                _ => texts.push((format!("{text};\n"), vals.iter().collect())),
            }
        }
        texts
    }
}

/// SQLite's default limit of bound parameters in one text (`SQLITE_MAX_VARIABLE_NUMBER`).
const SQLITE_MAX_PARAMS: usize = 32_766;

/// `sql` with every `$n` parameter renamed `$(n + offset)`. The writer's statements hold no `$`
/// inside string literals, which is all this needs to know of SQL.
fn shift_params(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + sql.len() / 8);
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some((j, d)) = chars.peek().copied() {
            if !d.is_ascii_digit() {
                break;
            }
            end = j + 1;
            chars.next();
        }
        if let Ok(n) = sql[start..end].parse::<usize>() {
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

/// Runs `$script` inside the open transaction `$tx`: as one text when `$joined` (SQLite), else
/// statement by statement. Expands once per backend. Statement by statement, a counted statement
/// that writes another number of rows fails the script: on PostgreSQL, several nodes may write
/// at once and a row another transaction committed first makes a conditional upsert skip it.
/// (A joined text reports no per-statement counts; SQLite's file has one writer, so nothing
/// else can commit in between.)
macro_rules! run_script {
    ($tx:ident, $script:expr, $joined:expr) => {{
        let script: &$crate::store::script::Script<'_> = $script;
        macro_rules! bind_val {
            ($q:expr, $v:expr) => {
                match $v {
                    $crate::store::script::Val::Text(t) => $q.bind(t.as_ref()),
                    $crate::store::script::Val::Int(i) => $q.bind(*i),
                }
            };
        }
        if $joined {
            for (sql, binds) in script.joined() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for v in binds {
                    q = bind_val!(q, v);
                }
                q.execute(&mut *$tx).await?;
            }
        } else {
            for (i, (sql, binds)) in script.statements().iter().enumerate() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for v in binds {
                    q = bind_val!(q, v);
                }
                let done = q.execute(&mut *$tx).await?;
                if let Some(want) = script.expected_rows(i)
                    && done.rows_affected() != want
                {
                    Err($crate::error::Error::Internal(format!(
                        "{} of {want} rows written: another writer committed one first",
                        done.rows_affected()
                    )))?;
                }
            }
        }
    }};
}
pub(super) use run_script;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_past_earlier_statements() {
        assert_eq!(shift_params("VALUES ($1, $2), ($10, $11)", 3), "VALUES ($4, $5), ($13, $14)");
        assert_eq!(shift_params("SET total = total + $3 WHERE a = $1", 0), "SET total = total + $3 WHERE a = $1");
        assert_eq!(shift_params("x = 'é' AND y = $2", 98), "x = 'é' AND y = $100");
    }

    #[test]
    fn joined_script_keeps_statement_order_and_binds() {
        let mut s = Script::default();
        assert!(s.joined().is_empty());
        s.push("INSERT INTO a VALUES ($1, $2)", vec!["x".into(), 1i64.into()]);
        s.push("UPDATE b SET c = $1", vec![Val::Int(7)]);
        let joined = s.joined();
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].0, "INSERT INTO a VALUES ($1, $2);\nUPDATE b SET c = $3;\n");
        assert_eq!(joined[0].1, vec![&Val::from("x"), &Val::Int(1), &Val::Int(7)]);
        assert_eq!(s.statements().len(), 2);
    }

    #[test]
    fn joined_texts_stay_under_the_parameter_limit() {
        let mut s = Script::default();
        for _ in 0..3 {
            s.push("INSERT INTO a VALUES ($1)", vec![Val::Int(0); 20_000]);
        }
        let joined = s.joined();
        assert_eq!(joined.len(), 3);
        assert!(joined.iter().all(|(sql, binds)| binds.len() == 20_000 && sql.contains("$1)")));
    }
}
