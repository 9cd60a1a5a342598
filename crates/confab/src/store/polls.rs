//! Polls (PROTOCOL §5.8, §6.9): the poll rows and their votes. Votes and endings are channel
//! events, committed by the writer ([`crate::store::writer::Step::PollVote`],
//! [`crate::store::writer::Step::PollEnd`]), which reads the votes back with [`VOTES`] in the same
//! transaction, so every broadcast carries the counts its own change produced.

use std::sync::{Arc, Mutex};

use super::{Store, dispatch};
use crate::error::Result;

/// A stored poll.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PollRow {
    pub id: String,
    pub message_id: String,
    pub channel_id: String,
    /// `""` for a poll directly in the channel.
    pub thread_id: String,
    pub question: String,
    /// The options as the embed shows them: a JSON array of `{id, text, emoji?}`.
    pub options: String,
    pub allow_multiselect: bool,
    pub expires_at: Option<f64>,
    pub created_by: String,
    pub created_at: f64,
    pub ended: bool,
    pub ended_at: Option<f64>,
}

/// One chosen option of one voter.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Vote {
    pub option_id: String,
    pub user_id: String,
    /// The voter's current username (`""` once the account is gone).
    pub username: String,
}

/// The votes a poll change left, filled in by the writer inside the change's transaction and read
/// by the event's render closure, which runs right after in the same transaction.
pub type Tally = Arc<Mutex<Vec<Vote>>>;

/// A poll's votes in the order they were cast; `$1` is the poll id.
pub(crate) const VOTES: &str = "SELECT v.option_id, v.user_id, COALESCE(u.username, '') AS username \
     FROM poll_votes v LEFT JOIN users u ON u.id = v.user_id WHERE v.poll_id = $1 \
     ORDER BY v.created_at, v.user_id, v.option_id";

/// Polls whose message still exists.
const SELECT: &str = "SELECT p.id, p.message_id, p.channel_id, p.thread_id, p.question, p.options, \
     p.allow_multiselect, p.expires_at, p.created_by, p.created_at, p.ended, p.ended_at \
     FROM polls p JOIN messages m ON m.id = p.message_id";

impl Store {
    /// Stores a new poll; its message is appended right after.
    pub async fn poll_insert(&self, p: &PollRow) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO polls (id, message_id, channel_id, thread_id, question, options, allow_multiselect, \
                 expires_at, created_by, created_at, ended, ended_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&p.id)
            .bind(&p.message_id)
            .bind(&p.channel_id)
            .bind(&p.thread_id)
            .bind(&p.question)
            .bind(&p.options)
            .bind(p.allow_multiselect)
            .bind(p.expires_at)
            .bind(&p.created_by)
            .bind(p.created_at)
            .bind(p.ended)
            .bind(p.ended_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes poll `id` if its message does not exist (never stored, or deleted since).
    pub async fn poll_delete_orphan(&self, id: &str) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("DELETE FROM polls WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = polls.message_id)")
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The poll with id `poll_id`, or else the poll shown by message `message_id`.
    pub async fn poll_find(&self, poll_id: Option<&str>, message_id: Option<&str>) -> Result<Option<PollRow>> {
        let (sql, key) = match (poll_id, message_id) {
            (Some(id), _) => (format!("{SELECT} WHERE p.id = $1"), id),
            (None, Some(id)) => (format!("{SELECT} WHERE p.message_id = $1"), id),
            (None, None) => return Ok(None),
        };
        Ok(dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(key).fetch_optional(pool).await?
        }))
    }

    /// The votes of poll `id`.
    pub async fn poll_votes(&self, id: &str) -> Result<Vec<Vote>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as(VOTES).bind(id).fetch_all(pool).await?
        }))
    }

    /// Open polls whose expiry is at or before `at` (message or not), oldest expiry first.
    pub async fn polls_due(&self, at: f64) -> Result<Vec<PollRow>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT id, message_id, channel_id, thread_id, question, options, allow_multiselect, expires_at, \
                 created_by, created_at, ended, ended_at FROM polls \
                 WHERE NOT ended AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT 100",
            )
            .bind(at)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The earliest expiry of an open poll.
    pub async fn poll_next_expiry(&self) -> Result<Option<f64>> {
        let row: Option<(Option<f64>,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT MIN(expires_at) FROM polls WHERE NOT ended AND expires_at IS NOT NULL")
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(|(at,)| at))
    }
}
