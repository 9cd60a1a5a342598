//! The writer's transactional path: a batch committed in a transaction that reads as it goes
//! (PostgreSQL, and SQLite for channel events), written by macros that expand once per backend.

use std::collections::HashMap;

use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, pool::PoolConnection};

use super::{
    change::{Append, Appended, Change, ChannelEvent, Pinged, Step, appends_from},
    nonces::{Plan, Prior, keyed, nonce_lookup, originals, outcomes, plan},
    rows::append_rows,
};
use crate::{
    error::Result,
    store::{
        Backend, WritePool, now,
        polls::{VOTES, Vote},
        script::{self, Script, run_script},
    },
};

/// The SQLite writer's pooled connection for what the [`Direct`] one does not do (channel events,
/// search indexing), opened on first use and kept. SQLite drops a connection's page cache
/// whenever another connection has written since it last read, so whichever pooled connection is
/// free would re-read the pages of every table and index it writes; this one re-reads them only
/// after the direct connection wrote in between.
pub(super) async fn own_conn<'c>(
    pool: &SqlitePool,
    own: &'c mut Option<PoolConnection<Sqlite>>,
) -> std::result::Result<&'c mut SqliteConnection, sqlx::Error> {
    let conn = match own {
        Some(conn) => conn,
        None => own.insert(pool.acquire().await?),
    };
    Ok(&mut **conn)
}

/// Stores one ping of message `$1` (already in `messages`): kind `$2`, target `$3`; location,
/// author, seq and time are copied from the message row.
const INSERT_MENTION: &str = "INSERT INTO mentions (message_id, channel_id, thread_id, target_kind, target_id, \
     author_id, seq, created_at) SELECT id, channel_id, thread_id, $2, $3, user_id, seq, created_at FROM messages \
     WHERE id = $1 ON CONFLICT (message_id, target_kind, target_id) DO NOTHING";

/// Stores the pings of message `$id` inside `$tx` ([`INSERT_MENTION`] for each).
macro_rules! record_pings {
    ($tx:ident, $id:expr, $pinged:expr) => {{
        let pinged: &Pinged = $pinged;
        for (kind, target) in pinged.rows() {
            sqlx::query(INSERT_MENTION).bind($id).bind(kind).bind(target).execute(&mut *$tx).await?;
        }
    }};
}

/// Poll `$1` is open at time `$3` and its message exists.
const POLL_OPEN: &str = "EXISTS (SELECT 1 FROM polls p JOIN messages m ON m.id = p.message_id \
     WHERE p.id = $1 AND NOT p.ended AND (p.expires_at IS NULL OR p.expires_at > $3))";

/// Reads poll `$id`'s votes inside `$tx` into `$tally` ([`crate::store::polls::Tally`]).
macro_rules! read_tally {
    ($tx:ident, $id:expr, $tally:expr) => {{
        let votes: Vec<Vote> = sqlx::query_as(VOTES).bind($id).fetch_all(&mut *$tx).await?;
        if let Ok(mut tally) = $tally.lock() {
            *tally = votes;
        }
    }};
}

/// A run of consecutive appends inside an open transaction `$tx`, written with a handful of
/// statements instead of several per message: nonce look-up, one seq reservation per channel,
/// then one script of messages, event-log rows, nonces, mentions and counters ([`append_rows`]).
/// Expands once per backend.
macro_rules! apply_appends {
    ($tx:ident, $msgs:expr, $joined:expr) => {{
        let msgs: &[&Append] = $msgs;
        let n = msgs.len();
        let keyed = keyed(msgs);
        let prior: Prior = if keyed.is_empty() {
            Prior::new()
        } else {
            sqlx::query_as::<_, (String, String, String, String, f64)>(sqlx::AssertSqlSafe(nonce_lookup($joined)))
                .bind(script::json_array(&keyed)?)
                .fetch_all(&mut *$tx)
                .await?
        };
        let plans = plan(msgs, &prior);
        // One seq reservation per channel, each channel's seqs handed out in arrival order. The
        // counter rows are locked in channel-id order: another node's writer locking two of them
        // the other way round would deadlock with this one (see [`lock_channels`]).
        let mut channels: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, m) in msgs.iter().enumerate().filter(|(i, _)| matches!(plans[*i], Plan::Fresh)) {
            match channels.iter_mut().find(|(c, _)| *c == m.channel_id) {
                Some((_, list)) => list.push(i),
                None => channels.push((m.channel_id.as_str(), vec![i])),
            }
        }
        channels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut seqs: Vec<Option<i64>> = vec![None; n];
        for (channel, list) in &channels {
            let last: Option<(i64,)> = sqlx::query_as("UPDATE channels SET seq = seq + $2 WHERE id = $1 RETURNING seq")
                .bind(*channel)
                .bind(list.len() as i64)
                .fetch_optional(&mut *$tx)
                .await?;
            if let Some((last,)) = last {
                let first = last - list.len() as i64 + 1;
                for (k, i) in list.iter().enumerate() {
                    seqs[*i] = Some(first + k as i64);
                }
            }
        }
        let stored: Vec<usize> = (0..n).filter(|i| seqs[*i].is_some()).collect();
        let packets: Vec<Option<String>> = (0..n).map(|i| seqs[i].map(|seq| msgs[i].packet(seq))).collect();
        // Everything else the batch writes needs no answer: one script, one round trip on SQLite.
        let mut script = Script::default();
        append_rows(&mut script, msgs, &stored, &seqs, &packets, $joined)?;
        run_script!($tx, &script, $joined);
        // Original packets of repeated nonces from earlier batches, in one query.
        let originals = originals(&plans);
        let mut found: HashMap<String, String> = HashMap::new();
        if !originals.is_empty() {
            let list = (1..=originals.len()).map(|k| format!("${k}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT e.message_id, e.payload FROM events e JOIN messages x ON x.id = e.message_id \
                 WHERE e.kind = 'message_new' AND e.message_id IN ({list})"
            );
            let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
            for id in &originals {
                q = q.bind(*id);
            }
            found.extend(q.fetch_all(&mut *$tx).await?);
        }
        drop(script);
        outcomes(&plans, &seqs, packets, &found)
    }};
}

/// One channel event inside an open transaction `$tx`: the row change, then (only if it touched
/// a row) the next seq and the event log entry. Expands once per backend.
macro_rules! apply_event {
    ($tx:ident, $e:ident) => {{
        let e: &ChannelEvent = $e;
        let touched = match &e.step {
            Step::Edit { message_id, content, extra, mentions } => {
                let done = sqlx::query("UPDATE messages SET content = $1, extra = $2, edited = TRUE WHERE id = $3")
                    .bind(content)
                    .bind(extra)
                    .bind(message_id)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query("DELETE FROM mentions WHERE message_id = $1 AND target_kind IN ('user', 'role')")
                    .bind(message_id)
                    .execute(&mut *$tx)
                    .await?;
                record_pings!($tx, message_id, &Pinged { reply: None, ..mentions.clone() });
                done
            }
            Step::Delete { message_id } => {
                sqlx::query(
                    "UPDATE message_counts SET total = total - 1 WHERE (channel_id, thread_id) IN \
                     (SELECT channel_id, thread_id FROM messages WHERE id = $1)",
                )
                .bind(message_id)
                .execute(&mut *$tx)
                .await?;
                sqlx::query("DELETE FROM messages WHERE id = $1").bind(message_id).execute(&mut *$tx).await?
            }
            Step::ReactAdd { message_id, emoji, user_id, at } => {
                sqlx::query(
                    "INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (message_id, emoji, user_id) DO NOTHING",
                )
                .bind(message_id)
                .bind(emoji)
                .bind(user_id)
                .bind(at)
                .execute(&mut *$tx)
                .await?
            }
            Step::ReactRemove { message_id, emoji, user_id } => {
                sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3")
                    .bind(message_id)
                    .bind(emoji)
                    .bind(user_id)
                    .execute(&mut *$tx)
                    .await?
            }
            Step::SetPinned { message_id, pinned } => {
                sqlx::query("UPDATE messages SET pinned = $1 WHERE id = $2 AND pinned <> $1")
                    .bind(pinned)
                    .bind(message_id)
                    .execute(&mut *$tx)
                    .await?
            }
            Step::ThreadCreate { thread_id, name, user_id, user_name, at } => {
                let created = sqlx::query(
                    "INSERT INTO threads (id, channel_id, name, created_by, created_by_name, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(thread_id)
                .bind(&e.channel_id)
                .bind(name)
                .bind(user_id)
                .bind(user_name)
                .bind(at)
                .execute(&mut *$tx)
                .await?;
                sqlx::query("INSERT INTO thread_participants (thread_id, user_id, joined_at) VALUES ($1, $2, $3)")
                    .bind(thread_id)
                    .bind(user_id)
                    .bind(at)
                    .execute(&mut *$tx)
                    .await?;
                created
            }
            Step::ThreadUpdate { thread_id, name, locked, archived } => {
                sqlx::query(
                    "UPDATE threads SET name = $1, locked = $2, archived = $3 WHERE id = $4 \
                     AND (name <> $1 OR locked <> $2 OR archived <> $3)",
                )
                .bind(name)
                .bind(locked)
                .bind(archived)
                .bind(thread_id)
                .execute(&mut *$tx)
                .await?
            }
            Step::ThreadDelete { thread_id } => {
                sqlx::query("DELETE FROM messages WHERE thread_id = $1").bind(thread_id).execute(&mut *$tx).await?;
                sqlx::query("DELETE FROM message_counts WHERE channel_id = $1 AND thread_id = $2")
                    .bind(&e.channel_id)
                    .bind(thread_id)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query("DELETE FROM threads WHERE id = $1").bind(thread_id).execute(&mut *$tx).await?
            }
            Step::ThreadJoin { thread_id, user_id, at } => {
                sqlx::query(
                    "INSERT INTO thread_participants (thread_id, user_id, joined_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (thread_id, user_id) DO NOTHING",
                )
                .bind(thread_id)
                .bind(user_id)
                .bind(at)
                .execute(&mut *$tx)
                .await?
            }
            Step::ThreadLeave { thread_id, user_id } => {
                sqlx::query("DELETE FROM thread_participants WHERE thread_id = $1 AND user_id = $2")
                    .bind(thread_id)
                    .bind(user_id)
                    .execute(&mut *$tx)
                    .await?
            }
            Step::PollVote { poll_id, user_id, option_ids, at, tally } => {
                // Inserts happen exactly when this delete's condition holds, so the sum of
                // both counts is non-zero exactly when the vote was taken.
                let mut cast = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM poll_votes WHERE poll_id = $1 AND user_id = $2 AND {POLL_OPEN}"
                )))
                .bind(poll_id)
                .bind(user_id)
                .bind(at)
                .execute(&mut *$tx)
                .await?;
                for option in option_ids {
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO poll_votes (poll_id, user_id, created_at, option_id) \
                         SELECT $1, $2, $3, $4 WHERE {POLL_OPEN}"
                    )))
                    .bind(poll_id)
                    .bind(user_id)
                    .bind(at)
                    .bind(option)
                    .execute(&mut *$tx)
                    .await?;
                    cast.extend([done]);
                }
                read_tally!($tx, poll_id, tally);
                cast
            }
            Step::PollEnd { poll_id, at, tally } => {
                let done = sqlx::query(
                    "UPDATE polls SET ended = TRUE, ended_at = $2 WHERE id = $1 AND NOT ended \
                     AND EXISTS (SELECT 1 FROM messages m WHERE m.id = polls.message_id)",
                )
                .bind(poll_id)
                .bind(at)
                .execute(&mut *$tx)
                .await?;
                read_tally!($tx, poll_id, tally);
                done
            }
        }
        .rows_affected();
        if touched == 0 {
            Appended::Unchanged
        } else {
            let seq: Option<(i64,)> = sqlx::query_as("UPDATE channels SET seq = seq + 1 WHERE id = $1 RETURNING seq")
                .bind(&e.channel_id)
                .fetch_optional(&mut *$tx)
                .await?;
            match seq {
                None => Appended::ChannelGone,
                Some((seq,)) => {
                    let packet = (e.render)(seq);
                    sqlx::query(
                        "INSERT INTO events (channel_id, seq, kind, message_id, payload, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&e.channel_id)
                    .bind(seq)
                    .bind(e.kind)
                    .bind(&e.message_id)
                    .bind(&packet)
                    .bind(now())
                    .execute(&mut *$tx)
                    .await?;
                    Appended::Event { seq, packet }
                }
            }
        }
    }};
}

/// Locks, in one fixed order, the counter rows of every channel a batch with channel events
/// touches, before anything else (PostgreSQL only; SQLite's write transaction excludes every
/// other writer). Several nodes' writers commit at once, and every lock a transaction takes must
/// come in one global order or two of them can deadlock: channel rows first, sorted by id, then
/// the rows of those channels. An event changes its row (a message, a reaction…) before it takes
/// its seq, and a batch of appends reserves its seqs first of all, in sorted order, so a batch of
/// appends alone needs no extra statement.
const LOCK_CHANNELS: &str = "SELECT id FROM channels WHERE id IN \
     (SELECT jsonb_array_elements_text(CAST($1 AS jsonb))) ORDER BY id FOR NO KEY UPDATE";

/// The channels of `batch`, sorted and without repeats, if it holds a channel event (see
/// [`LOCK_CHANNELS`]).
fn lock_channels(batch: &[&Change]) -> Option<Vec<String>> {
    if !batch.iter().any(|c| matches!(c, Change::Event(_))) {
        return None;
    }
    let mut ids: Vec<String> = batch
        .iter()
        .map(|c| match c {
            Change::Append(m) => m.channel_id.clone(),
            Change::Event(e) => e.channel_id.clone(),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

/// Runs `$batch` in the write transaction that `$begin` opens: runs of consecutive appends are written
/// together, channel events one by one, in order. Expands once per backend.
macro_rules! commit_on {
    ($begin:expr, $batch:ident, $joined:expr) => {{
        let mut outcomes = Vec::with_capacity($batch.len());
        let mut tx = $begin.await?;
        if !$joined && let Some(ids) = lock_channels($batch) {
            sqlx::query(LOCK_CHANNELS).bind(script::json_array(&ids)?).execute(&mut *tx).await?;
        }
        let mut i = 0;
        while i < $batch.len() {
            let run = appends_from($batch, i);
            if run.is_empty() {
                if let Change::Event(e) = $batch[i] {
                    outcomes.push(apply_event!(tx, e));
                }
                i += 1;
            } else {
                i += run.len();
                outcomes.extend(apply_appends!(tx, &run, $joined));
            }
        }
        tx.commit().await?;
        outcomes
    }};
}

/// Commits `batch` in a write transaction that reads as it goes: on PostgreSQL always, on SQLite
/// for what the direct connection does not take (channel events, a channel that is gone).
pub(super) async fn commit(
    backend: &Backend,
    batch: &[&Change],
    own: &mut Option<PoolConnection<Sqlite>>,
) -> Result<Vec<Appended>> {
    Ok(match backend {
        Backend::Sqlite(pool) => commit_on!(own_conn(pool, own).await?.begin_with("BEGIN IMMEDIATE"), batch, true),
        Backend::Postgres(pool) => commit_on!(pool.begin_write(), batch, false),
    })
}
